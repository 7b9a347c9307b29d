package format

import (
	"fmt"
	"strings"
	"time"
)

// Limits on volume parameters.
const (
	MinExtentSize     = 64 << 10
	MaxExtentSize     = 64 << 20
	DefaultExtentSize = 4 << 20
	// DefaultInlineLimit: files up to this size keep their bytes in the
	// inode version itself.
	DefaultInlineLimit = 4 << 10
	MaxInlineLimit     = 64 << 10
	MaxRetention       = 100 * 365 * 24 * time.Hour
)

// Volume is the volume header, written once by format with a conditional
// create and never changed in place.
type Volume struct {
	ID          [16]byte      // random, identifies the volume
	ExtentSize  uint32        // bytes per extent
	InlineLimit uint32        // files up to this size are stored inline
	Retention   time.Duration // how long superseded versions stay mountable
	Created     time.Time     // the formatting host's clock, informational only
	Features    uint64        // feature bits; unknown bits are refused
	// Clone is set exactly when Features has FeatureClone: the volume
	// falls through to its source at a pinned instant (FORMAT.md §16).
	Clone *CloneSource
}

// Feature bits of the volume header.
const (
	// FeatureClone: the volume is a clone (FORMAT.md §16).
	FeatureClone uint64 = 1
)

// KnownFeatures is the set of feature bits this build understands.
const KnownFeatures uint64 = FeatureClone

// MaxCloneDepth bounds a clone's chain of sources (clones of clones).
const MaxCloneDepth = 8

// CloneSource is where a clone falls through to: its source volume, seen
// at the store time At, which the source's pin Pin holds.
type CloneSource struct {
	Bucket string
	Prefix string
	ID     [16]byte  // the source header's id
	At     time.Time // T: the pin's store time (ns)
	Pin    string    // the pin s/<Pin> in the source
	Depth  int       // 1 + the source's depth
}

// Depth is the length of the volume's source chain (0: not a clone).
func (v *Volume) Depth() int {
	if v.Clone == nil {
		return 0
	}
	return v.Clone.Depth
}

// ValidateBucketName checks a general-purpose S3 bucket name as a clone
// header records it: 3-63 characters from a-z 0-9 . -, starting and
// ending with a letter or digit, without "..".
func ValidateBucketName(b string) error {
	ok := len(b) >= 3 && len(b) <= 63 && !strings.Contains(b, "..")
	for i := 0; ok && i < len(b); i++ {
		c := b[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		ok = alnum || (c == '.' || c == '-') && i > 0 && i < len(b)-1
	}
	if !ok {
		return fmt.Errorf("invalid bucket name %q", b)
	}
	return nil
}

func (c *CloneSource) validate() error {
	if err := ValidateBucketName(c.Bucket); err != nil {
		return fmt.Errorf("%w: clone source: %v", ErrCorrupt, err)
	}
	if _, err := NewKeys(c.Prefix); err != nil {
		return fmt.Errorf("%w: clone source: %v", ErrCorrupt, err)
	}
	if c.At.IsZero() || c.At.UnixNano() == 0 {
		return fmt.Errorf("%w: clone source time is zero", ErrCorrupt)
	}
	if err := ValidateSnapshotName(c.Pin); err != nil {
		return fmt.Errorf("%w: clone source pin: %v", ErrCorrupt, err)
	}
	if c.Depth < 1 || c.Depth > MaxCloneDepth {
		return fmt.Errorf("%w: clone depth %d must be between 1 and %d", ErrCorrupt, c.Depth, MaxCloneDepth)
	}
	return nil
}

// Validate checks the header's fields.
func (v *Volume) Validate() error {
	if v.ExtentSize < MinExtentSize || v.ExtentSize > MaxExtentSize || v.ExtentSize%4096 != 0 {
		return fmt.Errorf("%w: extent size %d must be a multiple of 4096 between %d and %d", ErrCorrupt, v.ExtentSize, MinExtentSize, MaxExtentSize)
	}
	if v.InlineLimit > MaxInlineLimit || v.InlineLimit > v.ExtentSize {
		return fmt.Errorf("%w: inline limit %d exceeds %d or the extent size", ErrCorrupt, v.InlineLimit, MaxInlineLimit)
	}
	if v.Retention < 0 || v.Retention > MaxRetention {
		return fmt.Errorf("%w: retention %s must be between 0 and %s", ErrCorrupt, v.Retention, MaxRetention)
	}
	if v.Features&^KnownFeatures != 0 {
		return fmt.Errorf("%w: volume uses unknown features %#x", ErrUnsupported, v.Features&^KnownFeatures)
	}
	if (v.Features&FeatureClone != 0) != (v.Clone != nil) {
		return fmt.Errorf("%w: clone feature bit and clone fields disagree", ErrCorrupt)
	}
	if v.Clone != nil {
		return v.Clone.validate()
	}
	return nil
}

// EncodeVolume returns the sealed volume header object.
func EncodeVolume(v *Volume) ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.b = append(e.b, v.ID[:]...)
	e.uvarint(uint64(v.ExtentSize))
	e.uvarint(uint64(v.InlineLimit))
	e.uvarint(uint64(v.Retention / time.Second))
	var created int64 // 0 encodes "unknown"
	if !v.Created.IsZero() {
		created = v.Created.UnixNano()
	}
	e.varint(created)
	e.uvarint(v.Features)
	if c := v.Clone; c != nil {
		e.str(c.Bucket)
		e.str(c.Prefix)
		e.b = append(e.b, c.ID[:]...)
		e.varint(c.At.UnixNano())
		e.str(c.Pin)
		e.uvarint(uint64(c.Depth))
	}
	return Seal(KindVolume, e.b), nil
}

// DecodeVolume opens and validates a volume header object.
func DecodeVolume(obj []byte) (*Volume, error) {
	p, err := Open(KindVolume, obj)
	if err != nil {
		return nil, err
	}
	d := decoder{b: p}
	v := &Volume{}
	if d.need(16, "volume id") {
		copy(v.ID[:], p[:16])
		d.off = 16
	}
	v.ExtentSize = uint32(d.uvarintMax("extent size", MaxExtentSize))
	v.InlineLimit = uint32(d.uvarintMax("inline limit", MaxInlineLimit))
	v.Retention = time.Duration(d.uvarintMax("retention", uint64(MaxRetention/time.Second))) * time.Second
	if created := d.varint("created"); created != 0 {
		v.Created = time.Unix(0, created)
	}
	v.Features = d.uvarint("features")
	if d.err == nil && v.Features&^KnownFeatures != 0 {
		// Unknown features may change the layout of what follows.
		return nil, fmt.Errorf("%w: volume uses unknown features %#x", ErrUnsupported, v.Features&^KnownFeatures)
	}
	if v.Features&FeatureClone != 0 {
		c := &CloneSource{}
		c.Bucket = d.str("clone source bucket", 63)
		c.Prefix = d.str("clone source prefix", 512)
		if d.need(16, "clone source id") {
			copy(c.ID[:], p[d.off:d.off+16])
			d.off += 16
		}
		if at := d.varint("clone source time"); at != 0 {
			c.At = time.Unix(0, at)
		}
		c.Pin = d.str("clone source pin", 253)
		c.Depth = int(d.uvarintMax("clone depth", MaxCloneDepth))
		v.Clone = c
	}
	if err := d.end("volume header"); err != nil {
		return nil, err
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}
