package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Env is the environment of an s3gfs process that talks to s: this
// process's, without its AWS settings (AWS_CA_BUNDLE, which the machine
// sets and the tools must cope with, is kept), plus s's credentials. No
// shared config file or instance metadata can change the outcome.
func (s *Server) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+s.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+s.SecretKey,
		"AWS_REGION="+s.Region,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// LogBuffer collects a process's output (its first 4 MiB: enough to
// diagnose), safe for its two streams and the test at once.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Mount is one `s3gfs mount` process serving Dir.
type Mount struct {
	Name string // for messages
	Dir  string
	Cmd  *exec.Cmd
	out  Output
	done chan error
	// ended: the process was waited for (exit is how it ended).
	ended bool
	exit  error
}

// Output is where a process's output goes: a LogBuffer, or any other
// writer the test can print.
type Output interface {
	io.Writer
	fmt.Stringer
}

// StartMount runs `s3gfs mount ARGS... DIR` (args end with the volume URL;
// the endpoint and other flags are the caller's) with srv's credentials
// and its output written to out, and waits (at most a minute) until dir is
// mounted. The test fails at once if the process exits first. Cleanup
// stops it (Stop) unless the test did.
func StartMount(t testing.TB, srv *Server, name, dir string, out Output, args ...string) *Mount {
	t.Helper()
	m, err := TryStartMount(t, srv, name, dir, out, args...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TryStartMount is StartMount for a mount that may fail to come up: it
// returns how it failed (with its output) instead of failing the test.
func TryStartMount(t testing.TB, srv *Server, name, dir string, out Output, args ...string) (*Mount, error) {
	t.Helper()
	m := &Mount{Name: name, Dir: dir, out: out, done: make(chan error, 1)}
	m.Cmd = exec.Command(Binary(t), append(append([]string{"mount"}, args...), dir)...)
	m.Cmd.Env = srv.Env()
	m.Cmd.Stdout, m.Cmd.Stderr = out, out
	if err := m.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() { m.done <- m.Cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for !IsMounted(dir) {
		select {
		case err := <-m.done:
			m.ended, m.exit = true, err
			return nil, fmt.Errorf("%s: mount exited early: %v\n%s", name, err, out)
		default:
		}
		if time.Now().After(deadline) {
			m.Kill()
			return nil, fmt.Errorf("%s: mount not ready after a minute\n%s", name, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { m.Stop() })
	return m, nil
}

// Path joins p to the mountpoint.
func (m *Mount) Path(p string) string { return filepath.Join(m.Dir, p) }

// Ended reports whether the process has been waited for, and how it
// ended.
func (m *Mount) Ended() (bool, error) { return m.ended, m.exit }

// Kill SIGKILLs the process, waits for it, and detaches its dead
// mountpoint (MNT_DETACH: descriptors still open on it keep failing with
// ENOTCONN until closed).
func (m *Mount) Kill() {
	if m.ended {
		return
	}
	m.Cmd.Process.Kill()
	m.exit = <-m.done
	m.ended = true
	for i := 0; i < 50 && IsMounted(m.Dir); i++ {
		if err := syscall.Unmount(m.Dir, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// Stop unmounts cleanly (retrying while the mount is busy; the process
// writes everything back and exits), waits at most two minutes for the
// process, and returns how it ended. After the first call it returns the
// same result.
func (m *Mount) Stop() error {
	if m.ended {
		return m.exit
	}
	m.ended = true
	if IsMounted(m.Dir) {
		for i := 0; i < 100; i++ {
			err := syscall.Unmount(m.Dir, 0)
			if err == nil || err == syscall.EINVAL {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	select {
	case m.exit = <-m.done:
	case <-time.After(2 * time.Minute):
		m.Cmd.Process.Kill()
		syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		m.exit = fmt.Errorf("%s did not exit within 2m of the unmount", m.Name)
	}
	return m.exit
}

// Run runs `s3gfs ARGS...` with srv's credentials to its end (at most
// timeout) and returns its output (stdout and stderr) and exit status (-1
// when it did not exit by itself).
func Run(t testing.TB, srv *Server, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = srv.Env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee) && ee.Exited():
		return out.String(), ee.ExitCode()
	default:
		return out.String() + err.Error(), -1
	}
}

// Eventually polls cond (every 100 ms) until it returns nil, and fails the
// test with its last error if that takes longer than within.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) {
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

// NewVolume formats a volume under prefix in a fresh bucket of the test
// server, for tests that mount it through the s3gfs binary: it skips (or
// fails) the test first unless FUSE is available.
func NewVolume(t *testing.T, prefix string, o volume.FormatOptions) (*Server, volume.URL) {
	t.Helper()
	RequireFUSE(t)
	srv := S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: prefix}
	if _, err := volume.Format(t.Context(), store, u, o); err != nil {
		t.Fatal(err)
	}
	return srv, u
}
