package multihost

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// visible is how long another host may take to show a change: about one
// sync interval (500ms here); the kernel's caches are dropped when the
// change is picked up.
const visible = 5 * time.Second

func TestCloseToOpen(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{ExtentSize: 256 << 10})
	a, b := v.mount(t), v.mount(t)
	if err := os.WriteFile(a.path("f"), []byte("version one"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, visible, "new file visible on host b", func() error {
		got, err := os.ReadFile(b.path("f"))
		if err != nil {
			return err
		}
		if string(got) != "version one" {
			return fmt.Errorf("read %q", got)
		}
		return nil
	})
	// Close on a, then open on b: b must see a's data at once, including
	// a longer size than it cached.
	want := bytes.Repeat([]byte("version two, longer than before. "), 20000) // spans extents
	if err := os.WriteFile(a.path("f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(b.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("after close on a, open on b read %d bytes (want %d): close-to-open broken", len(got), len(want))
	}
}

func TestStatAndListVisibleWithinInterval(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t), v.mount(t)
	if err := os.Mkdir(a.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Warm b's caches of d.
	eventually(t, visible, "d on b", func() error { _, err := os.ReadDir(b.path("d")); return err })
	if err := os.WriteFile(a.path("d/x"), []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, visible, "ls on b shows x", func() error {
		es, err := os.ReadDir(b.path("d"))
		if err != nil {
			return err
		}
		if len(es) != 1 || es[0].Name() != "x" {
			return fmt.Errorf("ls shows %v", es)
		}
		return nil
	})
	if err := os.Chmod(a.path("d/x"), 0o640); err != nil {
		t.Fatal(err)
	}
	eventually(t, visible, "stat on b shows the chmod", func() error {
		st, err := os.Stat(b.path("d/x"))
		if err != nil {
			return err
		}
		if st.Mode().Perm() != 0o640 || st.Size() != 5 {
			return fmt.Errorf("mode %v size %d", st.Mode(), st.Size())
		}
		return nil
	})
	if err := os.Remove(a.path("d/x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, visible, "unlink visible on b", func() error {
		if _, err := os.Stat(b.path("d/x")); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat: %v", err)
		}
		return nil
	})
}

// TestOtherHostsChangesDropKernelCaches: with the kernel caching lookups
// and attributes for an hour, every kind of change of another host still
// shows within about one sync interval, because each reaches the kernel as
// an invalidation when this host picks it up (pkg/s3gfs/vfs/invalidate.go).
// One missing would show the old state here for an hour.
func TestOtherHostsChangesDropKernelCaches(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t, "--cache-timeout", "1h"), v.mount(t, "--cache-timeout", "1h")
	for _, d := range []string{"d", "d/sub"} {
		if err := os.Mkdir(a.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"d/f", "d/g", "d/h"} {
		if err := os.WriteFile(a.path(f), []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Warm b's caches: the lookup and attributes of every name, and a
	// lookup of a name that does not exist yet.
	eventually(t, visible, "b sees every name", func() error {
		for _, p := range []string{"d/f", "d/g", "d/h", "d/sub"} {
			if _, err := os.Lstat(b.path(p)); err != nil {
				return err
			}
		}
		return nil
	})
	if _, err := os.Lstat(b.path("d/new")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat of a name not created yet: %v", err)
	}
	sub, err := os.Lstat(b.path("d/sub"))
	if err != nil {
		t.Fatal(err)
	}
	step := func(what string, change func() error, shows func() error) {
		t.Helper()
		if err := change(); err != nil {
			t.Fatalf("%s on a: %v", what, err)
		}
		eventually(t, visible, what+" shows on b", shows)
	}
	statB := func(p string) (os.FileInfo, error) { return os.Lstat(b.path(p)) }
	gone := func(p string) func() error {
		return func() error {
			if _, err := statB(p); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("stat %s: %v, want ENOENT", p, err)
			}
			return nil
		}
	}
	step("chmod", func() error { return os.Chmod(a.path("d/f"), 0o600) }, func() error {
		if st, err := statB("d/f"); err != nil || st.Mode().Perm() != 0o600 {
			return fmt.Errorf("stat: %v, %v", st, err)
		}
		return nil
	})
	step("a write growing a file", func() error { return os.WriteFile(a.path("d/g"), []byte("1234567890"), 0o644) }, func() error {
		if st, err := statB("d/g"); err != nil || st.Size() != 10 {
			return fmt.Errorf("stat: %v, %v", st, err)
		}
		return nil
	})
	// A file b holds open keeps the version b opened; once b closes it,
	// a's version shows (the kernel was not let to cache the attributes
	// of the held version).
	held, err := os.Open(b.path("d/g"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.path("d/g"), []byte("12345678901234567890"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // (not a bound: time for b to learn of it while holding g)
	if _, err := statB("d/g"); err != nil {
		t.Fatal(err)
	}
	step("the close of a file another host changed while it was open", held.Close, func() error {
		if st, err := statB("d/g"); err != nil || st.Size() != 20 {
			return fmt.Errorf("stat: %v, %v", st, err)
		}
		return nil
	})
	// The new name first: b's lookup of it may revalidate d before the
	// change is announced, a path that must drop d/h too.
	step("rename", func() error { return os.Rename(a.path("d/h"), a.path("d/h2")) }, func() error {
		if _, err := statB("d/h2"); err != nil {
			return err
		}
		return gone("d/h")()
	})
	step("unlink", func() error { return os.Remove(a.path("d/f")) }, gone("d/f"))
	step("create over a failed lookup", func() error { return os.WriteFile(a.path("d/new"), nil, 0o644) }, func() error {
		_, err := statB("d/new")
		return err
	})
	step("rmdir", func() error { return os.Remove(a.path("d/sub")) }, gone("d/sub"))
	step("mkdir of the same name", func() error { return os.Mkdir(a.path("d/sub"), 0o700) }, func() error {
		st, err := statB("d/sub")
		if err != nil {
			return err
		}
		if st.Sys().(*syscall.Stat_t).Ino == sub.Sys().(*syscall.Stat_t).Ino || st.Mode().Perm() != 0o700 {
			return fmt.Errorf("d/sub is still the old directory: %v", st.Mode())
		}
		return nil
	})
}

func TestExclusiveMkdirRace(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t), v.mount(t)
	for round := 0; round < 20; round++ {
		name := fmt.Sprintf("lock-%d", round)
		var errs [2]error
		var wg sync.WaitGroup
		for i, h := range []*host{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = os.Mkdir(h.path(name), 0o755) }()
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, fs.ErrExist):
				t.Fatalf("round %d: mkdir failed with %v, want success or EEXIST", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d hosts won mkdir %s, want exactly 1 (errors %v)", round, wins, name, errs)
		}
	}
}

func TestExclusiveCreateRace(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t), v.mount(t)
	for round := 0; round < 20; round++ {
		name := fmt.Sprintf("excl-%d", round)
		var errs [2]error
		var wg sync.WaitGroup
		for i, h := range []*host{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.OpenFile(h.path(name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				if err == nil {
					f.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: O_EXCL results %v, want exactly one success", round, errs)
		}
	}
}

func TestRacingCreatesNoneLost(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t), v.mount(t)
	if err := os.Mkdir(a.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	eventually(t, visible, "d on b", func() error { _, err := os.Stat(b.path("d")); return err })
	const perHost, threads = 40, 4
	var wg sync.WaitGroup
	errc := make(chan error, 2*threads)
	var want []string
	for hi, h := range []*host{a, b} {
		for th := 0; th < threads; th++ {
			for i := 0; i < perHost/threads; i++ {
				want = append(want, fmt.Sprintf("h%d-t%d-%02d", hi, th, i))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perHost/threads; i++ {
					name := fmt.Sprintf("h%d-t%d-%02d", hi, th, i)
					if err := os.WriteFile(h.path("d/"+name), []byte(name), 0o644); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	sort.Strings(want)
	for _, h := range []*host{a, b} {
		eventually(t, visible, "every file on "+h.dir, func() error {
			es, err := os.ReadDir(h.path("d"))
			if err != nil {
				return err
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Name())
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("have %d files, want %d", len(got), len(want))
			}
			return nil
		})
		for _, name := range want {
			got, err := os.ReadFile(h.path("d/" + name))
			if err != nil || string(got) != name {
				t.Fatalf("%s: read %q, %v", name, got, err)
			}
		}
	}
}

func TestDisjointRangeWritesBothKept(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{ExtentSize: 64 << 10})
	a, b := v.mount(t), v.mount(t)
	size := 3 * 64 << 10
	if err := os.WriteFile(a.path("f"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, visible, "f on b", func() error { _, err := os.Stat(b.path("f")); return err })
	for round := 0; round < 5; round++ {
		// Both hosts open the file, then each writes its own ranges (some in
		// the same extent as the other's) and closes: both sets survive.
		fa, err := os.OpenFile(a.path("f"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := os.OpenFile(b.path("f"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		pa := bytes.Repeat([]byte{byte('A' + round)}, 1000)
		pb := bytes.Repeat([]byte{byte('a' + round)}, 1000)
		offA := []int64{100, 70000, 140000}
		offB := []int64{5000, 71500, 190000}
		for i := range offA {
			if _, err := fa.WriteAt(pa, offA[i]); err != nil {
				t.Fatal(err)
			}
			if _, err := fb.WriteAt(pb, offB[i]); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		var ea, eb error
		wg.Add(2)
		go func() { defer wg.Done(); ea = fa.Close() }()
		go func() { defer wg.Done(); eb = fb.Close() }()
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("close: %v, %v", ea, eb)
		}
		for _, h := range []*host{a, b} {
			eventually(t, visible, "both writers' ranges on "+h.dir, func() error {
				got, err := os.ReadFile(h.path("f"))
				if err != nil {
					return err
				}
				if len(got) != size {
					return fmt.Errorf("size %d", len(got))
				}
				for i := range offA {
					if !bytes.Equal(got[offA[i]:offA[i]+1000], pa) {
						return fmt.Errorf("round %d: host a's write at %d lost", round, offA[i])
					}
					if !bytes.Equal(got[offB[i]:offB[i]+1000], pb) {
						return fmt.Errorf("round %d: host b's write at %d lost", round, offB[i])
					}
				}
				return nil
			})
		}
	}
}

func TestRenameRaceOneWinner(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{})
	a, b := v.mount(t), v.mount(t)
	for round := 0; round < 10; round++ {
		src := fmt.Sprintf("src-%d", round)
		if err := os.WriteFile(a.path(src), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, visible, "src on b", func() error { _, err := os.Stat(b.path(src)); return err })
		var errs [2]error
		var wg sync.WaitGroup
		for i, h := range []*host{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = os.Rename(h.path(src), h.path(fmt.Sprintf("dst-%d-%d", round, i))) }()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: rename results %v, want exactly one success", round, errs)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("round %d: losing rename failed with %v, want ENOENT", round, err)
			}
		}
		eventually(t, visible, "exactly one name on both hosts", func() error {
			for _, h := range []*host{a, b} {
				names := 0
				for _, n := range []string{src, fmt.Sprintf("dst-%d-0", round), fmt.Sprintf("dst-%d-1", round)} {
					if got, err := os.ReadFile(h.path(n)); err == nil {
						if string(got) != src {
							return fmt.Errorf("%s holds %q", n, got)
						}
						names++
					}
				}
				if names != 1 {
					return fmt.Errorf("%s sees %d names", h.dir, names)
				}
			}
			return nil
		})
	}
}

func TestUnlinkOfFileOpenOnOtherHost(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{ExtentSize: 64 << 10})
	a, b := v.mount(t), v.mount(t)
	want := bytes.Repeat([]byte("keep reading me "), 40000) // ten extents
	if err := os.WriteFile(a.path("f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	var f *os.File
	eventually(t, visible, "open on b", func() (err error) { f, err = os.Open(b.path("f")); return err })
	defer f.Close()
	head := make([]byte, 100)
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(a.path("f")); err != nil {
		t.Fatal(err)
	}
	eventually(t, visible, "unlink visible on b", func() error {
		if _, err := os.Stat(b.path("f")); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat: %v", err)
		}
		return nil
	})
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatalf("reading the unlinked file through b's open handle: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("b's open handle read different content after a's unlink")
	}
}

func TestOpenHandleKeepsItsVersion(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{ExtentSize: 64 << 10})
	a, b := v.mount(t), v.mount(t)
	old := bytes.Repeat([]byte("old "), 50000)
	if err := os.WriteFile(a.path("f"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	var f *os.File
	eventually(t, visible, "open on b", func() (err error) { f, err = os.Open(b.path("f")); return err })
	defer f.Close()
	if err := os.WriteFile(a.path("f"), bytes.Repeat([]byte("new "), 50000), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // several sync intervals
	got := make([]byte, len(old))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Fatal("an open handle on b saw a's newer version instead of the one it opened")
	}
	f.Close()
	got, err := os.ReadFile(b.path("f"))
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("new "), 50000)) {
		t.Fatalf("a new open on b does not see a's version: %v", err)
	}
}

var _ = syscall.ENOENT
