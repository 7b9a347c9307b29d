package format

import (
	"encoding/binary"
	"fmt"
)

// encoder appends primitive fields; every multi-byte integer is either a
// fixed-width little-endian value or an unsigned/signed LEB128 varint.
type encoder struct{ b []byte }

func (e *encoder) u8(v byte)        { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32)     { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)     { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)     { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }

// decoder reads fields back; the first error sticks and later reads return
// zero values, so callers check err once at the end of a record.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
}

func (d *decoder) need(n int, what string) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("truncated %s at byte %d", what, d.off)
		return false
	}
	return true
}

func (d *decoder) u8(what string) byte {
	if !d.need(1, what) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) u32(what string) uint32 {
	if !d.need(4, what) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) u64(what string) uint64 {
	if !d.need(8, what) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint %s at byte %d", what, d.off)
		return 0
	}
	d.off += n
	return v
}

// uvarintMax reads a uvarint and refuses values above max.
func (d *decoder) uvarintMax(what string, max uint64) uint64 {
	v := d.uvarint(what)
	if v > max {
		d.fail("%s %d exceeds limit %d", what, v, max)
		return 0
	}
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint %s at byte %d", what, d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) bytes(what string, max int) []byte {
	n := d.uvarintMax(what+" length", uint64(max))
	if !d.need(int(n), what) {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[d.off:])
	d.off += int(n)
	return v
}

func (d *decoder) str(what string, max int) string { return string(d.bytes(what, max)) }

// end refuses trailing bytes after the last field.
func (d *decoder) end(what string) error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes after %s", len(d.b)-d.off, what)
	}
	return d.err
}
