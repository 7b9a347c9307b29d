package outage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

func newVolume(t *testing.T) *volumeFixture {
	testenv.RequireFUSE(t)
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: "outage"}
	if _, err := volume.Format(t.Context(), store, u, volume.FormatOptions{ExtentSize: format.MinExtentSize}); err != nil {
		t.Fatal(err)
	}
	return &volumeFixture{t: t, srv: srv, url: u}
}

func (v *volumeFixture) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
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

// host is one `s3gfs mount` process, reaching the store through its own
// fault proxy when proxied.
type host struct {
	name  string
	dir   string
	proxy *faultproxy.Proxy // nil: straight to the server
	cmd   *exec.Cmd
	done  chan error
	log   *syncBuffer
	ended bool
	exit  error
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
	h := &host{name: fmt.Sprintf("outage-h%d", v.n), dir: t.TempDir(), proxy: p, done: make(chan error, 1), log: &syncBuffer{}}
	h.cmd = exec.Command(testenv.Binary(t), "mount", "--endpoint", endpoint,
		"--sync-interval", sync.String(), "--host-expiry", expiry.String(),
		"--node-name", h.name, v.url.String(), h.dir)
	h.cmd.Env = v.env()
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(func() {
		if h.proxy != nil {
			h.proxy.Pause(false)
			h.proxy.Partition(false)
		}
		h.stop()
	})
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

func (h *host) stop() error {
	if h.ended {
		return h.exit
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

// fsck runs `s3gfs fsck` on the volume and returns its output and exit
// status.
func (v *volumeFixture) fsck() (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(v.t), "fsck", "--endpoint", v.srv.Endpoint, v.url.String())
	cmd.Env = v.env()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		return string(out) + err.Error(), -1
	}
}

func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
