package multihost

import (
	"bytes"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// TestMmapAndExec: binaries run from a mount, and shared writable mappings
// reach the bucket on msync and on close. (It runs against a separate
// mount process: a process that maps or executes files from a FUSE mount
// it serves itself can deadlock on its own page faults.)
func TestMmapAndExec(t *testing.T) {
	const ext = 64 << 10
	v := newVolume(t, volume.FormatOptions{ExtentSize: ext})
	a := v.mount(t)
	bin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.path("true"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(a.path("true")).CombinedOutput(); err != nil {
		t.Fatalf("executing a binary from the mount: %v %s", err, out)
	}

	data := bytes.Repeat([]byte("mapped "), ext/7*2) // about two extents
	if err := os.WriteFile(a.path("f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(a.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := syscall.Mmap(int(f.Fd()), 0, len(data), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mem, data) {
		t.Fatal("mapped content differs from the file")
	}
	copy(mem[10:], "MSYNC")
	copy(data[10:], "MSYNC")
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	b := v.mount(t) // another host sees what msync + fsync made durable
	if got, err := os.ReadFile(b.path("f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after msync and fsync, another host reads different content: %v", err)
	}
	copy(mem[ext+5:], "CLOSE")
	copy(data[ext+5:], "CLOSE")
	if err := syscall.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(b.path("f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after munmap and close, another host reads different content: %v", err)
	}
}
