package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// cli runs the s3gfs binary against the test S3 server.
type cli struct {
	bin string
	srv *testenv.Server
}

// newCLI returns the binary to test: $S3GFS_BIN, or one built into dir.
func newCLI(t *testing.T, dir string) *cli {
	t.Helper()
	srv := testenv.S3(t)
	bin := os.Getenv("S3GFS_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "s3gfs")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/s3gfs/s3gfs/cmd/s3gfs")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build s3gfs: %v\n%s", err, out)
		}
	}
	return &cli{bin: bin, srv: srv}
}

// env is the environment of an s3gfs process: this one's, without AWS
// settings other than AWS_CA_BUNDLE, plus the test server's credentials
// (secret overridden when secret is not empty).
func (c *cli) env(secret string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			continue
		}
		env = append(env, kv)
	}
	if secret == "" {
		secret = c.srv.SecretKey
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+c.srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+secret,
		"AWS_REGION="+c.srv.Region,
		// No shared config or instance metadata can change the outcome.
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// result is how an s3gfs process ended.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout: %s\nstderr: %s", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// run runs s3gfs with args to completion (at most timeout).
func (c *cli) run(t *testing.T, timeout time.Duration, secret string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env(secret)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second // a background child must not keep our pipes
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	case ctx.Err() != nil:
		t.Fatalf("s3gfs %s: no exit after %v\n%v", strings.Join(args, " "), timeout, r)
	default:
		t.Fatalf("s3gfs %s: %v\n%v", strings.Join(args, " "), err, r)
	}
	t.Logf("$ s3gfs %s\n%v", strings.Join(args, " "), r)
	return r
}

// detachOnCleanup makes sure dir is not left mounted by a failed test.
func detachOnCleanup(t *testing.T, dir string) {
	t.Cleanup(func() {
		if isMounted(dir) {
			t.Errorf("%s still mounted at the end of the test; detaching it", dir)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// volumeFiles reads the files named in want through a fresh read-only
// engine on the volume at u and compares their contents.
func volumeFiles(t *testing.T, srv *testenv.Server, u volume.URL, want map[string][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := s3store.New(ctx, srv.Config(u.Bucket))
	must(t, "store", err)
	vol, err := volume.Open(ctx, store, u, false)
	must(t, "open volume", err)
	m := &mount{t: t, Store: store, URL: u, Vol: vol, Log: &logBuffer{}}
	for name, data := range want {
		got, err := readFromStore(t, m, name)
		wantContent(t, "bucket: "+name, got, err, data)
	}
}

var subreaperOnce sync.Once

// becomeSubreaper makes this process adopt orphaned descendants, so that
// it can wait for a daemonized `s3gfs mount --background` and see its exit
// status.
func becomeSubreaper(t *testing.T) {
	subreaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
		}
	})
}

// waitPid waits for the exit of an adopted process and returns its exit
// code.
func waitPid(t *testing.T, pid int, timeout time.Duration) int {
	t.Helper()
	done := make(chan syscall.WaitStatus, 1)
	errc := make(chan error, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				errc <- err
				return
			}
			done <- ws
			return
		}
	}()
	select {
	case ws := <-done:
		if !ws.Exited() {
			t.Fatalf("pid %d ended by %v, not an exit", pid, ws)
		}
		return ws.ExitStatus()
	case err := <-errc:
		t.Fatalf("wait for pid %d: %v", pid, err)
	case <-time.After(timeout):
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("pid %d did not exit within %v", pid, timeout)
	}
	return -1
}

var backgroundPid = regexp.MustCompile(`mounted in the background \(pid (\d+)\)`)

// TestCLI drives the s3gfs binary: format (twice), background mounts,
// unmount by umount(8), a foreground mount stopped by SIGTERM, and bad
// input.
func TestCLI(t *testing.T) {
	requireFUSE(t)
	c := newCLI(t, t.TempDir())
	t.Run("FormatTwice", func(t *testing.T) {
		t.Parallel()
		u := "s3://" + testenv.BucketName(t) + "/vol"
		r := c.run(t, time.Minute, "", "format", "--endpoint", c.srv.Endpoint, u)
		if r.code != 0 || !strings.Contains(r.stdout, "formatted "+u) {
			t.Fatalf("first format: want exit 0 and %q on stdout, got %v", "formatted "+u, r)
		}
		r = c.run(t, time.Minute, "", "format", "--endpoint", c.srv.Endpoint, u)
		if r.code == 0 || !strings.Contains(r.stderr, "already exists") {
			t.Errorf("second format: want a non-zero exit and a message that a volume exists, got %v", r)
		}
		// A second volume under another prefix of the same bucket is fine.
		r = c.run(t, time.Minute, "", "format", "--endpoint", c.srv.Endpoint, u+"2")
		if r.code != 0 {
			t.Errorf("format of another prefix: %v", r)
		}
	})
	t.Run("BackgroundMount", func(t *testing.T) { t.Parallel(); cliBackground(t, c) })
	t.Run("SIGTERM", func(t *testing.T) { t.Parallel(); cliSIGTERM(t, c) })
	t.Run("BadInput", func(t *testing.T) { t.Parallel(); cliBadInput(t, c) })
}

func cliBackground(t *testing.T, c *cli) {
	becomeSubreaper(t)
	u := volume.URL{Bucket: testenv.BucketName(t), Prefix: "bg"}
	r := c.run(t, time.Minute, "", "format", "--endpoint", c.srv.Endpoint, "--extent-size", "256KiB", u.String())
	if r.code != 0 {
		t.Fatalf("format: %v", r)
	}
	mnt := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "mount.log")
	detachOnCleanup(t, mnt)
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
	mountBG := func() int {
		t.Helper()
		r := c.run(t, time.Minute, "", "mount", "--background", "--endpoint", c.srv.Endpoint, "--log-file", logFile, "--pprof-addr", pprofAddr, u.String(), mnt)
		if r.code != 0 {
			t.Fatalf("mount --background: %v", r)
		}
		m := backgroundPid.FindStringSubmatch(r.stderr)
		if m == nil {
			t.Fatalf("mount --background did not say its pid: %v", r)
		}
		if !isMounted(mnt) {
			t.Fatalf("mount --background returned, but %s is not mounted", mnt)
		}
		pid, _ := strconv.Atoi(m[1])
		return pid
	}
	umount := func(pid int) {
		t.Helper()
		if _, err := exec.LookPath("umount"); err != nil {
			must(t, "umount(2) "+mnt, syscall.Unmount(mnt, 0))
		} else if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount %s: %v\n%s", mnt, err, out)
		}
		if code := waitPid(t, pid, time.Minute); code != 0 {
			t.Errorf("background mount exited %d after umount; log:\n%s", code, readLog(logFile))
		}
		if isMounted(mnt) {
			t.Errorf("%s still mounted after umount", mnt)
		}
	}

	pid := mountBG()
	// --pprof-addr serves the mount process's profiles.
	if resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1"); err != nil {
		t.Errorf("--pprof-addr %s: %v", pprofAddr, err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
			t.Errorf("--pprof-addr %s: %s: %.200s", pprofAddr, resp.Status, body)
		}
	}
	rng := newDiffGen(1).rng
	big := randBytes(rng, testExtentSize*3+123)
	files := map[string][]byte{"small": []byte("hello from the CLI"), "dir/big": big}
	must(t, "mkdir", os.Mkdir(filepath.Join(mnt, "dir"), 0o750))
	for name, data := range files {
		must(t, "write "+name, os.WriteFile(filepath.Join(mnt, name), data, 0o640))
	}
	must(t, "symlink", os.Symlink("dir/big", filepath.Join(mnt, "link")))
	umount(pid)
	if !strings.Contains(readLog(logFile), "unmounted") {
		t.Errorf("the mount's log does not record the unmount:\n%s", readLog(logFile))
	}
	volumeFiles(t, c.srv, u, files)

	pid = mountBG()
	for name, data := range files {
		wantFile(t, filepath.Join(mnt, name), data)
	}
	if tg, err := os.Readlink(filepath.Join(mnt, "link")); err != nil || tg != "dir/big" {
		t.Errorf("readlink after the second mount: %q, %v", tg, err)
	}
	wantMode(t, filepath.Join(mnt, "dir"), syscall.S_IFDIR, 0o750)
	wantMode(t, filepath.Join(mnt, "small"), syscall.S_IFREG, 0o640)
	umount(pid)
}

func readLog(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// lockedBuffer is a bytes.Buffer safe for a process's output and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func cliSIGTERM(t *testing.T, c *cli) {
	u := volume.URL{Bucket: testenv.BucketName(t)}
	if r := c.run(t, time.Minute, "", "format", "--endpoint", c.srv.Endpoint, "--extent-size", "256KiB", u.String()); r.code != 0 {
		t.Fatalf("format: %v", r)
	}
	mnt := t.TempDir()
	detachOnCleanup(t, mnt)
	cmd := exec.Command(c.bin, "mount", "--endpoint", c.srv.Endpoint, u.String(), mnt)
	cmd.Env = c.env("")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, "start s3gfs mount", cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	if !waitFor(30*time.Second, func() bool { return isMounted(mnt) }) {
		t.Fatalf("not mounted after 30s; output:\n%s", out.String())
	}

	closed := []byte("written and closed before the signal")
	must(t, "write closed", os.WriteFile(filepath.Join(mnt, "closed"), closed, 0o644))
	// A file still open, its data written but neither flushed nor synced:
	// the signal handler must write it back.
	f, err := os.Create(filepath.Join(mnt, "open"))
	must(t, "create open", err)
	defer f.Close()
	dirty := bytes.Repeat([]byte("dirty "), 100000) // several extents
	_, err = f.Write(dirty)
	must(t, "write open", err)

	must(t, "SIGTERM", cmd.Process.Signal(syscall.SIGTERM))
	if !waitFor(30*time.Second, func() bool { return !isMounted(mnt) }) {
		t.Fatalf("still mounted 30s after SIGTERM; output:\n%s", out.String())
	}
	// The mountpoint is detached, the open descriptor keeps the FUSE
	// connection alive: the data must be in the bucket already.
	volumeFiles(t, c.srv, u, map[string][]byte{"closed": closed, "open": dirty})
	select {
	case err := <-exited:
		t.Errorf("s3gfs mount exited (%v) while a descriptor of its mount was still open", err)
	default:
	}
	more := []byte(" and a write after the signal")
	_, err = f.Write(more)
	must(t, "write after the signal", err)
	must(t, "close open", f.Close())
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("s3gfs mount exited with %v after SIGTERM; output:\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("s3gfs mount did not exit within a minute of SIGTERM; output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "signal received") {
		t.Errorf("the mount's log does not record the signal:\n%s", out.String())
	}
	volumeFiles(t, c.srv, u, map[string][]byte{"closed": closed, "open": append(dirty, more...)})
}

// closedPort returns a TCP port on 127.0.0.1 with nothing listening.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, "listen", err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func cliBadInput(t *testing.T, c *cli) {
	ep := c.srv.Endpoint
	u := volume.URL{Bucket: testenv.BucketName(t), Prefix: "v"}
	if r := c.run(t, time.Minute, "", "format", "--endpoint", ep, u.String()); r.code != 0 {
		t.Fatalf("format: %v", r)
	}
	mnt := t.TempDir()
	detachOnCleanup(t, mnt)
	accessDenied := regexp.MustCompile(`(?i)access denied`)

	t.Run("WrongSecretFormat", func(t *testing.T) {
		r := c.run(t, 2*time.Minute, "not-the-secret", "format", "--endpoint", ep, "s3://"+testenv.BucketName(t))
		if r.code == 0 || !accessDenied.MatchString(r.stderr) {
			t.Errorf("format with a wrong secret: want a non-zero exit and 'access denied', got %v", r)
		}
	})
	t.Run("WrongSecretMount", func(t *testing.T) {
		r := c.run(t, 2*time.Minute, "not-the-secret", "mount", "--endpoint", ep, u.String(), mnt)
		if r.code == 0 || !accessDenied.MatchString(r.stderr) {
			t.Errorf("mount with a wrong secret: want a non-zero exit and 'access denied', got %v", r)
		}
		if isMounted(mnt) {
			t.Errorf("%s mounted despite the wrong secret", mnt)
		}
	})
	t.Run("UnreachableEndpoint", func(t *testing.T) {
		closed := fmt.Sprintf("http://127.0.0.1:%d", closedPort(t))
		for _, args := range [][]string{
			{"format", "--endpoint", closed, "s3://" + testenv.BucketName(t)},
			{"mount", "--endpoint", closed, u.String(), mnt},
		} {
			t.Run(args[0], func(t *testing.T) {
				t.Parallel() // each spends its time backing off
				r := c.run(t, 2*time.Minute, "", args...)
				if r.code == 0 || !strings.Contains(r.stderr, closed) || !regexp.MustCompile(`(?i)unavailable|refused|unreachable`).MatchString(r.stderr) {
					t.Errorf("%s with an unreachable endpoint: want a non-zero exit naming the endpoint and why, got %v", args[0], r)
				}
				if r.took > 45*time.Second {
					t.Errorf("%s with an unreachable endpoint took %v to fail", args[0], r.took)
				}
			})
		}
	})
	t.Run("NoBucket", func(t *testing.T) {
		r := c.run(t, time.Minute, "", "mount", "--endpoint", ep, "s3://"+testenv.BucketName(t)+"/v", mnt)
		if r.code == 0 || !regexp.MustCompile(`(?i)bucket does not exist|no such bucket`).MatchString(r.stderr) {
			t.Errorf("mount of a missing bucket: want a non-zero exit saying the bucket does not exist, got %v", r)
		}
	})
	t.Run("NoVolume", func(t *testing.T) {
		r := c.run(t, time.Minute, "", "mount", "--endpoint", ep, "s3://"+u.Bucket+"/elsewhere", mnt)
		if r.code == 0 || !strings.Contains(r.stderr, "no s3gfs volume") {
			t.Errorf("mount of a prefix without a volume: want a non-zero exit saying there is no volume, got %v", r)
		}
	})
	t.Run("Usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"mount", "--endpoint", ep, "http://bucket/vol", mnt},
			{"mount", "--endpoint", ep, "s3://", mnt},
			{"mount", "--endpoint", ep, "s3://Bad_Bucket/vol", mnt},
			{"mount", "--endpoint", ep, "s3://bucket//vol", mnt},
			{"mount", "--endpoint", ep, u.String()},
			{"mount", "--endpoint", ep, u.String(), filepath.Join(mnt, "missing")},
			{"mount", "--no-such-flag", u.String(), mnt},
			{"format", "--endpoint", ep, "--extent-size", "1000", "s3://" + testenv.BucketName(t)},
			{"frobnicate"},
		} {
			r := c.run(t, time.Minute, "", args...)
			if r.code != 2 || r.stderr == "" {
				t.Errorf("s3gfs %s: want exit 2 with a usage error, got %v", strings.Join(args, " "), r)
			}
		}
	})
	if isMounted(mnt) {
		t.Errorf("%s is mounted after bad input", mnt)
	}
}
