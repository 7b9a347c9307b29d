package vfs_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

func TestLookupAndMkdir(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()

	_, err := fs.Lookup(ctx, root, "nope")
	wantErr(t, err, vfs.ErrNotExist, "lookup of a missing name")

	a, err := fs.Mkdir(ctx, root, "d", 0o750, caller)
	must(t, err)
	if !a.IsDir() || a.Mode&0o7777 != 0o750 || a.UID != 1000 || a.GID != 1000 || a.Nlink != 2 {
		t.Fatalf("mkdir attr = %+v", a)
	}
	if a.Ino == root || a.Ino == 0 {
		t.Fatalf("new directory has id %d", a.Ino)
	}
	b := lookup(t, fs, root, "d")
	if b.Ino != a.Ino || !b.IsDir() {
		t.Fatalf("lookup after mkdir = %+v, want ino %d", b, a.Ino)
	}
	_, err = fs.Mkdir(ctx, root, "d", 0o755, caller)
	wantErr(t, err, vfs.ErrExist, "mkdir of an existing name")

	// W3: the child exists in the store before the parent names it, and
	// the parent's newest version names it.
	if len(e.versions(a.Ino)) != 1 {
		t.Fatalf("new directory has versions %v", e.versions(a.Ino))
	}
	r := e.newest(root)
	found := false
	for _, en := range r.Entries {
		found = found || (en.Name == "d" && en.Child == a.Ino)
	}
	if !found {
		t.Fatalf("root's newest version %d does not name d: %+v", r.Version, r.Entries)
	}

	// Lookup in a non-directory, mkdir in a non-directory.
	fid := writeFile(t, fs, root, "f", []byte("x"))
	_, err = fs.Lookup(ctx, fid, "x")
	wantErr(t, err, vfs.ErrNotDir, "lookup in a file")
	_, err = fs.Mkdir(ctx, fid, "x", 0o755, caller)
	wantErr(t, err, vfs.ErrNotDir, "mkdir in a file")
	_, err = fs.Mkdir(ctx, 0x1234567890, "x", 0o755, caller)
	wantErr(t, err, vfs.ErrNotExist, "mkdir in a missing directory")
}

func TestBadNames(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	d := mkdir(t, fs, root, "d")
	writeFile(t, fs, root, "f", nil)
	long := strings.Repeat("n", 256)
	ok255 := strings.Repeat("n", 255)
	before := len(e.store.Keys())

	cases := []struct {
		name string
		want error
	}{
		{long, vfs.ErrNameTooLong},
		{"a/b", vfs.ErrInvalid},
		{"/", vfs.ErrInvalid},
		{"a\x00b", vfs.ErrInvalid},
		{"", vfs.ErrInvalid},
		{".", vfs.ErrInvalid},
		{"..", vfs.ErrInvalid},
	}
	for _, c := range cases {
		_, err := fs.Lookup(ctx, root, c.name)
		wantErr(t, err, c.want, "lookup "+c.name[:min(len(c.name), 8)])
		_, err = fs.Mkdir(ctx, root, c.name, 0o755, caller)
		wantErr(t, err, c.want, "mkdir")
		_, _, err = fs.Create(ctx, root, c.name, 0o644, true, caller)
		wantErr(t, err, c.want, "create")
		_, err = fs.Mknod(ctx, root, c.name, syscall.S_IFIFO|0o644, 0, caller)
		wantErr(t, err, c.want, "mknod")
		_, err = fs.Symlink(ctx, root, c.name, "target", caller)
		wantErr(t, err, c.want, "symlink")
		_, err = fs.Link(ctx, lookup(t, fs, root, "f").Ino, root, c.name)
		wantErr(t, err, c.want, "link")
		wantErr(t, fs.Unlink(ctx, root, c.name), c.want, "unlink")
		wantErr(t, fs.Rmdir(ctx, root, c.name), c.want, "rmdir")
		wantErr(t, fs.Rename(ctx, root, "f", d, c.name, 0), c.want, "rename to")
		wantErr(t, fs.Rename(ctx, root, c.name, d, "g", 0), c.want, "rename from")
	}
	// Invariant 10: refused input leaves the volume as it was.
	if after := len(e.store.Keys()); after != before {
		t.Fatalf("refused operations wrote %d objects", after-before)
	}
	// 255 bytes is fine.
	mkdir(t, fs, root, ok255)
	if got := lookup(t, fs, root, ok255); !got.IsDir() {
		t.Fatalf("255-byte name: %+v", got)
	}
	// Symlink targets: empty and over 4095 bytes are refused.
	_, err := fs.Symlink(ctx, root, "s", strings.Repeat("t", 4096), caller)
	wantErr(t, err, vfs.ErrNameTooLong, "symlink with a 4096-byte target")
	_, err = fs.Symlink(ctx, root, "s", "", caller)
	wantErr(t, err, vfs.ErrNotExist, "symlink with an empty target")
	_, err = fs.Symlink(ctx, root, "s", strings.Repeat("t", 4095), caller)
	must(t, err)
}

func TestCreate(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	a, h, err := fs.Create(ctx, root, "f", 0o640, true, caller)
	must(t, err)
	if a.Mode != syscall.S_IFREG|0o640 || a.Nlink != 1 || a.Size != 0 || a.UID != 1000 {
		t.Fatalf("create attr = %+v (mode %o)", a, a.Mode)
	}
	write(t, fs, h, []byte("hello"), 0)
	closeH(t, fs, h)

	_, _, err = fs.Create(ctx, root, "f", 0o640, true, caller)
	wantErr(t, err, vfs.ErrExist, "exclusive create of an existing file")

	// Non-exclusive create opens the existing file, contents intact.
	b, h2, err := fs.Create(ctx, root, "f", 0o600, false, caller)
	must(t, err)
	if b.Ino != a.Ino {
		t.Fatalf("non-exclusive create returned inode %d, want existing %d", b.Ino, a.Ino)
	}
	if got := readAll(t, fs, h2); string(got) != "hello" {
		t.Fatalf("content after non-exclusive create = %q", got)
	}
	must(t, fs.Release(ctx, h2))

	mkdir(t, fs, root, "d")
	_, _, err = fs.Create(ctx, root, "d", 0o644, false, caller)
	wantErr(t, err, vfs.ErrIsDir, "non-exclusive create over a directory")
	_, _, err = fs.Create(ctx, root, "d", 0o644, true, caller)
	wantErr(t, err, vfs.ErrExist, "exclusive create over a directory")
}

func TestMknodSymlinkReadlink(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	a, err := fs.Mknod(ctx, root, "fifo", syscall.S_IFIFO|0o620, 0, caller)
	must(t, err)
	if a.Mode != syscall.S_IFIFO|0o620 || a.Nlink != 1 {
		t.Fatalf("fifo attr mode %o nlink %d", a.Mode, a.Nlink)
	}
	if got := lookup(t, fs, root, "fifo"); got.Mode != syscall.S_IFIFO|0o620 {
		t.Fatalf("fifo lookup mode %o", got.Mode)
	}
	c, err := fs.Mknod(ctx, root, "chr", syscall.S_IFCHR|0o600, 0x0501, caller)
	must(t, err)
	if c.Mode&syscall.S_IFMT != syscall.S_IFCHR || c.Rdev != 0x0501 {
		t.Fatalf("char device attr %+v", c)
	}
	r, err := fs.Mknod(ctx, root, "reg", syscall.S_IFREG|0o600, 0, caller)
	must(t, err)
	if r.Mode != syscall.S_IFREG|0o600 {
		t.Fatalf("mknod S_IFREG mode %o", r.Mode)
	}
	_, err = fs.Mknod(ctx, root, "dir", syscall.S_IFDIR|0o600, 0, caller)
	wantErr(t, err, vfs.ErrInvalid, "mknod S_IFDIR")
	_, err = fs.Mknod(ctx, root, "fifo", syscall.S_IFIFO|0o600, 0, caller)
	wantErr(t, err, vfs.ErrExist, "mknod over existing")

	target := "../some/where/" + strings.Repeat("x", 100)
	s, err := fs.Symlink(ctx, root, "link", target, caller)
	must(t, err)
	if s.Mode&syscall.S_IFMT != syscall.S_IFLNK || s.Size != uint64(len(target)) || s.Nlink != 1 {
		t.Fatalf("symlink attr %+v", s)
	}
	got, err := fs.Readlink(ctx, s.Ino)
	must(t, err)
	if got != target {
		t.Fatalf("readlink = %q, want %q", got, target)
	}
	_, err = fs.Readlink(ctx, a.Ino)
	wantErr(t, err, vfs.ErrInvalid, "readlink of a fifo")
	_, err = fs.Symlink(ctx, root, "link", "x", caller)
	wantErr(t, err, vfs.ErrExist, "symlink over existing")

	// A second host reads them back from the store.
	fs2 := e.engine()
	got, err = fs2.Readlink(ctx, lookup(t, fs2, root, "link").Ino)
	must(t, err)
	if got != target {
		t.Fatalf("second host readlink = %q", got)
	}
	if m := lookup(t, fs2, root, "fifo").Mode; m != syscall.S_IFIFO|0o620 {
		t.Fatalf("second host fifo mode %o", m)
	}
	es, err := fs2.ReadDir(ctx, root)
	must(t, err)
	kinds := map[string]uint32{}
	for _, en := range es {
		kinds[en.Name] = en.Mode
	}
	want := map[string]uint32{"fifo": 0, "chr": 0, "reg": syscall.S_IFREG, "link": syscall.S_IFLNK}
	for n, m := range want {
		if _, ok := kinds[n]; !ok {
			t.Fatalf("readdir lacks %q: %v", n, kinds)
		}
		if m != 0 && kinds[n] != m {
			t.Fatalf("readdir type of %q = %o, want %o", n, kinds[n], m)
		}
	}
}

func TestLinkCounts(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	d := mkdir(t, fs, root, "d")
	id := writeFile(t, fs, root, "f", []byte("data"))

	a, err := fs.Link(ctx, id, d, "g")
	must(t, err)
	if a.Nlink != 2 || a.Ino != id {
		t.Fatalf("after link: %+v", a)
	}
	if got := lookup(t, fs, d, "g"); got.Ino != id || got.Nlink != 2 {
		t.Fatalf("lookup of new link: %+v", got)
	}
	_, err = fs.Link(ctx, id, root, "f")
	wantErr(t, err, vfs.ErrExist, "link over existing name")
	if a, _ := fs.GetAttr(ctx, id); a.Nlink != 2 {
		t.Fatalf("failed link changed nlink to %d", a.Nlink)
	}
	_, err = fs.Link(ctx, d, root, "dlink")
	wantErr(t, err, vfs.ErrNotSupp, "hard link to a directory")

	// The stored version carries the count (W3: raised before the name).
	if n := e.newest(id); n.Nlink != 2 {
		t.Fatalf("stored nlink %d, want 2", n.Nlink)
	}
	must(t, fs.Unlink(ctx, root, "f"))
	if a, _ := fs.GetAttr(ctx, id); a.Nlink != 1 {
		t.Fatalf("nlink after one unlink = %d", a.Nlink)
	}
	if got := readFile(t, fs, lookup(t, fs, d, "g").Ino); string(got) != "data" {
		t.Fatalf("content through the remaining link = %q", got)
	}
	must(t, fs.Unlink(ctx, d, "g"))
	if n := e.newest(id); n.Kind.String() != "tombstone" {
		t.Fatalf("after the last unlink the newest version is a %s", n.Kind)
	}
	if at, err := fs.GetAttr(ctx, id); err != nil || at.Nlink != 0 {
		t.Fatalf("getattr of a deleted inode: %+v, %v; want its last attributes with nlink 0", at, err)
	}
	_, err = fs.Link(ctx, id, root, "again")
	wantErr(t, err, vfs.ErrNotExist, "link to a deleted inode")
}

func TestUnlinkRmdirErrors(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	d := mkdir(t, fs, root, "d")
	writeFile(t, fs, d, "f", nil)
	writeFile(t, fs, root, "g", nil)
	mkdir(t, fs, root, "empty")

	wantErr(t, fs.Unlink(ctx, root, "missing"), vfs.ErrNotExist, "unlink missing")
	wantErr(t, fs.Unlink(ctx, root, "d"), vfs.ErrIsDir, "unlink dir")
	wantErr(t, fs.Rmdir(ctx, root, "missing"), vfs.ErrNotExist, "rmdir missing")
	wantErr(t, fs.Rmdir(ctx, root, "g"), vfs.ErrNotDir, "rmdir file")
	wantErr(t, fs.Rmdir(ctx, root, "d"), vfs.ErrNotEmpty, "rmdir non-empty")
	if got := names(t, fs, d); !slices.Equal(got, []string{"f"}) {
		t.Fatalf("failed rmdir changed the directory: %v", got)
	}
	if got := names(t, fs, root); !slices.Equal(got, []string{"d", "empty", "g"}) {
		t.Fatalf("root after failed ops: %v", got)
	}
	// A failed rmdir must not have tombstoned the directory.
	if n := e.newest(d); n.Kind.String() != "dir" {
		t.Fatalf("non-empty directory's newest version is a %s", n.Kind)
	}

	must(t, fs.Unlink(ctx, d, "f"))
	must(t, fs.Rmdir(ctx, root, "d"))
	must(t, fs.Rmdir(ctx, root, "empty"))
	if got := names(t, fs, root); !slices.Equal(got, []string{"g"}) {
		t.Fatalf("root after rmdir: %v", got)
	}
	if n := e.newest(d); n.Kind.String() != "tombstone" {
		t.Fatalf("removed directory's newest version is a %s", n.Kind)
	}
	// A descriptor still open on the removed directory lists it empty.
	if es, err := fs.ReadDir(ctx, d); err != nil || len(es) != 0 {
		t.Fatalf("readdir of a removed directory: %v, %v; want empty", es, err)
	}
	if at, err := fs.GetAttr(ctx, d); err != nil || !at.IsDir() || at.Nlink != 0 {
		t.Fatalf("getattr of a removed directory: %+v, %v; want a directory with nlink 0", at, err)
	}
	_, err := fs.Lookup(ctx, d, "anything")
	wantErr(t, err, vfs.ErrNotExist, "lookup in a removed directory")
	_, err = fs.Mkdir(ctx, d, "x", 0o755, caller)
	wantErr(t, err, vfs.ErrNotExist, "mkdir in a removed directory")
	// The name can be reused.
	mkdir(t, fs, root, "d")
}

func TestDirNlinkAndReadDirSorted(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	d := mkdir(t, fs, root, "d")
	want := []string{}
	for i, n := range []string{"zeta", "Alpha", "beta", "a", "b-2", "b_1", "éclair", "10", "9"} {
		if i%3 == 0 {
			mkdir(t, fs, d, n)
		} else {
			writeFile(t, fs, d, n, nil)
		}
		want = append(want, n)
	}
	slices.Sort(want) // byte order
	if got := names(t, fs, d); !slices.Equal(got, want) {
		t.Fatalf("readdir = %v, want %v", got, want)
	}
	a, err := fs.GetAttr(ctx, d)
	must(t, err)
	if a.Nlink != 2+3 {
		t.Fatalf("directory nlink = %d, want 5", a.Nlink)
	}
	if a, _ := fs.GetAttr(ctx, root); a.Nlink != 3 {
		t.Fatalf("root nlink = %d, want 3", a.Nlink)
	}
	must(t, fs.Rmdir(ctx, d, "zeta"))
	if a, _ := fs.GetAttr(ctx, d); a.Nlink != 4 {
		t.Fatalf("nlink after rmdir = %d, want 4", a.Nlink)
	}
	// Rename a subdirectory out: both parents' counts follow.
	must(t, fs.Rename(ctx, d, "a", root, "ten", 0))
	if a, _ := fs.GetAttr(ctx, d); a.Nlink != 3 {
		t.Fatalf("nlink after renaming a subdir out = %d, want 3", a.Nlink)
	}
	if a, _ := fs.GetAttr(ctx, root); a.Nlink != 4 {
		t.Fatalf("root nlink after a subdir moved in = %d, want 4", a.Nlink)
	}
	// A second host computes the same.
	fs2 := e.engine()
	if a, _ := fs2.GetAttr(ctx, d); a.Nlink != 3 {
		t.Fatalf("second host: nlink = %d, want 3", a.Nlink)
	}
	es, err := fs2.ReadDir(ctx, d)
	must(t, err)
	for _, en := range es {
		isDir := en.Mode == syscall.S_IFDIR
		if wantDir := en.Name == "éclair"; isDir != wantDir {
			t.Fatalf("entry %q type %o", en.Name, en.Mode)
		}
	}
	_, err = fs.ReadDir(ctx, lookup(t, fs, d, "beta").Ino)
	wantErr(t, err, vfs.ErrNotDir, "readdir of a file")
}

func TestRename(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	a := mkdir(t, fs, root, "a")
	b := mkdir(t, fs, root, "b")
	content := func(dir uint64, name string) string {
		t.Helper()
		return string(readFile(t, fs, lookup(t, fs, dir, name).Ino))
	}

	// Same directory.
	f1 := writeFile(t, fs, a, "f1", []byte("one"))
	must(t, fs.Rename(ctx, a, "f1", a, "g1", 0))
	if got := names(t, fs, a); !slices.Equal(got, []string{"g1"}) {
		t.Fatalf("after same-dir rename: %v", got)
	}
	if lookup(t, fs, a, "g1").Ino != f1 {
		t.Fatal("renamed file changed inode")
	}
	// Same-dir rename is one directory version.
	before := len(e.versions(a))
	must(t, fs.Rename(ctx, a, "g1", a, "h1", 0))
	if after := len(e.versions(a)); after != before+1 {
		t.Fatalf("same-dir rename wrote %d directory versions, want 1", after-before)
	}

	// Across directories.
	must(t, fs.Rename(ctx, a, "h1", b, "f1", 0))
	if got := names(t, fs, a); len(got) != 0 {
		t.Fatalf("source after cross-dir rename: %v", got)
	}
	if content(b, "f1") != "one" {
		t.Fatal("content lost by cross-dir rename")
	}
	// Missing source.
	wantErr(t, fs.Rename(ctx, a, "nope", b, "x", 0), vfs.ErrNotExist, "rename of a missing name")
	// Rename onto itself is a no-op.
	must(t, fs.Rename(ctx, b, "f1", b, "f1", 0))

	// Over an existing file: the target is unlinked (tombstoned).
	victim := writeFile(t, fs, b, "victim", []byte("victim"))
	must(t, fs.Rename(ctx, b, "f1", b, "victim", 0))
	if content(b, "victim") != "one" {
		t.Fatal("rename over a file did not replace it")
	}
	if n := e.newest(victim); n.Kind.String() != "tombstone" {
		t.Fatalf("replaced file's newest version is a %s, want tombstone", n.Kind)
	}
	// Over an existing file in another directory.
	victim2 := writeFile(t, fs, a, "v2", []byte("two"))
	must(t, fs.Rename(ctx, b, "victim", a, "v2", 0))
	if content(a, "v2") != "one" || len(names(t, fs, b)) != 0 {
		t.Fatalf("cross-dir rename over a file: a=%v b=%v", names(t, fs, a), names(t, fs, b))
	}
	if n := e.newest(victim2); n.Kind.String() != "tombstone" {
		t.Fatalf("replaced file's newest version is a %s, want tombstone", n.Kind)
	}

	// Directory over an empty directory.
	src := mkdir(t, fs, a, "srcdir")
	writeFile(t, fs, src, "inner", []byte("in"))
	empty := mkdir(t, fs, b, "emptydir")
	must(t, fs.Rename(ctx, a, "srcdir", b, "emptydir", 0))
	if got := lookup(t, fs, b, "emptydir"); got.Ino != src {
		t.Fatalf("rename dir over empty dir: target is %d, want %d", got.Ino, src)
	}
	if content(lookup(t, fs, b, "emptydir").Ino, "inner") != "in" {
		t.Fatal("moved directory lost its content")
	}
	if n := e.newest(empty); n.Kind.String() != "tombstone" {
		t.Fatalf("replaced empty dir's newest version is a %s", n.Kind)
	}
	if a, _ := fs.GetAttr(ctx, b); a.Nlink != 3 {
		t.Fatalf("b's nlink after dir-over-dir rename = %d, want 3", a.Nlink)
	}

	// Directory over a non-empty directory.
	mkdir(t, fs, a, "d1")
	must(t, fs.Rename(ctx, a, "d1", a, "d1", 0))
	wantErr(t, fs.Rename(ctx, a, "d1", b, "emptydir", 0), vfs.ErrNotEmpty, "dir over non-empty dir")
	if _, err := fs.Lookup(ctx, a, "d1"); err != nil {
		t.Fatalf("failed rename lost the source: %v", err)
	}
	// File over a directory, directory over a file.
	writeFile(t, fs, a, "file", []byte("f"))
	wantErr(t, fs.Rename(ctx, a, "file", a, "d1", 0), vfs.ErrIsDir, "file over dir")
	wantErr(t, fs.Rename(ctx, a, "d1", a, "file", 0), vfs.ErrNotDir, "dir over file")
	if got := names(t, fs, a); !slices.Equal(got, []string{"d1", "file", "v2"}) {
		t.Fatalf("failed renames changed a: %v", got)
	}

	// RenameNoReplace.
	wantErr(t, fs.Rename(ctx, a, "file", a, "v2", vfs.RenameNoReplace), vfs.ErrExist, "noreplace over existing")
	must(t, fs.Rename(ctx, a, "file", a, "file2", vfs.RenameNoReplace))
	if content(a, "file2") != "f" {
		t.Fatal("noreplace rename lost content")
	}
	wantErr(t, fs.Rename(ctx, a, "file2", a, "x", vfs.RenameNoReplace|vfs.RenameExchange), vfs.ErrInvalid, "both flags")

	// RenameExchange in one directory.
	must(t, fs.Rename(ctx, a, "file2", a, "v2", vfs.RenameExchange))
	if content(a, "file2") != "one" || content(a, "v2") != "f" {
		t.Fatalf("exchange: file2=%q v2=%q", content(a, "file2"), content(a, "v2"))
	}
	wantErr(t, fs.Rename(ctx, a, "file2", a, "missing", vfs.RenameExchange), vfs.ErrNotExist, "exchange with missing")
	// Exchange of a file and a directory (renameat2 allows different types).
	dID := lookup(t, fs, a, "d1").Ino
	fID := lookup(t, fs, a, "v2").Ino
	must(t, fs.Rename(ctx, a, "d1", a, "v2", vfs.RenameExchange))
	if lookup(t, fs, a, "v2").Ino != dID || lookup(t, fs, a, "d1").Ino != fID {
		t.Fatal("exchange of a file and a directory did not swap them")
	}
	if !lookup(t, fs, a, "v2").IsDir() {
		t.Fatal("exchanged directory is not a directory")
	}
	es, err := fs.ReadDir(ctx, a)
	must(t, err)
	for _, en := range es {
		if (en.Name == "v2") != (en.Mode == syscall.S_IFDIR) {
			t.Fatalf("after exchange entry %q has type %o", en.Name, en.Mode)
		}
	}

	// Everything above as seen by a second host.
	fs2 := e.engine()
	if got := names(t, fs2, a); !slices.Equal(got, []string{"d1", "file2", "v2"}) {
		t.Fatalf("second host sees a = %v", got)
	}
	if got := names(t, fs2, b); !slices.Equal(got, []string{"emptydir"}) {
		t.Fatalf("second host sees b = %v", got)
	}
}

// Renaming a name onto another hard link of the same file must do nothing
// (POSIX rename: "shall return successfully and perform no other action").
func TestRenameOntoHardLinkOfItself(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	id := writeFile(t, fs, root, "a", []byte("x"))
	_, err := fs.Link(ctx, id, root, "b")
	must(t, err)
	must(t, fs.Rename(ctx, root, "a", root, "b", 0))
	if got := names(t, fs, root); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("names after rename onto own hard link: %v", got)
	}
	a, err := fs.GetAttr(ctx, id)
	must(t, err)
	if a.Nlink != 2 {
		t.Fatalf("nlink %d with names %v", a.Nlink, names(t, fs, root))
	}
	// Both names can still be removed and the inode then goes.
	must(t, fs.Unlink(ctx, root, "a"))
	must(t, fs.Unlink(ctx, root, "b"))
	if n := e.newest(id); n.Kind.String() != "tombstone" {
		t.Fatalf("inode not deleted after its last name went: %s nlink %d", n.Kind, n.Nlink)
	}
}

func TestReadOnlyEngine(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	id := writeFile(t, fs, root, "f", []byte("ro"))
	ro := e.engine(func(o *vfs.Options) { o.ReadOnly = true })
	before := len(e.store.Keys())
	_, err := ro.Mkdir(ctx, root, "d", 0o755, caller)
	wantErr(t, err, vfs.ErrReadOnly, "mkdir on read-only")
	_, _, err = ro.Open(ctx, id, true)
	wantErr(t, err, vfs.ErrReadOnly, "open for writing on read-only")
	wantErr(t, ro.Unlink(ctx, root, "f"), vfs.ErrReadOnly, "unlink on read-only")
	if string(readFile(t, ro, id)) != "ro" {
		t.Fatal("read-only engine cannot read")
	}
	if len(e.store.Keys()) != before {
		t.Fatal("read-only engine wrote to the store")
	}
	if errors.Is(nil, vfs.ErrReadOnly) {
		t.Fatal("unreachable")
	}
}

// A lookup that misses reads the directory again when this host's view
// of it is older than 50 ms, whatever Options.Revalidate says: a name
// another host created shows at once to a host polling for it, at the
// cost of at most one LIST per directory per 50 ms.
func TestLookupMissRevalidates(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
	if _, err := b.Lookup(ctx, root, "f"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("lookup before the create: %v", err)
	}
	writeFile(t, a, root, "f", []byte("x"))
	time.Sleep(60 * time.Millisecond)
	if got := lookup(t, b, root, "f"); got.Size != 1 {
		t.Fatalf("lookup after another host's create: %+v", got)
	}
	// Misses in a burst: one LIST at most.
	var mu sync.Mutex
	lists := 0
	e.store.SetHooks(memstore.Hooks{Before: func(op memstore.Op, key string) error {
		mu.Lock()
		if op == memstore.OpList {
			lists++
		}
		mu.Unlock()
		return nil
	}})
	time.Sleep(60 * time.Millisecond)
	for i := 0; i < 50; i++ {
		if _, err := b.Lookup(ctx, root, "missing"); !errors.Is(err, vfs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	e.store.SetHooks(memstore.Hooks{})
	mu.Lock()
	defer mu.Unlock()
	if lists < 1 || lists > 2 {
		t.Fatalf("50 missing lookups in a burst sent %d LISTs, want 1 (2 if the burst outlasted 50 ms)", lists)
	}
}
