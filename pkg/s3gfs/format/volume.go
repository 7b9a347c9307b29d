package format

import (
	"fmt"
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
}

// KnownFeatures is the set of feature bits this build understands.
const KnownFeatures uint64 = 0

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
	if err := d.end("volume header"); err != nil {
		return nil, err
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// EncodeExtent returns the sealed extent object holding data.
func EncodeExtent(data []byte) []byte { return Seal(KindExtent, data) }

// DecodeExtent opens an extent object and checks it against the length and
// checksum its referring inode version recorded.
func DecodeExtent(obj []byte, ref ExtentRef) ([]byte, error) {
	data, err := Open(KindExtent, obj)
	if err != nil {
		return nil, err
	}
	if uint32(len(data)) != ref.Length {
		return nil, fmt.Errorf("%w: extent holds %d bytes, its inode recorded %d", ErrCorrupt, len(data), ref.Length)
	}
	if Checksum(data) != ref.CRC {
		return nil, fmt.Errorf("%w: extent checksum differs from the one its inode recorded", ErrCorrupt)
	}
	return data, nil
}
