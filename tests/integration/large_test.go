package integration

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// testSeed returns the seed for a randomized test: $S3GFS_SEED when set (to
// replay a failure), else the clock. The test logs it either way.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("S3GFS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("S3GFS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with S3GFS_SEED=%d)", seed, seed)
	return seed
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// compareFiles reads both files whole and fails on any difference.
func compareFiles(t testing.TB, what, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("%s: read %s: %v", what, got, err)
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("%s: read reference %s: %v", what, want, err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("%s: mount has %d bytes, reference %d; first difference at byte %d", what, len(g), len(w), firstDiff(g, w))
	}
}

// TestLargeFile writes a file of about 5.5 extents sequentially, then
// overwrites random ranges of it in batches (including ranges across
// extent boundaries and past the end, and some truncations), mirroring
// every change on a reference file on local disk; after each batch the
// file is compared byte for byte through the open descriptor, after close,
// through a fresh engine reading the bucket, and in the end after a
// remount.
func TestLargeFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		vfs  vfs.Options
	}{
		{"roomy-buffer", vfs.Options{}},
		// Two extents of write-back memory: writes must evict (upload)
		// dirty extents while later ones are still being written.
		{"tight-buffer", vfs.Options{BufferSize: 2 * testExtentSize}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			largeFile(t, tc.vfs)
		})
	}
}

func largeFile(t *testing.T, vo vfs.Options) {
	m := mountVolume(t, mountOpts{VFS: vo})
	rng := rand.New(rand.NewPCG(testSeed(t), 0x5eed))
	const E = testExtentSize
	mnt := m.path("large")
	ref := filepath.Join(t.TempDir(), "large")

	open := func() (*os.File, *os.File) {
		f, err := os.OpenFile(mnt, os.O_CREATE|os.O_RDWR, 0o644)
		must(t, "open mount file", err)
		r, err := os.OpenFile(ref, os.O_CREATE|os.O_RDWR, 0o644)
		must(t, "open reference", err)
		return f, r
	}

	// Sequential write in chunks of random sizes.
	f, r := open()
	size := E*5 + E/2
	for off := 0; off < size; {
		n := min(size-off, 1+rng.IntN(E*3/2))
		b := randBytes(rng, n)
		if _, err := f.Write(b); err != nil {
			t.Fatalf("sequential write at %d: %v", off, err)
		}
		if _, err := r.Write(b); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	must(t, "close", f.Close())
	r.Close()
	compareFiles(t, "after the sequential write", mnt, ref)
	data, err := readFromStore(t, m, "large")
	want, _ := os.ReadFile(ref)
	wantContent(t, "bucket after the sequential write", data, err, want)

	for batch := 0; batch < 10; batch++ {
		f, r := open()
		for op := 0; op < 30; op++ {
			st, err := r.Stat()
			if err != nil {
				t.Fatal(err)
			}
			cur := int(st.Size())
			var off, n int
			switch k := rng.IntN(10); {
			case k < 3: // across an extent boundary
				b := (1 + rng.IntN(max(cur/E, 1))) * E
				off = max(b-1-rng.IntN(2000), 0)
				n = b - off + 1 + rng.IntN(2000)
			case k < 5: // small, anywhere inside
				off = rng.IntN(cur + 1)
				n = 1 + rng.IntN(300)
			case k < 7: // large, up to 1.5 extents
				off = rng.IntN(cur + 1)
				n = 1 + rng.IntN(E*3/2)
			case k < 8: // past the end, leaving a hole
				off = cur + rng.IntN(E)
				n = 1 + rng.IntN(E/2)
			case k < 9: // a whole aligned extent
				off = rng.IntN(cur/E+1) * E
				n = E
			default: // truncate, shrinking or growing by up to an extent
				sz := max(cur-E*3/4+rng.IntN(E), 0)
				must(t, "ftruncate", f.Truncate(int64(sz)))
				must(t, "truncate reference", r.Truncate(int64(sz)))
				continue
			}
			if off+n > 8*E { // keep the file within a few extents
				n = max(8*E-off, 1)
			}
			b := randBytes(rng, n)
			if _, err := f.WriteAt(b, int64(off)); err != nil {
				t.Fatalf("batch %d op %d: pwrite %d bytes at %d: %v", batch, op, n, off, err)
			}
			if _, err := r.WriteAt(b, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(ref)
		must(t, "read reference", err)
		got := make([]byte, len(want)+10)
		n, _ := f.ReadAt(got, 0)
		wantContent(t, "read through the writing descriptor, batch "+strconv.Itoa(batch), got[:n], nil, want)
		if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(want)) {
			t.Errorf("batch %d: fstat size %v (%v), want %d", batch, fi.Size(), err, len(want))
		}
		// O_DIRECT bypasses the kernel's page cache: the bytes come from the
		// engine's working state (uncommitted writes over committed extents).
		d, err := os.OpenFile(mnt, os.O_RDONLY|syscall.O_DIRECT, 0)
		must(t, "open O_DIRECT", err)
		n, _ = d.ReadAt(got, 0)
		d.Close()
		wantContent(t, "O_DIRECT read before close, batch "+strconv.Itoa(batch), got[:n], nil, want)
		must(t, "close", f.Close())
		r.Close()
		compareFiles(t, "after batch "+strconv.Itoa(batch), mnt, ref)
		data, err := readFromStore(t, m, "large")
		wantContent(t, "bucket after batch "+strconv.Itoa(batch), data, err, want)
		if t.Failed() {
			t.FailNow()
		}
	}
	m.remount()
	compareFiles(t, "after remount", mnt, ref)
}

// TestDirectReadAcrossCommit reads, through an O_DIRECT descriptor opened
// on uncommitted writes, the file after another descriptor committed them
// (fsync): the read must show the writes. It showed the version they were
// made on (the engine took the descriptor for one pinned to it), which is
// how TestLargeFile once read old bytes when a commit (the flush of a
// forked child's copy of the writing descriptor) landed during its
// O_DIRECT read.
func TestDirectReadAcrossCommit(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	rng := rand.New(rand.NewPCG(testSeed(t), 0xd1))
	const E = testExtentSize
	p := m.path("f")
	want := randBytes(rng, 3*E+100)
	must(t, "write", os.WriteFile(p, want, 0o644))

	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, "open", err)
	defer f.Close()
	patch := randBytes(rng, 300)
	off := 2*E + 50
	if _, err := f.WriteAt(patch, int64(off)); err != nil {
		t.Fatal(err)
	}
	copy(want[off:], patch)

	d, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
	must(t, "open O_DIRECT", err)
	defer d.Close()
	got := make([]byte, len(want)+10)
	n, _ := d.ReadAt(got, 0)
	wantContent(t, "O_DIRECT read before the commit", got[:n], nil, want)
	must(t, "fsync", f.Sync())
	n, _ = d.ReadAt(got, 0)
	wantContent(t, "O_DIRECT read after another descriptor committed", got[:n], nil, want)
}
