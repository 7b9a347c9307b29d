package vfs_test

import (
	"slices"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// heldEnv is a volume whose root directory's commits are held (until the
// returned func is called) and a host on it that has listed the root.
func heldEnv(t *testing.T, mod ...func(*vfs.Options)) (*env, *vfs.FS, func()) {
	var gs *gateStore
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store { gs = &gateStore{Store: m}; return gs })
	fs := e.engine(mod...)
	names(t, fs, root)
	release := holdDir(t, e, gs, root)
	return e, fs, func() { <-gs.blocked; release() }
}

// An unlink of a name whose deferred create is undecided waits for the
// decision and removes the file.
func TestUnlinkWhileCreateUndecided(t *testing.T) {
	e, fs, release := heldEnv(t)
	id, h := createOpen(t, fs, root, "f", truncFlags)
	write(t, fs, h, []byte("data"), 0)
	done := make(chan error, 1)
	go func() { done <- fs.Unlink(ctx, root, "f") }()
	release()
	must(t, <-done)
	closeH(t, fs, h)
	if ns := names(t, e.engine(), root); len(ns) != 0 {
		t.Fatalf("names %q", ns)
	}
	if n := e.newest(id); n != nil && n.Kind.String() != "tombstone" {
		t.Logf("newest of unlinked file: %v", n.Kind)
	}
}

// A rename of a name whose deferred create is undecided waits for the
// decision and moves the file.
func TestRenameWhileCreateUndecided(t *testing.T) {
	e, fs, release := heldEnv(t)
	id, h := createOpen(t, fs, root, "tmp", truncFlags)
	write(t, fs, h, []byte("data"), 0)
	done := make(chan error, 1)
	go func() { done <- fs.Rename(ctx, root, "tmp", root, "final", 0) }()
	release()
	must(t, <-done)
	closeH(t, fs, h)
	o := e.engine()
	if a := lookup(t, o, root, "final"); a.Ino != id {
		t.Fatal("final")
	}
	if ns := names(t, o, root); !slices.Equal(ns, []string{"final"}) {
		t.Fatalf("names %q", ns)
	}
	sameBytes(t, readFile(t, o, id), []byte("data"), "final")
}

// A hard link to a file whose deferred create is undecided waits for the
// decision; both names then reach the file.
func TestLinkWhileCreateUndecided(t *testing.T) {
	e, fs, release := heldEnv(t)
	id, h := createOpen(t, fs, root, "f", truncFlags)
	write(t, fs, h, []byte("data"), 0)
	done := make(chan error, 1)
	go func() { _, err := fs.Link(ctx, id, root, "g"); done <- err }()
	release()
	must(t, <-done)
	closeH(t, fs, h)
	o := e.engine()
	if a := lookup(t, o, root, "g"); a.Ino != id || a.Nlink != 2 {
		t.Fatalf("g: %+v", a)
	}
	sameBytes(t, readFile(t, o, id), []byte("data"), "g")
}

// A truncation and a timer write-back of the file (its version 2 before
// the born put naming it) before the decision: the content is whole.
func TestTruncateAndTimerBeforeCreateDecided(t *testing.T) {
	e, fs, release := heldEnv(t, func(o *vfs.Options) { o.WritebackDelay = time.Millisecond })
	id, h := createOpen(t, fs, root, "f", truncFlags)
	write(t, fs, h, []byte("0123456789"), 0)
	waitFor(t, "timer write-back", func() bool { return len(e.versions(id)) > 0 })
	five := uint64(5)
	if _, err := fs.SetAttr(ctx, id, vfs.SetAttr{Size: &five}); err != nil {
		t.Fatal(err)
	}
	release()
	closeH(t, fs, h)
	o := e.engine()
	if a := lookup(t, o, root, "f"); a.Ino != id || a.Size != 5 {
		t.Fatalf("f: %+v", a)
	}
	sameBytes(t, readFile(t, o, id), []byte("01234"), "f")
}

// Lost into a file this host holds open with uncommitted writes of its
// own (opened by the name after the decision).
func TestLostCreateIntoFileHeldHere(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	b := e.engine()
	names(t, a, root)
	xid := writeFile(t, b, root, "f", []byte("bbbbbbbbbb"))
	_, ha := createOpen(t, a, root, "f", truncFlags)
	lookup(t, a, root, "f")
	h2 := open(t, a, xid, true) // another process of a: open("f", O_WRONLY) after the decision
	write(t, a, h2, []byte("ZZ"), 4)
	write(t, a, ha, []byte("x"), 0)
	closeH(t, a, ha)
	closeH(t, a, h2)
	// POSIX: trunc at a's first open, then ZZ at 4 and x at 0: "x\0\0\0ZZ"
	sameBytes(t, readFile(t, e.engine(), xid), []byte("x\x00\x00\x00ZZ"), "f")
}

// A deferred create in a clone commits to the clone and leaves the source
// as it was.
func TestDeferredCreateInClone(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	sourceTree(t, src)
	c, _ := e.cloneOf("c", "p1")
	fs := c.engine()
	d := lookup(t, fs, root, "d").Ino
	id, h := createOpen(t, fs, d, "new", truncFlags)
	write(t, fs, h, []byte("in clone"), 0)
	closeH(t, fs, h)
	if fs.DeferredCreates() != 1 {
		t.Fatalf("deferred %d", fs.DeferredCreates())
	}
	o := c.engine()
	if ns := names(t, o, d); !slices.Equal(ns, []string{"f", "g", "new"}) {
		t.Fatalf("clone names %q", ns)
	}
	sameBytes(t, readFile(t, o, id), []byte("in clone"), "new")
	if ns := names(t, e.engine(), d); !slices.Equal(ns, []string{"f", "g"}) {
		t.Fatalf("source names %q", ns)
	}
}
