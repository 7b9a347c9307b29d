package vfs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// renameRace sets up hosts (engines) and directories src, dst0, dst1...
// (one per host) for racing moves.
func renameRace(t *testing.T) (e *env, fss []*vfs.FS, src uint64, dsts []uint64) {
	e = newEnv(t)
	const hosts = 3
	for i := 0; i < hosts; i++ {
		fss = append(fss, e.engine())
	}
	src = mkdir(t, fss[0], root, "src")
	for i := 0; i < hosts; i++ {
		dsts = append(dsts, mkdir(t, fss[0], root, fmt.Sprintf("dst%d", i)))
	}
	return e, fss, src, dsts
}

// moveAtOnce has host i move name from src to dsts[i], all at once.
func moveAtOnce(fss []*vfs.FS, src uint64, name string, dsts []uint64) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(fss))
	for i, fs := range fss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fs.Rename(context.Background(), src, name, dsts[i], name, 0)
		}()
	}
	wg.Wait()
	return errs
}

// TestRacingCrossDirectoryRenamesKeepLinkCount: hosts race to move one
// file out of one directory into others (rule W6). Exactly one move wins
// each round, the file ends with exactly one name, and its link count,
// raised by each move for its transient name, comes back to 1.
func TestRacingCrossDirectoryRenamesKeepLinkCount(t *testing.T) {
	e, fss, src, dsts := renameRace(t)
	for round := 0; round < 20; round++ {
		name := fmt.Sprintf("f%d", round)
		id := writeFile(t, fss[0], src, name, []byte("content"))
		for _, fs := range fss {
			lookup(t, fs, src, name) // every host sees the source before the race
		}
		errs := moveAtOnce(fss, src, name, dsts)
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, vfs.ErrNotExist):
				t.Fatalf("round %d: host %d: %v", round, i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d moves succeeded, want exactly 1 (%v)", round, won, errs)
		}
		n := e.newest(id)
		if n.Kind != format.KindFile || n.Nlink != 1 {
			t.Fatalf("round %d: file after the race: kind %v nlink %d, want a file with nlink 1", round, n.Kind, n.Nlink)
		}
		fresh := e.engine()
		found := 0
		for _, d := range append([]uint64{src}, dsts...) {
			if a, err := fresh.Lookup(context.Background(), d, name); err == nil && a.Ino == id {
				found++
			}
		}
		if found != 1 {
			t.Fatalf("round %d: the file has %d names, want 1", round, found)
		}
	}
}

// TestRacingCrossDirectoryRenamesUnderFaults: the same race with store
// requests failing before or after they take effect (a response lost in
// transit). Renames may fail, but the file's link count always equals
// the number of names it has, and it never loses its last name.
func TestRacingCrossDirectoryRenamesUnderFaults(t *testing.T) {
	e, fss, src, dsts := renameRace(t)
	r := rand.New(rand.NewPCG(7, 7))
	var rmu sync.Mutex
	fault := func(memstore.Op, string) error {
		rmu.Lock()
		defer rmu.Unlock()
		if r.IntN(100) < 4 {
			return objstore.ErrUnavailable
		}
		return nil
	}
	for round := 0; round < 40; round++ {
		name := fmt.Sprintf("f%d", round)
		id := writeFile(t, fss[0], src, name, []byte("content"))
		for _, fs := range fss {
			lookup(t, fs, src, name)
		}
		e.store.SetHooks(memstore.Hooks{Before: fault, After: fault})
		errs := moveAtOnce(fss, src, name, dsts)
		e.store.SetHooks(memstore.Hooks{})
		n := e.newest(id)
		fresh := e.engine()
		found := 0
		for _, d := range append([]uint64{src}, dsts...) {
			if a, err := fresh.Lookup(context.Background(), d, name); err == nil && a.Ino == id {
				found++
			}
		}
		if found == 0 || n.Kind != format.KindFile || int(n.Nlink) != found {
			t.Fatalf("round %d: the file has %d names; its newest version is kind %v with nlink %d (renames: %v)", round, found, n.Kind, n.Nlink, errs)
		}
	}
}

// TestRacingRenamesOntoOneName: four hosts rename four files onto one
// name at once, two across directories and two within, with store
// requests failing before or after they take effect. Whatever succeeds or
// fails, every file's link count equals the number of names it has, and a
// file with none is deleted. (Found this way: a cross-directory rename
// whose removal of the old name failed skipped dropping the link of the
// file its new name had replaced, leaving an orphan.)
func TestRacingRenamesOntoOneName(t *testing.T) {
	e := newEnv(t)
	var fss []*vfs.FS
	for i := 0; i < 4; i++ {
		fss = append(fss, e.engine())
	}
	a, b := mkdir(t, fss[0], root, "a"), mkdir(t, fss[0], root, "b")
	r := rand.New(rand.NewPCG(9, 9))
	var rmu sync.Mutex
	fault := func(memstore.Op, string) error {
		rmu.Lock()
		defer rmu.Unlock()
		if r.IntN(100) < 3 {
			return objstore.ErrUnavailable
		}
		return nil
	}
	for round := 0; round < 60; round++ {
		type src struct {
			dir  uint64
			name string
		}
		srcs := []src{{b, fmt.Sprintf("s%d", round)}, {a, fmt.Sprintf("t%d", round)}, {b, fmt.Sprintf("u%d", round)}, {a, fmt.Sprintf("v%d", round)}}
		var ids []uint64
		for i, s := range srcs {
			ids = append(ids, writeFile(t, fss[0], s.dir, s.name, []byte(s.name)))
			lookup(t, fss[i], s.dir, s.name)
		}
		target := fmt.Sprintf("x%d", round)
		e.store.SetHooks(memstore.Hooks{Before: fault, After: fault})
		var wg sync.WaitGroup
		for i, fs := range fss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fs.Rename(context.Background(), srcs[i].dir, srcs[i].name, a, target, 0)
			}()
		}
		wg.Wait()
		e.store.SetHooks(memstore.Hooks{})
		fresh := e.engine()
		names := map[uint64]int{}
		for _, d := range []uint64{a, b} {
			es, err := fresh.ReadDir(context.Background(), d)
			must(t, err)
			for _, en := range es {
				names[en.Ino]++
			}
		}
		for _, id := range ids {
			n := e.newest(id)
			switch {
			case n.Kind == format.KindTombstone && names[id] != 0:
				t.Fatalf("round %d: %016x deleted but has %d names", round, id, names[id])
			case n.Kind != format.KindTombstone && int(n.Nlink) != names[id]:
				t.Fatalf("round %d: %016x has %d names but link count %d", round, id, names[id], n.Nlink)
			}
		}
	}
}

// TestRacingMovesOfOneFileOntoOneName: hosts move one file onto one name
// at once (and another moves it elsewhere). A move whose new name was
// already put by another host's move of the same file must neither take
// that name back nor remove the old name under it: the file keeps at
// least one name, and its link count equals its number of names. (The
// second move's put found the name in place and did nothing; the move
// then went on as if the name were its own, leaving a file with one name
// and link count 2, or with no name.)
func TestRacingMovesOfOneFileOntoOneName(t *testing.T) {
	e := newEnv(t)
	var fss []*vfs.FS
	for i := 0; i < 4; i++ {
		fss = append(fss, e.engine())
	}
	src, dst, other := mkdir(t, fss[0], root, "src"), mkdir(t, fss[0], root, "dst"), mkdir(t, fss[0], root, "other")
	// Random latency on every request, so that the moves interleave.
	r := rand.New(rand.NewPCG(11, 11))
	var rmu sync.Mutex
	delay := func(memstore.Op, string) error {
		rmu.Lock()
		d := time.Duration(r.IntN(1000)) * time.Microsecond
		rmu.Unlock()
		time.Sleep(d)
		return nil
	}
	for round := 0; round < 60; round++ {
		name := fmt.Sprintf("f%d", round)
		id := writeFile(t, fss[0], src, name, []byte("content"))
		for _, fs := range fss {
			lookup(t, fs, src, name)
		}
		e.store.SetHooks(memstore.Hooks{Before: delay})
		var wg sync.WaitGroup
		errs := make([]error, len(fss))
		for i, fs := range fss {
			to := dst
			if i == len(fss)-1 {
				to = other
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = fs.Rename(context.Background(), src, name, to, name, 0)
			}()
		}
		wg.Wait()
		e.store.SetHooks(memstore.Hooks{})
		for i, err := range errs {
			if err != nil && !errors.Is(err, vfs.ErrNotExist) {
				t.Fatalf("round %d: host %d: %v", round, i, err)
			}
		}
		fresh := e.engine()
		found := 0
		for _, d := range []uint64{src, dst, other} {
			if a, err := fresh.Lookup(context.Background(), d, name); err == nil && a.Ino == id {
				found++
			}
		}
		n := e.newest(id)
		if found == 0 || n.Kind != format.KindFile || int(n.Nlink) != found {
			t.Fatalf("round %d: the file has %d names; its newest version is kind %v with nlink %d (renames: %v)", round, found, n.Kind, n.Nlink, errs)
		}
	}
}
