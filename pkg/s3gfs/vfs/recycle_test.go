package vfs_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestRecycledBuffersGaps: write-back buffers come back from the pool
// holding their previous extent's bytes (only what a write leaves as a
// gap is cleared), so every gap a write leaves in an extent, before it or
// after a truncation, must still read as zeros: in the working content,
// after the upload, and on another host. The first file fills every
// buffer of the pool with non-zero bytes.
func TestRecycledBuffersGaps(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	r := rand.New(rand.NewPCG(31, 31))
	ones := bytes.Repeat([]byte{0xff}, 2*bufSize)
	writeFile(t, fs, root, "filler", ones)

	id, h := create(t, fs, root, "gaps")
	ref := &refFile{}
	do := func(p []byte, off int) {
		t.Helper()
		write(t, fs, h, p, int64(off))
		ref.write(p, off)
	}
	do(randBytes(r, 100), 1000)               // a gap at the start of extent 0
	do(randBytes(r, 10), extSize-10)          // ... and in its middle
	do(randBytes(r, 50), 2*extSize+extSize/2) // a hole (extent 1) and a gap in extent 2
	sameBytes(t, readAll(t, fs, h), ref.b, "working content")
	truncate(t, fs, id, uint64(2*extSize+extSize/2+20))
	ref.truncate(2*extSize + extSize/2 + 20)
	do(randBytes(r, 30), 2*extSize+extSize-100) // a gap after the truncated end
	sameBytes(t, readAll(t, fs, h), ref.b, "working content after a truncation")
	must(t, fs.Fsync(ctx, h))
	sameBytes(t, readAll(t, fs, h), ref.b, "committed content")
	// Overwrite the start with a write of the whole extent, then a partial
	// one past it: a buffer recycled at once.
	do(randBytes(r, extSize), 0)
	do(randBytes(r, 7), 3*extSize+500)
	closeH(t, fs, h)
	sameBytes(t, readFile(t, e.engine(), id), ref.b, "the file on another host")
}
