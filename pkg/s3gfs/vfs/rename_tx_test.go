package vfs_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// Rename transactions (FORMAT.md §5.5): a rename across directories, or
// onto an empty directory, is atomic to every host and to a crash.

// txCase is one kind of rename that takes a transaction.
type txCase struct {
	name string
	// setup makes the volume on host a and returns the directories, names
	// and the moved inode, and the inode the new name replaces (0: none).
	setup func(t *testing.T, a *vfs.FS) (src uint64, old string, dst uint64, nu string, moved, target uint64)
	steps []string // the steps the rename passes
}

var txCases = []txCase{
	{"file across directories", func(t *testing.T, a *vfs.FS) (uint64, string, uint64, string, uint64, uint64) {
		s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
		return s, "f", d, "g", writeFile(t, a, s, "f", []byte("moved")), 0
	}, []string{"src", "dst", "decide", "decided"}},
	{"file onto a file across directories", func(t *testing.T, a *vfs.FS) (uint64, string, uint64, string, uint64, uint64) {
		s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
		f := writeFile(t, a, s, "f", []byte("moved"))
		return s, "f", d, "g", f, writeFile(t, a, d, "g", []byte("replaced"))
	}, []string{"src", "dst", "decide", "decided"}},
	{"directory with content across directories", func(t *testing.T, a *vfs.FS) (uint64, string, uint64, string, uint64, uint64) {
		s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
		x := mkdir(t, a, s, "x")
		writeFile(t, a, x, "inside", []byte("in x"))
		return s, "x", d, "y", x, 0
	}, []string{"src", "dst", "decide", "decided"}},
	{"directory onto an empty directory across directories", func(t *testing.T, a *vfs.FS) (uint64, string, uint64, string, uint64, uint64) {
		s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
		x := mkdir(t, a, s, "x")
		writeFile(t, a, x, "inside", []byte("in x"))
		return s, "x", d, "y", x, mkdir(t, a, d, "y")
	}, []string{"src", "dst", "target", "decide", "decided"}},
	{"directory onto an empty directory in one directory", func(t *testing.T, a *vfs.FS) (uint64, string, uint64, string, uint64, uint64) {
		s := mkdir(t, a, root, "s")
		x := mkdir(t, a, s, "x")
		return s, "x", s, "y", x, mkdir(t, a, s, "y")
	}, []string{"dst", "target", "decide", "decided"}},
}

// onlyOne checks that fs sees the moved inode under exactly one of the two
// names, and the new name never absent while it names the target.
func onlyOne(t *testing.T, fs *vfs.FS, src uint64, old string, dst uint64, nu string, moved, target uint64, what string) (atNew bool) {
	t.Helper()
	ao, eo := fs.Lookup(ctx, src, old)
	an, en := fs.Lookup(ctx, dst, nu)
	oldIs := eo == nil && ao.Ino == moved
	newIs := en == nil && an.Ino == moved
	if oldIs == newIs {
		t.Fatalf("%s: old name -> %x (%v), new name -> %x (%v): want the moved inode %x under exactly one", what, ao.Ino, eo, an.Ino, en, moved)
	}
	if eo == nil && !oldIs {
		t.Fatalf("%s: the old name names %x, neither the moved inode nor nothing", what, ao.Ino)
	}
	if !newIs && target != 0 && (en != nil || an.Ino != target) {
		t.Fatalf("%s: the new name should still name the target %x: %x, %v", what, target, an.Ino, en)
	}
	if !newIs && target == 0 && en == nil {
		t.Fatalf("%s: the new name names %x before the rename", what, an.Ino)
	}
	// Listings agree with lookups.
	count := 0
	for _, d := range []uint64{src, dst} {
		es, err := fs.ReadDir(ctx, d)
		must(t, err)
		for _, e := range es {
			if e.Ino == moved {
				count++
			}
		}
		if src == dst {
			break
		}
	}
	if count != 1 {
		t.Fatalf("%s: listings show the moved inode %d times", what, count)
	}
	return newIs
}

// TestRenameTxAtomicToOtherHosts: another host, looking at both names at
// every step of a paused rename, sees exactly one of them, and the old
// one until the decision.
func TestRenameTxAtomicToOtherHosts(t *testing.T) {
	for _, c := range txCases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			a, b := e.engine(), e.engine()
			src, old, dst, nu, moved, target := c.setup(t, a)
			var seen []string
			a.SetRenameHook(func(step string) bool {
				seen = append(seen, step)
				atNew := onlyOne(t, b, src, old, dst, nu, moved, target, "at step "+step)
				if atNew != (step == "decided") {
					t.Fatalf("at step %s: the new name is live: %v", step, atNew)
				}
				return true
			})
			must(t, a.Rename(ctx, src, old, dst, nu, 0))
			if fmt.Sprint(seen) != fmt.Sprint(c.steps) {
				t.Fatalf("steps %v, want %v", seen, c.steps)
			}
			for _, fs := range []*vfs.FS{a, b, e.engine()} {
				if !onlyOne(t, fs, src, old, dst, nu, moved, target, "after") {
					t.Fatal("after the rename the old name is live")
				}
			}
			if target != 0 {
				if n := e.newest(target); n.Kind != format.KindTombstone {
					t.Fatalf("replaced inode: %v nlink %d, want a tombstone", n.Kind, n.Nlink)
				}
			}
			if n := e.newest(moved); n.Kind == format.KindFile && n.Nlink != 1 {
				t.Fatalf("moved file nlink %d", n.Nlink)
			}
			if n := len(e.keysUnder(e.vol.Keys.DecisionsPrefix())); n != 1 {
				t.Fatalf("%d decisions, want 1", n)
			}
			// Folded: no directory's newest version holds a pending entry.
			for _, d := range []uint64{src, dst} {
				for _, x := range e.newest(d).Entries {
					if x.Op.Pending() {
						t.Fatalf("directory %x keeps pending entry %+v after the rename", d, x)
					}
				}
			}
		})
	}
}

// TestRenameTxCrashAtEachStep: a rename stopped at any step (a crash)
// leaves the old name (before its decision) or the new one (after), on
// every host; later writers of those directories fold what is decided.
func TestRenameTxCrashAtEachStep(t *testing.T) {
	for _, c := range txCases {
		for _, stop := range c.steps {
			t.Run(c.name+"/"+stop, func(t *testing.T) {
				e := newEnv(t)
				a := e.engine()
				src, old, dst, nu, moved, target := c.setup(t, a)
				a.SetRenameHook(func(step string) bool { return step != stop })
				if err := a.Rename(ctx, src, old, dst, nu, 0); err == nil {
					t.Fatal("the stopped rename reported success")
				}
				b := e.engine()
				atNew := onlyOne(t, b, src, old, dst, nu, moved, target, "after the crash")
				if atNew != (stop == "decided") {
					t.Fatalf("the new name is live: %v", atNew)
				}
				// Other names of both directories stay writable.
				writeFile(t, b, src, "other", []byte("o"))
				if dst != src {
					writeFile(t, b, dst, "other", []byte("o"))
				}
				if got := onlyOne(t, e.engine(), src, old, dst, nu, moved, target, "after other writes"); got != atNew {
					t.Fatal("other writes changed the outcome")
				}
				if stop == "decided" {
					for _, d := range []uint64{src, dst} {
						for _, x := range e.newest(d).Entries {
							if x.Op.Pending() {
								t.Fatalf("a later writer kept the decided pending entry %+v", x)
							}
						}
					}
				}
			})
		}
	}
}

// TestRenameTxAbortAfterFence: a host that crashed mid-rename holds its
// names until its expiry has passed; then the next writer of one of them
// aborts the rename (the old name stays) and goes on.
func TestRenameTxAbortAfterFence(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.SyncInterval, o.HostExpiry = 100*time.Millisecond, time.Second })
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	f := writeFile(t, a, s, "f", []byte("moved"))
	a.SetRenameHook(func(step string) bool { return step != "decide" })
	if err := a.Rename(ctx, s, "f", d, "g", 0); err == nil {
		t.Fatal("the stopped rename reported success")
	}
	must(t, a.Close(ctx)) // the host is gone: its ping lapses
	b := e.engine()
	g := writeFile(t, b, d, "g", []byte("new file")) // waits for the abort
	if g == f {
		t.Fatal("the create found the moved file")
	}
	if a := lookup(t, b, s, "f"); a.Ino != f {
		t.Fatalf("old name -> %x, want %x", a.Ino, f)
	}
	keys := e.keysUnder(e.vol.Keys.DecisionsPrefix())
	if len(keys) != 1 {
		t.Fatalf("decisions %v", keys)
	}
	obj, _, err := e.store.Get(ctx, keys[0])
	must(t, err)
	dec, err := format.DecodeDecision(obj)
	must(t, err)
	if dec.Outcome != format.Abort || dec.Host != a.HostID() || dec.Writer != b.HostID() {
		t.Fatalf("decision %+v, want an abort of host %x by host %x", dec, a.HostID(), b.HostID())
	}
	// b can rename the old name now (its pending remove was folded away).
	must(t, b.Rename(ctx, s, "f", d, "h", 0))
	if a := lookup(t, e.engine(), d, "h"); a.Ino != f {
		t.Fatal("the second rename lost the file")
	}
}

// TestRenameTxWaitsForLiveHost: a change to a name that a live host's
// rename holds waits for its decision: after the commit, an exclusive
// create of the new name fails with EEXIST, never succeeding in between.
func TestRenameTxWaitsForLiveHost(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	f := writeFile(t, a, s, "f", []byte("moved"))
	release := make(chan struct{})
	paused := make(chan struct{})
	a.SetRenameHook(func(step string) bool {
		if step == "decide" {
			close(paused)
			<-release
		}
		return true
	})
	var wg sync.WaitGroup
	var rerr error
	wg.Add(1)
	go func() { defer wg.Done(); rerr = a.Rename(ctx, s, "f", d, "g", 0) }()
	<-paused
	cerr := make(chan error, 1)
	go func() {
		_, _, err := b.Create(ctx, d, "g", 0o644, true, caller)
		cerr <- err
	}()
	select {
	case err := <-cerr:
		t.Fatalf("the create did not wait for the rename: %v", err)
	case <-time.After(300 * time.Millisecond): // (not an assertion on time: the create must still be waiting)
	}
	close(release)
	wg.Wait()
	must(t, rerr)
	wantErr(t, <-cerr, vfs.ErrExist, "exclusive create of the renamed name")
	if a := lookup(t, b, d, "g"); a.Ino != f {
		t.Fatal("new name lost")
	}
}

// TestRenameTxSourceMovedAway: host b moves the source away while host a's
// rename is under way: a's pending remove fails, the rename aborts, and no
// host ever saw its new name.
func TestRenameTxSourceMovedAway(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	s, d, w := mkdir(t, a, root, "s"), mkdir(t, a, root, "d"), mkdir(t, a, root, "w")
	f := writeFile(t, a, s, "f", []byte("moved"))
	lookup(t, a, s, "f")
	// a's view of s is from before b's move; make a's rename meet it.
	must(t, b.Rename(ctx, s, "f", w, "f", 0))
	err := a.Rename(ctx, s, "f", d, "g", 0)
	wantErr(t, err, vfs.ErrNotExist, "rename of a name moved away")
	if _, err := e.engine().Lookup(ctx, d, "g"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("the failed rename left its new name: %v", err)
	}
	if a := lookup(t, e.engine(), w, "f"); a.Ino != f {
		t.Fatal("file lost")
	}
	if n := e.newest(f); n.Nlink != 1 {
		t.Fatalf("nlink %d", n.Nlink)
	}
	// Refused at its first step, it wrote nothing, not even a decision
	// (b's move has the only one).
	if ks := e.keysUnder(e.vol.Keys.DecisionsPrefix()); len(ks) != 1 {
		t.Fatalf("decisions %v, want b's only", ks)
	}
}

// TestRenameTxTimeTravel: a point-in-time view at an instant between the
// steps shows the old name; at the decision's instant and after, the new.
func TestRenameTxTimeTravel(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	e.store.SetClock(tick)
	a := e.engine()
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	f := writeFile(t, a, s, "f", []byte("moved"))
	at := map[string]time.Time{}
	a.SetRenameHook(func(step string) bool {
		mu.Lock()
		at[step] = clock
		mu.Unlock()
		return true
	})
	must(t, a.Rename(ctx, s, "f", d, "g", 0))
	for step, x := range at {
		v := e.engine(func(o *vfs.Options) { o.ReadOnly, o.AsOf = true, x })
		atNew := onlyOne(t, v, s, "f", d, "g", f, 0, "as of step "+step)
		if atNew != (step == "decided") {
			t.Fatalf("as of step %s: new name live %v", step, atNew)
		}
	}
}

// reqCounter counts requests, and those on decision keys (t/).
type reqCounter struct {
	objstore.Store
	all, decisions atomic.Int64
}

func (s *reqCounter) note(key string) {
	s.all.Add(1)
	if strings.Contains(key, "/t/") {
		s.decisions.Add(1)
	}
}

// quiet waits until no request has been made for 100ms (background work
// such as a listing's prefetch has finished), for at most 5s.
func (s *reqCounter) quiet() {
	last, since := s.all.Load(), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n := s.all.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= 100*time.Millisecond {
			return
		}
	}
}

func (s *reqCounter) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	s.note(key)
	return s.Store.PutIfAbsent(ctx, key, body)
}

func (s *reqCounter) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	s.note(key)
	return s.Store.Get(ctx, key)
}

func (s *reqCounter) List(ctx context.Context, prefix, after string, max int) (objstore.ListPage, error) {
	s.note(prefix)
	return s.Store.List(ctx, prefix, after, max)
}

// TestRenameTxRequests: lookups, listings, creates and renames within a
// directory cost no decision request; a rename across directories costs
// one (its decision) and a few more directory versions, counted here.
func TestRenameTxRequests(t *testing.T) {
	var rc *reqCounter
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store { rc = &reqCounter{Store: m}; return rc })
	a, b := e.engine(), e.engine()
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	for i := 0; i < 5; i++ {
		writeFile(t, a, s, fmt.Sprintf("f%d", i), []byte("x"))
	}
	must(t, a.Rename(ctx, s, "f0", s, "g0", 0))
	names(t, b, s)
	lookup(t, b, s, "g0")
	if n := rc.decisions.Load(); n != 0 {
		t.Fatalf("%d decision requests without a cross-directory rename", n)
	}
	lookup(t, a, s, "f1")
	rc.quiet() // b's listing prefetches its children in the background
	before := rc.all.Load()
	must(t, a.Rename(ctx, s, "f1", d, "g1", 0))
	cost := rc.all.Load() - before
	if n := rc.decisions.Load(); n != 1 {
		t.Fatalf("%d decision requests for one rename, want 1 (its create)", n)
	}
	t.Logf("a cross-directory rename: %d requests", cost)
	if cost > 12 {
		t.Fatalf("a cross-directory rename cost %d requests", cost)
	}
	// Folded at once: other hosts read no decision either.
	lookup(t, b, d, "g1")
	names(t, b, s)
	if n := rc.decisions.Load(); n != 1 {
		t.Fatalf("%d decision requests after another host looked, want still 1", n)
	}
}

// TestRenameTxClone: a clone reads its source's directories with their
// pending entries resolved in the source at the pin (a decision made
// after it does not apply), and its first own version of such a
// directory folds them all (it names no txid of the source).
func TestRenameTxClone(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	f := writeFile(t, a, s, "f", []byte("f"))
	h := writeFile(t, a, s, "h", []byte("h"))
	// Rename 1 is decided (commit) but not folded before the pin.
	a.SetRenameHook(func(step string) bool { return step != "decided" })
	if err := a.Rename(ctx, s, "f", d, "g", 0); err == nil {
		t.Fatal("stopped rename succeeded")
	}
	// Rename 2 is decided only after the pin.
	paused, release := make(chan struct{}), make(chan struct{})
	a.SetRenameHook(func(step string) bool {
		if step == "decide" {
			close(paused)
			<-release
		}
		return true
	})
	done := make(chan error)
	go func() { done <- a.Rename(ctx, s, "h", d, "k", 0) }()
	<-paused
	c, _ := e.cloneOf("c", "p1")
	close(release)
	must(t, <-done)

	fs := c.engine()
	if x := lookup(t, fs, d, "g"); x.Ino != f {
		t.Fatal("clone: rename 1 not applied")
	}
	if _, err := fs.Lookup(ctx, s, "f"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("clone: s/f after rename 1: %v", err)
	}
	if x := lookup(t, fs, s, "h"); x.Ino != h {
		t.Fatal("clone: s/h gone although rename 2 was decided after the pin")
	}
	if _, err := fs.Lookup(ctx, d, "k"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("clone: d/k before rename 2's decision: %v", err)
	}
	// The clone's own first versions of s and d fold everything.
	writeFile(t, fs, d, "new", []byte("n"))
	writeFile(t, fs, s, "new", []byte("n"))
	for _, dir := range []uint64{s, d} {
		n := c.newest(dir)
		if !n.IsFull() {
			t.Fatal("the clone's first version is not full")
		}
		for _, x := range n.Entries {
			if x.Op.Pending() {
				t.Fatalf("the clone's directory %x names the source's txid: %+v", dir, x)
			}
		}
	}
	fresh := c.engine()
	if got := strings.Join(names(t, fresh, d), ","); got != "g,new" {
		t.Fatalf("clone d: %s", got)
	}
	if got := strings.Join(names(t, fresh, s), ","); got != "h,new" {
		t.Fatalf("clone s: %s", got)
	}
	// The source has both renames.
	if x := lookup(t, e.engine(), d, "k"); x.Ino != h {
		t.Fatal("source: rename 2 lost")
	}
}

// TestRenameTxAbortOnBusyDirectory: an abandoned rename's names become
// free once its owner's expiry has passed since the pending entry was
// first seen, even in a directory that other names keep changing (each
// change is a newer version still holding the pending entry; counting
// from the newest would put the abort off for as long as the directory
// stays busy, and every change of the name would fail with EBUSY).
func TestRenameTxAbortOnBusyDirectory(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	e.store.SetClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	})
	advance := func(d time.Duration) {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
	}
	a := e.engine() // no ping: its renames may be aborted after 24 h + 2 s
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	f := writeFile(t, a, s, "f", []byte("moved"))
	a.SetRenameHook(func(step string) bool { return step != "decide" })
	if err := a.Rename(ctx, s, "f", d, "g", 0); err == nil {
		t.Fatal("the stopped rename reported success")
	}
	must(t, a.Close(ctx))
	b := e.engine()
	names(t, b, d) // b sees the pending entry now
	for i := range 26 {
		advance(time.Hour)
		writeFile(t, b, d, fmt.Sprintf("busy%d", i), []byte("x"))
	}
	g := writeFile(t, b, d, "g", []byte("new file"))
	if g == f {
		t.Fatal("the create found the moved file")
	}
	if a := lookup(t, b, s, "f"); a.Ino != f {
		t.Fatalf("old name -> %x, want %x", a.Ino, f)
	}
}

// TestRenameTxDecisionCacheBounded: the decisions a host makes and reads
// do not pile up in its memory for ever (one per cross-directory rename:
// a mail spool moving every message from tmp/ to new/ makes one each);
// what a cached directory still needs stays and reads right.
func TestRenameTxDecisionCacheBounded(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	const limit = 16
	a.SetDecisionPrune(limit)
	b.SetDecisionPrune(limit)
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	// An undecided rename of b's (stopped before its decision) leaves a
	// pending entry in d that a's cached d holds through every pruning.
	held := writeFile(t, b, s, "held", []byte("h"))
	b.SetRenameHook(func(step string) bool { return step != "decide" })
	if err := b.Rename(ctx, s, "held", d, "held2", 0); err == nil {
		t.Fatal("the stopped rename reported success")
	}
	for i := range 10 * limit {
		name := fmt.Sprintf("m%03d", i)
		writeFile(t, a, s, name, []byte("mail"))
		must(t, a.Rename(ctx, s, name, d, name, 0))
		if n := a.DecisionsCached(); n > 2*limit {
			t.Fatalf("after %d renames the host caches %d decisions", i+1, n)
		}
	}
	if got := len(names(t, a, d)); got != 10*limit {
		t.Fatalf("d lists %d names, want %d", got, 10*limit)
	}
	if x := lookup(t, a, s, "held"); x.Ino != held {
		t.Fatal("the undecided rename's old name is gone")
	}
	if _, err := a.Lookup(ctx, d, "held2"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("the undecided rename's new name: %v", err)
	}
}

// TestRenameTxWaitDoesNotHoldTheDirectory: a change that waits for
// another host's rename decision (here one that never comes: its host
// crashed) does not hold up this host's other changes of the directory:
// a create of another name commits while the first still waits. (Every
// change of the directory waited behind it, up to 10 s per attempt, for
// as long as the crashed host's expiry kept the name.)
func TestRenameTxWaitDoesNotHoldTheDirectory(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	writeFile(t, a, s, "f", []byte("moved"))
	a.SetRenameHook(func(step string) bool { return step != "decide" })
	if err := a.Rename(ctx, s, "f", d, "g", 0); err == nil {
		t.Fatal("the stopped rename reported success")
	}
	b := e.engine()
	names(t, b, d)
	var lookups atomic.Int64 // GETs of the decision
	e.store.SetHooks(memstore.Hooks{Before: func(op memstore.Op, key string) error {
		if op == memstore.OpGet && strings.HasPrefix(key, e.vol.Keys.DecisionsPrefix()) {
			lookups.Add(1)
		}
		return nil
	}})
	held := make(chan error, 1)
	go func() {
		_, _, err := b.Create(ctx, d, "g", 0o644, true, caller)
		held <- err
	}()
	// The create of g waits for the decision once it reads it a second
	// time (the first read is the directory commit's, to fold it).
	for lookups.Load() < 2 {
		runtime.Gosched()
	}
	if _, _, err := b.Create(ctx, d, "other", 0o644, true, caller); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-held:
		t.Fatalf("the create of another name waited for the held name's create (%v)", err)
	default:
	}
	wantErr(t, <-held, vfs.ErrBusy, "create of the held name")
	if _, err := b.Lookup(ctx, d, "other"); err != nil {
		t.Fatal(err)
	}
}

// TestRenameTxUnknownOutcomeFinished: the commit of a rename lands but
// its answer is lost and reading it back fails, so the caller is told
// the rename failed (the outcome is unknown). Once the store answers, the
// host finds its commit standing and finishes the rename as a known
// commit would: the directories are folded and what the new name
// replaced is released (a file's link count lowered, a directory
// tombstoned), so nothing is left an orphan.
func TestRenameTxUnknownOutcomeFinished(t *testing.T) {
	for _, c := range txCases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.engine()
			src, old, dst, nu, moved, target := c.setup(t, a)
			var answered atomic.Bool
			var lost atomic.Int64
			prefix := e.vol.Keys.DecisionsPrefix()
			e.store.SetHooks(memstore.Hooks{
				Before: func(op memstore.Op, key string) error {
					if op == memstore.OpGet && strings.HasPrefix(key, prefix) && !answered.Load() {
						return errInjected
					}
					return nil
				},
				After: func(op memstore.Op, key string) error {
					if op == memstore.OpPutIfAbsent && strings.HasPrefix(key, prefix) && lost.Add(1) == 1 {
						return errInjected
					}
					return nil
				},
			})
			if err := a.Rename(ctx, src, old, dst, nu, 0); err == nil {
				t.Fatal("a rename whose commit could not be confirmed reported success")
			}
			if lost.Load() == 0 {
				t.Fatal("the decision's answer was never lost")
			}
			answered.Store(true)
			a.WaitRenames()
			e.store.SetHooks(memstore.Hooks{})
			for _, fs := range []*vfs.FS{a, e.engine()} {
				if !onlyOne(t, fs, src, old, dst, nu, moved, target, "after the commit was found") {
					t.Fatal("the commit landed, but the old name is live")
				}
			}
			if target != 0 {
				if n := e.newest(target); n.Kind != format.KindTombstone {
					t.Fatalf("replaced inode %x: %v nlink %d, want a tombstone", target, n.Kind, n.Nlink)
				}
			}
			for _, d := range []uint64{src, dst} {
				for _, x := range e.newest(d).Entries {
					if x.Op.Pending() {
						t.Fatalf("directory %x keeps pending entry %+v", d, x)
					}
				}
			}
		})
	}
}
