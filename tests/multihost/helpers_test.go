// Package multihost runs several real s3gfs mount processes (separate host
// ids) against one volume on a real S3 server, and checks what the protocol
// promises across hosts: close-to-open consistency, exclusive creation,
// no lost updates, and readers keeping the version they opened.
package multihost

import (
	"fmt"
	"path/filepath"
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
	srv, u := testenv.NewVolume(t, "shared", opts)
	return &volumeFixture{srv: srv, url: u}
}

// host is one running `s3gfs mount` process.
type host struct {
	*testenv.Mount
	t       *testing.T
	dir     string
	log     *testenv.LogBuffer
	stopped bool
}

// mount starts a host mounting the volume with extra flags.
func (v *volumeFixture) mount(t *testing.T, extra ...string) *host {
	t.Helper()
	h := &host{t: t, dir: t.TempDir(), log: &testenv.LogBuffer{}}
	args := append([]string{"--endpoint", v.srv.Endpoint, "--sync-interval", "500ms"}, extra...)
	h.Mount = testenv.StartMount(t, v.srv, "host", h.dir, h.log, append(args, v.url.String())...)
	t.Cleanup(h.stop)
	return h
}

func (h *host) logs() string { return h.log.String() }

func (h *host) path(p string) string { return filepath.Join(h.dir, p) }

// stop unmounts and waits for the process; it fails the test if the mount
// does not exit cleanly.
func (h *host) stop() {
	if h.stopped {
		return
	}
	h.stopped = true
	if err := h.Stop(); err != nil {
		h.t.Errorf("mount exited with %v\n%s", err, h.logs())
	}
}

func isMounted(dir string) bool { return testenv.IsMounted(dir) }

// eventually retries cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	testenv.Eventually(t, within, what, cond)
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
