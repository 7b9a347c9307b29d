package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// fuseSuperMagic is the f_type statfs(2) reports for a FUSE mount.
const fuseSuperMagic = 0x65735546

// readFromStore reads the file at rel (a slash-separated path below the
// root) through a fresh, read-only engine on m's volume: what another host
// would see, with nothing of m's memory involved.
func readFromStore(t testing.TB, m *mount, rel string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vol, err := volume.Open(ctx, m.Store, m.URL, false)
	if err != nil {
		t.Fatalf("open volume: %v", err)
	}
	e, err := vfs.New(vol, vfs.Options{ReadOnly: true, Logger: m.logger()})
	if err != nil {
		t.Fatalf("vfs.New: %v", err)
	}
	defer e.Close(ctx)
	id := format.RootID
	var a vfs.Attr
	for _, name := range strings.Split(rel, "/") {
		if a, err = e.Lookup(ctx, id, name); err != nil {
			return nil, err
		}
		id = a.Ino
	}
	h, _, err := e.Open(ctx, id, false)
	if err != nil {
		return nil, err
	}
	defer e.Release(ctx, h)
	buf := make([]byte, a.Size+1)
	n, err := e.Read(ctx, h, buf, 0)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func wantContent(t testing.TB, what string, got []byte, err error, want []byte) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !bytes.Equal(got, want) {
		if len(got) < 200 && len(want) < 200 {
			t.Errorf("%s: got %q, want %q", what, got, want)
		} else {
			t.Errorf("%s: got %d bytes, want %d; first difference at %d", what, len(got), len(want), firstDiff(got, want))
		}
	}
}

func wantFile(t testing.TB, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	wantContent(t, "read "+p, got, err, want)
}

func wantMode(t testing.TB, p string, typ, perm uint32) {
	t.Helper()
	st := statT(t, p)
	if st.Mode&syscall.S_IFMT != typ || st.Mode&0o7777 != perm {
		t.Errorf("%s: mode %o, want type %o perm %o", p, st.Mode, typ, perm)
	}
}

func wantNlink(t testing.TB, p string, want uint64) {
	t.Helper()
	if st := statT(t, p); uint64(st.Nlink) != want {
		t.Errorf("%s: nlink %d, want %d", p, st.Nlink, want)
	}
}

func readDirNames(t testing.TB, p string) []string {
	t.Helper()
	es, err := os.ReadDir(p)
	if err != nil {
		t.Fatalf("readdir %s: %v", p, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// wantTombstone fails the test unless the newest version of inode id in
// the bucket is (or within a few seconds becomes) a tombstone.
func wantTombstone(t *testing.T, m *mount, id uint64, what string) {
	t.Helper()
	var kind format.InodeKind
	if !waitFor(5*time.Second, func() bool { kind = newestInode(t, m, id).Kind; return kind == format.KindTombstone }) {
		t.Errorf("newest version of %s (inode %016x) is a %v, want a tombstone", what, id, kind)
	}
}

// TestOperations exercises every file operation through the kernel, then
// remounts the volume and checks that everything persisted.
func TestOperations(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	p := m.path
	checks := []func(){} // re-run after the remount

	// mkdir / rmdir
	must(t, "mkdir d", os.Mkdir(p("d"), 0o755))
	wantMode(t, p("d"), syscall.S_IFDIR, 0o755)
	wantErrno(t, "mkdir existing", os.Mkdir(p("d"), 0o755), syscall.EEXIST)
	must(t, "mkdir d/sub", os.Mkdir(p("d", "sub"), 0o750))
	must(t, "write d/sub/f", os.WriteFile(p("d", "sub", "f"), []byte("x"), 0o644))
	wantErrno(t, "rmdir non-empty", syscall.Rmdir(p("d", "sub")), syscall.ENOTEMPTY)
	wantErrno(t, "rmdir a file", syscall.Rmdir(p("d", "sub", "f")), syscall.ENOTDIR)
	wantErrno(t, "rmdir missing", syscall.Rmdir(p("d", "nope")), syscall.ENOENT)
	wantErrno(t, "unlink a directory", syscall.Unlink(p("d", "sub")), syscall.EISDIR)
	must(t, "unlink d/sub/f", syscall.Unlink(p("d", "sub", "f")))
	must(t, "rmdir d/sub", syscall.Rmdir(p("d", "sub")))
	if _, err := os.Lstat(p("d", "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of removed directory: %v, want ENOENT", err)
	}
	must(t, "mkdir d/keep", os.Mkdir(p("d", "keep"), 0o711))
	wantNlink(t, p("d"), 3) // ".", its name, and keep's ".."
	var wantD []string      // what d holds in the end
	checks = append(checks, func() {
		wantMode(t, p("d"), syscall.S_IFDIR, 0o755)
		wantNlink(t, p("d"), 3)
		if got := readDirNames(t, p("d")); strings.Join(got, ",") != strings.Join(wantD, ",") {
			t.Errorf("d holds %q, want %q", got, wantD)
		}
	})

	// create with and without O_EXCL
	fd, err := syscall.Open(p("excl"), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o640)
	must(t, "create O_EXCL", err)
	_, err = syscall.Write(fd, []byte("first"))
	must(t, "write", err)
	must(t, "close", syscall.Close(fd))
	_, err = syscall.Open(p("excl"), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o640)
	wantErrno(t, "create O_EXCL of an existing name", err, syscall.EEXIST)
	_, err = syscall.Open(p("d"), syscall.O_CREAT|syscall.O_EXCL|syscall.O_RDONLY, 0o640)
	wantErrno(t, "create O_EXCL over a directory", err, syscall.EEXIST)
	fd, err = syscall.Open(p("excl"), syscall.O_CREAT|syscall.O_RDWR, 0o600)
	must(t, "create without O_EXCL opens the existing file", err)
	buf := make([]byte, 16)
	n, err := syscall.Read(fd, buf)
	wantContent(t, "read after O_CREAT of an existing file", buf[:n], err, []byte("first"))
	syscall.Close(fd)
	wantMode(t, p("excl"), syscall.S_IFREG, 0o640) // the mode of O_CREAT applies only to new files

	// open, read, write, pwrite, holes past EOF
	f, err := os.OpenFile(p("rw"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, "create rw", err)
	_, err = f.Write([]byte("hello world"))
	must(t, "write", err)
	_, err = f.WriteAt([]byte("WORLD"), 6)
	must(t, "pwrite", err)
	_, err = f.WriteAt([]byte("tail"), 20) // 9-byte hole at [11,20)
	must(t, "pwrite past EOF", err)
	rw := append([]byte("hello WORLD"), make([]byte, 9)...)
	rw = append(rw, "tail"...)
	got := make([]byte, 64)
	n, err = f.ReadAt(got, 0)
	if err != io.EOF {
		t.Errorf("pread past EOF: err %v, want io.EOF", err)
	}
	wantContent(t, "pread of rw", got[:n], nil, rw)
	_, err = f.Seek(6, io.SeekStart)
	must(t, "seek", err)
	n, err = f.Read(got[:5])
	wantContent(t, "read after seek", got[:n], err, []byte("WORLD"))
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(rw)) {
		t.Errorf("fstat of rw: %v, %v; want size %d", fi, err, len(rw))
	}

	// fsync makes the data durable in the bucket while the file stays open
	must(t, "fsync", f.Sync())
	data, err := readFromStore(t, m, "rw")
	wantContent(t, "rw in the bucket after fsync", data, err, rw)
	_, err = f.WriteAt([]byte("!"), int64(len(rw)))
	must(t, "write after fsync", err)
	rw = append(rw, '!')
	must(t, "close (flush)", f.Close())
	data, err = readFromStore(t, m, "rw")
	wantContent(t, "rw in the bucket after close", data, err, rw)
	checks = append(checks, func() { wantFile(t, p("rw"), rw) })

	// a file larger than the inline limit and spanning extents, written
	// with one write
	big := bytes.Repeat([]byte("0123456789abcdef"), (testExtentSize*2+1000)/16)
	must(t, "write big", os.WriteFile(p("big"), big, 0o600))
	wantFile(t, p("big"), big)
	data, err = readFromStore(t, m, "big")
	wantContent(t, "big in the bucket after close", data, err, big)
	bigWant := big
	checks = append(checks, func() { wantFile(t, p("big"), bigWant) })

	// chmod, chown, utimens
	must(t, "write tozero", os.WriteFile(p("tozero"), []byte("0"), 0o644))
	must(t, "chmod", syscall.Chmod(p("rw"), 0o4751))
	wantMode(t, p("rw"), syscall.S_IFREG, 0o4751)
	must(t, "chmod dir", syscall.Chmod(p("d", "keep"), 0o1777))
	wantMode(t, p("d", "keep"), syscall.S_IFDIR, 0o1777)
	must(t, "chown", os.Chown(p("rw"), 1234, 5678))
	st := statT(t, p("rw"))
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("after chown: uid %d gid %d, want 1234 5678", st.Uid, st.Gid)
	}
	// Linux clears the setuid bit of a file whose owner changes, even when
	// root changes it.
	wantMode(t, p("rw"), syscall.S_IFREG, 0o751)
	const rwMode = 0o751
	must(t, "chmod again", syscall.Chmod(p("rw"), rwMode))
	wantMode(t, p("rw"), syscall.S_IFREG, rwMode)
	must(t, "chown dir", os.Chown(p("d"), 42, 43))
	// mode 000 is a mode like any other (root may still read and write)
	fd, err = syscall.Open(p("zero"), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0)
	must(t, "create with mode 000", err)
	syscall.Close(fd)
	must(t, "mkdir with mode 000", syscall.Mkdir(p("zerodir"), 0))
	must(t, "chmod 000", syscall.Chmod(p("tozero"), 0))
	wantZero := func() {
		wantMode(t, p("zero"), syscall.S_IFREG, 0)
		wantMode(t, p("zerodir"), syscall.S_IFDIR, 0)
		wantMode(t, p("tozero"), syscall.S_IFREG, 0)
	}
	wantZero()
	checks = append(checks, wantZero)
	atime := time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)
	mtime := time.Date(2011, 12, 13, 14, 15, 16, 987654321, time.UTC)
	must(t, "utimens", os.Chtimes(p("excl"), atime, mtime))
	wantTimes := func(what string) {
		st := statT(t, p("excl"))
		if ts := time.Unix(st.Atim.Unix()); !ts.Equal(atime) {
			t.Errorf("%s: atime %v, want %v", what, ts.UTC(), atime)
		}
		if ts := time.Unix(st.Mtim.Unix()); !ts.Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", what, ts.UTC(), mtime)
		}
	}
	wantTimes("after utimens")
	must(t, "utimens dir", os.Chtimes(p("d"), atime, mtime))
	if st := statT(t, p("d")); !time.Unix(st.Mtim.Unix()).Equal(mtime) {
		t.Errorf("dir mtime %v, want %v", time.Unix(st.Mtim.Unix()).UTC(), mtime)
	}
	checks = append(checks, func() {
		wantMode(t, p("rw"), syscall.S_IFREG, rwMode)
		st := statT(t, p("rw"))
		if st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("rw: uid %d gid %d, want 1234 5678", st.Uid, st.Gid)
		}
		if st := statT(t, p("d")); st.Uid != 42 || st.Gid != 43 {
			t.Errorf("d: uid %d gid %d, want 42 43", st.Uid, st.Gid)
		}
		wantMode(t, p("d", "keep"), syscall.S_IFDIR, 0o1777)
		wantTimes("after remount")
	})

	// truncate: by path and on a descriptor, shrinking and growing, within
	// an extent and across extents
	must(t, "write tr", os.WriteFile(p("tr"), []byte("0123456789"), 0o644))
	must(t, "truncate shrink", os.Truncate(p("tr"), 4))
	wantFile(t, p("tr"), []byte("0123"))
	must(t, "truncate grow", os.Truncate(p("tr"), 8))
	wantFile(t, p("tr"), []byte("0123\x00\x00\x00\x00"))
	f, err = os.OpenFile(p("tr"), os.O_RDWR, 0)
	must(t, "open tr", err)
	must(t, "ftruncate shrink", f.Truncate(2))
	_, err = f.WriteAt([]byte("xy"), 5) // the gap [2,5) must read as zeros
	must(t, "write after ftruncate", err)
	must(t, "close tr", f.Close())
	tr := []byte("01\x00\x00\x00xy")
	wantFile(t, p("tr"), tr)
	bigTr := big[:testExtentSize+100]
	must(t, "truncate big across an extent boundary", os.Truncate(p("big"), int64(len(bigTr))))
	f, err = os.OpenFile(p("big"), os.O_RDWR, 0)
	must(t, "open big", err)
	must(t, "ftruncate big grow", f.Truncate(int64(2*testExtentSize+10)))
	must(t, "close big", f.Close())
	bigTr = append(bigTr, make([]byte, 2*testExtentSize+10-len(bigTr))...)
	wantFile(t, p("big"), bigTr)
	bigWant = bigTr
	checks = append(checks, func() { wantFile(t, p("tr"), tr) })
	wantErrno(t, "truncate a directory", os.Truncate(p("d"), 0), syscall.EISDIR)

	// fallocate: growing (mode 0), keeping the size, unsupported modes
	f, err = os.OpenFile(p("fa"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, "create fa", err)
	_, err = f.Write([]byte("abc"))
	must(t, "write fa", err)
	must(t, "fallocate grow", unix.Fallocate(int(f.Fd()), 0, 2, 100))
	must(t, "fallocate inside", unix.Fallocate(int(f.Fd()), 0, 0, 10))
	must(t, "fallocate keep size", unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20))
	wantErrno(t, "fallocate punch hole", unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 1), syscall.EOPNOTSUPP)
	must(t, "close fa", f.Close())
	fa := append([]byte("abc"), make([]byte, 99)...)
	wantFile(t, p("fa"), fa)
	checks = append(checks, func() { wantFile(t, p("fa"), fa) })

	// a sparse file far beyond its data, and the size limit
	f, err = os.OpenFile(p("sparse"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, "create sparse", err)
	_, err = f.WriteAt([]byte("far"), 1<<40)
	must(t, "pwrite at 1 TiB", err)
	_, err = f.WriteAt([]byte("x"), 1<<50)
	wantErrno(t, "pwrite at 1 PiB", err, syscall.EFBIG)
	must(t, "close sparse", f.Close())
	wantSparse := func() {
		f, err := os.Open(p("sparse"))
		must(t, "open sparse", err)
		defer f.Close()
		buf := make([]byte, 10)
		n, err := f.ReadAt(buf, 1<<40-5)
		if err != io.EOF {
			t.Errorf("read at the end of sparse: %v, want EOF", err)
		}
		wantContent(t, "tail of sparse", buf[:n], nil, []byte("\x00\x00\x00\x00\x00far"))
		n, err = f.ReadAt(buf, 1<<39)
		wantContent(t, "hole of sparse", buf[:n], err, make([]byte, 10))
		if st := statT(t, p("sparse")); st.Size != 1<<40+3 {
			t.Errorf("size of sparse: %d", st.Size)
		}
	}
	wantSparse()
	checks = append(checks, wantSparse)

	// unlink, and an unlinked file kept open
	must(t, "write gone", os.WriteFile(p("gone"), []byte("bye"), 0o644))
	goneIno := statT(t, p("gone")).Ino
	must(t, "unlink", syscall.Unlink(p("gone")))
	wantTombstone(t, m, goneIno, "an unlinked file")
	wantErrno(t, "unlink again", syscall.Unlink(p("gone")), syscall.ENOENT)
	if _, err := os.Stat(p("gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of unlinked file: %v", err)
	}
	must(t, "write open-unlinked", os.WriteFile(p("ou"), []byte("still here"), 0o644))
	f, err = os.OpenFile(p("ou"), os.O_RDWR, 0)
	must(t, "open ou", err)
	must(t, "unlink open file", syscall.Unlink(p("ou")))
	n, err = f.ReadAt(got[:10], 0)
	wantContent(t, "read of an unlinked open file", got[:n], err, []byte("still here"))
	_, err = f.WriteAt([]byte("HERE"), 6)
	must(t, "write to an unlinked open file", err)
	n, err = f.ReadAt(got[:10], 0)
	wantContent(t, "read back from an unlinked open file", got[:n], err, []byte("still HERE"))
	var fst syscall.Stat_t
	must(t, "fstat of an unlinked open file", syscall.Fstat(int(f.Fd()), &fst))
	if fst.Nlink != 0 || fst.Size != 10 {
		t.Errorf("fstat of an unlinked open file: nlink %d size %d, want 0 10", fst.Nlink, fst.Size)
	}
	must(t, "close unlinked file", f.Close())
	if _, err := os.Stat(p("ou")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of unlinked file after close: %v", err)
	}
	// Its last close writes its tombstone (the reaper's cue). The kernel
	// sends the release after close(2) returns, hence the wait.
	wantTombstone(t, m, fst.Ino, "an unlinked file, after its last close")

	// rename: within a directory, across directories, over an existing
	// file, directories over directories
	must(t, "write r1", os.WriteFile(p("r1"), []byte("r1"), 0o644))
	ino := statT(t, p("r1")).Ino
	must(t, "rename within dir", syscall.Rename(p("r1"), p("r2")))
	if st := statT(t, p("r2")); st.Ino != ino {
		t.Errorf("rename changed the inode number: %d -> %d", ino, st.Ino)
	}
	if _, err := os.Lstat(p("r1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old name after rename: %v", err)
	}
	must(t, "rename across dirs", syscall.Rename(p("r2"), p("d", "keep", "r3")))
	wantFile(t, p("d", "keep", "r3"), []byte("r1"))
	must(t, "write victim", os.WriteFile(p("victim"), []byte("victim"), 0o644))
	vf, err := os.Open(p("victim"))
	must(t, "open victim", err)
	victimIno := statT(t, p("victim")).Ino
	must(t, "rename over existing file", syscall.Rename(p("d", "keep", "r3"), p("victim")))
	wantFile(t, p("victim"), []byte("r1"))
	n, err = vf.ReadAt(got[:6], 0)
	wantContent(t, "read of the replaced file through an open descriptor", got[:n], err, []byte("victim"))
	vf.Close()
	wantTombstone(t, m, victimIno, "a file replaced by rename, after its last close")
	if names := readDirNames(t, p("d", "keep")); len(names) != 0 {
		t.Errorf("d/keep after renaming its file away: %q", names)
	}
	must(t, "mkdir src", os.MkdirAll(p("src", "inner"), 0o755))
	must(t, "write src/inner/f", os.WriteFile(p("src", "inner", "f"), []byte("inner"), 0o644))
	must(t, "mkdir full", os.Mkdir(p("full"), 0o755))
	must(t, "write full/x", os.WriteFile(p("full", "x"), nil, 0o644))
	wantErrno(t, "rename dir over non-empty dir", syscall.Rename(p("src"), p("full")), syscall.ENOTEMPTY)
	must(t, "mkdir empty", os.Mkdir(p("empty"), 0o700))
	must(t, "rename dir over empty dir", syscall.Rename(p("src"), p("empty")))
	wantFile(t, p("empty", "inner", "f"), []byte("inner"))
	wantMode(t, p("empty"), syscall.S_IFDIR, 0o755)
	wantErrno(t, "rename file over dir", syscall.Rename(p("victim"), p("full")), syscall.EISDIR)
	wantErrno(t, "rename dir over file", syscall.Rename(p("full"), p("victim")), syscall.ENOTDIR)
	wantErrno(t, "rename dir into itself", syscall.Rename(p("full"), p("full", "sub")), syscall.EINVAL)
	wantErrno(t, "rename missing", syscall.Rename(p("nope"), p("nope2")), syscall.ENOENT)
	wantErrno(t, "rename noreplace", unix.Renameat2(unix.AT_FDCWD, p("victim"), unix.AT_FDCWD, p("tr"), unix.RENAME_NOREPLACE), syscall.EEXIST)
	must(t, "write xa", os.WriteFile(p("xa"), []byte("A"), 0o644))
	must(t, "write xb", os.WriteFile(p("xb"), []byte("B"), 0o644))
	must(t, "rename exchange", unix.Renameat2(unix.AT_FDCWD, p("xa"), unix.AT_FDCWD, p("xb"), unix.RENAME_EXCHANGE))
	wantFile(t, p("xa"), []byte("B"))
	wantFile(t, p("xb"), []byte("A"))
	checks = append(checks, func() {
		wantFile(t, p("victim"), []byte("r1"))
		wantFile(t, p("empty", "inner", "f"), []byte("inner"))
		wantFile(t, p("full", "x"), nil)
		wantFile(t, p("xa"), []byte("B"))
		wantFile(t, p("xb"), []byte("A"))
		for _, gone := range []string{"r1", "r2", "src", "gone", "ou"} {
			if _, err := os.Lstat(p(gone)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s should not exist: %v", gone, err)
			}
		}
	})

	// hard links
	must(t, "write l1", os.WriteFile(p("l1"), []byte("linked"), 0o644))
	must(t, "link", os.Link(p("l1"), p("d", "l2")))
	must(t, "link again", os.Link(p("l1"), p("l3")))
	wantNlink(t, p("l1"), 3)
	wantNlink(t, p("d", "l2"), 3)
	if a, b := statT(t, p("l1")).Ino, statT(t, p("d", "l2")).Ino; a != b {
		t.Errorf("hard links have inode numbers %d and %d", a, b)
	}
	must(t, "write through a link", os.WriteFile(p("d", "l2"), []byte("LINKED"), 0o644))
	wantFile(t, p("l1"), []byte("LINKED"))
	must(t, "unlink one link", syscall.Unlink(p("l3")))
	wantNlink(t, p("l1"), 2)
	wantErrno(t, "link over an existing name", os.Link(p("l1"), p("rw")), syscall.EEXIST)
	wantErrno(t, "link a directory", os.Link(p("d"), p("dlink")), syscall.EPERM)
	checks = append(checks, func() {
		wantNlink(t, p("l1"), 2)
		wantNlink(t, p("d", "l2"), 2)
		wantFile(t, p("d", "l2"), []byte("LINKED"))
		if a, b := statT(t, p("l1")).Ino, statT(t, p("d", "l2")).Ino; a != b {
			t.Errorf("hard links have inode numbers %d and %d", a, b)
		}
	})

	// symlinks
	must(t, "symlink", os.Symlink("d/l2", p("sl")))
	must(t, "dangling symlink", os.Symlink("/no/such/target", p("dangling")))
	longTarget := strings.Repeat("t/", 2047) + "x" // 4095 bytes
	must(t, "long symlink", os.Symlink(longTarget, p("longsl")))
	wantSymlinks := func() {
		for name, want := range map[string]string{"sl": "d/l2", "dangling": "/no/such/target", "longsl": longTarget} {
			got, err := os.Readlink(p(name))
			if err != nil || got != want {
				t.Errorf("readlink %s: %q, %v; want %q", name, got, err, want)
			}
			wantMode(t, p(name), syscall.S_IFLNK, 0o777)
		}
		wantFile(t, p("sl"), []byte("LINKED"))
	}
	wantSymlinks()
	wantErrno(t, "symlink over an existing name", os.Symlink("x", p("rw")), syscall.EEXIST)
	wantErrno(t, "readlink of a file", func() error { _, err := os.Readlink(p("rw")); return err }(), syscall.EINVAL)
	if _, err := os.Stat(p("dangling")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat through a dangling symlink: %v", err)
	}
	checks = append(checks, wantSymlinks)

	// special files
	// (modes without group and other write bits, which the umask may clear)
	must(t, "mkfifo", syscall.Mkfifo(p("fifo"), 0o640))
	must(t, "mknod char device", syscall.Mknod(p("null"), syscall.S_IFCHR|0o604, int(unix.Mkdev(1, 3))))
	wantSpecial := func() {
		wantMode(t, p("fifo"), syscall.S_IFIFO, 0o640)
		wantMode(t, p("null"), syscall.S_IFCHR, 0o604)
		if st := statT(t, p("null")); unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
			t.Errorf("null: rdev %d:%d, want 1:3", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	wantSpecial()
	checks = append(checks, wantSpecial)

	// fsync of a directory (what databases do after creating a file)
	dfd, err := syscall.Open(p("d"), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	must(t, "open dir", err)
	err = syscall.Fsync(dfd)
	syscall.Close(dfd)
	must(t, "fsync dir", err)

	// readdir: names and types
	wantRoot := map[string]os.FileMode{
		"big": 0, "d": os.ModeDir, "dangling": os.ModeSymlink, "empty": os.ModeDir, "excl": 0, "fa": 0,
		"full": os.ModeDir, "l1": 0, "longsl": os.ModeSymlink, "rw": 0, "sl": os.ModeSymlink, "tr": 0,
		"victim": 0, "xa": 0, "xb": 0, "sparse": 0, "zero": 0, "zerodir": os.ModeDir, "tozero": 0, "fifo": os.ModeNamedPipe, "null": os.ModeDevice | os.ModeCharDevice,
	}
	checkReaddir := func() {
		es, err := os.ReadDir(p())
		if err != nil {
			t.Fatalf("readdir: %v", err)
		}
		got := map[string]os.FileMode{}
		for _, e := range es {
			got[e.Name()] = e.Type()
		}
		if len(got) != len(wantRoot) {
			t.Errorf("readdir /: %d names, want %d: %v", len(got), len(wantRoot), got)
		}
		for name, typ := range wantRoot {
			if g, ok := got[name]; !ok || g != typ {
				t.Errorf("readdir /: %s: type %v (present %v), want %v", name, g, ok, typ)
			}
		}
		if !sort.SliceIsSorted(es, func(i, j int) bool { return es[i].Name() < es[j].Name() }) {
			t.Errorf("os.ReadDir is not sorted")
		}
	}
	checkReaddir()

	// statfs
	var sfs syscall.Statfs_t
	must(t, "statfs", syscall.Statfs(p(), &sfs))
	if sfs.Type != fuseSuperMagic || sfs.Bsize <= 0 || sfs.Blocks == 0 || sfs.Bfree == 0 || sfs.Bavail == 0 || sfs.Files == 0 || sfs.Namelen != 255 {
		t.Errorf("statfs: %+v", sfs)
	}

	// extended attributes, on a file and a directory
	must(t, "setxattr", syscall.Setxattr(p("rw"), "user.color", []byte("blue"), 0))
	must(t, "setxattr 2", syscall.Setxattr(p("rw"), "user.empty", nil, 0))
	must(t, "setxattr dir", syscall.Setxattr(p("d"), "user.dir", []byte("yes"), 0))
	wantErrno(t, "setxattr XATTR_CREATE of an existing attribute", unix.Setxattr(p("rw"), "user.color", []byte("red"), unix.XATTR_CREATE), syscall.EEXIST)
	wantErrno(t, "setxattr XATTR_REPLACE of a missing attribute", unix.Setxattr(p("rw"), "user.none", []byte("red"), unix.XATTR_REPLACE), syscall.ENODATA)
	must(t, "setxattr XATTR_REPLACE", unix.Setxattr(p("rw"), "user.color", []byte("green"), unix.XATTR_REPLACE))
	must(t, "setxattr temp", syscall.Setxattr(p("rw"), "user.temp", []byte("t"), 0))
	must(t, "removexattr", syscall.Removexattr(p("rw"), "user.temp"))
	wantErrno(t, "removexattr missing", syscall.Removexattr(p("rw"), "user.temp"), syscall.ENODATA)
	_, err = syscall.Getxattr(p("rw"), "user.temp", got)
	wantErrno(t, "getxattr removed", err, syscall.ENODATA)
	_, err = syscall.Getxattr(p("rw"), "user.color", make([]byte, 2))
	wantErrno(t, "getxattr with a small buffer", err, syscall.ERANGE)
	if sz, err := syscall.Getxattr(p("rw"), "user.color", nil); err != nil || sz != 5 {
		t.Errorf("getxattr size query: %d, %v; want 5", sz, err)
	}
	wantXattrs := func() {
		if got := listXattrs(t, p("rw")); !equalXattrs(got, map[string]string{"user.color": "green", "user.empty": ""}) {
			t.Errorf("xattrs of rw: %q", got)
		}
		if got := listXattrs(t, p("d")); !equalXattrs(got, map[string]string{"user.dir": "yes"}) {
			t.Errorf("xattrs of d: %q", got)
		}
	}
	wantXattrs()
	checks = append(checks, wantXattrs)
	// POSIX ACLs (never enforced: the mount does not enable them in the
	// kernel) and SELinux labels are not supported: EOPNOTSUPP, which
	// ls -l caches for the rest of a listing (vfs.unsupportedXattr).
	for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default", "security.selinux"} {
		_, err = syscall.Getxattr(p("rw"), name, got)
		wantErrno(t, "getxattr "+name, err, syscall.EOPNOTSUPP)
		_, err = unix.Lgetxattr(p("d"), name, got)
		wantErrno(t, "lgetxattr of a directory "+name, err, syscall.EOPNOTSUPP)
		// (The kernel itself answers a default ACL set on a file.)
		wantErrno(t, "setxattr of a directory "+name, syscall.Setxattr(p("d"), name, []byte{2, 0, 0, 0}, 0), syscall.EOPNOTSUPP)
	}
	wantErrno(t, "setfacl of a file", syscall.Setxattr(p("rw"), "system.posix_acl_access", []byte{2, 0, 0, 0}, 0), syscall.EOPNOTSUPP)

	// name lengths
	name255 := strings.Repeat("n", 255)
	name256 := strings.Repeat("n", 256)
	must(t, "create a 255-byte name", os.WriteFile(p(name255), []byte("255"), 0o644))
	wantFile(t, p(name255), []byte("255"))
	wantErrno(t, "create a 256-byte name", os.WriteFile(p(name256), nil, 0o644), syscall.ENAMETOOLONG)
	wantErrno(t, "mkdir a 256-byte name", os.Mkdir(p(name256), 0o755), syscall.ENAMETOOLONG)
	wantErrno(t, "symlink a 256-byte name", os.Symlink("x", p(name256)), syscall.ENAMETOOLONG)
	wantErrno(t, "link to a 256-byte name", os.Link(p("rw"), p(name256)), syscall.ENAMETOOLONG)
	wantErrno(t, "rename to a 256-byte name", syscall.Rename(p("rw"), p(name256)), syscall.ENAMETOOLONG)
	_, err = os.Lstat(p(name256))
	wantErrno(t, "stat a 256-byte name", err, syscall.ENAMETOOLONG)
	must(t, "rename to a 255-byte name in d", syscall.Rename(p(name255), p("d", name255)))
	wantD = []string{"keep", "l2", name255}
	checks = append(checks, func() { wantFile(t, p("d", name255), []byte("255")) })

	// EISDIR and ENOTDIR
	_, err = os.OpenFile(p("d"), os.O_WRONLY, 0)
	wantErrno(t, "open a directory for writing", err, syscall.EISDIR)
	_, err = os.OpenFile(p("d"), os.O_RDWR, 0)
	wantErrno(t, "open a directory read-write", err, syscall.EISDIR)
	_, err = os.Stat(p("rw", "x"))
	wantErrno(t, "stat through a file", err, syscall.ENOTDIR)
	wantErrno(t, "create through a file", os.WriteFile(p("rw", "x"), nil, 0o644), syscall.ENOTDIR)
	wantErrno(t, "mkdir through a file", os.Mkdir(p("rw", "x"), 0o755), syscall.ENOTDIR)
	_, err = os.ReadDir(p("rw"))
	wantErrno(t, "readdir of a file", err, syscall.ENOTDIR)

	if t.Failed() {
		t.FailNow()
	}
	before := readTree(t, m.Dir, true)
	m.remount()
	t.Log("remounted")
	after := readTree(t, m.Dir, true)
	compareTrees(t, "after remount", after, before)
	checkReaddir()
	for _, check := range checks {
		check()
	}
	checkBucket(t, m)
}

// TestOpenDirAfterRmdir: fstat on a descriptor of a directory removed
// meanwhile must work (and report no links), as on local filesystems.
func TestOpenDirAfterRmdir(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	must(t, "mkdir", os.Mkdir(m.path("dir"), 0o700))
	fd, err := syscall.Open(m.path("dir"), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	must(t, "open dir", err)
	defer syscall.Close(fd)
	must(t, "rmdir", syscall.Rmdir(m.path("dir")))
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Errorf("fstat of an open, removed directory: %v", err)
	} else if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Mode&0o777 != 0o700 {
		t.Errorf("fstat of an open, removed directory: mode %o", st.Mode)
	}
	// The kernel marks a removed directory dead and answers getdents with
	// ENOENT itself, as on ext4.
	if _, err := unix.Getdents(fd, make([]byte, 4096)); err != syscall.ENOENT {
		t.Errorf("getdents of an open, removed directory: %v, want ENOENT as on ext4", err)
	}
}

// TestLocks: without cross-host locking, flock and OFD locks are still
// honoured among the descriptors of one host (the kernel keeps them).
func TestLocks(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	must(t, "write", os.WriteFile(m.path("lk"), []byte("x"), 0o644))
	f1, err := os.OpenFile(m.path("lk"), os.O_RDWR, 0)
	must(t, "open 1", err)
	defer f1.Close()
	f2, err := os.OpenFile(m.path("lk"), os.O_RDWR, 0)
	must(t, "open 2", err)
	defer f2.Close()

	must(t, "flock 1", unix.Flock(int(f1.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	wantErrno(t, "conflicting flock", unix.Flock(int(f2.Fd()), unix.LOCK_EX|unix.LOCK_NB), syscall.EWOULDBLOCK)
	must(t, "unlock", unix.Flock(int(f1.Fd()), unix.LOCK_UN))
	must(t, "flock 2 after unlock", unix.Flock(int(f2.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	must(t, "unlock 2", unix.Flock(int(f2.Fd()), unix.LOCK_UN))

	wl := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	must(t, "OFD write lock", unix.FcntlFlock(f1.Fd(), unix.F_OFD_SETLK, &wl))
	rl := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	wantErrno(t, "conflicting OFD read lock", unix.FcntlFlock(f2.Fd(), unix.F_OFD_SETLK, &rl), syscall.EAGAIN)
	q := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	must(t, "OFD getlk", unix.FcntlFlock(f2.Fd(), unix.F_OFD_GETLK, &q))
	if q.Type != unix.F_WRLCK {
		t.Errorf("F_OFD_GETLK reports lock type %d, want F_WRLCK", q.Type)
	}
}

// TestTimes checks the timestamps the kernel reports: writes change mtime
// and ctime, chmod only ctime, names added or removed change their
// directory's mtime; all of them survive a remount to the nanosecond.
func TestTimes(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{Timeout: time.Nanosecond}) // no kernel attribute cache
	p := m.path
	must(t, "mkdir", os.Mkdir(p("d"), 0o755))
	must(t, "write", os.WriteFile(p("d", "f"), []byte("one"), 0o644))
	tick := func() { time.Sleep(20 * time.Millisecond) }
	mt := func(st syscall.Stat_t) time.Time { return time.Unix(st.Mtim.Unix()) }
	ct := func(st syscall.Stat_t) time.Time { return time.Unix(st.Ctim.Unix()) }

	f0, d0 := statT(t, p("d", "f")), statT(t, p("d"))
	tick()
	f, err := os.OpenFile(p("d", "f"), os.O_WRONLY, 0)
	must(t, "open", err)
	_, err = f.WriteAt([]byte("ONE"), 0)
	must(t, "write", err)
	f1 := statT(t, p("d", "f")) // before close: the pending write's time
	must(t, "close", f.Close())
	f2 := statT(t, p("d", "f"))
	if !mt(f1).After(mt(f0)) || !ct(f1).After(ct(f0)) {
		t.Errorf("write: mtime %v -> %v, ctime %v -> %v; want both later", mt(f0), mt(f1), ct(f0), ct(f1))
	}
	if !mt(f2).Equal(mt(f1)) {
		t.Errorf("close changed mtime %v -> %v", mt(f1), mt(f2))
	}
	tick()
	must(t, "chmod", syscall.Chmod(p("d", "f"), 0o600))
	f3 := statT(t, p("d", "f"))
	if !mt(f3).Equal(mt(f2)) || !ct(f3).After(ct(f2)) {
		t.Errorf("chmod: mtime %v -> %v (want unchanged), ctime %v -> %v (want later)", mt(f2), mt(f3), ct(f2), ct(f3))
	}
	if d1 := statT(t, p("d")); !mt(d1).Equal(mt(d0)) {
		t.Errorf("writing a file changed its directory's mtime %v -> %v", mt(d0), mt(d1))
	}
	tick()
	must(t, "create g", os.WriteFile(p("d", "g"), nil, 0o644))
	d2 := statT(t, p("d"))
	if !mt(d2).After(mt(d0)) {
		t.Errorf("create: directory mtime %v -> %v, want later", mt(d0), mt(d2))
	}
	tick()
	must(t, "unlink g", syscall.Unlink(p("d", "g")))
	d3 := statT(t, p("d"))
	if !mt(d3).After(mt(d2)) {
		t.Errorf("unlink: directory mtime %v -> %v, want later", mt(d2), mt(d3))
	}
	m.remount()
	if f4 := statT(t, p("d", "f")); !mt(f4).Equal(mt(f3)) || !ct(f4).Equal(ct(f3)) {
		t.Errorf("after remount: file mtime %v ctime %v, want %v %v", mt(f4), ct(f4), mt(f3), ct(f3))
	}
	if d4 := statT(t, p("d")); !mt(d4).Equal(mt(d3)) {
		t.Errorf("after remount: directory mtime %v, want %v", mt(d4), mt(d3))
	}
}
