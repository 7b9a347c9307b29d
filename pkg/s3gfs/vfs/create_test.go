package vfs_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

const truncFlags = syscall.O_CREAT | syscall.O_TRUNC | syscall.O_WRONLY

// createOpen is open(name, flags) with O_CREAT through CreateOpen.
func createOpen(t testing.TB, fs *vfs.FS, parent uint64, name string, flags int) (uint64, *vfs.Handle) {
	t.Helper()
	a, h, err := fs.CreateOpen(ctx, parent, name, 0o644, flags, caller)
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return a.Ino, h
}

// holdDir holds the commits of directory dir until the returned func is
// called (also at the end of the test, so a failing test does not leave
// the engine's Close waiting for them).
func holdDir(t testing.TB, e *env, gs *gateStore, dir uint64) func() {
	gs.hold(e.vol.Keys.InodeDir(dir))
	var once sync.Once
	release := func() { once.Do(func() { close(gs.gate) }) }
	t.Cleanup(release)
	return release
}

// waitFor polls cond for up to 10 s; what says what was awaited.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// An O_TRUNC create returns before its directory commit, and the close
// sends the file's content while that commit is still in flight: one
// round trip for a small file, not two. Close returns once both are in.
func TestDeferredCreateOverlapsCommits(t *testing.T) {
	var gs *gateStore
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		gs = &gateStore{Store: m}
		return gs
	})
	fs := e.engine()
	names(t, fs, root) // load the root before holding its commits
	release := holdDir(t, e, gs, root)
	type created struct {
		id  uint64
		h   *vfs.Handle
		err error
	}
	done := make(chan created, 1)
	go func() {
		a, h, err := fs.CreateOpen(ctx, root, "f", 0o644, truncFlags, caller)
		done <- created{a.Ino, h, err}
	}()
	var c created
	select {
	case c = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the create waited for its directory commit")
	}
	must(t, c.err)
	if got := fs.DeferredCreates(); got != 1 {
		t.Fatalf("%d deferred creates, want 1", got)
	}
	<-gs.blocked // the directory change is on its way, and held
	write(t, fs, c.h, []byte("hello"), 0)
	flushed := make(chan error, 1)
	go func() { flushed <- fs.Flush(ctx, c.h) }()
	waitFor(t, "version 2 of the file while its name is being committed", func() bool {
		return slices.Contains(e.versions(c.id), 2)
	})
	select {
	case err := <-flushed:
		t.Fatalf("close returned (%v) before the name was committed", err)
	default:
	}
	release()
	must(t, <-flushed)
	must(t, fs.Release(ctx, c.h))
	other := e.engine()
	if a := lookup(t, other, root, "f"); a.Ino != c.id || a.Size != 5 {
		t.Fatalf("other host finds inode %016x of %d bytes, want %016x of 5", a.Ino, a.Size, c.id)
	}
	sameBytes(t, readFile(t, other, c.id), []byte("hello"), "content on another host")
}

// Creates that must be decided when they return are not deferred: O_EXCL,
// O_APPEND, no O_TRUNC, and a name this host sees (an open of that file).
func TestCreatesNotDeferred(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	id := writeFile(t, fs, root, "exists", []byte("old content"))
	for _, flags := range []int{
		syscall.O_CREAT | syscall.O_EXCL | syscall.O_WRONLY,
		syscall.O_CREAT | syscall.O_TRUNC | syscall.O_APPEND | syscall.O_WRONLY,
		syscall.O_CREAT | syscall.O_WRONLY,
	} {
		_, h := createOpen(t, fs, root, "new", flags)
		closeH(t, fs, h)
		must(t, fs.Unlink(ctx, root, "new"))
	}
	got, h := createOpen(t, fs, root, "exists", truncFlags)
	closeH(t, fs, h)
	if got != id {
		t.Fatalf("create of an existing name opened %016x, want %016x", got, id)
	}
	if n := fs.DeferredCreates(); n != 0 {
		t.Fatalf("%d creates deferred, want none", n)
	}
}

// Another host created the name first, unseen by this host: the deferred
// create becomes an open of that file with O_TRUNC (at the decision), and
// its close writes this host's bytes into that file (same inode, so the
// other host's open descriptor still refers to the file of that name);
// this host then finds that file under the name.
func TestDeferredCreateLosesToOtherHost(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	b := e.engine()
	names(t, a, root) // a's view of the root: without "f"
	xid, hb := create(t, b, root, "f")
	write(t, b, hb, []byte("written by b, longer than a's"), 0)
	must(t, b.Flush(ctx, hb))

	pid, ha := createOpen(t, a, root, "f", truncFlags)
	if pid == xid {
		t.Fatal("a's create did not make a file of its own (the test needs a's stale view)")
	}
	write(t, a, ha, []byte("by a"), 0)
	closeH(t, a, ha)
	if got := lookup(t, a, root, "f"); got.Ino != xid {
		t.Fatalf("a finds %016x under the name, want b's file %016x", got.Ino, xid)
	}
	// The torture test attributes the descriptor's writes by this line.
	if want := fmt.Sprintf("created=%016x inode=%016x", pid, xid); !strings.Contains(e.log.String(), want) {
		t.Fatalf("a's log does not say which file its create wrote into (%s):\n%s", want, e.log.String())
	}
	c := e.engine()
	sameBytes(t, readFile(t, c, xid), []byte("by a"), "b's file after a's create and close")
	if ns := names(t, c, root); !slices.Equal(ns, []string{"f"}) {
		t.Fatalf("root lists %q, want [f]", ns)
	}
	// b's descriptor still names the file: what b writes through it now
	// lands in the file of that name, on top of a's content.
	write(t, b, hb, []byte("B"), 0)
	closeH(t, b, hb)
	sameBytes(t, readFile(t, e.engine(), xid), []byte("By a"), "after b's later write")
}

// When the name turned out to be a directory, the open would have failed
// with EISDIR: the close says so, and the directory is untouched.
func TestDeferredCreateOfNameMadeDirectory(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	b := e.engine()
	names(t, a, root)
	d := mkdir(t, b, root, "d")
	_, h := createOpen(t, a, root, "d", truncFlags)
	write(t, a, h, []byte("lost race"), 0)
	wantErr(t, a.Flush(ctx, h), vfs.ErrIsDir, "close of a create whose name is a directory")
	wantErr(t, a.Fsync(ctx, h), vfs.ErrIsDir, "fsync of it")
	a.Release(ctx, h)
	if got := lookup(t, a, root, "d"); got.Ino != d || !got.IsDir() {
		t.Fatalf("a finds %+v under the name, want directory %016x", got, d)
	}
}

// While a deferred create is undecided, this host's listing of the
// directory and lookup of the name wait for it: the name is the creating
// host's alone until then, and must not be missing or doubled.
func TestDeferredCreateListingWaits(t *testing.T) {
	var gs *gateStore
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		gs = &gateStore{Store: m}
		return gs
	})
	// (No revalidation: a listing that re-read the directory would wait
	// for its commit in flight anyway.)
	fs := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	names(t, fs, root)
	release := holdDir(t, e, gs, root)
	id, h := createOpen(t, fs, root, "f", truncFlags)
	<-gs.blocked
	listed := make(chan []string, 1)
	go func() {
		es, err := fs.ReadDir(ctx, root)
		if err != nil {
			t.Error(err)
		}
		var ns []string
		for _, e := range es {
			ns = append(ns, e.Name)
		}
		listed <- ns
	}()
	found := make(chan error, 1)
	go func() {
		a, err := fs.Lookup(ctx, root, "f")
		if err == nil && a.Ino != id {
			err = errors.New("found another inode")
		}
		found <- err
	}()
	time.Sleep(20 * time.Millisecond) // (lets a listing that does not wait return early and fail)
	release()
	if ns := <-listed; !slices.Equal(ns, []string{"f"}) {
		t.Fatalf("listing during the create: %q, want [f]", ns)
	}
	must(t, <-found)
	closeH(t, fs, h)
	must(t, fs.Unlink(ctx, root, "f"))
	if ns := names(t, e.engine(), root); len(ns) != 0 {
		t.Fatalf("root lists %q after the unlink", ns)
	}
}

// Unmounting waits for a deferred create's decision, which a close would
// have waited for (a descriptor left open, or a close that failed): the
// engine sends nothing once Close has returned, and the name is there.
func TestCloseWaitsForDeferredCreate(t *testing.T) {
	var gs *gateStore
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		gs = &gateStore{Store: m}
		return gs
	})
	fs := e.engine()
	names(t, fs, root)
	release := holdDir(t, e, gs, root)
	id, h := createOpen(t, fs, root, "f", truncFlags)
	write(t, fs, h, []byte("data"), 0)
	<-gs.blocked
	closed := make(chan error, 1)
	go func() { closed <- fs.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a create was undecided", err)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	must(t, <-closed)
	other := e.engine()
	if a := lookup(t, other, root, "f"); a.Ino != id {
		t.Fatalf("name names %016x, want %016x", a.Ino, id)
	}
	sameBytes(t, readFile(t, other, id), []byte("data"), "content")
}
