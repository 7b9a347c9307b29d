package format

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kinds of the objects the reaper and the snapshot tooling write (§13, §14
// of FORMAT.md). KindSnapshot and KindLease are declared with the others.
const (
	KindReaper   Kind = 'R' // the reaper's record: how far back the volume can go
	KindSettings Kind = 'C' // one version of the volume's changeable settings
)

// Limits of the reaper's and snapshots' objects.
const (
	// MaxSnapshotNameLen is the longest snapshot name (a Kubernetes object
	// name is at most 253 characters).
	MaxSnapshotNameLen = 253
	// MaxLabelLen bounds a snapshot's free-form label.
	MaxLabelLen = 1024
	// MaxOwnerLen bounds a lease owner or a creator name.
	MaxOwnerLen = 253
	// MaxLeaseDuration is the longest a lease may be taken for.
	MaxLeaseDuration = time.Hour
)

// ErrBadSnapshotName: a snapshot name that the format does not allow.
var ErrBadSnapshotName = fmt.Errorf("invalid snapshot name")

var snapshotNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidateSnapshotName checks a snapshot name: 1 to 253 characters from
// A-Z a-z 0-9 '.' '_' '-', not starting with '.' or '-', and without "..".
func ValidateSnapshotName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrBadSnapshotName)
	case len(name) > MaxSnapshotNameLen:
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrBadSnapshotName, len(name), MaxSnapshotNameLen)
	case !snapshotNameRE.MatchString(name):
		return fmt.Errorf("%w: %q: use only letters, digits, '.', '_' and '-'", ErrBadSnapshotName, name)
	case name[0] == '.' || name[0] == '-':
		return fmt.Errorf("%w: %q must not start with '.' or '-'", ErrBadSnapshotName, name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("%w: %q contains \"..\"", ErrBadSnapshotName, name)
	}
	return nil
}

// ParseSnapshot returns the name of the snapshot pin at key, or an error
// when key is not a valid snapshot key of this volume.
func (k Keys) ParseSnapshot(key string) (string, error) {
	name, ok := strings.CutPrefix(key, k.prefix+"s/")
	if !ok {
		return "", fmt.Errorf("%w: %q is not a snapshot key", ErrCorrupt, key)
	}
	if err := ValidateSnapshotName(name); err != nil {
		return "", fmt.Errorf("%w: %q is not a snapshot key: %v", ErrCorrupt, key, err)
	}
	return name, nil
}

// Reaper is the key of the reaper's record.
func (k Keys) Reaper() string { return k.prefix + "reaper" }

// SettingsPrefix is the common prefix of every settings version.
func (k Keys) SettingsPrefix() string { return k.prefix + "settings/" }

// Settings is the key of settings version v, complemented like inode
// versions so that the newest sorts first.
func (k Keys) Settings(v uint64) string { return fmt.Sprintf("%ssettings/%016x", k.prefix, ^v) }

// ParseSettings parses a key made by Settings.
func (k Keys) ParseSettings(key string) (uint64, error) {
	rest, ok := strings.CutPrefix(key, k.prefix+"settings/")
	if ok && len(rest) == 16 {
		if inv, err := strconv.ParseUint(rest, 16, 64); err == nil && inv != 0 && ^inv != 0 && k.Settings(^inv) == key {
			return ^inv, nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not a settings key", ErrCorrupt, key)
}

// ParsePing parses a key made by Ping.
func (k Keys) ParsePing(key string) (uint64, error) {
	rest, ok := strings.CutPrefix(key, k.prefix+"h/")
	if ok && len(rest) == 16 {
		if id, err := strconv.ParseUint(rest, 16, 64); err == nil && id != 0 && k.Ping(id) == key {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not a ping key", ErrCorrupt, key)
}

// ProbesPrefix is the common prefix of conditional-write probe objects.
func (k Keys) ProbesPrefix() string { return k.prefix + "probe/" }

// SnapshotPin is the payload of a snapshot pin object (key Keys.Snapshot).
// The instant a snapshot shows is NOT in the payload: it is the store's
// LastModified of the pin object, which is created once and never changed.
type SnapshotPin struct {
	Name    string    // MUST equal the name in the key
	Created time.Time // the creating client's clock; informational only
	Creator string    // who made it (node, tool), for people
	Label   string    // free-form text from the creator (e.g. a CSI snapshot id)
}

// Validate checks a pin's fields.
func (p *SnapshotPin) Validate() error {
	if err := ValidateSnapshotName(p.Name); err != nil {
		return fmt.Errorf("%w: snapshot pin: %v", ErrCorrupt, err)
	}
	if len(p.Creator) > MaxOwnerLen || len(p.Label) > MaxLabelLen {
		return fmt.Errorf("%w: snapshot pin %q: creator or label too long", ErrCorrupt, p.Name)
	}
	return nil
}

// EncodeSnapshotPin validates p and returns the sealed pin object.
func EncodeSnapshotPin(p *SnapshotPin) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.str(p.Name)
	e.varint(timeNanos(p.Created))
	e.str(p.Creator)
	e.str(p.Label)
	return Seal(KindSnapshot, e.b), nil
}

// DecodeSnapshotPin opens and validates a pin object.
func DecodeSnapshotPin(obj []byte) (*SnapshotPin, error) {
	b, err := Open(KindSnapshot, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	p := &SnapshotPin{Name: d.str("name", MaxSnapshotNameLen)}
	p.Created = nanosTime(d.varint("created"))
	p.Creator = d.str("creator", MaxOwnerLen)
	p.Label = d.str("label", MaxLabelLen)
	if err := d.end("snapshot pin"); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Lease is the payload of the reaper's lease object (key Keys.Lease). The
// lease is held until LastModified + Duration by the store's clock.
type Lease struct {
	Owner    string        // the holder's id, unique per reaper process
	Duration time.Duration // 0 means released; at most MaxLeaseDuration; whole ms
	Acquired time.Time     // the holder's clock when it took the lease; informational
	Seq      uint64        // renewals since the holder took it, 0 first
}

// Validate checks a lease's fields.
func (l *Lease) Validate() error {
	if l.Owner == "" || len(l.Owner) > MaxOwnerLen {
		return fmt.Errorf("%w: lease owner of %d bytes", ErrCorrupt, len(l.Owner))
	}
	if l.Duration < 0 || l.Duration > MaxLeaseDuration {
		return fmt.Errorf("%w: lease duration %s out of range", ErrCorrupt, l.Duration)
	}
	return nil
}

// EncodeLease validates l and returns the sealed lease object.
func EncodeLease(l *Lease) ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.str(l.Owner)
	e.uvarint(uint64(l.Duration / time.Millisecond))
	e.varint(timeNanos(l.Acquired))
	e.uvarint(l.Seq)
	return Seal(KindLease, e.b), nil
}

// DecodeLease opens and validates a lease object.
func DecodeLease(obj []byte) (*Lease, error) {
	b, err := Open(KindLease, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	l := &Lease{Owner: d.str("owner", MaxOwnerLen)}
	l.Duration = time.Duration(d.uvarintMax("duration", uint64(MaxLeaseDuration/time.Millisecond))) * time.Millisecond
	l.Acquired = nanosTime(d.varint("acquired"))
	l.Seq = d.uvarint("seq")
	if err := d.end("lease"); err != nil {
		return nil, err
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return l, nil
}

// ReaperRecord is the payload of the reaper's record (key Keys.Reaper),
// rewritten (plain PUT) by the lease holder at the start of every pass,
// before it deletes anything.
type ReaperRecord struct {
	// Horizon is the earliest store time a point-in-time mount may show
	// (snapshot pins aside): the reaper may have deleted versions visible
	// only before it. It never decreases from one record to the next.
	Horizon time.Time
	// Pass is the store time at which the pass that wrote it started.
	Pass time.Time
	// Owner is the lease holder that wrote it.
	Owner string
	// Retention and Grace are the values that pass used.
	Retention time.Duration // whole seconds
	Grace     time.Duration // whole ms
}

// Validate checks a record's fields.
func (r *ReaperRecord) Validate() error {
	if r.Horizon.IsZero() || r.Pass.IsZero() || len(r.Owner) > MaxOwnerLen || r.Retention < 0 || r.Retention > MaxRetention || r.Grace < 0 {
		return fmt.Errorf("%w: reaper record fields out of range", ErrCorrupt)
	}
	return nil
}

// EncodeReaperRecord validates r and returns the sealed record.
func EncodeReaperRecord(r *ReaperRecord) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.varint(timeNanos(r.Horizon))
	e.varint(timeNanos(r.Pass))
	e.str(r.Owner)
	e.uvarint(uint64(r.Retention / time.Second))
	e.uvarint(uint64(r.Grace / time.Millisecond))
	return Seal(KindReaper, e.b), nil
}

// DecodeReaperRecord opens and validates a reaper record.
func DecodeReaperRecord(obj []byte) (*ReaperRecord, error) {
	b, err := Open(KindReaper, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	r := &ReaperRecord{}
	r.Horizon = nanosTime(d.varint("horizon"))
	r.Pass = nanosTime(d.varint("pass"))
	r.Owner = d.str("owner", MaxOwnerLen)
	r.Retention = time.Duration(d.uvarintMax("retention", uint64(MaxRetention/time.Second))) * time.Second
	r.Grace = time.Duration(d.uvarintMax("grace", uint64(MaxRetention/time.Millisecond))) * time.Millisecond
	if err := d.end("reaper record"); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// Settings is one version of the volume's changeable settings (key
// Keys.Settings), created with a conditional create of the next version;
// the newest version is in force. Without any, the volume header's values
// apply.
type Settings struct {
	Version   uint64        // MUST equal the version in the key
	Retention time.Duration // whole seconds, at most MaxRetention
	Changed   time.Time     // the writer's clock; informational
	Writer    string        // who changed it, for people
}

// Validate checks the settings' fields.
func (s *Settings) Validate() error {
	if s.Version == 0 || s.Version == ^uint64(0) || s.Retention < 0 || s.Retention > MaxRetention || len(s.Writer) > MaxOwnerLen {
		return fmt.Errorf("%w: settings v%d fields out of range", ErrCorrupt, s.Version)
	}
	return nil
}

// EncodeSettings validates s and returns the sealed settings object.
func EncodeSettings(s *Settings) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.uvarint(s.Version)
	e.uvarint(uint64(s.Retention / time.Second))
	e.varint(timeNanos(s.Changed))
	e.str(s.Writer)
	return Seal(KindSettings, e.b), nil
}

// DecodeSettings opens and validates a settings object.
func DecodeSettings(obj []byte) (*Settings, error) {
	b, err := Open(KindSettings, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	s := &Settings{Version: d.uvarint("version")}
	s.Retention = time.Duration(d.uvarintMax("retention", uint64(MaxRetention/time.Second))) * time.Second
	s.Changed = nanosTime(d.varint("changed"))
	s.Writer = d.str("writer", MaxOwnerLen)
	if err := d.end("settings"); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}
