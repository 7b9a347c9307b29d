package vfs_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

func ptr[T any](v T) *T { return &v }

func TestSetAttrFile(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	id := writeFile(t, fs, root, "f", []byte("content"))
	before, err := fs.GetAttr(ctx, id)
	must(t, err)

	a, err := fs.SetAttr(ctx, id, vfs.SetAttr{Mode: ptr[uint32](0o4751)})
	must(t, err)
	if a.Mode != syscall.S_IFREG|0o4751 {
		t.Fatalf("chmod: mode %o", a.Mode)
	}
	if a.Ctime <= before.Ctime {
		t.Fatal("chmod did not advance ctime")
	}
	// File type bits in the request are ignored.
	a, err = fs.SetAttr(ctx, id, vfs.SetAttr{Mode: ptr[uint32](syscall.S_IFDIR | 0o600)})
	must(t, err)
	if a.Mode != syscall.S_IFREG|0o600 {
		t.Fatalf("chmod with type bits: mode %o", a.Mode)
	}
	a, err = fs.SetAttr(ctx, id, vfs.SetAttr{UID: ptr[uint32](4242), GID: ptr[uint32](77)})
	must(t, err)
	if a.UID != 4242 || a.GID != 77 || a.Mode != syscall.S_IFREG|0o600 {
		t.Fatalf("chown: %+v", a)
	}
	const at, mt = int64(1_000_000_123), int64(2_000_000_456)
	a, err = fs.SetAttr(ctx, id, vfs.SetAttr{Atime: ptr(at), Mtime: ptr(mt)})
	must(t, err)
	if a.Atime != at || a.Mtime != mt {
		t.Fatalf("utimens: atime %d mtime %d", a.Atime, a.Mtime)
	}
	if a.Size != 7 {
		t.Fatalf("setattr changed size to %d", a.Size)
	}
	// Owner, mode and times wait for the file's next commit (close, fsync,
	// sync, or the write-back timer): the four changes cost one version.
	if n := e.newest(id); n.Version != 2 || n.Mode != 0o644 {
		t.Fatalf("attribute changes committed one by one: newest version %d, mode %o", n.Version, n.Mode)
	}
	must(t, fs.SyncAll(ctx))
	n := e.newest(id)
	if n.Version != 3 {
		t.Fatalf("four attribute changes after a close committed as %d versions", n.Version-2)
	}
	if n.Mode != 0o600 || n.UID != 4242 || n.GID != 77 || n.Atime != at || n.Mtime != mt || n.Size != 7 || string(n.Data) != "content" {
		t.Fatalf("stored version: %+v", n)
	}
	// Another host sees it all.
	b, err := e.engine().GetAttr(ctx, id)
	must(t, err)
	if b.Mode != a.Mode || b.UID != 4242 || b.Atime != at || b.Mtime != mt || b.Size != 7 {
		t.Fatalf("second host attr %+v", b)
	}

	// Truncate together with chmod, in one call.
	a, err = fs.SetAttr(ctx, id, vfs.SetAttr{Size: ptr[uint64](3), Mode: ptr[uint32](0o644)})
	must(t, err)
	if a.Size != 3 || a.Mode != syscall.S_IFREG|0o644 {
		t.Fatalf("truncate+chmod: %+v", a)
	}
	if got := readFile(t, e.engine(), id); string(got) != "con" {
		t.Fatalf("after truncate+chmod, second host reads %q", got)
	}

	// An explicit mtime wins over pending writes' time, and the pending
	// data is committed along with it.
	h := open(t, fs, id, true)
	write(t, fs, h, []byte("NEW"), 0)
	a, err = fs.SetAttr(ctx, id, vfs.SetAttr{Mtime: ptr(mt)})
	must(t, err)
	if a.Mtime != mt {
		t.Fatalf("explicit mtime after a write: %d", a.Mtime)
	}
	closeH(t, fs, h)
	if n := e.newest(id); string(n.Data) != "NEW" || n.Mtime != mt {
		t.Fatalf("setattr with pending writes stored data %q mtime %d", n.Data, n.Mtime)
	}
	// A write after an explicit mtime sets the write's time.
	h = open(t, fs, id, true)
	_, err = fs.SetAttr(ctx, id, vfs.SetAttr{Mtime: ptr(mt)})
	must(t, err)
	write(t, fs, h, []byte("N"), 0)
	closeH(t, fs, h)
	if n := e.newest(id); n.Mtime <= mt {
		t.Fatalf("a write after utimens kept the explicit mtime %d", n.Mtime)
	}
	// Writes advance mtime.
	h = open(t, fs, id, true)
	write(t, fs, h, []byte("x"), 10)
	closeH(t, fs, h)
	if a, _ := fs.GetAttr(ctx, id); a.Mtime <= mt || a.Size != 11 {
		t.Fatalf("after a write: mtime %d size %d", a.Mtime, a.Size)
	}

	// Symlinks and special files: attributes yes, size no.
	s, err := fs.Symlink(ctx, root, "s", "target", caller)
	must(t, err)
	_, err = fs.SetAttr(ctx, s.Ino, vfs.SetAttr{Size: ptr[uint64](0)})
	wantErr(t, err, vfs.ErrInvalid, "truncate a symlink")
	a, err = fs.SetAttr(ctx, s.Ino, vfs.SetAttr{UID: ptr[uint32](5)})
	must(t, err)
	if a.UID != 5 {
		t.Fatal("lchown of a symlink")
	}
	if got, _ := fs.Readlink(ctx, s.Ino); got != "target" {
		t.Fatalf("symlink target after setattr: %q", got)
	}
	must(t, fs.SyncAll(ctx))
	if n := e.newest(s.Ino); n.UID != 5 || n.Target != "target" {
		t.Fatalf("stored symlink after lchown: %+v", n)
	}
	_, err = fs.SetAttr(ctx, 0xabcdef, vfs.SetAttr{UID: ptr[uint32](5)})
	wantErr(t, err, vfs.ErrNotExist, "setattr of a missing inode")
}

func TestSetAttrDir(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	d := mkdir(t, fs, root, "d")
	mkdir(t, fs, d, "sub")
	writeFile(t, fs, d, "f", nil)
	a, err := fs.SetAttr(ctx, d, vfs.SetAttr{Mode: ptr[uint32](0o2700), UID: ptr[uint32](9)})
	must(t, err)
	if a.Mode != syscall.S_IFDIR|0o2700 || a.UID != 9 || a.Nlink != 3 {
		t.Fatalf("chmod dir: mode %o uid %d nlink %d", a.Mode, a.UID, a.Nlink)
	}
	// The change is a version with no entry changes; the entries survive
	// (on this host and on a fresh one).
	if n := e.newest(d); n.Mode != 0o2700 || (!n.IsFull() && len(n.Entries) != 0) {
		t.Fatalf("stored dir version: mode %o full %v entries %+v", n.Mode, n.IsFull(), n.Entries)
	}
	fs2 := e.engine()
	if got := names(t, fs2, d); !slices.Equal(got, []string{"f", "sub"}) {
		t.Fatalf("entries after chmod, second host: %v", got)
	}
	b, err := fs2.GetAttr(ctx, d)
	must(t, err)
	if b.Mode != a.Mode || b.Nlink != 3 {
		t.Fatalf("second host dir attr %+v", b)
	}
	// setgid directory: new children get its group; new subdirs inherit
	// the bit.
	sub, err := fs.Mkdir(ctx, d, "sgid", 0o755, vfs.Caller{UID: 1, GID: 2})
	must(t, err)
	if sub.GID != a.GID || sub.Mode&syscall.S_ISGID == 0 {
		t.Fatalf("subdir of a setgid dir: gid %d mode %o", sub.GID, sub.Mode)
	}
}

func TestXattrs(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	id := writeFile(t, fs, root, "f", []byte("data"))
	d := mkdir(t, fs, root, "d")
	writeFile(t, fs, d, "child", nil)

	for _, target := range []uint64{id, d} {
		_, err := fs.GetXattr(ctx, target, "user.a")
		wantErr(t, err, vfs.ErrNoAttr, "get missing xattr")
		must(t, fs.SetXattr(ctx, target, "user.b", []byte("bee"), 0))
		must(t, fs.SetXattr(ctx, target, "user.a", []byte("ay"), vfs.XattrCreate))
		must(t, fs.SetXattr(ctx, target, "security.empty", nil, 0))
		wantErr(t, fs.SetXattr(ctx, target, "user.a", []byte("x"), vfs.XattrCreate), vfs.ErrExist, "create existing xattr")
		wantErr(t, fs.SetXattr(ctx, target, "user.zz", []byte("x"), vfs.XattrReplace), vfs.ErrNoAttr, "replace missing xattr")
		must(t, fs.SetXattr(ctx, target, "user.b", []byte("BEE!"), vfs.XattrReplace))

		list, err := fs.ListXattr(ctx, target)
		must(t, err)
		if !slices.Equal(list, []string{"security.empty", "user.a", "user.b"}) {
			t.Fatalf("listxattr = %v", list)
		}
		v, err := fs.GetXattr(ctx, target, "user.b")
		must(t, err)
		if string(v) != "BEE!" {
			t.Fatalf("getxattr after replace = %q", v)
		}
		v, err = fs.GetXattr(ctx, target, "security.empty")
		must(t, err)
		if len(v) != 0 {
			t.Fatalf("empty xattr value = %q", v)
		}

		must(t, fs.RemoveXattr(ctx, target, "user.a"))
		wantErr(t, fs.RemoveXattr(ctx, target, "user.a"), vfs.ErrNoAttr, "remove missing xattr")
		_, err = fs.GetXattr(ctx, target, "user.a")
		wantErr(t, err, vfs.ErrNoAttr, "get removed xattr")

		// Limits: value 64 KiB is fine, one byte more is not; names of
		// 1..255 bytes.
		max := bytes.Repeat([]byte{7}, format.MaxXattrValueLen)
		must(t, fs.SetXattr(ctx, target, "user.big", max, 0))
		wantErr(t, fs.SetXattr(ctx, target, "user.big2", append(max, 1), 0), vfs.ErrAttrRange, "xattr value too large")
		wantErr(t, fs.SetXattr(ctx, target, strings.Repeat("n", 256), []byte("x"), 0), vfs.ErrAttrRange, "xattr name too long")
		wantErr(t, fs.SetXattr(ctx, target, "", []byte("x"), 0), vfs.ErrAttrRange, "empty xattr name")

		// A fresh host sees the same set.
		fs2 := e.engine()
		list, err = fs2.ListXattr(ctx, target)
		must(t, err)
		if !slices.Equal(list, []string{"security.empty", "user.b", "user.big"}) {
			t.Fatalf("second host listxattr = %v", list)
		}
		v, err = fs2.GetXattr(ctx, target, "user.big")
		must(t, err)
		if !bytes.Equal(v, max) {
			t.Fatal("second host: 64 KiB xattr value differs")
		}
	}
	// Xattr changes did not disturb content or entries.
	if got := readFile(t, e.engine(), id); string(got) != "data" {
		t.Fatalf("file content after xattr changes: %q", got)
	}
	if got := names(t, e.engine(), d); !slices.Equal(got, []string{"child"}) {
		t.Fatalf("dir entries after xattr changes: %v", got)
	}
	// Many attributes, set in random order, list sorted.
	r := rand.New(rand.NewPCG(3, 3))
	var want []string
	for _, i := range r.Perm(50) {
		name := "user.k" + strings.Repeat("x", i)
		want = append(want, name)
		must(t, fs.SetXattr(ctx, id, name, []byte{byte(i)}, 0))
	}
	slices.Sort(want)
	list, err := e.engine().ListXattr(ctx, id)
	must(t, err)
	want = append([]string{"security.empty", "user.b", "user.big"}, want...)
	slices.Sort(want)
	if !slices.Equal(list, want) {
		t.Fatalf("50 xattrs listed as %v", list)
	}
}

// Unlinking an open file: reads and writes through the handle keep
// working until the last release, which writes the tombstone.
func TestUnlinkOpenFile(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	r := rand.New(rand.NewPCG(23, 23))
	data := randBytes(r, 2*extSize+99)
	id := writeFile(t, a, root, "f", data)
	h := open(t, a, id, true)
	hb := open(t, b, id, false) // another host holds it open too

	must(t, a.Unlink(ctx, root, "f"))
	_, err := a.Lookup(ctx, root, "f")
	wantErr(t, err, vfs.ErrNotExist, "lookup of an unlinked name")
	_, err = b.Lookup(ctx, root, "f")
	wantErr(t, err, vfs.ErrNotExist, "other host's lookup of an unlinked name")
	attr, err := a.GetAttr(ctx, id)
	must(t, err)
	if attr.Nlink != 0 {
		t.Fatalf("open unlinked file has nlink %d", attr.Nlink)
	}
	if n := e.newest(id); n.Kind != format.KindFile || n.Nlink != 0 {
		t.Fatalf("while open, the newest version is %s nlink %d; want a file with nlink 0", n.Kind, n.Nlink)
	}
	sameBytes(t, readAll(t, a, h), data, "read through the handle after unlink")
	write(t, a, h, []byte("still writable"), 5)
	copy(data[5:], "still writable")
	sameBytes(t, readAll(t, a, h), data, "write through the handle after unlink")
	must(t, a.Flush(ctx, h))

	must(t, a.Release(ctx, h))
	if n := e.newest(id); n.Kind != format.KindTombstone {
		t.Fatalf("after the last release the newest version is %s, want a tombstone", n.Kind)
	}
	// A descriptor the kernel still holds on it sees the last attributes
	// with no links, as on a local filesystem.
	if at, err := a.GetAttr(ctx, id); err != nil || at.Nlink != 0 {
		t.Fatalf("getattr after the tombstone: %+v, %v; want nlink 0", at, err)
	}
	_, _, err = a.Open(ctx, id, false)
	wantErr(t, err, vfs.ErrNotExist, "open after the tombstone")
	// The other host's open handle still reads what it opened (W4).
	got := make([]byte, 2*extSize+99)
	readAt(t, b, hb, got, 0)
	must(t, b.Release(ctx, hb))
	// A fresh host sees nothing.
	c := e.engine()
	_, err = c.Lookup(ctx, root, "f")
	wantErr(t, err, vfs.ErrNotExist, "fresh host lookup")
	_, err = c.GetAttr(ctx, id)
	wantErr(t, err, vfs.ErrNotExist, "fresh host getattr by id")

	// Unlink of a file that is not open tombstones at once.
	id2 := writeFile(t, a, root, "g", []byte("g"))
	must(t, a.Unlink(ctx, root, "g"))
	if n := e.newest(id2); n.Kind != format.KindTombstone {
		t.Fatalf("unlink of a closed file left a %s", n.Kind)
	}
	// Unlinking an open file with unflushed data: the release drops it.
	id3, h3 := create(t, a, root, "h")
	write(t, a, h3, randBytes(r, extSize+5), 0)
	must(t, a.Unlink(ctx, root, "h"))
	must(t, a.Release(ctx, h3))
	if n := e.newest(id3); n.Kind != format.KindTombstone {
		t.Fatalf("unlinked dirty file ended as %s", n.Kind)
	}
	if used, _ := a.BufferPoolUsage(); used != 0 {
		t.Fatalf("%d bytes of buffers held after the unlinked file's release", used)
	}
}

// An attribute change waits for the file's next commit; the write-back
// timer commits it without a close.
func TestSetAttrWrittenBackByTimer(t *testing.T) {
	e := newEnv(t)
	fs := e.engine(func(o *vfs.Options) { o.WritebackDelay = 50 * time.Millisecond })
	id := writeFile(t, fs, root, "f", []byte("content"))
	v := e.newest(id).Version
	_, err := fs.SetAttr(ctx, id, vfs.SetAttr{Mode: ptr[uint32](0o600), UID: ptr[uint32](7)})
	must(t, err)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := e.newest(id)
		if n.Version > v {
			if n.Version != v+1 || n.Mode != 0o600 || n.UID != 7 || string(n.Data) != "content" {
				t.Fatalf("written back as %+v", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the attribute change was never written back")
		}
	}
	// Another host sees it.
	if a, err := e.engine().GetAttr(ctx, id); err != nil || a.Mode&0o7777 != 0o600 || a.UID != 7 {
		t.Fatalf("second host: %+v, %v", a, err)
	}
}

// A pending attribute change is re-applied on top of a version another
// host committed meanwhile: both changes are kept.
func TestSetAttrPendingMergesWithOtherHost(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	id := writeFile(t, a, root, "f", []byte("old"))
	_, err := a.SetAttr(ctx, id, vfs.SetAttr{Mode: ptr[uint32](0o640)})
	must(t, err)
	b := e.engine()
	h := open(t, b, id, true)
	write(t, b, h, []byte("new content"), 0)
	closeH(t, b, h)
	must(t, a.SyncAll(ctx))
	n := e.newest(id)
	if n.Mode != 0o640 || string(n.Data) != "new content" {
		t.Fatalf("newest version: mode %o data %q", n.Mode, n.Data)
	}
	if got := readFile(t, a, id); string(got) != "new content" {
		t.Fatalf("host a reads %q", got)
	}
}

// TestUnsupportedXattrs: POSIX ACLs and SELinux labels are refused with
// ErrXattrNotSupp (EOPNOTSUPP: ls -l then stops asking for them), values
// stored under those names by older versions are hidden, and every other
// attribute works as before.
func TestUnsupportedXattrs(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	id := writeFile(t, fs, root, "f", []byte("data"))
	d := mkdir(t, fs, root, "d")
	for _, target := range []uint64{id, d} {
		for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default", "security.selinux"} {
			_, err := fs.GetXattr(ctx, target, name)
			wantErr(t, err, vfs.ErrXattrNotSupp, "getxattr "+name)
			wantErr(t, fs.SetXattr(ctx, target, name, []byte("x"), 0), vfs.ErrXattrNotSupp, "setxattr "+name)
			wantErr(t, fs.RemoveXattr(ctx, target, name), vfs.ErrXattrNotSupp, "removexattr "+name)
		}
		must(t, fs.SetXattr(ctx, target, "security.capability", []byte("cap"), 0))
		must(t, fs.SetXattr(ctx, target, "user.a", []byte("ay"), 0))
	}

	// A version written by an older host, holding an ACL and a label.
	n := e.newest(id)
	n.Version++
	n.Xattrs = append(n.Xattrs,
		format.Xattr{Name: "security.selinux", Value: []byte("system_u:object_r:tmp_t:s0\x00")},
		format.Xattr{Name: "system.posix_acl_access", Value: []byte{2, 0, 0, 0}})
	format.SortXattrs(n.Xattrs)
	obj, err := format.EncodeInode(n)
	must(t, err)
	_, err = e.store.Put(ctx, e.vol.Keys.Inode(id, n.Version), obj)
	must(t, err)

	fs2 := e.engine()
	lookup(t, fs2, root, "f")
	list, err := fs2.ListXattr(ctx, id)
	must(t, err)
	if !slices.Equal(list, []string{"security.capability", "user.a"}) {
		t.Fatalf("listxattr = %v, want the ACL and the label hidden", list)
	}
	_, err = fs2.GetXattr(ctx, id, "security.selinux")
	wantErr(t, err, vfs.ErrXattrNotSupp, "getxattr of a stored label")
	v, err := fs2.GetXattr(ctx, id, "user.a")
	must(t, err)
	if string(v) != "ay" {
		t.Fatalf("user.a = %q", v)
	}
}
