package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// secondHost mounts m's volume again, on its own directory and with its own
// engine: another host of the same volume.
func (m *mount) secondHost(t *testing.T) *mount {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vol, err := volume.Open(ctx, m.Store, m.URL, true)
	if err != nil {
		t.Fatalf("open volume: %v", err)
	}
	h := &mount{t: t, Dir: t.TempDir(), Store: m.Store, URL: m.URL, Vol: vol, Log: &logBuffer{}, opts: m.opts}
	h.mount()
	t.Cleanup(func() {
		h.unmount()
		if t.Failed() {
			t.Logf("log of the second host at %s:\n%s", h.Dir, h.Log)
		}
	})
	return h
}

// waitVisible waits until p exists (another host's new name becomes
// visible once the directory is revalidated).
func waitVisible(t *testing.T, p string) {
	t.Helper()
	if !waitFor(5*time.Second, func() bool { _, err := os.Lstat(p); return err == nil }) {
		t.Fatalf("%s did not appear within 5s", p)
	}
}

// TestTwoHosts mounts one volume twice in this process (two engines, two
// mountpoints: two hosts) and checks the cross-host guarantees of
// PROTOCOL.md: close-to-open consistency, O_EXCL and mkdir deciding races,
// and concurrent writes to disjoint ranges all surviving.
func TestTwoHosts(t *testing.T) {
	t.Parallel()
	t.Run("CloseToOpen", func(t *testing.T) {
		t.Parallel()
		a := mountVolume(t, mountOpts{})
		b := a.secondHost(t)
		must(t, "write v1", os.WriteFile(a.path("f"), []byte("v1"), 0o644))
		waitVisible(t, b.path("f"))
		wantFile(t, b.path("f"), []byte("v1"))
		for i := 2; i < 6; i++ {
			v := []byte(fmt.Sprintf("version %d, longer than the one before%s", i, bytes.Repeat([]byte("!"), i*10)))
			must(t, "write", os.WriteFile(a.path("f"), v, 0o644))
			wantFile(t, b.path("f"), v) // right after A's close
			// and the other way round
			w := []byte(fmt.Sprintf("from b %d", i))
			must(t, "write on b", os.WriteFile(b.path("f"), w, 0o644))
			wantFile(t, a.path("f"), w)
		}
	})
	t.Run("ExclusiveCreate", func(t *testing.T) {
		t.Parallel()
		a := mountVolume(t, mountOpts{})
		b := a.secondHost(t)
		for round := 0; round < 10; round++ {
			name := fmt.Sprintf("lock%d", round)
			dir := fmt.Sprintf("dir%d", round)
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i, h := range []*mount{a, b} {
				wg.Add(2)
				go func() {
					defer wg.Done()
					fd, err := syscall.Open(h.path(name), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
					if err == nil {
						_, err = syscall.Write(fd, []byte(fmt.Sprintf("host %d", i)))
						syscall.Close(fd)
					}
					errs[i] = err
				}()
				go func() {
					defer wg.Done()
					errs[2+i] = syscall.Mkdir(h.path(dir), 0o755)
				}()
			}
			wg.Wait()
			for k, what := range []string{"O_EXCL create of " + name, "mkdir of " + dir} {
				e1, e2 := errs[2*k], errs[2*k+1]
				ok := (e1 == nil) != (e2 == nil) && (errnoOf(e1) == syscall.EEXIST || errnoOf(e2) == syscall.EEXIST)
				if !ok {
					t.Errorf("round %d: %s from both hosts: %v and %v; want exactly one success and one EEXIST", round, what, e1, e2)
				}
			}
		}
	})
	t.Run("DisjointWrites", func(t *testing.T) {
		t.Parallel()
		// Quick revalidation, so that each host soon sees the other's names.
		a := mountVolume(t, mountOpts{VFS: vfs.Options{Revalidate: 100 * time.Millisecond}})
		b := a.secondHost(t)
		const E = testExtentSize
		for _, tc := range []struct {
			name       string
			size       int
			offA, offB int
		}{
			{"small-file", 1000, 10, 500},
			{"same-extent", 2 * E, 100, E / 2},
			{"other-extents", 3 * E, 100, 2*E + 100},
			{"overwrite-then-append", 2 * E, 100, 2 * E}, // B, committing last, appends
			{"append-then-overwrite", 2 * E, 2 * E, 100}, // A, committing first, appends
		} {
			base := bytes.Repeat([]byte{'.'}, tc.size)
			must(t, "write base", os.WriteFile(a.path(tc.name), base, 0o644))
			waitVisible(t, b.path(tc.name))
			wantFile(t, b.path(tc.name), base)
			fa, err := os.OpenFile(a.path(tc.name), os.O_RDWR, 0)
			must(t, "open on a", err)
			fb, err := os.OpenFile(b.path(tc.name), os.O_RDWR, 0)
			must(t, "open on b", err)
			_, err = fa.WriteAt([]byte("AAAA"), int64(tc.offA))
			must(t, "write on a", err)
			_, err = fb.WriteAt([]byte("BBBB"), int64(tc.offB))
			must(t, "write on b", err)
			must(t, "close on a", fa.Close())
			must(t, "close on b", fb.Close())
			want := make([]byte, max(tc.size, tc.offA+4, tc.offB+4))
			copy(want, base)
			copy(want[tc.offA:], "AAAA")
			copy(want[tc.offB:], "BBBB")
			for _, h := range []*mount{a, b} {
				got, err := os.ReadFile(h.path(tc.name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					has := func(off int, s string) bool { return len(got) >= off+4 && string(got[off:off+4]) == s }
					t.Errorf("%s: after disjoint writes from two hosts (A closing first), %s holds A's bytes: %v, B's bytes: %v; size %d, want %d",
						tc.name, h.Dir, has(tc.offA, "AAAA"), has(tc.offB, "BBBB"), len(got), len(want))
				}
			}
		}
	})
}
