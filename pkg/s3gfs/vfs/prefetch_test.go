package vfs_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
)

// listCounter counts LIST requests.
type listCounter struct {
	objstore.Store
	lists atomic.Int64
}

func (s *listCounter) List(ctx context.Context, prefix, startAfter string, max int) (objstore.ListPage, error) {
	s.lists.Add(1)
	return s.Store.List(ctx, prefix, startAfter, max)
}

// A cold listing of a big directory finds its children's newest versions
// with a few LISTs of the inode key space, not one LIST per child; the
// children then read right, and an open still sees what another host
// committed after the listing (a hint serves only a first load).
func TestColdListingListsInodesTogether(t *testing.T) {
	var lc *listCounter
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		lc = &listCounter{Store: m}
		return lc
	})
	a := e.engine()
	d := mkdir(t, a, root, "d")
	const n = 200
	ids := map[string]uint64{}
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		ids[name] = writeFile(t, a, d, name, []byte(name))
	}
	b := e.engine()
	lc.lists.Store(0)
	es, err := b.ReadDir(ctx, d)
	must(t, err)
	if len(es) != n {
		t.Fatalf("listed %d entries, want %d", len(es), n)
	}
	for deadline := time.Now().Add(30 * time.Second); b.Prefetching(d); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the listing's prefetch never ended")
		}
	}
	if got := lc.lists.Load(); got > n/4 {
		t.Errorf("a cold listing of %d entries sent %d LISTs", n, got)
	}
	for _, en := range es {
		at := lookup(t, b, d, en.Name)
		if at.Ino != ids[en.Name] || at.Size != uint64(len(en.Name)) {
			t.Fatalf("%s: %+v", en.Name, at)
		}
	}
	// A's change after B's listing: B's open reads it.
	f := ids["f007"]
	h := open(t, a, f, true)
	write(t, a, h, []byte("changed"), 0)
	closeH(t, a, h)
	if got := readFile(t, b, f); string(got) != "changed" {
		t.Fatalf("open after another host's close reads %q", got)
	}
}

// A listing's hint of a child's newest version is not used once another
// host has announced a newer one (its ping, read by this host's sync):
// the child's first load lists it afresh.
func TestHintNotUsedAfterAnnouncedChange(t *testing.T) {
	e := newEnv(t)
	a := e.engine(syncEvery(time.Hour, 3*time.Hour))
	b := e.engine(syncEvery(time.Hour, 3*time.Hour))
	id := writeFile(t, a, root, "f", []byte("one"))
	old := e.newest(id)
	key := e.vol.Keys.Inode(id, old.Version)
	info, err := e.store.Head(ctx, key)
	must(t, err)
	b.SetHint(id, info) // b listed f's newest version: "one"
	h := open(t, a, id, true)
	write(t, a, h, []byte("three"), 0)
	closeH(t, a, h)
	must(t, a.Sync(ctx)) // a's ping announces the change
	must(t, b.Sync(ctx)) // b reads it
	if got, err := b.GetAttr(ctx, id); err != nil || got.Size != 5 {
		t.Fatalf("first load after an announced change: %+v, %v", got, err)
	}
}
