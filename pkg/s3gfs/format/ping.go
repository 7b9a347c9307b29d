package format

import (
	"fmt"
	"time"
)

// Ping is a host's liveness record and change feed, the one object a host
// overwrites (key Keys.Ping). A host rewrites it at every sync and soon
// after it commits changes. Other hosts read the pings to learn which
// inodes changed; the reaper reads them to learn what live hosts may still
// be reading.
type Ping struct {
	HostID uint64
	Node   string    // node (machine) name, for people
	Start  time.Time // when the mount started, the host's clock, informational
	// Seq numbers the host's ping writes: 1, 2, 3...
	Seq uint64
	// Expiry is the host-expiry this host fences itself by: once its last
	// successful ping is older than Expiry it stops serving and committing.
	// The reaper MUST treat the host as live for at least this long.
	Expiry time.Duration
	// Oldest is the store time of the oldest version this host may still
	// read (open handles and caches); zero when it holds none.
	Oldest time.Time
	// ReadOnly is set for read-only and as-of mounts.
	ReadOnly bool
	// FeedFrom is the lowest ping Seq whose changes are still listed; a
	// reader that last saw an earlier Seq has missed changes and MUST
	// revalidate everything it caches.
	FeedFrom uint64
	// Changes lists the inode versions this host committed, each with the
	// Seq of the first ping that announced it, ascending by Seq.
	Changes []Change
}

// Change announces that a host committed a version of an inode.
type Change struct {
	Seq     uint64 // the ping that first listed it
	Inode   uint64
	Version uint64
}

// Limits for pings.
const (
	MaxNodeNameLen = 253
	MaxPingChanges = 1 << 16
)

// Validate checks a ping's fields.
func (p *Ping) Validate() error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: ping of host %016x: "+f, append([]any{ErrCorrupt, p.HostID}, a...)...)
	}
	switch {
	case p.HostID == 0:
		return bad("zero host id")
	case len(p.Node) > MaxNodeNameLen:
		return bad("node name of %d bytes", len(p.Node))
	case p.Seq == 0 || p.FeedFrom == 0 || p.FeedFrom > p.Seq+1:
		return bad("seq %d, feed from %d", p.Seq, p.FeedFrom)
	case p.Expiry <= 0 || p.Expiry > 24*time.Hour:
		return bad("host expiry %s out of range", p.Expiry)
	case len(p.Changes) > MaxPingChanges:
		return bad("%d changes exceed %d", len(p.Changes), MaxPingChanges)
	}
	for i, c := range p.Changes {
		if c.Seq < p.FeedFrom || c.Seq > p.Seq || c.Inode == 0 || c.Version == 0 || (i > 0 && p.Changes[i-1].Seq > c.Seq) {
			return bad("change %d out of order or range", i)
		}
	}
	return nil
}

// EncodePing validates p and returns the sealed ping object.
func EncodePing(p *Ping) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.u64(p.HostID)
	e.str(p.Node)
	e.varint(timeNanos(p.Start))
	e.uvarint(p.Seq)
	e.uvarint(uint64(p.Expiry / time.Millisecond))
	e.varint(timeNanos(p.Oldest))
	if p.ReadOnly {
		e.u8(1)
	} else {
		e.u8(0)
	}
	e.uvarint(p.FeedFrom)
	e.uvarint(uint64(len(p.Changes)))
	for _, c := range p.Changes {
		e.uvarint(c.Seq)
		e.u64(c.Inode)
		e.uvarint(c.Version)
	}
	return Seal(KindPing, e.b), nil
}

// DecodePing opens and validates a ping object.
func DecodePing(obj []byte) (*Ping, error) {
	b, err := Open(KindPing, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	p := &Ping{HostID: d.u64("host id"), Node: d.str("node name", MaxNodeNameLen)}
	p.Start = nanosTime(d.varint("start"))
	p.Seq = d.uvarint("seq")
	p.Expiry = time.Duration(d.uvarintMax("expiry", uint64(24*time.Hour/time.Millisecond))) * time.Millisecond
	p.Oldest = nanosTime(d.varint("oldest"))
	switch d.u8("read-only flag") {
	case 0:
	case 1:
		p.ReadOnly = true
	default:
		d.fail("bad read-only flag")
	}
	p.FeedFrom = d.uvarint("feed from")
	n := d.uvarintMax("change count", MaxPingChanges)
	if n > uint64(len(b)) {
		d.fail("change count %d exceeds object size", n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		p.Changes = append(p.Changes, Change{Seq: d.uvarint("change seq"), Inode: d.u64("change inode"), Version: d.uvarint("change version")})
	}
	if err := d.end("ping"); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// timeNanos encodes a time as ns since the epoch, 0 for the zero time.
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
