package vfs_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// plant stores body at key unconditionally (as a buggy or hostile writer
// might).
func (e *env) plant(key string, body []byte) {
	e.t.Helper()
	if _, err := e.store.Put(ctx, key, body); err != nil {
		e.t.Fatal(err)
	}
}

// A garbage object at the key of an inode's next version is skipped (with
// a log line); the previous version is served; the next commit numbers
// past it.
func TestCorruptNextInodeVersion(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	r := rand.New(rand.NewPCG(37, 37))
	v1 := randBytes(r, extSize+10)
	id := writeFile(t, a, root, "f", v1)
	cur := e.versions(id)[0]
	bad := e.vol.Keys.Inode(id, cur+1)

	garbage := map[string][]byte{
		"random bytes": randBytes(r, 200),
		"truncated":    mustEncode(t, e.newest(id))[:40],
		// A valid object of another inode at this key.
		"wrong inode": mustEncode(t, e.version(root, 1)),
		// A valid version of this inode with the wrong version number.
		"wrong version": mustEncode(t, e.newest(id)),
	}
	for what, body := range garbage {
		t.Run(what, func(t *testing.T) {
			e.plant(bad, body)
			// The writing host reopens (revalidates) and still reads v.
			sameBytes(t, readFile(t, a, id), v1, "writing host after a corrupt newer version appeared")
			// A fresh host reads v too.
			fresh := e.engine()
			sameBytes(t, readFile(t, fresh, id), v1, "fresh host")
			if got := lookup(t, fresh, root, "f"); got.Size != uint64(len(v1)) {
				t.Fatalf("fresh host size %d", got.Size)
			}
			if !strings.Contains(e.log.String(), "skipping corrupt inode version") {
				t.Fatalf("no log line for the corrupt version; log:\n%s", e.log.String())
			}
		})
	}
	// A commit after the corrupt version numbers past it and leaves it be.
	h := open(t, a, id, true)
	write(t, a, h, []byte("after"), 0)
	closeH(t, a, h)
	copy(v1, "after")
	vs := e.versions(id)
	if vs[0] != cur+2 {
		t.Fatalf("commit after a corrupt v%d wrote v%d, want v%d", cur+1, vs[0], cur+2)
	}
	if n := e.version(id, cur+2); n.Size != uint64(len(v1)) {
		t.Fatalf("v%d size %d", cur+2, n.Size)
	}
	sameBytes(t, readFile(t, e.engine(), id), v1, "fresh host after the commit past a corrupt version")

	// The same for a host that had not noticed the corrupt version: its
	// commit loses the race for cur+1... (here: a host that loaded the
	// inode before the garbage was planted).
	b := e.engine()
	sameBytes(t, readFile(t, b, id), v1, "host b")
	cur = e.versions(id)[0]
	e.plant(e.vol.Keys.Inode(id, cur+1), []byte("not an object"))
	_, err := b.SetAttr(ctx, id, vfs.SetAttr{Mode: ptr[uint32](0o600)})
	must(t, err)
	must(t, b.SyncAll(ctx))
	if vs := e.versions(id); vs[0] != cur+2 || e.version(id, cur+2).Mode != 0o600 {
		t.Fatalf("stale host's commit past a corrupt version: versions %v", vs[:3])
	}
}

func mustEncode(t testing.TB, n *format.Inode) []byte {
	t.Helper()
	b, err := format.EncodeInode(n)
	must(t, err)
	return b
}

// A corrupt next version of a directory: lookups use the previous one, and
// the next change is written as a full version past it.
func TestCorruptNextDirectoryVersion(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	d := mkdir(t, a, root, "d")
	for _, n := range []string{"x", "y", "z"} {
		writeFile(t, a, d, n, []byte(n))
	}
	cur := e.versions(d)[0]
	e.plant(e.vol.Keys.Inode(d, cur+1), []byte("garbage"))
	fresh := e.engine()
	if got := names(t, fresh, d); !slices.Equal(got, []string{"x", "y", "z"}) {
		t.Fatalf("fresh host lists %v", got)
	}
	mkdir(t, a, d, "w")
	n := e.newest(d)
	if n.Version != cur+2 || !n.IsFull() {
		t.Fatalf("dir commit past a corrupt version: v%d full %v (want v%d, full)", n.Version, n.IsFull(), cur+2)
	}
	if got := names(t, e.engine(), d); !slices.Equal(got, []string{"w", "x", "y", "z"}) {
		t.Fatalf("after the commit past a corrupt version: %v", got)
	}
	// Further deltas build on the new full version.
	writeFile(t, fresh, d, "v", nil)
	checkAfter := e.newest(d)
	if checkAfter.Version != cur+3 || checkAfter.Base != cur+2 {
		t.Fatalf("next version v%d base %d", checkAfter.Version, checkAfter.Base)
	}
	if got := names(t, e.engine(), d); !slices.Equal(got, []string{"v", "w", "x", "y", "z"}) {
		t.Fatalf("after a delta on the new full version: %v", got)
	}
}

// A corrupt, altered or missing extent is refused with ErrCorrupt, never
// served; restored, it reads again (nothing bad was cached).
func TestCorruptExtent(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	r := rand.New(rand.NewPCG(41, 41))
	data := randBytes(r, 3*extSize)
	id := writeFile(t, a, root, "f", data)
	n := e.newest(id)
	if len(n.Extents) != 3 {
		t.Fatalf("file has %d extents", len(n.Extents))
	}
	key := e.vol.Keys.Extent(id, n.Extents[1].EID)
	good, _, err := e.store.Get(ctx, key)
	must(t, err)

	flipped := append([]byte(nil), good...)
	flipped[100] ^= 1
	other := format.EncodeExtent(randBytes(r, extSize)) // valid envelope, wrong bytes
	short := format.EncodeExtent(good[8 : 8+100])
	cases := map[string]func(){
		"flipped bit":          func() { e.plant(key, flipped) },
		"other valid content":  func() { e.plant(key, other) },
		"shorter valid extent": func() { e.plant(key, short) },
		"garbage":              func() { e.plant(key, []byte("garbage")) },
		"missing":              func() { must(t, e.store.Delete(ctx, key)) },
	}
	for what, damage := range cases {
		t.Run(what, func(t *testing.T) {
			damage()
			fs := e.engine() // a host with an empty cache
			h := open(t, fs, id, false)
			buf := make([]byte, 100)
			_, err := fs.Read(ctx, h, buf, int64(extSize+5))
			if !errors.Is(err, vfs.ErrCorrupt) {
				t.Fatalf("read of a damaged extent: err %v, want ErrCorrupt", err)
			}
			// The undamaged extents still read.
			readAt(t, fs, h, buf, 5)
			sameBytes(t, buf, data[5:105], "undamaged extent 0")
			readAt(t, fs, h, buf, int64(2*extSize+5))
			sameBytes(t, buf, data[2*extSize+5:2*extSize+105], "undamaged extent 2")
			// A write into the damaged extent needs its content: refused too.
			hw := open(t, fs, id, true)
			_, err = fs.Write(ctx, hw, []byte("x"), int64(extSize+1))
			if !errors.Is(err, vfs.ErrCorrupt) {
				t.Fatalf("partial write into a damaged extent: err %v, want ErrCorrupt", err)
			}
			must(t, fs.Release(ctx, hw))
			e.plant(key, good)
			readAt(t, fs, h, buf, int64(extSize+5))
			sameBytes(t, buf, data[extSize+5:extSize+105], "restored extent")
			must(t, fs.Release(ctx, h))
		})
	}
}

// An object under an inode's prefix whose key is not a version key (it
// sorts first) is ignored with a log line, not taken for the inode's
// state: the inode stays readable and writable.
func TestStrayKeyUnderInode(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	id := writeFile(t, a, root, "f", []byte("content"))
	e.plant(e.vol.Keys.InodeDir(id)+"0", []byte("stray"))
	e.plant(e.vol.Keys.InodeDir(root)+"0", []byte("stray"))
	fresh := e.engine()
	if got := readFile(t, fresh, lookup(t, fresh, root, "f").Ino); string(got) != "content" {
		t.Fatalf("reads %q", got)
	}
	h := open(t, fresh, id, true)
	write(t, fresh, h, []byte("C"), 0)
	closeH(t, fresh, h)
	mkdir(t, fresh, root, "d")
	if got := readFile(t, e.engine(), id); string(got) != "Content" {
		t.Fatalf("after a commit: %q", got)
	}
	if got := names(t, e.engine(), root); !slices.Equal(got, []string{"d", "f"}) {
		t.Fatalf("root lists %v", got)
	}
	if !strings.Contains(e.log.String(), "malformed inode key") {
		t.Fatal("no log line for the stray key")
	}
}
