package integration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// viewRecord is the unit of TestReadViewUnderWrites' content: every record
// names its offset and the generation that wrote it, and the rest of its
// bytes follow from those two, so a reader can check every byte it gets
// without knowing which write it saw.
const viewRecord = 4096

// fillRecord writes the record at offset off of generation gen into b
// (viewRecord bytes).
func fillRecord(b []byte, off, gen uint64) {
	binary.LittleEndian.PutUint64(b[0:], off)
	binary.LittleEndian.PutUint64(b[8:], gen)
	x := off*0x9e3779b97f4a7c15 ^ (gen+1)*0xbf58476d1ce4e5b9
	for i := 16; i < viewRecord; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
}

// checkRecords checks that b, read at file offset off, holds whole records
// of generations up to maxGen (b and off are record-aligned).
func checkRecords(b []byte, off uint64, maxGen uint64) error {
	want := make([]byte, viewRecord)
	for i := 0; i < len(b); i += viewRecord {
		rec := b[i : i+viewRecord]
		at := off + uint64(i)
		gen := binary.LittleEndian.Uint64(rec[8:])
		if got := binary.LittleEndian.Uint64(rec); got != at || gen > maxGen {
			return fmt.Errorf("record at %d names offset %d, generation %d (at most %d written)", at, got, gen, maxGen)
		}
		fillRecord(want, at, gen)
		if d := firstDiff(rec, want); d < viewRecord {
			return fmt.Errorf("record at %d (generation %d) differs at byte %d", at, gen, d)
		}
	}
	return nil
}

// TestReadViewUnderWrites reads a file through the mount, with O_DIRECT so
// that every read reaches the engine, while another descriptor overwrites
// its extents and commits them, with a read cache of two extents, so that
// the cache evicts all the time: the reads reply from slices of cached
// extents (vfs.ReadView) and must hold exactly one generation's bytes per
// record, whichever write they saw. Then the file must hold exactly what
// was written last.
func TestReadViewUnderWrites(t *testing.T) {
	t.Parallel()
	const ext = testExtentSize
	const exts = 24
	const size = ext * exts
	m := mountVolume(t, mountOpts{VFS: vfs.Options{CacheSize: 2 * ext, Readahead: 2}})
	p := m.path("f")

	// Generation 0: the whole file, committed.
	content := make([]byte, size)
	for off := 0; off < size; off += viewRecord {
		fillRecord(content[off:off+viewRecord], uint64(off), 0)
	}
	must(t, "write generation 0", os.WriteFile(p, content, 0o644))

	var maxGen atomic.Uint64 // the highest generation a write has begun
	done := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		defer close(done)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			writeErr = err
			return
		}
		defer f.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, ext)
		for gen := uint64(1); gen <= 120; gen++ {
			// Most writes are of a whole extent; some are of a part of one
			// or straddle two, so that extents are also rebuilt from the
			// committed content (a dirty buffer on a cached extent).
			off := rng.IntN(exts) * ext
			n := ext
			switch gen % 4 {
			case 1:
				off += rng.IntN(ext/viewRecord) * viewRecord
				n = min(ext/2, size-off)
			case 2:
				off = min(off+ext/2, size-ext)
			}
			for i := 0; i < n; i += viewRecord {
				fillRecord(buf[i:i+viewRecord], uint64(off+i), gen)
			}
			maxGen.Store(gen)
			if _, err := f.WriteAt(buf[:n], int64(off)); err != nil {
				writeErr = fmt.Errorf("write generation %d: %w", gen, err)
				return
			}
			copy(content[off:], buf[:n])
			if gen%3 == 0 {
				if err := f.Sync(); err != nil { // a commit
					writeErr = fmt.Errorf("fsync after generation %d: %w", gen, err)
					return
				}
			}
		}
		if err := f.Sync(); err != nil {
			writeErr = fmt.Errorf("final fsync: %w", err)
		}
	}()

	var reads atomic.Int64
	errc := make(chan error, 3)
	reader := func(seed uint64) {
		defer wg.Done()
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			errc <- fmt.Errorf("open O_DIRECT: %w", err)
			return
		}
		defer f.Close()
		rng := rand.New(rand.NewPCG(seed, seed))
		buf := make([]byte, 1<<20)
		for pass := 0; ; pass++ {
			select {
			case <-done:
				if pass > 2 {
					return
				}
			default:
			}
			if seed == 0 || pass%2 == 0 {
				// Sequential, 1 MiB at a time (4 extents a read).
				for off := 0; off < size; off += len(buf) {
					n, err := f.ReadAt(buf, int64(off))
					if err != nil && !(errors.Is(err, io.EOF) && n == min(len(buf), size-off)) {
						errc <- fmt.Errorf("read at %d: %d bytes, %w", off, n, err)
						return
					}
					reads.Add(1)
					if err := checkRecords(buf[:n], uint64(off), maxGen.Load()); err != nil {
						errc <- fmt.Errorf("sequential pass %d: %w", pass, err)
						return
					}
				}
				continue
			}
			// Random record-aligned reads, of a record up to a bit more than
			// an extent (straddling extents: a view of several parts).
			for range 32 {
				off := rng.IntN(size/viewRecord) * viewRecord
				n := min((1+rng.IntN(ext/viewRecord+8))*viewRecord, size-off)
				got, err := f.ReadAt(buf[:n], int64(off))
				if err != nil && !(errors.Is(err, io.EOF) && got == n) {
					errc <- fmt.Errorf("read %d at %d: %d bytes, %w", n, off, got, err)
					return
				}
				reads.Add(1)
				if err := checkRecords(buf[:got], uint64(off), maxGen.Load()); err != nil {
					errc <- fmt.Errorf("random read of %d at %d: %w", n, off, err)
					return
				}
			}
		}
	}
	wg.Add(2)
	go reader(0)
	go reader(7)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	t.Logf("%d reads checked", reads.Load())

	// Everything written, committed: the file is the last write of every
	// record, through the engine (O_DIRECT) and after a remount.
	check := func(what string) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
		must(t, "open "+what, err)
		defer f.Close()
		got := make([]byte, size+1)
		n, err := io.ReadFull(f, got)
		if !errors.Is(err, io.ErrUnexpectedEOF) || n != size {
			t.Fatalf("%s: read %d bytes (%v), want %d", what, n, err, size)
		}
		if !bytes.Equal(got[:n], content) {
			d := firstDiff(got[:n], content)
			t.Fatalf("%s: differs from what was written at byte %d", what, d)
		}
	}
	check("after the writes")
	m.remount()
	check("after a remount")
}
