package format_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Block checksums (FORMAT.md §5.3, §6): a range of an extent fetched alone
// is checked block by block against its reference; damage in a block is
// found by every read that returns any of its bytes, and by whole reads.
func TestBlockRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		size  int
		shift uint8
	}{{1, 12}, {4095, 12}, {4096, 12}, {4097, 12}, {9000, 12}, {64 << 10, 16}, {200<<10 + 3, 16}, {1 << 20, 20}, {100, 26}} {
		data := make([]byte, tc.size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		ref := format.NewExtentRef(5, 77, data, tc.shift)
		bs := 1 << tc.shift
		if want := (tc.size + bs - 1) / bs; ref.Blocks() != want || len(ref.Sums) != 4*want || ref.CRC != 0 {
			t.Fatalf("size %d shift %d: %d blocks, %d bytes of sums, crc %x", tc.size, tc.shift, ref.Blocks(), len(ref.Sums), ref.CRC)
		}
		obj := format.EncodeExtent(data)
		if got, err := format.DecodeExtent(obj, ref); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: whole read: %v", tc.size, err)
		}
		// Every range: the span fetched covers it, starts and ends on
		// block bounds (or the extent's end), and checks.
		ranges := [][2]int{{0, tc.size}, {0, 1}, {tc.size - 1, tc.size}}
		for i := 0; i < 20; i++ {
			a := rng.IntN(tc.size)
			ranges = append(ranges, [2]int{a, a + 1 + rng.IntN(tc.size-a)})
		}
		for _, r := range ranges {
			first, last, off, n := ref.BlockSpan(r[0], r[1])
			wantOff, wantEnd := int64(format.EnvelopeHeader+first*bs), int64(format.EnvelopeHeader+min(last*bs, tc.size))
			if first == 0 {
				wantOff = 0 // the header comes with block 0
			}
			if last == ref.Blocks() {
				wantEnd = int64(len(obj)) + 1 // the checksum and one byte more with the last
			}
			if first*bs > r[0] || min(last*bs, tc.size) < r[1] || off != wantOff || off+n != wantEnd {
				t.Fatalf("size %d range %v: blocks %d-%d, bytes %d+%d", tc.size, r, first, last, off, n)
			}
			got, err := format.DecodeBlocks(getRange(obj, off, n), ref, first, last)
			if err != nil || !bytes.Equal(got, data[first*bs:min(last*bs, tc.size)]) {
				t.Fatalf("size %d range %v: %v", tc.size, r, err)
			}
			// A truncated or oversized object is refused.
			span := getRange(obj, off, n)
			_, err = format.DecodeBlocks(span[:len(span)-1], ref, first, last)
			wantErr(t, "short span", err, format.ErrCorrupt)
			longer := append(bytes.Clone(obj), 0)
			_, err = format.DecodeBlocks(getRange(longer, off, n), ref, first, last)
			if last == ref.Blocks() {
				wantErr(t, "oversized object", err, format.ErrCorrupt)
			} else if err != nil {
				t.Fatalf("a range not reaching the end of an oversized object: %v", err)
			}
			// A damaged header is refused when the range holds it.
			hdr := bytes.Clone(obj)
			hdr[5] = format.Version + 1
			_, err = format.DecodeBlocks(getRange(hdr, off, n), ref, first, last)
			if first == 0 {
				if err == nil {
					t.Fatalf("size %d range %v: a future version's header accepted", tc.size, r)
				}
			} else if err != nil {
				t.Fatalf("a range not holding the header: %v", err)
			}
		}
		// One damaged byte: every span holding its block is refused, the
		// others still read, and the whole read is refused.
		at := rng.IntN(tc.size)
		bad := bytes.Clone(obj)
		bad[format.EnvelopeHeader+at] ^= 0x10
		for b := 0; b < ref.Blocks(); b++ {
			_, _, off, n := ref.BlockSpan(b*bs, min((b+1)*bs, tc.size))
			_, err := format.DecodeBlocks(getRange(bad, off, n), ref, b, b+1)
			if b == at/bs || ref.Blocks() == 1 { // (one block: the whole object, whose checksum fails)
				wantErr(t, fmt.Sprintf("size %d damaged block %d", tc.size, b), err, format.ErrCorrupt)
			} else if err != nil {
				t.Fatalf("size %d: undamaged block %d refused: %v", tc.size, b, err)
			}
		}
		_, err := format.DecodeExtent(format.EncodeExtent(bad[format.EnvelopeHeader:len(bad)-4]), ref)
		wantErr(t, "whole read of a damaged extent (resealed)", err, format.ErrCorrupt)
	}
}

// getRange is what a ranged GET of n bytes from off returns: fewer at the
// end of the object.
func getRange(obj []byte, off, n int64) []byte {
	return obj[min(off, int64(len(obj))):min(off+n, int64(len(obj)))]
}

// DecodeBlocks refuses what no range read asks: a reference without block
// checksums (it is read whole), and blocks outside the extent.
func TestDecodeBlocksRefuses(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	whole := format.NewExtentRef(0, 1, data, 0)
	if whole.Blocks() != 0 || whole.CRC != format.Checksum(data) || whole.Sums != "" {
		t.Fatalf("whole-extent reference: %+v", whole)
	}
	obj := format.EncodeExtent(data)
	_, err := format.DecodeBlocks(obj[8:8+4096], whole, 0, 1)
	wantErr(t, "range of a whole-crc extent", err, format.ErrCorrupt)
	ref := format.NewExtentRef(0, 1, data, 12)
	for _, r := range [][2]int{{-1, 1}, {1, 1}, {2, 1}, {0, 4}, {3, 4}} {
		_, err := format.DecodeBlocks(obj[8:], ref, r[0], r[1])
		wantErr(t, fmt.Sprintf("blocks %v", r), err, format.ErrCorrupt)
	}
	// A reference whose checksums are of other bytes.
	other := format.NewExtentRef(0, 1, bytes.Repeat([]byte("x"), len(data)), 12)
	_, err = format.DecodeExtent(obj, other)
	wantErr(t, "whole read against other checksums", err, format.ErrCorrupt)
}

// Encoding rules of block checksums (FORMAT.md §5.2, §5.3): the flag
// bit and shift range, the count of checksums, and flags a reader does
// not know.
func TestInodeRefusesBadBlocks(t *testing.T) {
	const es = format.DefaultExtentSize
	good := &format.Inode{ID: 9, Version: 2, Kind: format.KindFile, Nlink: 1, Size: 9000,
		Extents: []format.ExtentRef{{Index: 0, EID: 5, Length: 9000, BlockShift: 12, Sums: sums(3, 1)}}}
	obj, err := format.EncodeInode(good)
	if err != nil {
		t.Fatal(err)
	}
	p, err := format.Open(format.KindInode, obj)
	if err != nil {
		t.Fatal(err)
	}
	// The body: flags, count, index, eid, length (2 bytes), shift, sums.
	body := len(p) - (1 + 1 + 1 + 8 + 2 + 1 + 12)
	if p[body] != 4 || p[len(p)-13] != 12 {
		t.Fatalf("unexpected body % x", p[body:])
	}
	got, err := format.DecodeInode(obj, es)
	if err != nil || !sameInode(got, good) {
		t.Fatalf("decode: %v %+v", err, got)
	}
	mut := func(f func(q []byte) []byte) []byte {
		return seal(format.KindInode, f(bytes.Clone(p)))
	}
	for name, tc := range map[string]struct {
		obj  []byte
		want error
	}{
		"shift 11":        {mut(func(q []byte) []byte { q[len(q)-13] = 11; return q }), format.ErrCorrupt},
		"shift 27":        {mut(func(q []byte) []byte { q[len(q)-13] = 27; return q }), format.ErrCorrupt},
		"shift ff":        {mut(func(q []byte) []byte { q[len(q)-13] = 0xff; return q }), format.ErrCorrupt},
		"sums truncated":  {mut(func(q []byte) []byte { return q[:len(q)-1] }), format.ErrCorrupt},
		"sums too many":   {mut(func(q []byte) []byte { return append(q, 0, 0, 0, 0) }), format.ErrCorrupt},
		"shift 13":        {mut(func(q []byte) []byte { q[len(q)-13] = 13; return q }), format.ErrCorrupt}, // 2 blocks: 4 bytes left over
		"flags 5":         {mut(func(q []byte) []byte { q[body] = 5; return q }), format.ErrCorrupt},
		"flags 7":         {mut(func(q []byte) []byte { q[body] = 7; return q }), format.ErrCorrupt},
		"flags 8":         {mut(func(q []byte) []byte { q[body] = 8; return q }), format.ErrUnsupported},
		"flags 0x0c":      {mut(func(q []byte) []byte { q[body] = 0x0c; return q }), format.ErrUnsupported},
		"flags 0x80":      {mut(func(q []byte) []byte { q[body] = 0x80; return q }), format.ErrUnsupported},
		"flags 4, crc":    {mut(func(q []byte) []byte { q[len(q)-13] = 0; return q[:len(q)-8] }), format.ErrCorrupt}, // every shift 0
		"flags 0, shift":  {mut(func(q []byte) []byte { q[body] = 0; return q }), format.ErrCorrupt},
		"length 0 blocks": {mut(func(q []byte) []byte { q[body+11], q[body+12] = 0, 0; return q }), format.ErrCorrupt},
	} {
		_, err := format.DecodeInode(tc.obj, es)
		wantErr(t, name, err, tc.want)
	}
	// The encoder refuses what the decoder would.
	for name, x := range map[string]format.ExtentRef{
		"crc and sums":       {Index: 0, EID: 5, Length: 9000, CRC: 1, BlockShift: 12, Sums: sums(3, 1)},
		"sums without shift": {Index: 0, EID: 5, Length: 9000, Sums: sums(3, 1)},
		"too few sums":       {Index: 0, EID: 5, Length: 9000, BlockShift: 12, Sums: sums(2, 1)},
		"shift 27":           {Index: 0, EID: 5, Length: 9000, BlockShift: 27, Sums: sums(1, 1)},
		"shift 5":            {Index: 0, EID: 5, Length: 9000, BlockShift: 5},
	} {
		n := cloneInode(good)
		n.Extents = []format.ExtentRef{x}
		_, err := format.EncodeInode(n)
		wantErr(t, "encode "+name, err, format.ErrCorrupt)
	}
	// A version with no block checksums is encoded exactly as before they
	// existed (flags 0), whatever else it holds.
	old := cloneInode(good)
	old.Extents = []format.ExtentRef{format.NewExtentRef(0, 5, make([]byte, 9000), 0)}
	obj, _ = format.EncodeInode(old)
	q, _ := format.Open(format.KindInode, obj)
	if q[len(q)-(1+1+8+2+4)-1] != 0 {
		t.Fatalf("a version without block checksums has flags %d", q[len(q)-(1+1+8+2+4)-1])
	}
}
