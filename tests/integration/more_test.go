package integration

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// TestWritebackTimer: data written to a file that stays open reaches the
// bucket within the write-back delay, with no close or fsync.
func TestWritebackTimer(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{VFS: vfs.Options{WritebackDelay: 200 * time.Millisecond}})
	f, err := os.Create(m.path("f"))
	must(t, "create", err)
	defer f.Close()
	data := bytes.Repeat([]byte("timer "), 60000) // a few extents
	_, err = f.Write(data)
	must(t, "write", err)
	var got []byte
	ok := waitFor(10*time.Second, func() bool {
		got, err = readFromStore(t, m, "f")
		return err == nil && bytes.Equal(got, data)
	})
	if !ok {
		t.Errorf("data written to an open file is not in the bucket 10s later (write-back delay 200ms): %d bytes, %v", len(got), err)
	}
}

// TestReadOnlyMount remounts a volume read-only: everything reads as
// before, and every change fails with EROFS.
func TestReadOnlyMount(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	must(t, "mkdir", os.Mkdir(m.path("d"), 0o755))
	must(t, "write", os.WriteFile(m.path("d", "f"), []byte("kept"), 0o644))
	m.opts.ReadOnly = true
	m.remount()
	wantFile(t, m.path("d", "f"), []byte("kept"))
	wantErrno(t, "create", os.WriteFile(m.path("g"), nil, 0o644), syscall.EROFS)
	_, err := os.OpenFile(m.path("d", "f"), os.O_WRONLY, 0)
	wantErrno(t, "open for writing", err, syscall.EROFS)
	wantErrno(t, "mkdir", os.Mkdir(m.path("e"), 0o755), syscall.EROFS)
	wantErrno(t, "unlink", syscall.Unlink(m.path("d", "f")), syscall.EROFS)
	wantErrno(t, "rename", syscall.Rename(m.path("d", "f"), m.path("d", "g")), syscall.EROFS)
	wantErrno(t, "chmod", syscall.Chmod(m.path("d", "f"), 0o600), syscall.EROFS)
	wantErrno(t, "truncate", syscall.Truncate(m.path("d", "f"), 0), syscall.EROFS)
	wantErrno(t, "setxattr", syscall.Setxattr(m.path("d", "f"), "user.x", []byte("y"), 0), syscall.EROFS)
	m.opts.ReadOnly = false
	m.remount()
	wantFile(t, m.path("d", "f"), []byte("kept"))
}

// TestConcurrentCreates: goroutines create, write, rename and remove files
// in one directory at once (the engine group-commits the directory);
// every outcome must be there after a remount.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	// Two extents of write-back memory for all writers: uploads are forced
	// while other files are being written.
	m := mountVolume(t, mountOpts{VFS: vfs.Options{BufferSize: 2 * testExtentSize}})
	const workers, files = 8, 40
	must(t, "mkdir", os.Mkdir(m.path("d"), 0o755))
	content := func(w, i int) []byte {
		n := 10 + (w*files+i)*97%(testExtentSize/2)
		if i%10 == 0 {
			n += testExtentSize // a few files span extents
		}
		return bytes.Repeat([]byte{byte('a' + w)}, n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*files*3)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < files; i++ {
				name := m.path("d", fmt.Sprintf("w%d-%d", w, i))
				if err := os.WriteFile(name, content(w, i), 0o644); err != nil {
					errs <- err
					continue
				}
				switch i % 4 {
				case 1:
					if err := syscall.Rename(name, name+".renamed"); err != nil {
						errs <- err
					}
				case 2:
					if err := syscall.Unlink(name); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent operation: %v", err)
	}
	check := func(when string) {
		names := readDirNames(t, m.path("d"))
		if len(names) != workers*files*3/4 {
			t.Errorf("%s: %d names in d, want %d", when, len(names), workers*files*3/4)
		}
		for w := 0; w < workers; w++ {
			for i := 0; i < files; i++ {
				name := m.path("d", fmt.Sprintf("w%d-%d", w, i))
				switch i % 4 {
				case 1:
					wantFile(t, name+".renamed", content(w, i))
				case 2:
					if _, err := os.Lstat(name); !os.IsNotExist(err) {
						t.Errorf("%s: %s should be gone: %v", when, name, err)
					}
				default:
					wantFile(t, name, content(w, i))
				}
			}
		}
	}
	check("same mount")
	m.remount()
	check("after remount")
	checkBucket(t, m)
}

// TestNamespaceWhileOpen: renaming or unlinking names of a file whose
// writes are still uncommitted must not lose them.
func TestNamespaceWhileOpen(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	p := m.path
	must(t, "mkdir", os.Mkdir(p("d"), 0o755))

	f, err := os.Create(p("mv"))
	must(t, "create mv", err)
	_, err = f.Write([]byte("abc"))
	must(t, "write", err)
	must(t, "rename while open", syscall.Rename(p("mv"), p("d", "mv2")))
	_, err = f.Write(bytes.Repeat([]byte("def"), testExtentSize/3+10)) // into a second extent
	must(t, "write after rename", err)
	must(t, "close", f.Close())
	mv := append([]byte("abc"), bytes.Repeat([]byte("def"), testExtentSize/3+10)...)

	must(t, "write h1", os.WriteFile(p("h1"), []byte("old"), 0o644))
	must(t, "link", os.Link(p("h1"), p("d", "h2")))
	f, err = os.OpenFile(p("h1"), os.O_RDWR, 0)
	must(t, "open h1", err)
	_, err = f.WriteAt([]byte("NEW"), 0)
	must(t, "write h1", err)
	must(t, "unlink h1 while open", syscall.Unlink(p("h1")))
	_, err = f.WriteAt([]byte("+more"), 3)
	must(t, "write after unlink", err)
	must(t, "close h1", f.Close())

	check := func(when string) {
		wantFile(t, p("d", "mv2"), mv)
		wantFile(t, p("d", "h2"), []byte("NEW+more"))
		wantNlink(t, p("d", "h2"), 1)
		for _, gone := range []string{"mv", "h1"} {
			if _, err := os.Lstat(p(gone)); !os.IsNotExist(err) {
				t.Errorf("%s: %s: %v, want ENOENT", when, gone, err)
			}
		}
	}
	check("same mount")
	m.remount()
	check("after remount")
	checkBucket(t, m)
}
