package vfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// countingStore counts conditional creates of inode versions that lost
// (objstore.ErrExists): each is a CAS conflict the engine had to retry.
type countingStore struct {
	objstore.Store
	inodePrefix string
	conflicts   atomic.Int64
}

func (s *countingStore) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	info, err := s.Store.PutIfAbsent(ctx, key, body)
	if errors.Is(err, objstore.ErrExists) && strings.HasPrefix(key, s.inodePrefix) {
		s.conflicts.Add(1)
	}
	return info, err
}

func TestMkdirRaceTwoHosts(t *testing.T) {
	e := newEnv(t)
	hosts := []*vfs.FS{e.engine(), e.engine()}
	const rounds = 60
	wins := [2]int{}
	for round := range rounds {
		name := fmt.Sprintf("r%d", round)
		var wg sync.WaitGroup
		ids := [2]uint64{}
		errs := [2]error{}
		for i, fs := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if round%2 == 0 {
					var a vfs.Attr
					a, errs[i] = fs.Mkdir(ctx, root, name, 0o755, caller)
					ids[i] = a.Ino
				} else { // O_EXCL create is the same kind of lock
					a, h, err := fs.Create(ctx, root, name, 0o644, true, caller)
					errs[i], ids[i] = err, a.Ino
					if err == nil {
						fs.Release(ctx, h)
					}
				}
			}()
		}
		wg.Wait()
		ok := 0
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
				winner = i
			case !errors.Is(err, vfs.ErrExist):
				t.Fatalf("round %d: host %d failed with %v, want ErrExist", round, i, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d hosts succeeded (errors %v)", round, ok, errs)
		}
		wins[winner]++
		for i, fs := range hosts {
			if got := lookup(t, fs, root, name); got.Ino != ids[winner] {
				t.Fatalf("round %d: host %d sees %q as %016x, winner created %016x", round, i, name, got.Ino, ids[winner])
			}
		}
	}
	t.Logf("wins per host: %v", wins)
	if got := len(names(t, e.engine(), root)); got != rounds {
		t.Fatalf("fresh host lists %d names, want %d", got, rounds)
	}
}

func TestConcurrentCreatesTwoHosts(t *testing.T) {
	var cs *countingStore
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		cs = &countingStore{Store: m, inodePrefix: "v/i/"}
		return cs
	})
	hosts := []*vfs.FS{e.engine(), e.engine()}
	d := mkdir(t, hosts[0], root, "shared")
	const perHost, workers = 40, 8
	var wg sync.WaitGroup
	var failures atomic.Int64
	for hi, fs := range hosts {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perHost; i += workers {
					name := fmt.Sprintf("h%d-%03d", hi, i)
					var err error
					if i%3 == 0 {
						_, err = fs.Mkdir(ctx, d, name, 0o755, caller)
					} else {
						var h *vfs.Handle
						_, h, err = fs.Create(ctx, d, name, 0o644, true, caller)
						if err == nil {
							err = fs.Release(ctx, h)
						}
					}
					if err != nil {
						failures.Add(1)
						t.Errorf("host %d create %s: %v", hi, name, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	t.Logf("%d CAS conflicts retried; directory has %d versions", cs.conflicts.Load(), len(e.versions(d)))
	if cs.conflicts.Load() == 0 {
		t.Log("no CAS conflict happened this run: the retry path was not exercised")
	}
	var want []string
	for hi := range hosts {
		for i := range perHost {
			want = append(want, fmt.Sprintf("h%d-%03d", hi, i))
		}
	}
	slices.Sort(want)
	for _, fs := range append(hosts, e.engine()) {
		if got := names(t, fs, d); !slices.Equal(got, want) {
			t.Fatalf("lists %d names, want %d", len(got), len(want))
		}
	}
	checkChain(t, e, d)
	if a, _ := e.engine().GetAttr(ctx, d); a.Nlink != 2+2*14 {
		t.Fatalf("nlink %d, want %d", a.Nlink, 2+2*14)
	}
}

// A forced conflict: host b's view of the directory is stale when it
// commits, so its conditional create must lose and be re-applied.
func TestStaleHostRetriesConflict(t *testing.T) {
	var cs *countingStore
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		cs = &countingStore{Store: m, inodePrefix: "v/i/"}
		return cs
	})
	a := e.engine()
	b := e.engine(func(o *vfs.Options) { o.Revalidate = 1 << 62 }) // never revalidates on lookup
	d := mkdir(t, a, root, "d")
	names(t, b, d) // b loads d (empty)
	writeFile(t, a, d, "from-a", []byte("a"))
	mkdir(t, a, d, "dir-a")
	before := cs.conflicts.Load()
	writeFile(t, b, d, "from-b", []byte("b"))
	if cs.conflicts.Load() == before {
		t.Fatal("stale host's commit did not conflict")
	}
	// b's stale view must not hide a's name from the conflict check.
	_, err := b.Mkdir(ctx, d, "dir-a", 0o755, caller)
	wantErr(t, err, vfs.ErrExist, "stale host mkdir of a name the other host made")
	got := names(t, e.engine(), d)
	if !slices.Equal(got, []string{"dir-a", "from-a", "from-b"}) {
		t.Fatalf("after the conflict: %v", got)
	}
	if a, _ := e.engine().GetAttr(ctx, d); a.Nlink != 3 {
		t.Fatalf("nlink %d after a conflict re-applied", a.Nlink)
	}
}

// W5: rmdir on one host racing creates in that directory on another never
// leaves a name in a removed directory.
func TestRmdirRacesCreate(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	for round := range 30 {
		name := fmt.Sprintf("d%d", round)
		d := mkdir(t, a, root, name)
		names(t, b, d)
		var wg sync.WaitGroup
		var rmErr, createErr error
		wg.Add(2)
		go func() { defer wg.Done(); rmErr = a.Rmdir(ctx, root, name) }()
		go func() {
			defer wg.Done()
			_, createErr = b.Mkdir(ctx, d, "child", 0o755, caller)
		}()
		wg.Wait()
		switch {
		case rmErr == nil && createErr == nil:
			t.Fatalf("round %d: both rmdir and a create inside succeeded", round)
		case rmErr == nil:
			wantErr(t, createErr, vfs.ErrNotExist, "create in a removed directory")
			if _, err := e.engine().Lookup(ctx, root, name); !errors.Is(err, vfs.ErrNotExist) {
				t.Fatalf("round %d: removed directory still found: %v", round, err)
			}
		default:
			wantErr(t, rmErr, vfs.ErrNotEmpty, "rmdir of a directory that got a child")
			if got := names(t, e.engine(), d); !slices.Equal(got, []string{"child"}) {
				t.Fatalf("round %d: surviving directory lists %v", round, got)
			}
		}
	}
}

// An rmdir through a view of the parent from before another host renamed
// the directory away must fail (the name is gone) and leave the directory,
// now under its new name, alone: within one directory (one version of the
// parent) and across directories (a transaction). Found by make load (seed
// 804535564: h7's rmdir a, 6 ms after h4's rename of a to d returned,
// removed d).
func TestRmdirOfNameRenamedAwayElsewhere(t *testing.T) {
	for _, across := range []bool{false, true} {
		t.Run(fmt.Sprintf("across=%v", across), func(t *testing.T) {
			e := newEnv(t)
			b := e.engine()
			x := mkdir(t, b, root, "a")
			to, toName := root, "d"
			if across {
				to = mkdir(t, b, root, "other")
			}
			a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
			if _, err := a.Lookup(ctx, root, "a"); err != nil { // a's view of the root names a
				t.Fatal(err)
			}
			must(t, b.Rename(ctx, root, "a", to, toName, 0))
			wantErr(t, a.Rmdir(ctx, root, "a"), vfs.ErrNotExist, "rmdir of a name another host renamed away")
			c := e.engine()
			if got, err := c.Lookup(ctx, to, toName); err != nil || got.Ino != x {
				t.Fatalf("renamed directory: %+v, %v; want %016x", got, err, x)
			}
			if _, err := c.Lookup(ctx, root, "a"); !errors.Is(err, vfs.ErrNotExist) {
				t.Fatalf("old name: %v, want ErrNotExist", err)
			}
		})
	}
}

// Two hosts writing disjoint extents of one file: both writes survive.
func TestDisjointExtentWritesTwoHosts(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	r := rand.New(rand.NewPCG(29, 29))
	orig := randBytes(r, 4*extSize)
	id := writeFile(t, a, root, "f", orig)
	ha := open(t, a, id, true)
	hb := open(t, b, id, true)
	pa := randBytes(r, 1000)
	pb := randBytes(r, 2000)
	write(t, a, ha, pa, 10)            // extent 0
	write(t, b, hb, pb, 2*extSize+500) // extent 2
	must(t, a.Flush(ctx, ha))
	must(t, b.Flush(ctx, hb)) // loses the race for the version, re-applies
	must(t, a.Release(ctx, ha))
	must(t, b.Release(ctx, hb))
	want := append([]byte(nil), orig...)
	copy(want[10:], pa)
	copy(want[2*extSize+500:], pb)
	sameBytes(t, readFile(t, e.engine(), id), want, "disjoint extents written by two hosts")
	sameBytes(t, readFile(t, a, id), want, "host a after reopening")
	sameBytes(t, readFile(t, b, id), want, "host b after reopening")
}

// Two hosts writing disjoint byte ranges of one file, including within one
// extent and an append by the first, must both survive (PROTOCOL.md: the
// loser re-applies its dirty byte ranges onto the winner's content).
func TestDisjointRangesTwoHosts(t *testing.T) {
	cases := []struct {
		name           string
		size           int
		offA, offB     int
		lenA, lenB     int
		commitFirstIsA bool
	}{
		{"same extent", 3 * extSize, 100, 5000, 1000, 1000, true},
		{"append by winner", extSize + 100, 2 * extSize, 50, 1000, 30, true},
		{"append by loser", extSize + 100, 50, 2 * extSize, 30, 1000, true},
		{"inline file", 3000, 0, 2000, 100, 100, true},
		{"inline grows past limit", 3000, 0, 2 * extSize, 100, 100, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.engine()
			b := e.engine()
			r := rand.New(rand.NewPCG(31, uint64(c.size)))
			orig := randBytes(r, c.size)
			id := writeFile(t, a, root, "f", orig)
			ha := open(t, a, id, true)
			hb := open(t, b, id, true)
			pa := randBytes(r, c.lenA)
			pb := randBytes(r, c.lenB)
			write(t, a, ha, pa, int64(c.offA))
			write(t, b, hb, pb, int64(c.offB))
			must(t, a.Flush(ctx, ha))
			must(t, b.Flush(ctx, hb))
			must(t, a.Release(ctx, ha))
			must(t, b.Release(ctx, hb))
			ref := &refFile{}
			ref.write(orig, 0)
			ref.write(pa, c.offA)
			ref.write(pb, c.offB)
			sameBytes(t, readFile(t, e.engine(), id), ref.b, "after two hosts wrote disjoint ranges")
		})
	}
}

// fileOp is one write or truncation, for replaying a host's changes.
type fileOp struct {
	off  int
	data []byte // nil: truncate to off
}

func replay(base []byte, ops []fileOp) []byte {
	ref := &refFile{b: append([]byte(nil), base...)}
	for _, op := range ops {
		if op.data == nil {
			ref.truncate(op.off)
		} else {
			ref.write(op.data, op.off)
		}
	}
	return ref.b
}

// randomOps applies random writes and truncations to the file through h
// and returns them.
func randomOps(t *testing.T, fs *vfs.FS, h *vfs.Handle, r *rand.Rand, n, maxSize int) []fileOp {
	t.Helper()
	var ops []fileOp
	for range n {
		if r.IntN(6) == 0 {
			size := r.IntN(maxSize)
			truncate(t, fs, h.ID(), uint64(size))
			ops = append(ops, fileOp{off: size})
			continue
		}
		var l int
		switch r.IntN(3) {
		case 0:
			l = r.IntN(50) + 1
		case 1:
			l = r.IntN(3000) + 1
		default:
			l = r.IntN(2*extSize) + 1
		}
		l = min(l, maxSize/2)
		off := r.IntN(maxSize - l)
		data := randBytes(r, l)
		write(t, fs, h, data, int64(off))
		ops = append(ops, fileOp{off: off, data: data})
	}
	return ops
}

// Two hosts change one file at once, again and again; the second to commit
// must end up with its changes re-applied on top of the first's (the
// result a replay of its operations onto the first's version gives).
func TestRandomConcurrentChangesTwoHosts(t *testing.T) {
	e := newEnv(t)
	small := func(o *vfs.Options) { o.BufferSize = 2 * extSize } // evictions too
	hosts := []*vfs.FS{e.engine(small), e.engine(small)}
	r := rand.New(rand.NewPCG(59, 59))
	content := randBytes(r, 2*extSize+100)
	id := writeFile(t, hosts[0], root, "f", content)
	maxSize := 5*extSize + 17
	for round := range 40 {
		first, second := hosts[round%2], hosts[(round+1)%2]
		if round%4 >= 2 {
			maxSize = 6000 // around the inline limit
		} else {
			maxSize = 5*extSize + 17
		}
		before := content
		h1 := open(t, first, id, true)
		h2 := open(t, second, id, true) // opened on the same version
		sameBytes(t, readAll(t, second, h2), content, "second host's view at open")
		ops1 := randomOps(t, first, h1, r, r.IntN(5)+1, maxSize)
		must(t, first.Flush(ctx, h1))
		won := replay(content, ops1)
		sameBytes(t, readFile(t, e.engine(), id), won, fmt.Sprintf("round %d: first host's commit", round))
		ops2 := randomOps(t, second, h2, r, r.IntN(5)+1, maxSize)
		must(t, second.Flush(ctx, h2))
		content = replay(won, ops2)
		must(t, first.Release(ctx, h1))
		must(t, second.Release(ctx, h2))
		if got := readFile(t, e.engine(), id); !bytes.Equal(got, content) {
			for i, ops := range [][]fileOp{ops1, ops2} {
				for _, op := range ops {
					t.Logf("host %d: off %d len %d (truncate: %v)", i+1, op.off, len(op.data), op.data == nil)
				}
			}
			t.Logf("sizes: before %d, after first %d, after second %d", len(before), len(won), len(content))
			sameBytes(t, got, content, fmt.Sprintf("round %d: fresh host", round))
		}
		sameBytes(t, readFile(t, first, id), content, fmt.Sprintf("round %d: first host", round))
	}
	for _, h := range hosts {
		if used, _ := h.BufferPoolUsage(); used != 0 {
			t.Fatalf("%d bytes of buffers held at the end", used)
		}
	}
}

// A re-application that fails half way (the winner's extent cannot be
// read) fails the commit; the next commit must redo it, not commit the
// half-merged state.
func TestRebaseFailsThenRetried(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	r := rand.New(rand.NewPCG(61, 61))
	orig := randBytes(r, 3*extSize)
	id := writeFile(t, a, root, "f", orig)
	ha := open(t, a, id, true)
	hb := open(t, b, id, true)
	pa0, pa2 := randBytes(r, 100), randBytes(r, 100)
	pb0, pb2 := randBytes(r, 100), randBytes(r, 100)
	write(t, a, ha, pa0, 1000)
	write(t, a, ha, pa2, 2*extSize+1000)
	closeH(t, a, ha)
	write(t, b, hb, pb0, 5000)
	write(t, b, hb, pb2, 2*extSize+5000)
	hook, hits := failFirst(memstore.OpGetRange, e.vol.Keys.ExtentDir(id), 1)
	e.store.SetHooks(memstore.Hooks{Before: hook})
	wantErr(t, b.Flush(ctx, hb), errInjected, "flush whose re-application cannot read the winner's extent")
	if hits.Load() == 0 {
		t.Fatal("hook never fired")
	}
	e.store.SetHooks(memstore.Hooks{})
	must(t, b.Flush(ctx, hb))
	must(t, b.Release(ctx, hb))
	ref := &refFile{b: append([]byte(nil), orig...)}
	ref.write(pa0, 1000)
	ref.write(pa2, 2*extSize+1000)
	ref.write(pb0, 5000)
	ref.write(pb2, 2*extSize+5000)
	sameBytes(t, readFile(t, e.engine(), id), ref.b, "after a failed and a retried re-application")
}

// A host that truncated while another wrote: the truncation is re-applied
// onto the other's content (its bytes past the cut go), and the writes
// after it survive.
func TestTruncateRacesWriteTwoHosts(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	r := rand.New(rand.NewPCG(67, 67))
	orig := randBytes(r, 3*extSize)
	id := writeFile(t, a, root, "f", orig)
	ha := open(t, a, id, true)
	hb := open(t, b, id, true)
	// a rewrites bytes on both sides of b's cut, and appends.
	pa := randBytes(r, 2*extSize)
	write(t, a, ha, pa, extSize/2)
	tail := randBytes(r, 10)
	write(t, a, ha, tail, 4*extSize)
	closeH(t, a, ha)
	// b cuts in the middle of extent 1 (the commit re-applies it onto a's
	// version at once) and then writes past the cut.
	cut := extSize + 1234
	truncate(t, b, id, uint64(cut))
	pb := randBytes(r, 50)
	write(t, b, hb, pb, int64(cut+100))
	closeH(t, b, hb)
	want := replay(orig, []fileOp{{off: extSize / 2, data: pa}, {off: 4 * extSize, data: tail}})
	want = replay(want, []fileOp{{off: cut}, {off: cut + 100, data: pb}})
	sameBytes(t, readFile(t, e.engine(), id), want, "truncation re-applied onto another host's writes")
}

// A host writing a file that another host deletes: its commit loses to the
// tombstone (ENOENT, W7), and its uncommitted data is dropped rather than
// held in write-back memory and retried forever.
func TestWriteToFileDeletedByOtherHost(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	r := rand.New(rand.NewPCG(71, 71))
	id := writeFile(t, a, root, "f", randBytes(r, 10))
	h := open(t, a, id, true)
	write(t, a, h, randBytes(r, extSize+500), 0) // one full extent, one partial
	must(t, b.Unlink(ctx, root, "f"))
	wantErr(t, a.Flush(ctx, h), vfs.ErrNotExist, "flush of a file deleted by another host")
	// The loss was reported by the flush; the release has nothing left.
	must(t, a.Release(ctx, h))
	if used, _ := a.BufferPoolUsage(); used != 0 {
		t.Fatalf("%d bytes of write-back buffers still held for a deleted file", used)
	}
	must(t, a.SyncAll(ctx)) // nothing left to retry
	if n := e.newest(id); n.Kind.String() != "tombstone" {
		t.Fatalf("newest version is a %s", n.Kind)
	}
}
