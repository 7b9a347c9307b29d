package format

import (
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
