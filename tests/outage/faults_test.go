package outage

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
)

// TestTransientFaultsInvisible: a steady workload on a host whose store
// answers 5% 503 SlowDown and 3% 500, drops 2% of connections before the
// request reaches it and 2% after it handled it (the client cannot tell
// whether a write happened), and cuts 3% of response bodies short. Every
// operation must succeed and read back exactly, and another host must
// see exactly the result: the retries hide every fault.
func TestTransientFaultsInvisible(t *testing.T) {
	if testing.Short() {
		t.Skip("real mounts under injected faults")
	}
	v := newVolume(t)
	a := v.mount(true, 250*time.Millisecond, 30*time.Second)
	b := v.mount(false, 250*time.Millisecond, 30*time.Second)
	for _, d := range []string{"x", "y"} {
		if err := os.Mkdir(a.Path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a.proxy.SetFaults(faultproxy.Faults{
		Latency: time.Millisecond, Jitter: 3 * time.Millisecond,
		SlowDown: 0.05, InternalError: 0.03,
		DropBefore: 0.02, DropAfter: 0.02, DropMidBody: 0.03,
	})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	want := map[string][]byte{}
	var names []string
	start := time.Now()
	ops := 0
	for time.Since(start) < 15*time.Second {
		ops++
		switch x := rng.IntN(10); {
		case x < 5 || len(names) < 3:
			name := fmt.Sprintf("%s/f%d", []string{"x", "y"}[rng.IntN(2)], ops)
			data := pattern(fmt.Sprintf("f%d", ops), rng.IntN(200<<10))
			if err := os.WriteFile(a.Path(name), data, 0o644); err != nil {
				t.Fatalf("op %d: write %s (%d bytes) under transient faults: %v", ops, name, len(data), err)
			}
			if _, ok := want[name]; !ok {
				names = append(names, name)
			}
			want[name] = data
		case x < 7:
			name := names[rng.IntN(len(names))]
			got, err := os.ReadFile(a.Path(name))
			if err != nil || !bytes.Equal(got, want[name]) {
				t.Fatalf("op %d: read %s under transient faults: %d bytes (want %d), %v", ops, name, len(got), len(want[name]), err)
			}
		case x < 9:
			i := rng.IntN(len(names))
			old := names[i]
			to := fmt.Sprintf("%s/r%d", []string{"x", "y"}[rng.IntN(2)], ops)
			if err := os.Rename(a.Path(old), a.Path(to)); err != nil {
				t.Fatalf("op %d: rename %s %s under transient faults: %v", ops, old, to, err)
			}
			want[to] = want[old]
			delete(want, old)
			names[i] = to
		default:
			i := rng.IntN(len(names))
			if err := os.Remove(a.Path(names[i])); err != nil {
				t.Fatalf("op %d: unlink %s under transient faults: %v", ops, names[i], err)
			}
			delete(want, names[i])
			names = append(names[:i], names[i+1:]...)
		}
	}
	st := a.proxy.Stats()
	t.Logf("%d operations in %v, all succeeded; proxy: %v", ops, time.Since(start).Round(time.Millisecond), st)
	if st.SlowDowns+st.InternalErrs+st.DropsBefore+st.DropsAfter+st.DropsMidBody == 0 {
		t.Fatal("no fault was injected: the test proved nothing")
	}
	a.proxy.SetFaults(faultproxy.Faults{})
	// The other host sees exactly the result.
	eventually(t, 20*time.Second, "host b sees host a's tree", func() error {
		for _, d := range []string{"x", "y"} {
			es, err := os.ReadDir(b.Path(d))
			if err != nil {
				return err
			}
			for _, e := range es {
				if _, ok := want[d+"/"+e.Name()]; !ok {
					return fmt.Errorf("%s/%s should not exist", d, e.Name())
				}
			}
		}
		for name, data := range want {
			got, err := os.ReadFile(b.Path(name))
			if err != nil {
				return err
			}
			if !bytes.Equal(got, data) {
				return fmt.Errorf("%s: %d bytes, want %d", name, len(got), len(data))
			}
		}
		return nil
	})
	if out, code := v.fsck(); code != 0 {
		t.Fatalf("fsck exited %d:\n%s", code, out)
	}
}

// corruptingProxy forwards to the S3 server (Host header, and so the
// signature, unchanged) and, while on, flips one byte in the body of every
// GET response for an inode version (/i/) or extent (/d/) key, whole or
// ranged: a store or network that returns damaged bytes with a 200 (206).
type corruptingProxy struct {
	srv     *httptest.Server
	on      atomic.Bool
	flipped atomic.Int64
}

func newCorruptingProxy(t *testing.T, target string) *corruptingProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &corruptingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		if !p.on.Load() || r.Method != http.MethodGet || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent) ||
			!(strings.Contains(r.URL.Path, "/i/") || strings.Contains(r.URL.Path, "/d/")) {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if len(body) > 0 {
			body[len(body)/2] ^= 0x20
			p.flipped.Add(1)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	p.srv = httptest.NewServer(rp)
	t.Cleanup(p.srv.Close)
	return p
}

// TestCorruptResponsesNeverReturned: while every inode version and extent
// a host fetches arrives with one byte flipped (and a 200), reads on that
// host fail with EIO, or succeed with exactly the right bytes: damaged
// data is never returned to a reader, nor cached. Once the store answers
// correctly again, the same reads return the right data.
func TestCorruptResponsesNeverReturned(t *testing.T) {
	if testing.Short() {
		t.Skip("real mounts")
	}
	v := newVolume(t)
	p := newCorruptingProxy(t, v.srv.Endpoint)
	b := v.mount(false, 250*time.Millisecond, 30*time.Second)
	files := map[string][]byte{
		"big":   pattern("big", 300<<10), // several extents
		"small": pattern("small", 100),   // inline in its inode version
	}
	for name, data := range files {
		if err := os.WriteFile(b.Path(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Host a mounts through the corrupting proxy.
	a := v.mountAt(p.srv.URL, nil, 250*time.Millisecond, 30*time.Second)
	eventually(t, 10*time.Second, "files visible on a", func() error {
		for name := range files {
			if _, err := os.Stat(a.Path(name)); err != nil {
				return err
			}
		}
		return nil
	})
	p.on.Store(true)
	// A file host a has never seen: its inode version (data inline) must
	// come through the damaged store.
	files["late"] = pattern("late", 200)
	if err := os.WriteFile(b.Path("late"), files["late"], 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past the kernel's caches and a sync
	for name, data := range files {
		for i := 0; i < 3; i++ {
			got, err := os.ReadFile(a.Path(name))
			switch {
			case err == nil && !bytes.Equal(got, data):
				t.Fatalf("read %s through a store returning damaged bytes: got %d bytes that differ from what was written: damaged data reached a reader", name, len(got))
			case err != nil && name == "late" && errnoOf(err) == syscall.ENOENT:
				// Not seen yet: the directory's newer version is damaged too.
			case err != nil && errnoOf(err) != syscall.EIO:
				t.Fatalf("read %s through a store returning damaged bytes: %v, want EIO", name, err)
			}
			t.Logf("read %s while damaged: %v", name, err)
		}
	}
	if p.flipped.Load() == 0 {
		t.Fatal("no response was damaged: the test proved nothing")
	}
	p.on.Store(false)
	eventually(t, 30*time.Second, "reads on a return the right data again", func() error {
		for name, data := range files {
			got, err := os.ReadFile(a.Path(name))
			if err != nil {
				return err
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("after the store recovered, %s reads %d bytes that differ from what was written (damaged data cached?)", name, len(got))
			}
		}
		return nil
	})
	t.Logf("%d responses damaged; none reached a reader", p.flipped.Load())
}

// TestCorruptRangedResponsesNeverReturned is TestCorruptResponsesNeverReturned
// for random reads of extents with block checksums (docs/FORMAT.md §6),
// which fetch only the blocks they need with ranged GETs: while every
// response arrives with a byte flipped, each random read fails with EIO or
// returns exactly the right bytes; once the store answers correctly, the
// same reads return the right data (nothing damaged was cached).
func TestCorruptRangedResponsesNeverReturned(t *testing.T) {
	if testing.Short() {
		t.Skip("real mounts")
	}
	const E = 1 << 20 // 16 blocks of 64 KiB
	v := newVolumeSized(t, E)
	p := newCorruptingProxy(t, v.srv.Endpoint)
	b := v.mount(false, 250*time.Millisecond, 30*time.Second)
	data := pattern("ranged", 3*E+1000)
	if err := os.WriteFile(b.Path("big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	a := v.mountAt(p.srv.URL, nil, 250*time.Millisecond, 30*time.Second)
	eventually(t, 10*time.Second, "big visible on a", func() error {
		_, err := os.Stat(a.Path("big"))
		return err
	})
	f, err := os.Open(a.Path("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.on.Store(true)
	offsets := []int64{E + 5*4096, 3 * E, 2*E + 40<<10, 100 << 10, E - 2048, 2*E + 900<<10}
	buf := make([]byte, 4096)
	for i := 0; i < 2; i++ {
		for _, off := range offsets {
			n, err := f.ReadAt(buf, off)
			want := data[off:min(off+4096, int64(len(data)))]
			switch {
			case (err == nil || err == io.EOF) && !bytes.Equal(buf[:n], want):
				t.Fatalf("random read at %d through a store returning damaged bytes: damaged data reached a reader", off)
			case err != nil && err != io.EOF && errnoOf(err) != syscall.EIO:
				t.Fatalf("random read at %d through a store returning damaged bytes: %v, want EIO", off, err)
			}
			t.Logf("random read at %d while damaged: %v", off, err)
		}
	}
	if p.flipped.Load() == 0 {
		t.Fatal("no response was damaged: the test proved nothing")
	}
	if !strings.Contains(a.log.String(), "refusing corrupt extent blocks") {
		t.Fatalf("no random read was refused by its block checksums:\n%s", a.log.String())
	}
	p.on.Store(false)
	for _, off := range offsets {
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatalf("random read at %d after the store recovered: %v", off, err)
		}
		if want := data[off:min(off+4096, int64(len(data)))]; !bytes.Equal(buf[:n], want) {
			t.Fatalf("after the store recovered, the read at %d differs from what was written (damaged data cached?)", off)
		}
	}
	t.Logf("%d responses damaged; none reached a reader", p.flipped.Load())
}
