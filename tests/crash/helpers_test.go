package crash

import (
	"fmt"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Mount parameters: a short sync interval so that the timer write-back
// and the pings run often (more moments for a kill to hit), and a host
// expiry long enough that a busy 2-core machine never fences a live host.
const (
	syncInterval = 200 * time.Millisecond
	hostExpiry   = 10 * time.Second
)

// volumeFixture is one formatted volume on the test S3 server.
type volumeFixture struct {
	t   *testing.T
	srv *testenv.Server
	url volume.URL
	n   int // hosts mounted so far
}

func newVolume(t *testing.T) *volumeFixture {
	// The smallest extents, so that files of a few hundred KiB span
	// several extents and write-back uploads several objects per commit.
	srv, u := testenv.NewVolume(t, "crash", volume.FormatOptions{ExtentSize: format.MinExtentSize})
	return &volumeFixture{t: t, srv: srv, url: u}
}

// host is one `s3gfs mount` process (a fresh host id each).
type host struct {
	*testenv.Mount
	log *testenv.LogBuffer
}

// tail is the last n lines of a log.
func tail(s string, n int) string { return testenv.Tail(s, n) }

// mount starts a new host and waits until its mountpoint is live.
func (v *volumeFixture) mount(extra ...string) *host {
	v.t.Helper()
	v.n++
	name := fmt.Sprintf("crash-h%d", v.n)
	h := &host{log: &testenv.LogBuffer{}}
	args := append([]string{"--endpoint", v.srv.Endpoint,
		"--sync-interval", syncInterval.String(),
		"--host-expiry", hostExpiry.String(),
		"--node-name", name}, extra...)
	h.Mount = testenv.StartMount(v.t, v.srv, name, v.t.TempDir(), h.log, append(args, v.url.String())...)
	return h
}

// cliResult is how one s3gfs command ended.
type cliResult struct {
	out  string
	code int
}

// run runs an s3gfs command (fsck, gc...) against the volume.
func (v *volumeFixture) run(args ...string) cliResult {
	full := append([]string{args[0], "--endpoint", v.srv.Endpoint}, args[1:]...)
	out, code := testenv.Run(v.t, v.srv, 5*time.Minute, append(full, v.url.String())...)
	return cliResult{out: out, code: code}
}
