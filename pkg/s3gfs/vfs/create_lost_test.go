package vfs_test

import (
	"context"
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

// A deferred create that lost is an open(O_TRUNC) of b's file at the
// decision, before b's write; b's write and close (acknowledged) come
// after, then a's write of 1 byte and close. As with a non-deferred
// O_TRUNC open of the same file: truncation, b's 8 bytes, a's byte at 0
// = "xBBBBBBB" (a close that copied a's whole file wiped b's bytes 1..7).
func TestLostCreateKeepsLaterAcknowledgedWrite(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	b := e.engine()
	names(t, a, root)
	xid, hb := create(t, b, root, "f")
	pid, ha := createOpen(t, a, root, "f", truncFlags)
	if pid == xid {
		t.Fatal("not deferred")
	}
	if got := lookup(t, a, root, "f"); got.Ino != xid { // decided: a's open is an open of xid
		t.Fatalf("a finds %x", got.Ino)
	}
	write(t, b, hb, []byte("BBBBBBBB"), 0)
	closeH(t, b, hb) // acknowledged
	write(t, a, ha, []byte("x"), 0)
	closeH(t, a, ha)
	sameBytes(t, readFile(t, e.engine(), xid), []byte("xBBBBBBB"), "after a's close")
}

// The same interleaving with a plain open + O_TRUNC (the kernel's setattr
// size 0) keeps b's bytes: what TestLostCreateKeepsLaterAcknowledgedWrite
// holds deferred creates to.
func TestPlainTruncOpenKeepsLaterWrite(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	xid, hb := create(t, b, root, "f")
	lookup(t, a, root, "f")
	ha := open(t, a, xid, true)
	zero := uint64(0)
	if _, err := a.SetAttr(ctx, xid, vfs.SetAttr{Size: &zero}); err != nil {
		t.Fatal(err)
	}
	write(t, b, hb, []byte("BBBBBBBB"), 0)
	closeH(t, b, hb)
	write(t, a, ha, []byte("x"), 0)
	closeH(t, a, ha)
	sameBytes(t, readFile(t, e.engine(), xid), []byte("xBBBBBBB"), "after a's close")
}

// The close of a lost create changes xid's size and content on a behind
// the kernel's back (not through the kernel's inode of xid): it must tell
// the kernel to drop what it cached of xid (attributes from a lookup made
// after the decision; pages).
func TestLostCreateInvalidatesOtherFile(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	rec := newRecorder(a)
	b := e.engine()
	names(t, a, root)
	xid := writeFile(t, b, root, "f", []byte("seventeen bytes b"))
	_, ha := createOpen(t, a, root, "f", truncFlags)
	if got := lookup(t, a, root, "f"); got.Ino != xid || got.Size != 0 { // the kernel caches this (the decision truncated it: O_TRUNC)
		t.Fatalf("lookup: %+v", got)
	}
	h0 := open(t, a, xid, false) // (cat f meanwhile: the kernel caches its pages)
	readAll(t, a, h0)
	must(t, a.Release(ctx, h0))
	rec.take(a)
	write(t, a, ha, []byte("by a"), 0)
	closeH(t, a, ha)
	inodes, _, all := rec.take(a)
	_, keep, err := a.Open(ctx, xid, false)
	must(t, err)
	if got := lookup(t, a, root, "f"); got.Size != 4 {
		t.Fatalf("engine size %d", got.Size)
	}
	if !slices.Contains(inodes, xid) && all == 0 {
		t.Errorf("xid went from 0 to 4 bytes on this host without an invalidation of it (keepCache on the next open: %v)", keep)
	}
}

// A create with O_TRUNC that is not deferred (no born puts here) and finds
// the name taken by another host opens that file and truncates it: the
// kernel, told the file was created, does not.
func TestNotDeferredTruncCreateTruncatesExisting(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour; o.Version1Objects = true })
	b := e.engine()
	names(t, a, root)
	xid := writeFile(t, b, root, "f", []byte("written by b, longer"))
	id, ha := createOpen(t, a, root, "f", syscall.O_CREAT|syscall.O_TRUNC|syscall.O_WRONLY)
	if id != xid {
		t.Fatalf("opened %x", id)
	}
	write(t, a, ha, []byte("by a"), 0)
	closeH(t, a, ha)
	sameBytes(t, readFile(t, e.engine(), xid), []byte("by a"), "O_TRUNC create of b's file")
}

// A create of a name this host sees opens that file, with the attributes
// the open revalidated, not those of the host's older view: here the view
// has the file empty while another host has since written it. Without
// O_TRUNC the open answers the written size; with it, the file is
// truncated (a truncation skipped on the view's size 0 left the other
// host's bytes behind this host's).
func TestCreateOfExistingAnswersRevalidatedFile(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	b := e.engine()
	xid := writeFile(t, a, root, "f", nil)
	hb := open(t, b, lookup(t, b, root, "f").Ino, true)
	write(t, b, hb, []byte("data"), 0)
	closeH(t, b, hb)
	if got := lookup(t, a, root, "f"); got.Size != 0 {
		t.Fatalf("a's view has %d bytes, the test needs it stale (0)", got.Size)
	}
	got, h, err := a.CreateOpen(ctx, root, "f", 0o644, syscall.O_CREAT|syscall.O_WRONLY, caller)
	must(t, err)
	if got.Ino != xid || got.Size != 4 {
		t.Fatalf("open(O_CREAT) of the existing file answered %+v, want inode %016x of 4 bytes", got, xid)
	}
	closeH(t, a, h)
	_, h = createOpen(t, a, root, "f", syscall.O_CREAT|syscall.O_TRUNC|syscall.O_WRONLY)
	write(t, a, h, []byte("x"), 0)
	closeH(t, a, h)
	sameBytes(t, readFile(t, e.engine(), xid), []byte("x"), "after a's O_TRUNC open and write")
}

// listGate blocks the first List under prefix until released.
type listGate struct {
	objstore.Store
	mu      sync.Mutex
	prefix  string
	blocked chan struct{}
	release chan struct{}
}

func (g *listGate) List(ctx context.Context, prefix, startAfter string, max int) (objstore.ListPage, error) {
	g.mu.Lock()
	hit := g.prefix != "" && prefix == g.prefix
	if hit {
		g.prefix = ""
	}
	g.mu.Unlock()
	if hit {
		close(g.blocked)
		<-g.release
	}
	return g.Store.List(ctx, prefix, startAfter, max)
}

// A deferred create finds the name taken by another host's file, which
// that host unlinks before this one opens it: the name is free again and
// this host's link wins. The decision retried on its view of the
// directory, which still named the deleted file, until it gave up (the
// close failed with ENOENT); and a link that won after such a pass went on
// as if it had lost, to the file found on that pass.
func TestDeferredCreateWhoseRivalIsUnlinkedWinsTheName(t *testing.T) {
	var g *listGate
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		g = &listGate{Store: m}
		return g
	})
	a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	b := e.engine()
	names(t, a, root) // a's view of the root: without "f"
	x := writeFile(t, b, root, "f", []byte("b's file"))
	g.mu.Lock()
	g.prefix, g.blocked, g.release = e.vol.Keys.InodeDir(x), make(chan struct{}), make(chan struct{})
	g.mu.Unlock()
	pid, h := createOpen(t, a, root, "f", truncFlags)
	select {
	case <-g.blocked: // a's decision found x under the name and is loading it
	case <-time.After(10 * time.Second):
		t.Fatal("a's create never looked at b's file (the test needs a's stale view)")
	}
	must(t, b.Unlink(ctx, root, "f"))
	close(g.release)
	write(t, a, h, []byte("a's bytes"), 0)
	if err := a.Flush(ctx, h); err != nil {
		t.Fatalf("close: %v (a's file %016x, b's %016x)\n%s", err, pid, x, e.log.String())
	}
	must(t, a.Release(ctx, h))
	c := e.engine()
	got := lookup(t, c, root, "f")
	if got.Ino != pid {
		t.Fatalf("the name holds %016x, want a's file %016x", got.Ino, pid)
	}
	sameBytes(t, readFile(t, c, pid), []byte("a's bytes"), "a's file after its close")
	// The torture test attributes a create's bytes by this line: a create
	// that won the name must not say it lost it.
	if strings.Contains(e.log.String(), "create found the name taken") {
		t.Errorf("a's log says its create lost the name it won:\n%s", e.log.String())
	}
}
