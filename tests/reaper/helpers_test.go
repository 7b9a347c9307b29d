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

// command returns `s3gfs VERB --endpoint E args...` ready to run.
func (f *fixture) command(verb string, args ...string) *exec.Cmd {
	cmd := exec.Command(testenv.Binary(f.t), append([]string{verb, "--endpoint", f.srv.Endpoint}, args...)...)
	cmd.Env = f.srv.Env()
	return cmd
}

// run runs an s3gfs command to completion.
func (f *fixture) run(verb string, args ...string) (string, error) {
	out, code := testenv.Run(f.t, f.srv, 5*time.Minute, append([]string{verb, "--endpoint", f.srv.Endpoint}, args...)...)
	if code != 0 {
		return out, fmt.Errorf("exit status %d", code)
	}
	return out, nil
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
	*testenv.Mount
	t       *testing.T
	dir     string
	log     *testenv.LogBuffer
	stopped bool
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
	h := &host{t: f.t, dir: f.t.TempDir(), log: &testenv.LogBuffer{}}
	args := append([]string{"--endpoint", f.srv.Endpoint, "--sync-interval", "500ms", "--host-expiry", "2s"}, extra...)
	m, err := testenv.TryStartMount(f.t, f.srv, "host", h.dir, h.log, append(args, f.url.String())...)
	if err != nil {
		return nil, err
	}
	h.Mount = m
	f.t.Cleanup(h.stop)
	return h, nil
}

func (h *host) path(p string) string { return filepath.Join(h.dir, p) }

// stop unmounts and waits for the process to exit; it fails the test if
// the mount does not exit cleanly.
func (h *host) stop() {
	if h.stopped {
		return
	}
	h.stopped = true
	if err := h.Stop(); err != nil {
		h.t.Errorf("mount of %s exited with %v\n%s", h.dir, err, h.log)
	}
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
