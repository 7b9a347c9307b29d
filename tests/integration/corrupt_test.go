package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// TestCorruptInode plants a corrupt object at the key of the next version
// of a file's inode: the mount must keep serving the previous version (and
// every other file), stat must work, the log must say what happened, and
// the next write must commit past the corrupt version.
func TestCorruptInode(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	ctx := context.Background()
	v1 := []byte("version one of f")
	must(t, "write f", os.WriteFile(m.path("f"), v1, 0o644))
	must(t, "write g", os.WriteFile(m.path("g"), []byte("g is fine"), 0o644))
	must(t, "write h", os.WriteFile(m.path("h"), []byte("h, version one"), 0o644))
	fID, hID := statT(t, m.path("f")).Ino, statT(t, m.path("h")).Ino

	// Garbage at f's next version; for h, a valid inode object of the wrong
	// version (a copy of its current one).
	fv := newestVersion(t, m, fID)
	fKey := m.Vol.Keys.Inode(fID, fv+1)
	if _, err := m.Store.Put(ctx, fKey, []byte("this is not an s3gfs inode object")); err != nil {
		t.Fatal(err)
	}
	hv := newestVersion(t, m, hID)
	cur, _, err := m.Store.Get(ctx, m.Vol.Keys.Inode(hID, hv))
	must(t, "get h", err)
	hKey := m.Vol.Keys.Inode(hID, hv+1)
	if _, err := m.Store.Put(ctx, hKey, cur); err != nil {
		t.Fatal(err)
	}

	check := func(when string) {
		t.Helper()
		wantFile(t, m.path("f"), v1)
		wantFile(t, m.path("h"), []byte("h, version one"))
		wantFile(t, m.path("g"), []byte("g is fine"))
		if st := statT(t, m.path("f")); st.Size != int64(len(v1)) || st.Mode&0o777 != 0o644 {
			t.Errorf("%s: stat of f: size %d mode %o", when, st.Size, st.Mode)
		}
		if names := readDirNames(t, m.Dir); strings.Join(names, ",") != "f,g,h" {
			t.Errorf("%s: root holds %q", when, names)
		}
	}
	time.Sleep(1100 * time.Millisecond) // past the kernel's attribute cache and the engine's revalidation
	check("same mount")
	m.remount()
	check("after remount")
	for _, key := range []string{fKey, hKey} {
		wantErrorLine(t, m, key)
	}

	// Writing on top commits a version past the corrupt one.
	v2 := []byte("version two of f")
	must(t, "rewrite f", os.WriteFile(m.path("f"), v2, 0o644))
	if v := newestVersion(t, m, fID); v <= fv+1 {
		t.Errorf("f's newest version is %d, want past the corrupt %d", v, fv+1)
	}
	m.remount()
	wantFile(t, m.path("f"), v2)
}

// newestVersion returns the newest version number of inode id in the store.
func newestVersion(t *testing.T, m *mount, id uint64) uint64 {
	t.Helper()
	page, err := m.Store.List(context.Background(), m.Vol.Keys.InodeDir(id), "", 1)
	must(t, "list versions", err)
	if len(page.Objects) == 0 {
		t.Fatalf("inode %016x has no versions", id)
	}
	_, v, err := m.Vol.Keys.ParseInode(page.Objects[0].Key)
	must(t, "parse inode key", err)
	return v
}

// TestCorruptExtent damages one extent of a file in the bucket: reading
// that extent gives EIO (with a log line), while the file's other extents
// and other files stay readable.
func TestCorruptExtent(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	ctx := context.Background()
	const E = testExtentSize
	big := randBytes(newDiffGen(2).rng, 3*E)
	must(t, "write big", os.WriteFile(m.path("big"), big, 0o644))
	must(t, "write other", os.WriteFile(m.path("other"), big[:E+7], 0o644))
	id := statT(t, m.path("big")).Ino

	n := newestInode(t, m, id)
	var key string
	for _, x := range n.Extents {
		if x.Index == 1 {
			key = m.Vol.Keys.Extent(id, x.EID)
		}
	}
	if key == "" {
		t.Fatalf("big has no extent 1: %+v", n.Extents)
	}
	ext, _, err := m.Store.Get(ctx, key)
	must(t, "get extent", err)
	ext[len(ext)/2] ^= 0x40 // one flipped bit: only the checksum can tell
	if _, err := m.Store.Put(ctx, key, ext); err != nil {
		t.Fatal(err)
	}
	m.remount() // nothing cached in the engine or the kernel

	f, err := os.Open(m.path("big"))
	must(t, "open big", err)
	defer f.Close()
	buf := make([]byte, 4096)
	// The page holding the damaged byte (a random read of the blocks it
	// needs, docs/FORMAT.md §6, or of the whole extent: refused either way).
	damaged := int64(len(ext)/2-format.EnvelopeHeader) &^ 4095
	_, err = f.ReadAt(buf, E+damaged)
	wantErrno(t, "read of the corrupt extent", err, syscall.EIO)
	got := make([]byte, E)
	_, err = f.ReadAt(got, 0)
	wantContent(t, "read of extent 0", got, err, big[:E])
	_, err = f.ReadAt(got, 2*E)
	wantContent(t, "read of extent 2", got, err, big[2*E:])
	wantFile(t, m.path("other"), big[:E+7])
	if _, err := os.ReadFile(m.path("big")); errnoOf(err) != syscall.EIO {
		t.Errorf("reading all of big: %v, want EIO", err)
	}
	wantErrorLine(t, m, key)
	if st := statT(t, m.path("big")); st.Size != 3*E {
		t.Errorf("stat of big: size %d", st.Size)
	}
}

// TestCorruptExtentBlock damages one block of an extent written with
// block checksums (docs/FORMAT.md §5.3, §6): a random read of the damaged
// block gives EIO with a log line naming the extent, again and again (it
// is never cached); a random read of another block of that extent reads
// it, checked on its own; a sequential read of the file reads whole
// extents and gives EIO. Restored, the block reads.
func TestCorruptExtentBlock(t *testing.T) {
	t.Parallel()
	const E = 1 << 20 // 16 blocks of 64 KiB
	m := mountVolume(t, mountOpts{ExtentSize: E})
	ctx := context.Background()
	big := randBytes(newDiffGen(3).rng, 3*E)
	must(t, "write big", os.WriteFile(m.path("big"), big, 0o644))
	id := statT(t, m.path("big")).Ino
	var ref format.ExtentRef
	for _, x := range newestInode(t, m, id).Extents {
		if x.Index == 1 {
			ref = x
		}
	}
	if ref.BlockShift != format.DefaultBlockShift || ref.Blocks() != E>>format.DefaultBlockShift {
		t.Fatalf("extent 1 of big: %+v, want 64 KiB blocks", ref)
	}
	key := m.Vol.Keys.Extent(id, ref.EID)
	good, _, err := m.Store.Get(ctx, key)
	must(t, "get extent", err)
	const bs = 1 << format.DefaultBlockShift
	const badBlock = 9
	ext := append([]byte(nil), good...)
	ext[format.EnvelopeHeader+badBlock*bs+1234] ^= 0x08
	if _, err := m.Store.Put(ctx, key, ext); err != nil {
		t.Fatal(err)
	}
	m.remount()

	f, err := os.Open(m.path("big"))
	must(t, "open big", err)
	defer f.Close()
	buf := make([]byte, 4096)
	for i := 0; i < 2; i++ {
		_, err = f.ReadAt(buf, E+badBlock*bs+4096)
		wantErrno(t, "random read of the damaged block", err, syscall.EIO)
	}
	wantErrorLine(t, m, key)
	for _, b := range []int64{0, badBlock - 1, badBlock + 1, E/bs - 1} {
		off := E + b*bs + 8192
		_, err = f.ReadAt(buf, off)
		wantContent(t, fmt.Sprintf("random read of block %d of the damaged extent", b), buf, err, big[off:off+4096])
	}
	if _, err := os.ReadFile(m.path("big")); errnoOf(err) != syscall.EIO {
		t.Errorf("reading all of big: %v, want EIO", err)
	}
	if _, err := m.Store.Put(ctx, key, good); err != nil {
		t.Fatal(err)
	}
	off := int64(E + badBlock*bs + 4096)
	_, err = f.ReadAt(buf, off)
	wantContent(t, "random read of the restored block", buf, err, big[off:off+4096])
}

// newestInode reads and decodes the newest version of inode id.
func newestInode(t *testing.T, m *mount, id uint64) *format.Inode {
	t.Helper()
	obj, _, err := m.Store.Get(context.Background(), m.Vol.Keys.Inode(id, newestVersion(t, m, id)))
	must(t, "get inode", err)
	n, err := format.DecodeInode(obj, m.Vol.Header.ExtentSize)
	must(t, "decode inode", err)
	return n
}

// wantErrorLine fails the test unless the mount's log has an error line
// naming key.
func wantErrorLine(t *testing.T, m *mount, key string) {
	t.Helper()
	for _, line := range strings.Split(m.Log.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, key) {
			t.Logf("log: %s", line)
			return
		}
	}
	t.Errorf("the log has no error line naming %s:\n%s", key, m.Log)
}
