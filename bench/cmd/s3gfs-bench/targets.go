package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A fsTarget is a filesystem on the S3 server that the harness mounts: s3gfs
// or one of its peers. Each uses a bucket of its own.
type fsTarget interface {
	Name() string
	// Prepare creates the bucket (and volume); once per run.
	Prepare(ctx context.Context) error
	// Mount mounts at dir and returns the process serving it.
	Mount(ctx context.Context, dir string) (*mounted, error)
}

// mounted is one mount and the process serving it.
type mounted struct {
	dir  string
	pid  int
	wait func() // waits for the process to exit, if it is our child
}

// unmount unmounts m and waits for its process to exit.
func (m *mounted) unmount() error {
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Unmount(m.dir, 0); err == nil || err == syscall.EINVAL {
			err = nil
			break
		}
		time.Sleep(100 * time.Millisecond) // EBUSY: a reader of ours is still closing
	}
	if err != nil {
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
	}
	done := make(chan struct{})
	go func() {
		if m.wait != nil {
			m.wait()
		}
		for alive(m.pid) {
			time.Sleep(20 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		syscall.Kill(m.pid, syscall.SIGKILL)
		return fmt.Errorf("unmount %s: pid %d did not exit in 5m", m.dir, m.pid)
	}
	return err
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has exited.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// resetPeak resets the process's peak RSS (VmHWM) to its current RSS.
func resetPeak(pid int) {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS is the process's peak RSS (VmHWM) in bytes, 0 if unknown.
func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// isMounted reports whether dir is a mountpoint of a FUSE filesystem.
func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			for i, x := range f {
				if x == "-" && i+1 < len(f) && strings.HasPrefix(f[i+1], "fuse") {
					return true
				}
			}
		}
	}
	return false
}

// startChild starts a foreground mount process and waits until dir is
// mounted.
func startChild(ctx context.Context, dir, logPath string, env []string, name string, args ...string) (*mounted, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	m := &mounted{dir: dir, pid: cmd.Process.Pid, wait: func() { <-exited }}
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(dir) {
		select {
		case <-exited:
			tail, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited before mounting: %s", name, lastLines(tail, 5))
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("%s did not mount %s in 30s", name, dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// s3gfsTarget is an s3gfs volume, mounted with `s3gfs mount --background`.
type s3gfsTarget struct {
	cfg    *config
	bucket string
	n      int
}

func (t *s3gfsTarget) Name() string { return "s3gfs" }

func (t *s3gfsTarget) url() string { return "s3://" + t.bucket + "/vol" }

func (t *s3gfsTarget) Prepare(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, t.cfg.s3gfsBin, "format", "--endpoint", t.cfg.s3URL, t.url()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("s3gfs format: %v: %s", err, out)
	}
	return nil
}

var pidRE = regexp.MustCompile(`\(pid (\d+)\)`)

func (t *s3gfsTarget) Mount(ctx context.Context, dir string) (*mounted, error) {
	t.n++
	logPath := filepath.Join(t.cfg.work, fmt.Sprintf("s3gfs-mount-%d.log", t.n))
	args := []string{"mount", "--background", "--endpoint", t.cfg.s3URL, "--log-file", logPath}
	args = append(args, t.cfg.s3gfsArgs...)
	args = append(args, t.url(), dir)
	out, err := exec.CommandContext(ctx, t.cfg.s3gfsBin, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("s3gfs mount: %v: %s", err, out)
	}
	m := pidRE.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("s3gfs mount: no pid in %q", out)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return &mounted{dir: dir, pid: pid}, nil
}

// s3fsTarget is s3fs-fuse (Debian's package) on a bucket of its own.
type s3fsTarget struct {
	cfg    *config
	bucket string
	n      int
}

func (t *s3fsTarget) Name() string { return "s3fs" }

func (t *s3fsTarget) Prepare(ctx context.Context) error {
	return t.cfg.makeBucket(ctx, t.bucket)
}

func (t *s3fsTarget) Mount(ctx context.Context, dir string) (*mounted, error) {
	t.n++
	pw := filepath.Join(t.cfg.work, "s3fs.passwd")
	if err := os.WriteFile(pw, []byte(t.cfg.accessKey+":"+t.cfg.secretKey+"\n"), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(t.cfg.work, fmt.Sprintf("s3fs-%d.log", t.n))
	opts := "url=" + t.cfg.s3URL + ",use_path_request_style,passwd_file=" + pw +
		",endpoint=" + t.cfg.region + ",sigv4"
	return startChild(ctx, dir, logPath, os.Environ(), "s3fs", t.bucket, dir, "-f", "-o", opts)
}

// rcloneTarget is `rclone mount` (Debian's package) on a bucket of its own,
// with its default VFS settings (--vfs-cache-mode off: a close returns once
// the object is uploaded).
type rcloneTarget struct {
	cfg    *config
	bucket string
	n      int
}

func (t *rcloneTarget) Name() string { return "rclone" }

func (t *rcloneTarget) Prepare(ctx context.Context) error {
	return t.cfg.makeBucket(ctx, t.bucket)
}

// rcloneEnv is the environment for rclone: without AWS_CA_BUNDLE, which
// makes rclone 1.60 fail outright ("LoadCustomCABundleError ...
// unsupported transport"); the endpoint is plain http anyway.
func rcloneEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	return env
}

func (t *rcloneTarget) Mount(ctx context.Context, dir string) (*mounted, error) {
	t.n++
	logPath := filepath.Join(t.cfg.work, fmt.Sprintf("rclone-%d.log", t.n))
	return startChild(ctx, dir, logPath, rcloneEnv(), "rclone", "mount", "--config", "/dev/null",
		":s3:"+t.bucket, dir,
		"--s3-provider", "Other", "--s3-endpoint", t.cfg.s3URL, "--s3-region", t.cfg.region,
		"--s3-access-key-id", t.cfg.accessKey, "--s3-secret-access-key", t.cfg.secretKey,
		"--s3-force-path-style", "--s3-no-check-bucket", "--log-level", "NOTICE")
}
