package format

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestCombineChecksum: the combined checksum of two parts is the checksum
// of their concatenation, for empty parts, every small length and random
// splits of up to 4 MiB.
func TestCombineChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 4<<20+3)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	check := func(a, b []byte) {
		t.Helper()
		want := Checksum(append(append([]byte{}, a...), b...))
		if got := CombineChecksum(Checksum(a), Checksum(b), len(b)); got != want {
			t.Fatalf("split %d+%d: combined %08x, want %08x", len(a), len(b), got, want)
		}
	}
	for n := range 70 {
		for split := 0; split <= n; split++ {
			check(data[:split], data[split:n])
		}
	}
	for range 50 {
		n := r.IntN(len(data) + 1)
		split := r.IntN(n + 1)
		check(data[:split], data[split:n])
	}
	check(data[:EnvelopeHeader], data[EnvelopeHeader:])
	// Many parts in a row, as block checksums combine into a whole.
	const bs = 64 << 10
	shift := NewChecksumShift(bs)
	sum := Checksum(nil)
	for off := 0; off < len(data); off += bs {
		part := data[off:min(off+bs, len(data))]
		if len(part) == bs {
			sum = shift.Combine(sum, Checksum(part))
		} else {
			sum = CombineChecksum(sum, Checksum(part), len(part))
		}
	}
	if want := Checksum(data); sum != want {
		t.Fatalf("64 KiB parts combined: %08x, want %08x", sum, want)
	}
}

func BenchmarkCombineChecksum4MiB(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		CombineChecksum(0x12345678, 0x9abcdef0, 4<<20)
	}
}

func BenchmarkChecksumShiftCombine(b *testing.B) {
	s := NewChecksumShift(64 << 10)
	b.ReportAllocs()
	for b.Loop() {
		s.Combine(0x12345678, 0x9abcdef0)
	}
}

func BenchmarkChecksum4MiB(b *testing.B) {
	data := make([]byte, 4<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Checksum(data)
	}
}

// TestSealExtentFromRef: an extent sealed with the envelope checksum taken
// from its reference's checksums is byte for byte the one EncodeExtent and
// SealInPlace make, for whole-extent CRCs and block checksums, extents of
// whole blocks and with a short last block; DecodeExtent (whose one-pass
// check rests on the same sums) takes it back, and refuses it with any
// byte flipped.
func TestSealExtentFromRef(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, shift := range []uint8{0, MinBlockShift, DefaultBlockShift} {
		for _, n := range []int{0, 1, 4095, 4096, 4097, 3 << 16, 3<<16 + 5, 1 << 20} {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			ref := NewExtentRef(0, 1, data, shift)
			if got, want := ref.SumAfter(0), Checksum(data); got != want {
				t.Fatalf("shift %d, %d bytes: SumAfter(0) %08x, want %08x", shift, n, got, want)
			}
			want := EncodeExtent(data)
			if got := SealExtent(data, ref); !bytes.Equal(got, want) {
				t.Fatalf("shift %d, %d bytes: SealExtent differs from EncodeExtent", shift, n)
			}
			buf := make([]byte, EnvelopeOverhead+n)
			copy(buf[EnvelopeHeader:], data)
			if got := SealExtentInPlace(buf, n, ref); !bytes.Equal(got, want) {
				t.Fatalf("shift %d, %d bytes: SealExtentInPlace differs from EncodeExtent", shift, n)
			}
			if got, err := DecodeExtent(want, ref); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("shift %d, %d bytes: DecodeExtent: %v", shift, n, err)
			}
			for range 8 {
				bad := bytes.Clone(want)
				bad[r.IntN(len(bad))] ^= 1 << r.IntN(8)
				if _, err := DecodeExtent(bad, ref); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("shift %d, %d bytes: a flipped bit was accepted: %v", shift, n, err)
				}
			}
		}
	}
}

func BenchmarkDecodeExtent4MiB(b *testing.B) {
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ref := NewExtentRef(0, 1, data, DefaultBlockShift)
	obj := EncodeExtent(data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeExtent(obj, ref); err != nil {
			b.Fatal(err)
		}
	}
}
