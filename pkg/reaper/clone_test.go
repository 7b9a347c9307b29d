package reaper_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Clones and the reaper (FORMAT.md §16.5): the source's reaper keeps
// everything the clone can reach through the pin (C1); the clone's reaper
// deletes its own superseded versions and unreferenced extents, keeps every
// newest version (tombstones hide source inodes), and never touches or
// counts the source's objects (C2).

// cloneOf pins e's volume (pin) and formats a clone of it at prefix, on
// the same store and clock.
func (e *tenv) cloneOf(prefix, pin string) (*tenv, snapshot.Pin) {
	e.t.Helper()
	p, err := snapshot.Create(ctx, e.store, e.vol.Keys, pin)
	if err != nil {
		e.t.Fatal(err)
	}
	e.advance(2 * time.Second) // past the pin's second
	u := volume.URL{Bucket: e.url.Bucket, Prefix: prefix}
	vol, err := volume.FormatClone(ctx, e.store, u, e.vol, pin, p.Time, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return &tenv{t: e.t, store: e.store, url: u, vol: vol, now: e.now}, p
}

// writeAt writes data at off of path and commits it.
func writeAt(t *testing.T, fs *vfs.FS, path string, data []byte, off int64) {
	t.Helper()
	id, err := lookup(fs, path)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := fs.Open(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Write(ctx, h, data, off); err != nil {
		t.Fatal(err)
	}
	if err := fs.Flush(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := fs.Release(ctx, h); err != nil {
		t.Fatal(err)
	}
}

func unlink(t *testing.T, fs *vfs.FS, path string) {
	t.Helper()
	dir, name := splitPath(path)
	parent, err := lookup(fs, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Unlink(ctx, parent, name); err != nil {
		t.Fatalf("unlink %s: %v", path, err)
	}
}

func TestReaperWithClone(t *testing.T) {
	e := newTEnv(t)
	src := e.host()
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*extSize/16+7)
	put(t, src, "d/f", big)
	put(t, src, "d/g", []byte("gee"))
	put(t, src, "keep", []byte("kept"))
	put(t, src, "d/gone-later", bytes.Repeat([]byte{7}, extSize+1))
	e.advance(time.Second)
	c, _ := e.cloneOf("c", "csi-clone-c")
	cl := c.host()

	// The clone: copy-up of f (extent 1), several superseded versions,
	// a tombstone over a source inode, and an inode of its own deleted.
	want := append([]byte(nil), big...)
	for i := range 3 {
		e.advance(time.Second)
		s := []byte(fmt.Sprintf("CLONE-%d", i))
		writeAt(t, cl, "d/f", s, extSize+int64(i))
		copy(want[extSize+i:], s)
	}
	unlink(t, cl, "d/g")
	put(t, cl, "own", bytes.Repeat([]byte{1}, extSize+5))
	unlink(t, cl, "own")
	put(t, cl, "mine", []byte("mine"))
	// The source: f rewritten whole, twice; gone-later and keep deleted.
	for i := range 2 {
		e.advance(time.Second)
		put(t, src, "d/f", bytes.Repeat([]byte{byte('A' + i)}, 2*extSize))
	}
	unlink(t, src, "d/gone-later")
	unlink(t, src, "keep")

	cloneTree := map[string]string{"/d": "<dir>", "/d/f": string(want), "/d/gone-later": string(bytes.Repeat([]byte{7}, extSize+1)), "/keep": "kept", "/mine": "mine"}
	srcTree := map[string]string{"/d": "<dir>", "/d/f": string(bytes.Repeat([]byte{'B'}, 2*extSize)), "/d/g": "gee"}
	check := func(when string) {
		t.Helper()
		got, err := tree(c.host())
		if err != nil || !reflect.DeepEqual(got, cloneTree) {
			t.Fatalf("%s: the clone holds %v (%v), want %v", when, keysOf(got), err, keysOf(cloneTree))
		}
		got, err = tree(e.host())
		if err != nil || !reflect.DeepEqual(got, srcTree) {
			t.Fatalf("%s: the source holds %v (%v), want %v", when, keysOf(got), err, keysOf(srcTree))
		}
	}
	check("before gc")

	// An extent object in the clone whose eid equals a source extent the
	// clone names (origin 1): no reference names it in the clone.
	fid, err := lookup(c.host(), "d/f")
	if err != nil {
		t.Fatal(err)
	}
	var srcEID uint64
	for _, x := range c.newestOf(fid).Extents {
		if x.Origin == 1 {
			srcEID = x.EID
		}
	}
	decoy := c.vol.Keys.Extent(fid, srcEID)
	if _, err := e.store.PutIfAbsent(ctx, decoy, format.EncodeExtent([]byte("decoy"))); err != nil {
		t.Fatal(err)
	}

	e.advance(2 * time.Hour)
	srcBefore := e.count("i/") + e.count("d/")
	rs := e.gc(cfg(0, time.Minute))
	rc := c.gc(cfg(0, time.Minute))
	if rs.Planned[reaperKindVersion()] == 0 {
		t.Errorf("the source's pass deleted no superseded version")
	}
	check("after gc of both")
	e.fsck()
	c.fsck()

	// C2: the clone's superseded versions of f went, its tombstones stayed
	// (the one over the source's g, and the one of its own inode), and the
	// decoy extent went, while the source's extent of that eid stayed.
	if n := len(c.keysUnder(c.vol.Keys.InodeDir(fid))); n != 1 {
		t.Errorf("the clone keeps %d versions of f, want 1 (its newest)", n)
	}
	if got := c.store.Keys(); contains(got, decoy) {
		t.Errorf("the clone's reaper kept an extent only its source's references name")
	}
	if !contains(e.store.Keys(), e.vol.Keys.Extent(fid, srcEID)) {
		t.Fatalf("the source's extent named by the clone is gone")
	}
	if rc.Planned["tombstone"] != 0 || rc.Planned["orphan"] != 0 {
		t.Errorf("the clone's reaper planned to delete deleted inodes or orphans: %v", rc.Planned)
	}
	gid, _ := lookup(e.host(), "d/g")
	if vs := c.keysUnder(c.vol.Keys.InodeDir(gid)); len(vs) != 1 {
		t.Fatalf("the clone's tombstone over the source's g: %v", vs)
	}

	// With the pin gone (the clone deleted), the source's pass frees what
	// only the pin kept: the test above could fail.
	if err := snapshot.Delete(ctx, e.store, e.vol.Keys, "csi-clone-c"); err != nil {
		t.Fatal(err)
	}
	e.advance(time.Hour)
	e.gc(cfg(0, time.Minute))
	if after := e.count("i/") + e.count("d/"); after >= srcBefore || contains(e.store.Keys(), e.vol.Keys.Extent(fid, srcEID)) {
		t.Errorf("without the pin the source still keeps the clone's extents (%d objects, %d before)", after, srcBefore)
	}
	if _, err := volume.Open(ctx, c.store, c.url, false); !errors.Is(err, volume.ErrBadChain) {
		t.Errorf("a clone whose pin is gone opens: %v", err)
	}
}

func reaperKindVersion() string { return "version" }

func keysOf(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s(%d)", k, len(v)))
	}
	return out
}

func contains(ks []string, k string) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func (e *tenv) keysUnder(prefix string) []string {
	var out []string
	for _, k := range e.store.Keys() {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out = append(out, k)
		}
	}
	return out
}

// newestOf decodes the newest version of id in e's own prefix.
func (e *tenv) newestOf(id uint64) *format.Inode {
	e.t.Helper()
	ks := e.keysUnder(e.vol.Keys.InodeDir(id))
	if len(ks) == 0 {
		e.t.Fatalf("inode %016x has no version of its own", id)
	}
	obj, _, err := e.store.Get(ctx, ks[0])
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := format.DecodeInode(obj, e.vol.Header.ExtentSize)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// fsck of a clone walks through to its source (C4): an entry whose inode
// the source lost (as if its reaper had ignored the pin) is damage, and so
// is a missing source extent the clone names.
func TestCheckCloneFallsThrough(t *testing.T) {
	e := newTEnv(t)
	// Version 1 objects: an entry that carries its file's version 1 (a
	// born put) still shows that file when every object of it is lost,
	// which fsck cannot tell from a file never written (FORMAT.md §15.8).
	src := e.host(withVersion1Objects)
	put(t, src, "d/x", []byte("xx"))
	put(t, src, "d/big", bytes.Repeat([]byte{3}, 2*extSize))
	e.advance(time.Second)
	c, _ := e.cloneOf("c", "csi-clone-c")
	cl := c.host()
	writeAt(t, cl, "d/big", []byte("C"), 0) // names the source's extent 1
	r := c.fsck()
	if len(r.Orphans) != 0 {
		t.Fatalf("a healthy clone has orphans: %v", r.Orphans)
	}
	xid, err := lookup(e.host(), "d/x")
	if err != nil {
		t.Fatal(err)
	}
	bid, _ := lookup(e.host(), "d/big")
	var lost []string
	lost = append(lost, e.keysUnder(e.vol.Keys.InodeDir(xid))...)
	for _, x := range c.newestOf(bid).Extents {
		if x.Origin == 1 {
			lost = append(lost, e.vol.Keys.Extent(bid, x.EID))
		}
	}
	if err := e.store.DeleteMany(ctx, lost); err != nil {
		t.Fatal(err)
	}
	vol, err := volume.Open(ctx, c.store, c.url, false)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := reaper.Check(ctx, vol, reaper.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	joined := fmt.Sprint(r2.Damage)
	if !strings.Contains(joined, fmt.Sprintf("names inode %016x, which has no version", xid)) || !strings.Contains(joined, "of its source") {
		t.Fatalf("fsck of a clone whose source lost objects: %q", r2.Damage)
	}
}

// Resolve and Versions (s3gfs versions) see through a clone.
func TestVersionsThroughClone(t *testing.T) {
	e := newTEnv(t)
	src := e.host()
	put(t, src, "d/f", []byte("1"))
	e.advance(time.Second)
	put(t, src, "d/f", []byte("22"))
	e.advance(time.Second)
	c, _ := e.cloneOf("c", "p")
	put(t, src, "d/f", []byte("333")) // after the pin: not the clone's
	id, err := reaper.Resolve(ctx, c.vol, "/d/f")
	if err != nil {
		t.Fatalf("resolve an unchanged path of a clone: %v", err)
	}
	levels := func() (out []string) {
		vs, err := reaper.Versions(ctx, c.vol, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			out = append(out, fmt.Sprintf("v%d@%d:%d", v.Version, v.Level, v.Size))
		}
		return out
	}
	before := levels()
	if len(before) < 2 || !strings.HasSuffix(before[0], "@1:2") || strings.Contains(fmt.Sprint(before), ":3") || strings.Contains(fmt.Sprint(before), "@0") {
		t.Fatalf("versions of an unchanged file of a clone: %s (want the source's up to the pin, level 1)", before)
	}
	writeAt(t, c.host(), "d/f", []byte("C"), 2)
	after := levels()
	var n uint64
	fmt.Sscanf(before[0], "v%d@", &n)
	if want := fmt.Sprintf("v%d@0:3", n+1); len(after) != len(before)+1 || after[0] != want || fmt.Sprint(after[1:]) != fmt.Sprint(before) {
		t.Fatalf("versions after the clone changed it: %s, want %s then %s", after, want, before)
	}
}

// G4 keeps the version visible at a pin's time truncated to the second
// too: clients read pin times with HEAD (whole seconds), and a clone's T is
// such a time, while a store may LIST milliseconds.
func TestPinKeepsItsWholeSecond(t *testing.T) {
	e := newTEnv(t)
	src := e.host()
	e.advance(500 * time.Millisecond) // :00.5
	put(t, src, "f", []byte("at-the-second"))
	e.advance(800 * time.Millisecond) // :01.3
	put(t, src, "f", []byte("within-the-second"))
	e.advance(400 * time.Millisecond) // :01.7
	p, err := snapshot.Create(ctx, e.store, e.vol.Keys, "p")
	if err != nil {
		t.Fatal(err)
	}
	if p.Time.Truncate(time.Second).Equal(p.Time) {
		t.Fatalf("test setup: the pin's time %s is a whole second", p.Time)
	}
	e.advance(2 * time.Hour)
	put(t, src, "f", []byte("later"))
	e.advance(2 * time.Hour)
	e.gc(cfg(0, time.Minute))
	at, err := e.asOf(p.Time.Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer at.Close(ctx)
	mustGet(t, at, "f", []byte("at-the-second"))
}
