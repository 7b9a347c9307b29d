package crash

import (
	"bytes"
	"context"
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
	testenv.RequireFUSE(t)
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: "crash"}
	// The smallest extents, so that files of a few hundred KiB span
	// several extents and write-back uploads several objects per commit.
	if _, err := volume.Format(t.Context(), store, u, volume.FormatOptions{ExtentSize: format.MinExtentSize}); err != nil {
		t.Fatal(err)
	}
	return &volumeFixture{t: t, srv: srv, url: u}
}

// env is the environment of an s3gfs process: the test server's
// credentials, and nothing from a developer's AWS configuration.
func (v *volumeFixture) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+v.srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+v.srv.SecretKey,
		"AWS_REGION="+v.srv.Region,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// host is one `s3gfs mount` process (a fresh host id each).
type host struct {
	v     *volumeFixture
	name  string
	dir   string
	cmd   *exec.Cmd
	done  chan error
	log   *syncBuffer
	ended bool
	exit  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tail is the last n lines of a log.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mount starts a new host and waits until its mountpoint is live.
func (v *volumeFixture) mount(extra ...string) *host {
	t := v.t
	t.Helper()
	v.n++
	h := &host{v: v, name: fmt.Sprintf("crash-h%d", v.n), dir: t.TempDir(), done: make(chan error, 1), log: &syncBuffer{}}
	args := append([]string{"mount",
		"--endpoint", v.srv.Endpoint,
		"--sync-interval", syncInterval.String(),
		"--host-expiry", hostExpiry.String(),
		"--node-name", h.name}, extra...)
	h.cmd = exec.Command(testenv.Binary(t), append(args, v.url.String(), h.dir)...)
	h.cmd.Env = v.env()
	h.cmd.Stdout = h.log
	h.cmd.Stderr = h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(func() { h.stop() })
	deadline := time.Now().Add(60 * time.Second)
	for !testenv.IsMounted(h.dir) {
		select {
		case err := <-h.done:
			h.ended, h.exit = true, err
			t.Fatalf("%s: mount exited early: %v\n%s", h.name, err, h.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: mount not ready\n%s", h.name, h.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

func (h *host) path(p string) string { return filepath.Join(h.dir, p) }

// kill SIGKILLs the mount process, waits for it, and detaches its dead
// mountpoint (MNT_DETACH: descriptors still open on it keep failing with
// ENOTCONN until closed).
func (h *host) kill() {
	if h.ended {
		return
	}
	h.cmd.Process.Kill()
	h.exit = <-h.done
	h.ended = true
	for i := 0; i < 50 && testenv.IsMounted(h.dir); i++ {
		if err := syscall.Unmount(h.dir, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// stop unmounts cleanly (everything written back) and waits for the
// process; it returns its error.
func (h *host) stop() error {
	if h.ended {
		return nil
	}
	h.ended = true
	if testenv.IsMounted(h.dir) {
		for i := 0; i < 100; i++ {
			err := syscall.Unmount(h.dir, 0)
			if err == nil || err == syscall.EINVAL {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	select {
	case h.exit = <-h.done:
	case <-time.After(2 * time.Minute):
		h.cmd.Process.Kill()
		syscall.Unmount(h.dir, syscall.MNT_DETACH)
		h.exit = fmt.Errorf("%s did not exit within 2m of the unmount", h.name)
	}
	return h.exit
}

// cliResult is how one s3gfs command ended.
type cliResult struct {
	out  string
	code int
}

// run runs an s3gfs command (fsck, gc...) against the volume.
func (v *volumeFixture) run(args ...string) cliResult {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append([]string{args[0], "--endpoint", v.srv.Endpoint}, args[1:]...)
	full = append(full, v.url.String())
	cmd := exec.CommandContext(ctx, testenv.Binary(v.t), full...)
	cmd.Env = v.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return cliResult{out: out.String(), code: code}
}
