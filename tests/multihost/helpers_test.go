// Package multihost runs several real s3gfs mount processes (separate host
// ids) against one volume on a real S3 server, and checks what the protocol
// promises across hosts: close-to-open consistency, exclusive creation,
// no lost updates, and readers keeping the version they opened.
package multihost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func binary(t *testing.T) string { return testenv.Binary(t) }

func requireFUSE(t *testing.T) { testenv.RequireFUSE(t) }

// volumeFixture is one formatted volume on the shared test server.
type volumeFixture struct {
	srv *testenv.Server
	url volume.URL
}

func newVolume(t *testing.T, opts volume.FormatOptions) *volumeFixture {
	requireFUSE(t)
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: "shared"}
	if _, err := volume.Format(t.Context(), store, u, opts); err != nil {
		t.Fatal(err)
	}
	return &volumeFixture{srv: srv, url: u}
}

// host is one running `s3gfs mount` process.
type host struct {
	t    *testing.T
	dir  string
	cmd  *exec.Cmd
	done chan error
	log  *strings.Builder
}

var logMu sync.Mutex

type lockedWriter struct{ b *strings.Builder }

func (w lockedWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return w.b.Write(p)
}

// mount starts a host mounting the volume with extra flags.
func (v *volumeFixture) mount(t *testing.T, extra ...string) *host {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"mount", "--endpoint", v.srv.Endpoint, "--sync-interval", "500ms"}, extra...)
	args = append(args, v.url.String(), dir)
	h := &host{t: t, dir: dir, done: make(chan error, 1), log: &strings.Builder{}}
	h.cmd = exec.Command(binary(t), args...)
	h.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+v.srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+v.srv.SecretKey, "AWS_REGION="+v.srv.Region)
	h.cmd.Stderr = lockedWriter{h.log}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(h.stop)
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(dir) {
		select {
		case err := <-h.done:
			t.Fatalf("mount exited early: %v\n%s", err, h.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount not ready\n%s", h.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

func (h *host) logs() string {
	logMu.Lock()
	defer logMu.Unlock()
	return h.log.String()
}

func (h *host) path(p string) string { return filepath.Join(h.dir, p) }

// stop unmounts and waits for the process; it fails the test if the mount
// does not exit cleanly.
func (h *host) stop() {
	if h.cmd.ProcessState != nil {
		return
	}
	if isMounted(h.dir) {
		for i := 0; i < 50; i++ {
			if err := syscall.Unmount(h.dir, 0); err == nil || err == syscall.EINVAL {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("mount exited with %v\n%s", err, h.logs())
		}
	case <-time.After(60 * time.Second):
		h.cmd.Process.Kill()
		syscall.Unmount(h.dir, syscall.MNT_DETACH)
		h.t.Errorf("mount did not exit after unmount\n%s", h.logs())
	}
}

func isMounted(dir string) bool { return testenv.IsMounted(dir) }

// eventually retries cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
