// Package volumeid encodes and parses the s3gfs CSI driver's volume and
// snapshot ids, the strings Kubernetes keeps in PersistentVolume volume
// handles and VolumeSnapshotContent snapshot handles. The CSI driver
// (pkg/driver) makes them; the reaper (s3gfs reaper --volumes-from
// kubernetes) reads them back from the cluster to find the volumes to
// collect. It depends on neither gRPC nor CSI.
//
// An id carries everything needed to find the volume again without a
// database: the bucket, the volume's key prefix and, when the StorageClass
// named them, the endpoint and region. Ids are versioned and canonical:
// parsing an id and encoding it again gives the same string, and every id
// is validated on every parse, so a hostile id can name nothing but a
// well-formed bucket and prefix (no "..", no absolute or empty segments,
// no control characters, no ':').
//
//	volume id:   v1:<bucket>:<prefix>[:<region>:<endpoint>]
//	snapshot id: s1:<snapshot>:<bucket>:<prefix>[:<region>:<endpoint>]
//
// The prefix is "" for a volume that has a bucket of its own.
package volumeid

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// The tags that start the ids of this format.
const (
	VolumeTag   = "v1"
	SnapshotTag = "s1"
)

// Errors. Every error this package returns is an *Error wrapping one of
// them.
var (
	// ErrInvalid: the string has this driver's tag but is malformed or
	// names something no s3gfs volume can be.
	ErrInvalid = errors.New("invalid id")
	// ErrForeign: the string is not an id of this format at all (another
	// driver's, or a future version's).
	ErrForeign = errors.New("not an s3gfs id")
)

// Error says what is wrong with an id or a field, naming the field.
type Error struct {
	Kind  error // ErrInvalid or ErrForeign
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Kind == ErrForeign || e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Kind }

func invalid(field, f string, args ...any) error {
	return &Error{Kind: ErrInvalid, Field: field, Msg: fmt.Sprintf(f, args...)}
}

// Loc is where a volume lives.
type Loc struct {
	Bucket   string
	Prefix   string // no leading or trailing slash; "" = the whole bucket
	Region   string // "" = the credentials' or the plugin's default
	Endpoint string // "" = the credentials' or the plugin's default
}

// URL is the volume URL `s3gfs mount` takes.
func (l Loc) URL() volume.URL { return volume.URL{Bucket: l.Bucket, Prefix: l.Prefix} }

func (l Loc) tail() string {
	s := l.Bucket + ":" + l.Prefix
	if l.Region != "" || l.Endpoint != "" {
		s += ":" + l.Region + ":" + l.Endpoint
	}
	return s
}

// VolumeID encodes l as a volume id.
func (l Loc) VolumeID() string { return VolumeTag + ":" + l.tail() }

// SnapshotID encodes the snapshot called name of the volume at l.
func (l Loc) SnapshotID(name string) string { return SnapshotTag + ":" + name + ":" + l.tail() }

var (
	// nameRE is what a volume or snapshot name, and every segment of a
	// StorageClass prefix, may look like: a key-safe path segment.
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// MaxNameLen bounds volume and snapshot names (the CSI size limit for
// strings is 128 bytes).
const MaxNameLen = 128

// ValidateName checks a volume or snapshot name.
func ValidateName(field, name string) error {
	if name == "" {
		return invalid(field, "missing")
	}
	if len(name) > MaxNameLen || !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return invalid(field, "%q must be 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'", name, MaxNameLen)
	}
	return nil
}

// ValidatePrefix checks a volume prefix ("" allowed) or a StorageClass
// base prefix: segments as ValidateName, separated by single slashes.
func ValidatePrefix(field, p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 384 {
		return invalid(field, "longer than 384 bytes")
	}
	for _, seg := range strings.Split(p, "/") {
		if !nameRE.MatchString(seg) || strings.Contains(seg, "..") {
			return invalid(field, "%q: every '/'-separated segment must be letters, digits, '.', '_' or '-', starting with a letter or digit, without '..' (no leading, trailing or double slash)", p)
		}
	}
	if _, err := format.NewKeys(p); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

// ValidateRegion checks a region name ("" allowed).
func ValidateRegion(field, r string) error {
	if r != "" && !regionRE.MatchString(r) {
		return invalid(field, "%q is not a region name (lowercase letters, digits and '-')", r)
	}
	return nil
}

// ValidateEndpoint accepts "" or an http(s) URL of a host, with an
// optional port and nothing else: no user, path, query or fragment.
func ValidateEndpoint(field, e string) error {
	if e == "" {
		return nil
	}
	if len(e) > 256 || strings.ContainsAny(e, " \t\r\n\x00") {
		return invalid(field, "not an endpoint URL such as https://s3.example.com or http://10.0.0.5:9000")
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return invalid(field, "%q is not an endpoint URL such as https://s3.example.com or http://10.0.0.5:9000", e)
	}
	return nil
}

// Validate checks every part of l.
func (l Loc) Validate(field string) error {
	if err := volume.ValidateBucket(l.Bucket); err != nil {
		return invalid(field, "%v", err)
	}
	if strings.HasSuffix(l.Bucket, "--x-s3") {
		return invalid(field, "bucket %q is an S3 Express directory bucket, which s3gfs does not support", l.Bucket)
	}
	if err := ValidatePrefix(field, l.Prefix); err != nil {
		return err
	}
	if err := ValidateRegion(field, l.Region); err != nil {
		return err
	}
	return ValidateEndpoint(field, l.Endpoint)
}

// parseTail parses "<bucket>:<prefix>[:<region>:<endpoint>]".
func parseTail(field, s string) (Loc, error) {
	parts := strings.SplitN(s, ":", 4)
	var l Loc
	switch len(parts) {
	case 2:
		l = Loc{Bucket: parts[0], Prefix: parts[1]}
	case 4:
		l = Loc{Bucket: parts[0], Prefix: parts[1], Region: parts[2], Endpoint: parts[3]}
		if l.Region == "" && l.Endpoint == "" {
			return Loc{}, invalid(field, "not in canonical form")
		}
	default:
		return Loc{}, invalid(field, "malformed")
	}
	if err := l.Validate(field); err != nil {
		return Loc{}, err
	}
	return l, nil
}

// ParseVolumeID parses and validates a volume id; field names it in
// errors. A string without this format's tag is ErrForeign.
func ParseVolumeID(field, id string) (Loc, error) {
	if id == "" {
		return Loc{}, invalid(field, "missing")
	}
	rest, ok := strings.CutPrefix(id, VolumeTag+":")
	if !ok {
		return Loc{}, &Error{Kind: ErrForeign, Field: field,
			Msg: fmt.Sprintf("%s %q is not an s3gfs volume id (want %s:BUCKET:PREFIX)", field, Clip(id), VolumeTag)}
	}
	l, err := parseTail(field, rest)
	if err != nil {
		return Loc{}, err
	}
	if l.VolumeID() != id {
		return Loc{}, invalid(field, "not in canonical form")
	}
	return l, nil
}

// ParseSnapshotID parses and validates a snapshot id, returning the
// volume's location and the snapshot's name. A string without this
// format's tag is ErrForeign.
func ParseSnapshotID(field, id string) (Loc, string, error) {
	if id == "" {
		return Loc{}, "", invalid(field, "missing")
	}
	rest, ok := strings.CutPrefix(id, SnapshotTag+":")
	if !ok {
		return Loc{}, "", &Error{Kind: ErrForeign, Field: field,
			Msg: fmt.Sprintf("%s %q is not an s3gfs snapshot id (want %s:NAME:BUCKET:PREFIX)", field, Clip(id), SnapshotTag)}
	}
	name, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return Loc{}, "", invalid(field, "malformed")
	}
	if err := ValidateName(field, name); err != nil {
		return Loc{}, "", err
	}
	l, err := parseTail(field, rest)
	if err != nil {
		return Loc{}, "", err
	}
	if l.SnapshotID(name) != id {
		return Loc{}, "", invalid(field, "not in canonical form")
	}
	return l, name, nil
}

// Clip shortens a hostile string before it goes into a message.
func Clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// RecordsPrefix starts the keys of the CSI controller's volume records,
// one per volume it made, in the volume's bucket and outside every
// volume's keys (no prefix segment starts with '.').
const RecordsPrefix = ".s3gfs-csi/volumes/"

// RecordKey is the key of the record of the volume at prefix.
func RecordKey(prefix string) string { return RecordsPrefix + url.QueryEscape("/"+prefix) }

// RecordPrefix returns the volume prefix a record key names, if key is
// one.
func RecordPrefix(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, RecordsPrefix)
	if !ok {
		return "", false
	}
	p, err := url.QueryUnescape(rest)
	if err != nil || !strings.HasPrefix(p, "/") || RecordKey(p[1:]) != key {
		return "", false
	}
	return p[1:], true
}

// Record is what the reaper reads of a controller's volume record (the
// controller's own type has more).
type Record struct {
	Version  int    `json:"version"`
	Prefix   string `json:"prefix"`
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
	// Retain: the volume's objects stay when it is deleted.
	Retain bool `json:"retain,omitempty"`
	// ReadOnlyView: the volume is a view of a snapshot, with no objects of
	// its own.
	ReadOnlyView bool `json:"readOnlyView,omitempty"`
	// Deleted: DeleteVolume ran, but the objects stay (retained, or until
	// the last snapshot or clone of the volume is gone).
	Deleted bool `json:"deleted,omitempty"`
}
