package vfs_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// Born puts (FORMAT.md §5.4): a new empty file's version 1 lives in the
// directory entry that creates it. These tests follow such a file through
// every path that names it: other hosts, writes, renames within and
// across directories, links, unlink, and point-in-time views.

// bornEntry returns the entry name has in directory dir's newest stored
// version chain, as another host would read it.
func bornEntry(t *testing.T, e *env, dir uint64, name string) format.Entry {
	t.Helper()
	st := format.NewDirState()
	vs := e.versions(dir)
	n := e.version(dir, vs[0])
	for v := n.Base; v <= n.Version; v++ {
		if err := st.Apply(e.version(dir, v).Entries); err != nil {
			t.Fatal(err)
		}
	}
	ent, ok := st.Committed[name]
	if !ok {
		t.Fatalf("no entry %q in directory %016x", name, dir)
	}
	return ent
}

func TestBornFileSeenByOtherHosts(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	id, h := create(t, a, root, "f")
	if vs := e.versions(id); len(vs) != 0 {
		t.Fatalf("a new empty file has version objects %v; want none (its version 1 is its entry)", vs)
	}
	ent := bornEntry(t, e, root, "f")
	if ent.Born == nil || ent.Born.Mode != 0o644 || ent.Born.UID != caller.UID || ent.Born.GID != caller.GID {
		t.Fatalf("entry of a new file: %+v, birth %+v", ent, ent.Born)
	}
	// Another host finds it by name: an empty file with its attributes.
	got := lookup(t, b, root, "f")
	if got.Ino != id || got.Size != 0 || got.Mode&0o7777 != 0o644 || got.Nlink != 1 || got.UID != caller.UID {
		t.Fatalf("another host's lookup: %+v", got)
	}
	if data := readFile(t, b, id); len(data) != 0 {
		t.Fatalf("another host reads %d bytes of a new empty file", len(data))
	}
	hb := open(t, b, id, false) // held open across the first write
	// The first write commits version 2, which every host then reads.
	write(t, a, h, []byte("first"), 0)
	closeH(t, a, h)
	if vs := e.versions(id); len(vs) != 1 || vs[0] != 2 {
		t.Fatalf("after the first close: versions %v, want [2]", vs)
	}
	sameBytes(t, readFile(t, b, id), []byte("first"), "another host after the first close")
	// A handle opened on version 1 keeps reading it (close-to-open).
	var buf [8]byte
	if n, err := b.Read(ctx, hb, buf[:], 0); n != 0 || err != nil {
		t.Fatalf("a handle opened on version 1 reads %q (%v)", buf[:n], err)
	}
	must(t, b.Release(ctx, hb))
	// A third host, after the write, reads the data by name.
	c := e.engine()
	sameBytes(t, readFile(t, c, lookup(t, c, root, "f").Ino), []byte("first"), "a fresh host")
	// The two hosts writing the first version race for version 2 like
	// any other (W7): both writes to disjoint ranges survive.
	id2, h1 := create(t, a, root, "g")
	h2 := open(t, b, lookup(t, b, root, "g").Ino, true)
	write(t, a, h1, []byte("aa"), 0)
	write(t, b, h2, []byte("bb"), 2)
	var wg sync.WaitGroup
	for _, x := range []struct {
		fs *vfs.FS
		h  *vfs.Handle
	}{{a, h1}, {b, h2}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := x.fs.Release(ctx, x.h); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	sameBytes(t, readFile(t, c, lookup(t, c, root, "g").Ino), []byte("aabb"), "two hosts' first writes")
	if vs := e.versions(id2); len(vs) != 2 || vs[0] != 3 {
		t.Fatalf("two first writes: versions %v, want [3 2]", vs)
	}
}

func TestBornFileRenames(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	d := mkdir(t, a, root, "d")
	id := writeFile(t, a, root, "f", nil)
	// Within the directory the birth moves with the name: no object.
	must(t, a.Rename(ctx, root, "f", root, "g", 0))
	if vs := e.versions(id); len(vs) != 0 {
		t.Fatalf("rename within a directory wrote versions %v", vs)
	}
	if ent := bornEntry(t, e, root, "g"); ent.Born == nil || ent.Child != id {
		t.Fatalf("renamed entry lost its birth: %+v", ent)
	}
	if got := lookup(t, b, root, "g"); got.Ino != id || got.Size != 0 {
		t.Fatalf("another host after a rename within the directory: %+v", got)
	}
	// RENAME_EXCHANGE swaps births with names.
	id2 := writeFile(t, a, root, "h", nil)
	must(t, a.Rename(ctx, root, "g", root, "h", vfs.RenameExchange))
	if got := lookup(t, b, root, "h"); got.Ino != id {
		t.Fatalf("after exchange h is %016x, want %016x", got.Ino, id)
	}
	if got := lookup(t, b, root, "g"); got.Ino != id2 {
		t.Fatalf("after exchange g is %016x, want %016x", got.Ino, id2)
	}
	// Across directories the file gets version 2 first (a pending put
	// carries no birth), and every host finds it at its new name.
	must(t, a.Rename(ctx, root, "h", d, "moved", 0))
	if vs := e.versions(id); len(vs) != 1 || vs[0] != 2 {
		t.Fatalf("rename across directories: versions %v, want [2]", vs)
	}
	if n := e.version(id, 2); n.Size != 0 || n.Nlink != 1 || n.Mode != 0o644 {
		t.Fatalf("version 2 written by the rename: %+v", n)
	}
	if got := lookup(t, b, d, "moved"); got.Ino != id {
		t.Fatalf("another host after a rename across directories: %+v", got)
	}
	if _, err := b.Lookup(ctx, root, "h"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("old name after the move: %v", err)
	}
	// A fresh host, cold, too.
	c := e.engine()
	if got := lookup(t, c, d, "moved"); got.Ino != id || got.Size != 0 {
		t.Fatalf("a fresh host after the move: %+v", got)
	}
}

func TestBornFileLinkAndUnlink(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	id := writeFile(t, a, root, "f", nil)
	// link raises the link count in a version of the file's own first.
	if _, err := a.Link(ctx, id, root, "l"); err != nil {
		t.Fatal(err)
	}
	if vs := e.versions(id); len(vs) != 1 || vs[0] != 2 || e.version(id, 2).Nlink != 2 {
		t.Fatalf("after link: versions %v", vs)
	}
	if got := lookup(t, b, root, "l"); got.Ino != id || got.Nlink != 2 {
		t.Fatalf("another host's lookup of the link: %+v", got)
	}
	// unlink of a file never written tombstones it: every host loses it.
	id2 := writeFile(t, a, root, "g", nil)
	lookup(t, b, root, "g")
	must(t, a.Unlink(ctx, root, "g"))
	if n := e.newest(id2); n.Kind != format.KindTombstone || n.Version != 2 {
		t.Fatalf("unlinked new file: newest version %+v", n)
	}
	if _, err := b.Lookup(ctx, root, "g"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("another host's lookup after unlink: %v", err)
	}
}

// A point-in-time view between the create and the first write shows the
// empty file of the entry; one after the write shows the data.
func TestBornFileTimeTravel(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	e.store.SetClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	})
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	a := e.engine()
	before := now()
	id, h := create(t, a, root, "f")
	created := now()
	write(t, a, h, []byte("data"), 0)
	closeH(t, a, h)
	written := now()
	view := func(at time.Time) *vfs.FS {
		return e.engine(func(o *vfs.Options) { o.ReadOnly, o.AsOf = true, at })
	}
	if _, err := view(before).Lookup(ctx, root, "f"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("as of before the create: %v", err)
	}
	v := view(created)
	if got := lookup(t, v, root, "f"); got.Ino != id || got.Size != 0 {
		t.Fatalf("as of the create: %+v", got)
	}
	if data := readFile(t, v, id); len(data) != 0 {
		t.Fatalf("as of the create the file holds %q", data)
	}
	v = view(written)
	lookup(t, v, root, "f")
	sameBytes(t, readFile(t, v, id), []byte("data"), "as of the write")
}

// With Options.Version1Objects every new file gets a version 1 object and
// a plain put, which builds from before born puts read.
func TestVersion1Objects(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Version1Objects = true })
	id := writeFile(t, a, root, "f", nil)
	if vs := e.versions(id); len(vs) != 1 || vs[0] != 1 {
		t.Fatalf("versions %v, want [1]", vs)
	}
	if ent := bornEntry(t, e, root, "f"); ent.Born != nil {
		t.Fatalf("entry carries a birth: %+v", ent.Born)
	}
}

// A full version of a directory leaves out the births of files the
// writing host knows to have a version object of their own, and keeps
// the others: a file whose every object is lost then shows as damaged,
// not as an empty file, once its directory was compacted.
func TestBornDroppedAtCompaction(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	d := mkdir(t, a, root, "d")
	empty := writeFile(t, a, d, "empty", nil)
	written := map[uint64]bool{}
	for i := 0; i < format.MaxDeltaChain+5; i++ {
		written[writeFile(t, a, d, fmt.Sprintf("f%02d", i), []byte("data"))] = true
	}
	var full *format.Inode
	for _, v := range e.versions(d) {
		if n := e.version(d, v); n.IsFull() && n.Version > 1 {
			full = n
			break
		}
	}
	if full == nil {
		t.Fatalf("no full version among %d versions of the directory", len(e.versions(d)))
	}
	// The files written before the full version lose their births; the
	// one the full version itself creates (its last entry made) keeps it.
	kept, dropped, fresh := 0, 0, 0
	for _, ent := range full.Entries {
		switch {
		case ent.Child == empty && ent.Born == nil:
			t.Fatalf("the never-written file lost its birth in full version %d", full.Version)
		case ent.Child == empty:
			kept++
		case written[ent.Child] && ent.Born != nil:
			fresh++
		case written[ent.Child]:
			dropped++
		}
	}
	if kept != 1 || fresh > 1 || dropped < format.MaxDeltaChain-2 {
		t.Fatalf("full version %d: %d births of unwritten files kept, %d of written files kept, %d dropped", full.Version, kept, fresh, dropped)
	}
	// Every host still reads every file.
	b := e.engine()
	if got := lookup(t, b, d, "empty"); got.Size != 0 || got.Ino != empty {
		t.Fatalf("empty file on another host: %+v", got)
	}
	sameBytes(t, readFile(t, b, lookup(t, b, d, "f00").Ino), []byte("data"), "a written file on another host")
}

// A commit on a view of an inode older than the host expiry lists the
// inode first: a version key the reaper deleted meanwhile (superseded by
// a newer one this host has not seen) is never created again, which
// would bury this host's change under the newer version.
func TestCommitOnOldViewListsFirst(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine(func(o *vfs.Options) { o.SyncInterval = 100 * time.Millisecond; o.HostExpiry = 300 * time.Millisecond })
	id := writeFile(t, a, root, "f", []byte("aaaa"))
	hb := open(t, b, lookup(t, b, root, "f").Ino, true)
	time.Sleep(350 * time.Millisecond)
	// Meanwhile another host writes twice, and the reaper deletes the
	// first of those versions (here: by hand).
	ha := open(t, a, id, true)
	write(t, a, ha, []byte("A"), 0)
	must(t, a.Fsync(ctx, ha))
	write(t, a, ha, []byte("A"), 1)
	closeH(t, a, ha)
	vs := e.versions(id)
	if len(vs) < 3 {
		t.Fatalf("versions %v", vs)
	}
	deleted := vs[1] // the version after b's view, superseded
	if err := e.store.Delete(ctx, e.vol.Keys.Inode(id, deleted)); err != nil {
		t.Fatal(err)
	}
	write(t, b, hb, []byte("B"), 3)
	closeH(t, b, hb)
	c := e.engine()
	sameBytes(t, readFile(t, c, lookup(t, c, root, "f").Ino), []byte("AAaB"), "after b's commit on an old view")
	for _, v := range e.versions(id) {
		if v == deleted {
			t.Fatalf("version %d, deleted by the reaper, was created again", v)
		}
	}
}

// The kernel may name a never-written born file by its node id after the
// engine dropped its inode (a lookup racing the sweep of forgotten nodes):
// loaded again by id alone, it has no version; the birth kept at Forget
// still serves it.
func TestBornFileByIDAfterForget(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	id := writeFile(t, a, root, "f", nil)
	lookup(t, b, root, "f")
	b.Forget(id)
	got, err := b.GetAttr(ctx, id)
	if err != nil || got.Size != 0 || got.Nlink != 1 {
		t.Fatalf("getattr by id after forget: %+v, %v", got, err)
	}
	h := open(t, b, id, false)
	must(t, b.Release(ctx, h))
}
