package outage

import (
	"bytes"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type volumeFixture struct {
	t   *testing.T
	srv *testenv.Server
	url volume.URL
	n   int
}

func newVolume(t *testing.T) *volumeFixture { return newVolumeSized(t, format.MinExtentSize) }

// newVolumeSized is newVolume with extents of es bytes.
func newVolumeSized(t *testing.T, es uint32) *volumeFixture {
	srv, u := testenv.NewVolume(t, "outage", volume.FormatOptions{ExtentSize: es})
	return &volumeFixture{t: t, srv: srv, url: u}
}

// host is one `s3gfs mount` process, reaching the store through its own
// fault proxy when proxied.
type host struct {
	*testenv.Mount
	proxy *faultproxy.Proxy // nil: straight to the server
	log   *testenv.LogBuffer
}

// mount starts a host with the given sync interval and host expiry,
// reaching the store through a fault proxy of its own when proxied.
func (v *volumeFixture) mount(proxied bool, sync, expiry time.Duration) *host {
	t := v.t
	t.Helper()
	if !proxied {
		return v.mountAt(v.srv.Endpoint, nil, sync, expiry)
	}
	p, err := faultproxy.New(v.srv.Endpoint, uint64(v.n+1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return v.mountAt(p.URL(), p, sync, expiry)
}

// mountAt starts a host that reaches the store at endpoint.
func (v *volumeFixture) mountAt(endpoint string, p *faultproxy.Proxy, sync, expiry time.Duration) *host {
	t := v.t
	t.Helper()
	v.n++
	name := fmt.Sprintf("outage-h%d", v.n)
	h := &host{proxy: p, log: &testenv.LogBuffer{}}
	h.Mount = testenv.StartMount(t, v.srv, name, t.TempDir(), h.log, "--endpoint", endpoint,
		"--sync-interval", sync.String(), "--host-expiry", expiry.String(),
		"--node-name", name, v.url.String())
	if p != nil {
		// Runs before the mount's own cleanup stops it: the store must be
		// reachable for the unmount to write back.
		t.Cleanup(func() { p.Pause(false); p.Partition(false) })
	}
	return h
}

// fsck runs `s3gfs fsck` on the volume and returns its output and exit
// status.
func (v *volumeFixture) fsck() (string, int) {
	return testenv.Run(v.t, v.srv, 5*time.Minute, "fsck", "--endpoint", v.srv.Endpoint, v.url.String())
}

func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	testenv.Eventually(t, within, what, cond)
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// pattern is n bytes that name their file and offset.
func pattern(tag string, n int) []byte {
	var b bytes.Buffer
	for off := 0; b.Len() < n; off += 32 {
		fmt.Fprintf(&b, "%-12s %018d\n", tag, off)
	}
	return b.Bytes()[:n]
}
