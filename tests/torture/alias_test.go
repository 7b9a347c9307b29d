package torture

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReadYourWritesThroughOlderName: host b renames f to g; host a, whose
// cached view still has f (legitimately, for up to a second), opens g with
// O_CREAT, writes and closes, then reads the same file (same inode number)
// through f. It must read what it has just written.
//
// Found by the torture test (seed 82: "stale-read", host 0 reading a file
// it had itself just rewritten). The open(O_CREAT) of g goes to the
// kernel's CREATE (a's stale view says g does not exist); vfs.Create finds
// that g does exist and opens it, but go-fuse registers every CREATE reply
// as a brand-new node (exclusively), so the kernel ends up with two
// inodes for one file: the one behind f keeps its cached pages and size,
// and the engine, deciding per file that nothing changed, lets it keep
// them (FOPEN_KEEP_CACHE).
func TestReadYourWritesThroughOlderName(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-host FUSE test")
	}
	c := newCluster(t, 1)
	a, b := c.mount(0), c.mount(1)
	if err := os.Mkdir(a.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte("old content....\n"), 360)
	if err := os.WriteFile(a.path("d/f"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(a.path("d/f")); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("read back: %v", err)
	}
	eventually(t, 10*time.Second, "d/f visible on host b", func() error { _, err := os.Stat(b.path("d/f")); return err })
	time.Sleep(1200 * time.Millisecond) // let a's view of d age past revalidation...
	var before syscall.Stat_t
	if err := syscall.Stat(a.path("d/f"), &before); err != nil { // ...then refresh it and the kernel's entry
		t.Fatal(err)
	}
	if err := os.Rename(b.path("d/f"), b.path("d/g")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(a.path("d/g"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var written syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &written)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	want := []byte("new, written by host a itself\n")
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(a.path("d/f"))
	if err != nil {
		t.Logf("reading d/f on host a: %v (its entry expired: not reproduced)", err)
		return
	}
	if written.Ino != before.Ino {
		t.Logf("host a wrote inode %x, d/f was %x: not the same file, not reproduced", written.Ino, before.Ino)
		return
	}
	if !bytes.Equal(got, want) {
		t.Logf("host a log:\n%s", a.log)
		t.Fatalf("host a wrote %q to inode %x through d/g and closed it; reading the same inode through d/f (a name host b had just renamed to d/g) on host a returned %d bytes of the old content %q…",
			want, written.Ino, len(got), got[:min(len(got), 16)])
	}
}
