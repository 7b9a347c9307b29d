package format

import (
	"fmt"
	"time"
)

// KindUsage tags the usage record (FORMAT.md §15.9).
const KindUsage Kind = 'U'

// Usage is the payload of the usage record (key Keys.Usage): what the
// volume held in the store when the reaper's last complete pass ended.
// It is a figure for people and for statfs, never used to decide anything.
type Usage struct {
	// At is the store time at which the pass that measured it began.
	At time.Time
	// Bytes and Objects count the volume's inode versions and extents
	// (keys under i/ and d/) the pass left in the store.
	Bytes, Objects uint64
	// Inodes counts the inodes a path from the root reached at At.
	Inodes uint64
}

// Usage is the key of the usage record.
func (k Keys) Usage() string { return k.prefix + "usage" }

// Validate checks a usage record's fields.
func (u *Usage) Validate() error {
	if u.At.IsZero() || u.Bytes > maxUsageBytes || u.Objects > maxUsageCount || u.Inodes > maxUsageCount {
		return fmt.Errorf("%w: usage record fields out of range", ErrCorrupt)
	}
	return nil
}

const (
	maxUsageBytes = 1 << 62
	maxUsageCount = 1 << 48
)

// EncodeUsage validates u and returns the sealed record.
func EncodeUsage(u *Usage) ([]byte, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.varint(timeNanos(u.At))
	e.uvarint(u.Bytes)
	e.uvarint(u.Objects)
	e.uvarint(u.Inodes)
	return Seal(KindUsage, e.b), nil
}

// DecodeUsage opens and validates a usage record.
func DecodeUsage(obj []byte) (*Usage, error) {
	b, err := Open(KindUsage, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	u := &Usage{}
	u.At = nanosTime(d.varint("at"))
	u.Bytes = d.uvarintMax("bytes", maxUsageBytes)
	u.Objects = d.uvarintMax("objects", maxUsageCount)
	u.Inodes = d.uvarintMax("inodes", maxUsageCount)
	if err := d.end("usage record"); err != nil {
		return nil, err
	}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	return u, nil
}
