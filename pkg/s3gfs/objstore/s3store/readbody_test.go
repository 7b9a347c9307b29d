package s3store

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestReadBodyExactBuffer: a body of announced size is read into a buffer
// of exactly that size (the extent cache keeps it: a doubled buffer would
// hold twice the memory the cache accounts for), and a body shorter or
// longer than announced is refused.
func TestReadBodyExactBuffer(t *testing.T) {
	const size = 4 << 20
	want := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	got, err := readBody(io.NopCloser(bytes.NewReader(want)), size, -1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	if cap(got) != size {
		t.Errorf("buffer capacity %d for a body of %d bytes", cap(got), size)
	}
	if _, err := readBody(io.NopCloser(bytes.NewReader(want[:size-1])), size, -1); err == nil {
		t.Error("a short body was accepted")
	}
	if _, err := readBody(io.NopCloser(bytes.NewReader(append(want, 'x'))), size, -1); err == nil {
		t.Error("a body longer than announced was accepted")
	}
	// Unknown size: read to the end.
	got, err = readBody(io.NopCloser(strings.NewReader("abc")), -1, -1)
	if err != nil || string(got) != "abc" {
		t.Errorf("unknown size: got %q, %v", got, err)
	}
}

func BenchmarkReadBody4MiB(b *testing.B) {
	data := make([]byte, 4<<20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readBody(io.NopCloser(bytes.NewReader(data)), int64(len(data)), -1); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReadBodyLimit: a body over the limit (announced or not) is refused.
func TestReadBodyLimit(t *testing.T) {
	if _, err := readBody(io.NopCloser(strings.NewReader(strings.Repeat("y", 10))), 10, 9); err == nil {
		t.Error("a body announced over the limit was accepted")
	}
	if _, err := readBody(io.NopCloser(strings.NewReader(strings.Repeat("y", 10))), -1, 9); err == nil {
		t.Error("a body of unknown size over the limit was accepted")
	}
	if got, err := readBody(io.NopCloser(strings.NewReader(strings.Repeat("y", 9))), -1, 9); err != nil || len(got) != 9 {
		t.Errorf("a body of unknown size at the limit: %d bytes, %v", len(got), err)
	}
}

// readBodyInto reads into the caller's buffer when the body fits, and
// into a fresh one when it does not.
func TestReadBodyInto(t *testing.T) {
	want := bytes.Repeat([]byte("z"), 1000)
	into := make([]byte, 1001)
	got, err := readBodyInto(io.NopCloser(bytes.NewReader(want)), int64(len(want)), -1, into)
	if err != nil || !bytes.Equal(got, want) || &got[0] != &into[0] {
		t.Fatalf("body that fits: %d bytes, err %v, in the buffer: %v", len(got), err, len(got) > 0 && &got[0] == &into[0])
	}
	small := make([]byte, 999)
	got, err = readBodyInto(io.NopCloser(bytes.NewReader(want)), int64(len(want)), -1, small)
	if err != nil || !bytes.Equal(got, want) || &got[0] == &small[0] {
		t.Fatalf("body larger than the buffer: %d bytes, err %v", len(got), err)
	}
}
