// Package reaper tests the reaper, snapshots, point-in-time mounts, fsck
// and the reaper's lease end to end: the s3gfs binary (gc, reaper,
// snapshot, fsck, versions, mount) against a real S3 server, with real
// FUSE mounts in separate processes.
package reaper

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is one formatted volume on the shared test server.
type fixture struct {
	t     *testing.T
	srv   *testenv.Server
	store *s3store.Store
	url   volume.URL
	vol   *volume.Volume
}

func newFixture(t *testing.T) *fixture {
	testenv.RequireFUSE(t)
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: "vol"}
	vol, err := volume.Format(t.Context(), store, u, volume.FormatOptions{ExtentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, srv: srv, store: store, url: u, vol: vol}
}

func (f *fixture) env() []string {
	return append(os.Environ(), "AWS_ACCESS_KEY_ID="+f.srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+f.srv.SecretKey, "AWS_REGION="+f.srv.Region)
}

// command returns `s3gfs VERB --endpoint E args...` ready to run.
func (f *fixture) command(verb string, args ...string) *exec.Cmd {
	cmd := exec.Command(testenv.Binary(f.t), append([]string{verb, "--endpoint", f.srv.Endpoint}, args...)...)
	cmd.Env = f.env()
	return cmd
}

// run runs an s3gfs command to completion.
func (f *fixture) run(verb string, args ...string) (string, error) {
	out, err := f.command(verb, args...).CombinedOutput()
	return string(out), err
}

func (f *fixture) mustRun(verb string, args ...string) string {
	f.t.Helper()
	out, err := f.run(verb, args...)
	if err != nil {
		f.t.Fatalf("s3gfs %s %s: %v\n%s", verb, strings.Join(args, " "), err, out)
	}
	return out
}

// now is the store's clock. Stores keep times to the second, so callers
// sleep a second on either side of an instant they record.
func (f *fixture) now() time.Time {
	f.t.Helper()
	t, err := f.store.Now(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return t
}

// instant waits out the current second, reads the store's time, and waits
// out that second too: everything committed before is at or before the
// instant, everything after is later.
func (f *fixture) instant() time.Time {
	time.Sleep(1100 * time.Millisecond)
	t := f.now()
	time.Sleep(1100 * time.Millisecond)
	return t
}

// objects counts the volume's objects.
func (f *fixture) objects() int {
	f.t.Helper()
	n, after := 0, ""
	for {
		page, err := f.store.List(f.t.Context(), f.url.Prefix+"/", after, 0)
		if err != nil {
			f.t.Fatal(err)
		}
		n += len(page.Objects)
		if !page.Truncated || len(page.Objects) == 0 {
			return n
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
}

// host is one running `s3gfs mount` process.
type host struct {
	t    *testing.T
	dir  string
	cmd  *exec.Cmd
	done chan error
	log  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// mount starts a host; it fails the test unless the mount comes up.
func (f *fixture) mount(extra ...string) *host {
	f.t.Helper()
	h, err := f.tryMount(extra...)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// tryMount starts a host, returning the error (and log) of a mount that
// does not come up.
func (f *fixture) tryMount(extra ...string) (*host, error) {
	dir := f.t.TempDir()
	args := append([]string{"--sync-interval", "500ms", "--host-expiry", "2s"}, extra...)
	args = append(args, f.url.String(), dir)
	h := &host{t: f.t, dir: dir, done: make(chan error, 1), log: &syncBuffer{}}
	h.cmd = f.command("mount", args...)
	h.cmd.Stderr = h.log
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { h.done <- h.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !testenv.IsMounted(dir) {
		select {
		case err := <-h.done:
			h.cmd.ProcessState = nil
			return nil, fmt.Errorf("mount exited: %v\n%s", err, h.log)
		default:
		}
		if time.Now().After(deadline) {
			h.cmd.Process.Kill()
			return nil, fmt.Errorf("mount not ready\n%s", h.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Cleanup(h.stop)
	return h, nil
}

func (h *host) path(p string) string { return filepath.Join(h.dir, p) }

// stop unmounts and waits for the process to exit.
func (h *host) stop() {
	select {
	case <-h.done:
		return
	default:
	}
	for i := 0; i < 50 && testenv.IsMounted(h.dir); i++ {
		if err := syscall.Unmount(h.dir, 0); err == nil || err == syscall.EINVAL {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("mount of %s exited with %v\n%s", h.dir, err, h.log)
		}
	case <-time.After(60 * time.Second):
		h.cmd.Process.Kill()
		syscall.Unmount(h.dir, syscall.MNT_DETACH)
		h.t.Errorf("mount did not exit after unmount\n%s", h.log)
	}
	h.done <- nil // later stops return at once
}

// readTree reads every file and directory under root: relative path ->
// content ("<dir>" for directories).
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			out[rel] = "<dir>"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("read tree %s: %v", root, err)
	}
	return out
}

func diffTrees(got, want map[string]string) string {
	var out []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			out = append(out, "missing "+p)
		} else if g != w {
			out = append(out, fmt.Sprintf("%s: got %d bytes, want %d bytes", p, len(g), len(w)))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "unexpected "+p)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// wantTree fails unless the tree at root is exactly want.
func wantTree(t *testing.T, what, root string, want map[string]string) {
	t.Helper()
	if d := diffTrees(readTree(t, root), want); d != "" {
		t.Fatalf("%s:\n%s", what, d)
	}
}

func content(tag string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s line %d\n", tag, i)
	}
	return b.Bytes()[:n]
}

func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }
