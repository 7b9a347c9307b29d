package format

import (
	"encoding/binary"
	"fmt"
)

// Block checksums (FORMAT.md §5.3, §6): an extent reference may carry the
// CRC-32C of every 2^BlockShift bytes of its extent instead of one CRC of
// the whole, so that a part of the extent fetched alone can be checked.
const (
	// MinBlockShift and MaxBlockShift bound a reference's block size:
	// 4 KiB to 64 MiB.
	MinBlockShift = 12
	MaxBlockShift = 26
	// DefaultBlockShift is the block size s3gfs writes: 64 KiB (FORMAT.md
	// §11 says why).
	DefaultBlockShift = 16
	// MaxBlocks is the most block checksums one reference can carry.
	MaxBlocks = MaxExtentSize >> MinBlockShift
)

// Blocks is the number of block checksums the reference carries (0 for a
// reference with one CRC of the whole extent).
func (x ExtentRef) Blocks() int {
	if x.BlockShift == 0 {
		return 0
	}
	return blockCount(x.Length, x.BlockShift)
}

func blockCount(length uint32, shift uint8) int {
	return int((uint64(length) + 1<<shift - 1) >> shift)
}

// BlockSize is the size of the reference's blocks in bytes (0 without
// block checksums).
func (x ExtentRef) BlockSize() int {
	if x.BlockShift == 0 {
		return 0
	}
	return 1 << x.BlockShift
}

// BlockSum is the checksum of block i (0 <= i < Blocks()).
func (x ExtentRef) BlockSum(i int) uint32 {
	s := x.Sums[4*i : 4*i+4]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// BlockSums returns the block checksums of data in blocks of 1<<shift
// bytes, as ExtentRef.Sums holds them.
func BlockSums(data []byte, shift uint8) string {
	bs := 1 << shift
	out := make([]byte, 0, 4*((len(data)+bs-1)/bs))
	for off := 0; off < len(data); off += bs {
		out = binary.LittleEndian.AppendUint32(out, Checksum(data[off:min(off+bs, len(data))]))
	}
	return string(out)
}

// NewExtentRef returns the reference to an extent at index idx holding
// data, uploaded under eid, with block checksums of 1<<shift bytes (shift
// 0: one CRC of the whole extent, the form of format version 1 before
// block checksums).
func NewExtentRef(idx, eid uint64, data []byte, shift uint8) ExtentRef {
	x := ExtentRef{Index: idx, EID: eid, Length: uint32(len(data)), BlockShift: shift}
	if shift == 0 {
		x.CRC = Checksum(data)
	} else {
		x.Sums = BlockSums(data, shift)
	}
	return x
}

// validateSums checks the checksum fields of a reference.
func (x ExtentRef) validateSums() error {
	switch {
	case x.BlockShift == 0:
		if x.Sums != "" {
			return fmt.Errorf("extent %d has block checksums without a block size", x.Index)
		}
	case x.BlockShift < MinBlockShift || x.BlockShift > MaxBlockShift:
		return fmt.Errorf("extent %d has block shift %d outside %d..%d", x.Index, x.BlockShift, MinBlockShift, MaxBlockShift)
	case x.CRC != 0:
		return fmt.Errorf("extent %d has both block checksums and a whole-extent crc", x.Index)
	case len(x.Sums) != 4*x.Blocks():
		return fmt.Errorf("extent %d has %d bytes of block checksums, want %d", x.Index, len(x.Sums), 4*x.Blocks())
	}
	return nil
}

// checkSums checks data, the whole payload of the extent, against the
// reference's checksums.
func (x ExtentRef) checkSums(data []byte) error {
	if x.BlockShift == 0 {
		if Checksum(data) != x.CRC {
			return fmt.Errorf("%w: extent checksum differs from the one its inode recorded", ErrCorrupt)
		}
		return nil
	}
	return x.checkBlocks(0, data)
}

// checkBlocks checks data, the bytes of blocks first, first+1, ... of the
// extent back to back, against their block checksums.
func (x ExtentRef) checkBlocks(first int, data []byte) error {
	bs := x.BlockSize()
	for i, off := first, 0; off < len(data); i, off = i+1, off+bs {
		if Checksum(data[off:min(off+bs, len(data))]) != x.BlockSum(i) {
			return fmt.Errorf("%w: block %d (bytes %d-%d) of the extent differs from the checksum its inode recorded", ErrCorrupt, i, i*bs, i*bs+min(bs, len(data)-off))
		}
	}
	return nil
}

// EncodeExtent returns the sealed extent object holding data.
func EncodeExtent(data []byte) []byte { return Seal(KindExtent, data) }

// DecodeExtent opens an extent object and checks it against the length and
// checksums its referring inode version recorded. Readers may fetch only
// the first ref.Length+EnvelopeOverhead+1 bytes of the object: more than
// ref.Length+EnvelopeOverhead is refused as too large, before anything
// else.
func DecodeExtent(obj []byte, ref ExtentRef) ([]byte, error) {
	if len(obj) > int(ref.Length)+EnvelopeOverhead {
		return nil, fmt.Errorf("%w: extent object is larger than the %d bytes its inode recorded", ErrCorrupt, ref.Length)
	}
	if data, ok := decodeExtentOnePass(obj, ref); ok {
		return data, nil
	}
	// Something is wrong: check in order, for the error that says what.
	data, err := Open(KindExtent, obj)
	if err != nil {
		return nil, err
	}
	if uint32(len(data)) != ref.Length {
		return nil, fmt.Errorf("%w: extent holds %d bytes, its inode recorded %d", ErrCorrupt, len(data), ref.Length)
	}
	if err := ref.checkSums(data); err != nil {
		return nil, err
	}
	return data, nil
}

// decodeExtentOnePass is DecodeExtent of an object that passes every
// check, in one pass over the payload instead of two: the payload is
// checked against the reference's checksums, and the envelope's checksum
// against the one they give with the header's (ExtentRef.SumAfter).
// Both accept exactly the same objects: payloads that match the
// reference's checksums all have the same envelope checksum.
func decodeExtentOnePass(obj []byte, ref ExtentRef) ([]byte, bool) {
	if len(obj) != int(ref.Length)+EnvelopeOverhead || checkHeader(KindExtent, obj) != nil {
		return nil, false
	}
	data := obj[headerLen : len(obj)-crcLen]
	if ref.checkSums(data) != nil {
		return nil, false
	}
	if ref.SumAfter(Checksum(obj[:headerLen])) != binary.LittleEndian.Uint32(obj[len(obj)-crcLen:]) {
		return nil, false
	}
	return data, true
}

// BlockSpan says which part of an extent object a range read of payload
// bytes [from, to) fetches (FORMAT.md §6): blocks first..last-1, with the
// request for the object's bytes [off, off+n). The envelope's header
// comes along with block 0 and, with the last block, the trailing
// checksum and one byte more (to tell an oversized object). The
// reference must carry block checksums and 0 <= from < to <= Length.
func (x ExtentRef) BlockSpan(from, to int) (first, last int, off, n int64) {
	bs := x.BlockSize()
	first, last = from/bs, (to+bs-1)/bs
	off = EnvelopeHeader + int64(first)*int64(bs)
	end := EnvelopeHeader + int64(last)*int64(bs)
	if first == 0 {
		off = 0
	}
	if last >= x.Blocks() {
		end = int64(x.Length) + EnvelopeOverhead + 1
	}
	return first, last, off, end - off
}

// DecodeBlocks checks span, what a range read of blocks first..last-1
// fetched (the object's bytes BlockSpan names), and returns the payload
// bytes of those blocks (aliasing span). It refuses a span of the wrong
// length (a truncated or oversized object), a header that Open would
// refuse when the span holds it, and any block that does not match its
// block checksum. A span of every block is the whole object: it is
// checked as DecodeExtent does, envelope checksum included.
func DecodeBlocks(span []byte, ref ExtentRef, first, last int) ([]byte, error) {
	if ref.BlockShift == 0 || first < 0 || first >= last || last > ref.Blocks() {
		return nil, fmt.Errorf("%w: blocks %d-%d of an extent with %d block checksums", ErrCorrupt, first, last, ref.Blocks())
	}
	bs := ref.BlockSize()
	if first == 0 && last == ref.Blocks() {
		return DecodeExtent(span, ref)
	}
	_, _, _, n := ref.BlockSpan(first*bs, min(last*bs, int(ref.Length)))
	want := n
	if last == ref.Blocks() {
		want-- // a valid object ends right after its checksum
	}
	switch {
	case int64(len(span)) > want:
		return nil, fmt.Errorf("%w: extent object is larger than the %d bytes its inode recorded", ErrCorrupt, ref.Length)
	case int64(len(span)) < want:
		return nil, fmt.Errorf("%w: blocks %d-%d of the extent: %d bytes, its inode recorded %d", ErrCorrupt, first, last-1, len(span), want)
	}
	if first == 0 {
		if err := checkHeader(KindExtent, span); err != nil {
			return nil, err
		}
		span = span[EnvelopeHeader:]
	}
	if last == ref.Blocks() {
		span = span[:len(span)-crcLen]
	}
	if err := ref.checkBlocks(first, span); err != nil {
		return nil, err
	}
	return span, nil
}
