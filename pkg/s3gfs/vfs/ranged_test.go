package vfs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// Random reads of extents with block checksums (FORMAT.md §6): a read
// that misses the cache and is not sequential fetches only the blocks it
// needs, checks each, and caches them; sequential readers and old
// references fetch whole extents.

const (
	rangedExt = 1 << 20                       // 16 blocks of 64 KiB
	blk       = 1 << format.DefaultBlockShift // 64 KiB
)

// rangeLog records the ranged GETs of extents an engine makes.
type rangeLog struct {
	objstore.Store
	mu   sync.Mutex
	gets []string          // "eid off+len=got"
	keys map[string]string // eid -> key
	// ignore lists GETs wantGets passes over ("1: whole"): those of
	// readahead, which runs in the background.
	ignore []string
}

func (l *rangeLog) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	b, err := l.Store.GetRange(ctx, key, off, length)
	if strings.Contains(key, "/d/") {
		eid := key[strings.LastIndexByte(key, '/')+1:]
		l.mu.Lock()
		l.gets = append(l.gets, fmt.Sprintf("%s %d+%d=%d", eid, off, length, len(b)))
		if l.keys == nil {
			l.keys = map[string]string{}
		}
		l.keys[eid] = key
		l.mu.Unlock()
	}
	return b, err
}

// keyOf is the key of the last GET of extent eid.
func (l *rangeLog) keyOf(eid string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[eid]
}

// take returns the GETs since the last call.
func (l *rangeLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.gets
	l.gets = nil
	return g
}

func rangedEnv(t *testing.T) (*env, *rangeLog) {
	log := &rangeLog{}
	e := newEnvSized(t, rangedExt, func(s *memstore.Store) objstore.Store { log.Store = s; return log })
	return e, log
}

// rangedEngine is e.engine with write-back buffers for extents of
// rangedExt.
func rangedEngine(e *env, mod ...func(*vfs.Options)) *vfs.FS {
	e.t.Helper()
	return e.engine(append([]func(*vfs.Options){func(o *vfs.Options) { o.BufferSize = 4 * rangedExt }}, mod...)...)
}

// wantGets checks the ranged GETs since the last check: want lists
// "extent index: first block-last block", or "extent index: whole".
func wantGets(t *testing.T, l *rangeLog, n *format.Inode, what string, want ...string) {
	t.Helper()
	byEID := map[string]format.ExtentRef{}
	for _, x := range n.Extents {
		byEID[fmt.Sprintf("%016x", x.EID)] = x
	}
	var got []string
	for _, g := range l.take() {
		var eid string
		var off, length, n int64
		fmt.Sscanf(g, "%s %d+%d=%d", &eid, &off, &length, &n)
		x, ok := byEID[eid]
		switch {
		case !ok:
			got = append(got, "unknown extent "+g)
		case off == 0 && length == int64(x.Length)+format.EnvelopeOverhead+1:
			got = append(got, fmt.Sprintf("%d: whole", x.Index))
		default:
			got = append(got, blocksOf(x, off, length, g))
		}
	}
	got = slices.DeleteFunc(got, func(g string) bool { return slices.Contains(l.ignore, g) })
	slices.Sort(got) // (the extents of one read are fetched in parallel)
	slices.Sort(want)
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("%s: extent GETs [%s], want [%s]", what, strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// blocksOf names the blocks of x a GET of length bytes from off fetches.
func blocksOf(x format.ExtentRef, off, length int64, g string) string {
	for first := 0; first < x.Blocks(); first++ {
		for last := first + 1; last <= x.Blocks(); last++ {
			bs := x.BlockSize()
			if f, l, o, n := x.BlockSpan(first*bs, min(last*bs, int(x.Length))); f == first && l == last && o == off && n == length {
				return fmt.Sprintf("%d: %d-%d", x.Index, first, last-1)
			}
		}
	}
	return "odd range " + g
}

func TestRandomReadFetchesBlocks(t *testing.T) {
	e, gets := rangedEnv(t)
	r := rand.New(rand.NewPCG(7, 7))
	data := randBytes(r, 2*rangedExt+rangedExt/2+100) // 3 extents, the last of 8 blocks + 100 bytes
	id := writeFile(t, rangedEngine(e), root, "f", data)
	n := e.newest(id)
	for _, x := range n.Extents {
		if x.BlockShift != format.DefaultBlockShift || x.Blocks() != (int(x.Length)+blk-1)/blk {
			t.Fatalf("extent %d written as %+v", x.Index, x)
		}
	}
	gets.take()

	fs := rangedEngine(e)
	h := open(t, fs, id, false)
	read := func(off, n int) {
		t.Helper()
		buf := make([]byte, n)
		got, err := fs.Read(ctx, h, buf, int64(off))
		must(t, err)
		end := min(off+n, len(data))
		if got != end-off {
			t.Fatalf("read %d at %d: %d bytes, want %d", n, off, got, end-off)
		}
		sameBytes(t, buf[:got], data[off:end], fmt.Sprintf("read %d at %d", n, off))
	}
	// A random 4 KiB read: one block of one extent.
	read(rangedExt+3*blk+500, 4096)
	wantGets(t, gets, n, "first random read", "1: 3-3")
	// Again in that block: cached.
	read(rangedExt+3*blk+9000, 4096)
	wantGets(t, gets, n, "read in a cached block")
	// Across blocks 2-4 with 3 cached: one GET of 2-4.
	read(rangedExt+3*blk-1000, blk+2000)
	wantGets(t, gets, n, "read across blocks", "1: 2-4")
	// Across two extents: a block of each.
	read(2*rangedExt-10, 20)
	wantGets(t, gets, n, "read across extents", "1: 15-15", "2: 0-0")
	// The short last block, past the end of the file.
	read(len(data)-50, 4096)
	wantGets(t, gets, n, "read at the end of the file", "2: 8-8")
	// Nothing more to fetch for what was read.
	read(rangedExt+2*blk, 3*blk)
	read(len(data)-100, 100)
	wantGets(t, gets, n, "read of cached blocks")
	must(t, fs.Release(ctx, h))

	// A sequential reader (from 0) reads whole extents. (A 4 MiB cache
	// makes it read ahead one extent, 1, in the background.)
	fs = rangedEngine(e, func(o *vfs.Options) { o.CacheSize = 4 * rangedExt })
	gets.ignore = []string{"1: whole"}
	h = open(t, fs, id, false)
	read(0, 4096)
	wantGets(t, gets, n, "sequential read", "0: whole")
	read(4096, 4096)
	wantGets(t, gets, n, "sequential read, cached")
	// Then a far jump: by blocks again.
	read(2*rangedExt+blk, 10)
	wantGets(t, gets, n, "jump", "2: 1-1")
	// And near it, no longer sequential: by blocks still.
	read(2*rangedExt+3*blk, 10)
	wantGets(t, gets, n, "read near a jump", "2: 3-3")
	must(t, fs.Release(ctx, h))
}

// Extents uploaded without block checksums (by hosts before they existed,
// or with Options.WholeExtentChecksums) are read whole by random readers,
// exactly as before; a version naming both kinds reads each its way.
func TestRandomReadOldExtentsWhole(t *testing.T) {
	e, gets := rangedEnv(t)
	r := rand.New(rand.NewPCG(8, 8))
	data := randBytes(r, 2*rangedExt)
	old := rangedEngine(e, func(o *vfs.Options) { o.WholeExtentChecksums = true })
	id := writeFile(t, old, root, "f", data)
	for _, x := range e.newest(id).Extents {
		if x.BlockShift != 0 || x.CRC != format.Checksum(data[x.Index*rangedExt:x.Index*rangedExt+uint64(x.Length)]) {
			t.Fatalf("old-form extent %+v", x)
		}
	}
	// A new host rewrites bytes of extent 1 only.
	w := rangedEngine(e)
	h := open(t, w, id, true)
	write(t, w, h, []byte("NEW"), rangedExt+10)
	closeH(t, w, h)
	copy(data[rangedExt+10:], "NEW")
	n := e.newest(id)
	if n.Extents[0].BlockShift != 0 || n.Extents[1].BlockShift != format.DefaultBlockShift {
		t.Fatalf("mixed version: %+v", n.Extents)
	}
	gets.take()

	fs := rangedEngine(e)
	h = open(t, fs, id, false)
	buf := make([]byte, 4096)
	readAt(t, fs, h, buf, 5*blk)
	sameBytes(t, buf, data[5*blk:5*blk+4096], "old extent")
	wantGets(t, gets, n, "random read of an old extent", "0: whole")
	readAt(t, fs, h, buf, rangedExt+5*blk)
	sameBytes(t, buf, data[rangedExt+5*blk:rangedExt+5*blk+4096], "new extent")
	wantGets(t, gets, n, "random read of a new extent", "1: 5-5")
	must(t, fs.Release(ctx, h))
}

// A damaged block is refused (ErrCorrupt, with a log line) by every read
// that needs it, by range or whole; the other blocks of the extent still
// read by range; restored, it reads again: nothing bad was cached.
func TestRandomReadCorruptBlock(t *testing.T) {
	e, _ := rangedEnv(t)
	r := rand.New(rand.NewPCG(9, 9))
	data := randBytes(r, 2*rangedExt)
	id := writeFile(t, rangedEngine(e), root, "f", data)
	n := e.newest(id)
	key := e.vol.Keys.Extent(id, n.Extents[1].EID)
	good, _, err := e.store.Get(ctx, key)
	must(t, err)
	const bad = 5 // the damaged block of extent 1
	flipped := append([]byte(nil), good...)
	flipped[format.EnvelopeHeader+bad*blk+77] ^= 4
	other := append([]byte(nil), good...) // another object: all blocks differ
	for i := format.EnvelopeHeader; i < len(other)-4; i += 1000 {
		other[i] ^= 1
	}
	cases := map[string]struct {
		body     []byte
		othersOK bool // other blocks of the extent read (by range) all the same
	}{
		"flipped bit":         {body: flipped, othersOK: true},
		"truncated in block":  {body: good[:format.EnvelopeHeader+bad*blk+100], othersOK: true},
		"other valid content": {body: format.EncodeExtent(other[format.EnvelopeHeader : len(other)-4])},
		"missing":             {},
	}
	for what, c := range cases {
		t.Run(what, func(t *testing.T) {
			if c.body != nil {
				e.plant(key, c.body)
			} else {
				must(t, e.store.Delete(ctx, key))
			}
			fs := rangedEngine(e)
			h := open(t, fs, id, false)
			buf := make([]byte, 4096)
			_, err := fs.Read(ctx, h, buf, int64(rangedExt+bad*blk+10))
			if !errors.Is(err, vfs.ErrCorrupt) {
				t.Fatalf("random read of the damaged block: err %v, want ErrCorrupt", err)
			}
			// Again (nothing cached), and a read spanning it and a good block.
			if _, err := fs.Read(ctx, h, buf, int64(rangedExt+bad*blk+10)); !errors.Is(err, vfs.ErrCorrupt) {
				t.Fatalf("second read of the damaged block: %v", err)
			}
			if _, err := fs.Read(ctx, h, buf, int64(rangedExt+bad*blk-100)); !errors.Is(err, vfs.ErrCorrupt) {
				t.Fatalf("read spanning the damaged block: %v", err)
			}
			// Another block of the same extent.
			_, err = fs.Read(ctx, h, buf, int64(rangedExt+(bad-2)*blk))
			if c.othersOK {
				must(t, err)
				sameBytes(t, buf, data[rangedExt+(bad-2)*blk:rangedExt+(bad-2)*blk+4096], "undamaged block")
			} else if !errors.Is(err, vfs.ErrCorrupt) {
				t.Fatalf("read of another block of a replaced extent: %v", err)
			}
			// A sequential reader reads it whole: refused too.
			fs2 := rangedEngine(e)
			h2 := open(t, fs2, id, false)
			big := make([]byte, 2*rangedExt)
			if _, err := fs2.Read(ctx, h2, big, 0); !errors.Is(err, vfs.ErrCorrupt) {
				t.Fatalf("whole read of the damaged extent: %v", err)
			}
			must(t, fs2.Release(ctx, h2))
			if !strings.Contains(e.log.String(), "refusing corrupt extent") && !strings.Contains(e.log.String(), "missing") {
				t.Fatal("no log line for the damaged extent")
			}
			e.plant(key, good)
			readAt(t, fs, h, buf, int64(rangedExt+bad*blk+10))
			sameBytes(t, buf, data[rangedExt+bad*blk+10:rangedExt+bad*blk+10+4096], "restored block")
			must(t, fs.Release(ctx, h))
		})
	}
}

// The memory cache keeps blocks within its bound.
func TestRandomReadBlocksWithinCache(t *testing.T) {
	e, gets := rangedEnv(t)
	r := rand.New(rand.NewPCG(10, 10))
	data := randBytes(r, 8*rangedExt)
	id := writeFile(t, rangedEngine(e), root, "f", data)
	gets.take()
	const limit = 10 * blk
	fs := rangedEngine(e, func(o *vfs.Options) { o.CacheSize = limit })
	h := open(t, fs, id, false)
	buf := make([]byte, 4096)
	for i := 0; i < 200; i++ {
		off := r.IntN(len(data)/4096) * 4096
		readAt(t, fs, h, buf, int64(off)+1) // +1: never sequential
		sameBytes(t, buf[:min(4096, len(data)-off-1)], data[off+1:min(off+1+4096, len(data))], "random read")
		if used := fs.CacheUsed(); used > limit {
			t.Fatalf("cache holds %d bytes, limit %d", used, limit)
		}
	}
	if g := gets.take(); len(g) < 100 {
		t.Fatalf("%d GETs for 200 random reads into 128 blocks with 10 cached: the cache held more than its bound?", len(g))
	}
	must(t, fs.Release(ctx, h))
}

// A clone reads its source's extents by block too (FORMAT.md §16.2: an
// origin names the level), and its own rewritten extent from itself.
func TestRandomReadClone(t *testing.T) {
	e, gets := rangedEnv(t)
	r := rand.New(rand.NewPCG(11, 11))
	data := randBytes(r, 3*rangedExt)
	id := writeFile(t, rangedEngine(e), root, "f", data)
	c, _ := e.cloneOf("c", "p1")
	w := rangedEngine(c)
	h := open(t, w, id, true)
	write(t, w, h, []byte("CLONE"), rangedExt+3)
	closeH(t, w, h)
	copy(data[rangedExt+3:], "CLONE")
	n := c.newest(id)
	if n.Extents[0].Origin != 1 || n.Extents[1].Origin != 0 || n.Extents[2].Origin != 1 {
		t.Fatalf("clone's version: %+v", n.Extents)
	}
	gets.take()
	fs := rangedEngine(c)
	h = open(t, fs, id, false)
	buf := make([]byte, 4096)
	for _, off := range []int{7 * blk, rangedExt + 2*blk, 2*rangedExt + 15*blk + 100} {
		readAt(t, fs, h, buf, int64(off))
		sameBytes(t, buf, data[off:off+4096], fmt.Sprintf("clone read at %d", off))
	}
	// Each from its level's prefix: the source's v/, the clone's own c/.
	for _, x := range n.Extents {
		want := map[uint8]string{0: "c/d/", 1: "v/d/"}[x.Origin]
		if k := gets.keyOf(fmt.Sprintf("%016x", x.EID)); !strings.HasPrefix(k, want) {
			t.Errorf("extent %d (origin %d) read from %q, want under %s", x.Index, x.Origin, k, want)
		}
	}
	wantGets(t, gets, n, "random reads of a clone", "0: 7-7", "1: 2-2", "2: 15-15")
	must(t, fs.Release(ctx, h))
}
