package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// MountSpec is one `s3gfs mount` of a volume at a staging path. The
// credentials travel only in the mount process's environment (never on its
// command line, which every user of the node can read) and are never
// logged: String omits them.
type MountSpec struct {
	URL          string        `json:"url"`    // s3://BUCKET/PREFIX
	Target       string        `json:"target"` // the staging path
	Endpoint     string        `json:"endpoint,omitempty"`
	Region       string        `json:"region,omitempty"`
	ReadOnly     bool          `json:"readOnly,omitempty"`
	AsOf         string        `json:"asOf,omitempty"`
	NodeName     string        `json:"nodeName,omitempty"`
	CacheSize    int64         `json:"cacheSize,omitempty"`
	SyncInterval time.Duration `json:"syncInterval,omitempty"`
	LogFile      string        `json:"logFile,omitempty"`
	CompatWrites bool          `json:"compatWrites,omitempty"`

	AccessKeyID     string `json:"accessKeyID,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
}

// String describes the mount without its credentials.
func (s MountSpec) String() string {
	return fmt.Sprintf("%s at %s (read-only %v, as-of %q)", s.URL, s.Target, s.ReadOnly, s.AsOf)
}

// args are the `s3gfs mount` arguments, without credentials.
func (s MountSpec) args(background bool) []string {
	a := []string{"mount", "--allow-other"}
	if background {
		a = append(a, "--background")
	}
	if s.Endpoint != "" {
		a = append(a, "--endpoint", s.Endpoint)
	}
	if s.Region != "" {
		a = append(a, "--region", s.Region)
	}
	if s.AsOf != "" {
		a = append(a, "--as-of", s.AsOf)
	}
	if s.ReadOnly {
		a = append(a, "--read-only")
	}
	if s.NodeName != "" {
		a = append(a, "--node-name", s.NodeName)
	}
	if s.CacheSize > 0 {
		a = append(a, "--cache-size", strconv.FormatInt(s.CacheSize, 10))
	}
	if s.SyncInterval > 0 {
		a = append(a, "--sync-interval", s.SyncInterval.String())
	}
	if s.LogFile != "" {
		a = append(a, "--log-file", s.LogFile)
	}
	if s.CompatWrites {
		a = append(a, "--compat-writes")
	}
	return append(a, "--", s.URL, s.Target)
}

// env is the mount process's environment: the plugin's own, with the
// request's credentials replacing any static AWS credentials in it.
func (s MountSpec) env() []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		if s.AccessKeyID != "" && (k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY" || k == "AWS_SESSION_TOKEN") {
			continue
		}
		if k == readyFDEnv {
			continue
		}
		env = append(env, e)
	}
	if s.AccessKeyID != "" {
		env = append(env, "AWS_ACCESS_KEY_ID="+s.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+s.SecretAccessKey)
	}
	return env
}

func (s MountSpec) secrets() []string { return []string{s.AccessKeyID, s.SecretAccessKey} }

// Mounter runs and stops the `s3gfs mount` processes that serve staged
// volumes. The processes never live in the CSI plugin's own process, so a
// restart of the plugin leaves them, and the pods' mounts, alone.
type Mounter interface {
	// Mount mounts spec.Target and returns once the mount serves, with the
	// pid of the serving process when known in the plugin's pid namespace
	// (0 otherwise).
	Mount(ctx context.Context, spec MountSpec) (pid int, err error)
	// Unmount writes back and unmounts target, stopping its process (pid
	// from Mount, or 0). Unmounting what is not mounted succeeds.
	Unmount(ctx context.Context, target string, pid int) error
}

// readyFDEnv is the s3gfs mount's start-up protocol (cmd/s3gfs): a child
// with S3GFS_READY_FD=N writes "ok", or why it failed, to descriptor N once
// its mount serves.
const readyFDEnv = "S3GFS_READY_FD"

// DetachedMounter starts each mount as `s3gfs mount --background`: a
// process in a session of its own that the plugin does not own, so it
// outlives the plugin (when the plugin runs in a container of its own, the
// mount processes must not live in it: use a MounterServer in another
// container instead).
type DetachedMounter struct {
	Binary string // the s3gfs binary
}

var bgPidRE = regexp.MustCompile(`\(pid (\d+)\)`)

func (m *DetachedMounter) Mount(ctx context.Context, spec MountSpec) (int, error) {
	cmd := exec.CommandContext(ctx, m.Binary, spec.args(true)...)
	cmd.Env = spec.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	err := cmd.Run()
	return backgroundResult(spec, stderr.String(), err)
}

// backgroundResult is the outcome of an `s3gfs mount --background` that
// exited with err after writing stderr: the serving process's pid (0 when
// it did not say), or why the mount failed.
func backgroundResult(spec MountSpec, stderr string, err error) (int, error) {
	msg := strings.TrimSpace(scrub(stderr, spec.secrets()))
	if err != nil {
		return 0, mountError(spec, msg, err)
	}
	pid := 0
	if sm := bgPidRE.FindStringSubmatch(msg); sm != nil {
		pid, _ = strconv.Atoi(sm[1])
	}
	return pid, nil
}

func (m *DetachedMounter) Unmount(ctx context.Context, target string, pid int) error {
	return stopMount(ctx, target, pid, nil)
}

// mountError turns a failed `s3gfs mount` into an error the CSI code maps.
func mountError(spec MountSpec, msg string, err error) error {
	if msg == "" {
		msg = err.Error()
	}
	switch {
	case strings.Contains(msg, "no s3gfs volume there"):
		return fmt.Errorf("%w: mount %s: %s", ErrNotFound, spec.URL, msg)
	case strings.Contains(msg, "access denied"), strings.Contains(msg, "AccessDenied"), strings.Contains(msg, "InvalidAccessKeyId"), strings.Contains(msg, "SignatureDoesNotMatch"):
		return fmt.Errorf("%w: mount %s: %s", objstore.ErrAccessDenied, spec.URL, msg)
	case strings.Contains(msg, "unavailable"), strings.Contains(msg, "connection refused"):
		return fmt.Errorf("%w: mount %s: %s", objstore.ErrUnavailable, spec.URL, msg)
	}
	return fmt.Errorf("mount %s: %s", spec.URL, msg)
}

// stopMount writes back and unmounts target. With the pid of its s3gfs
// process (checked against /proc, so a reused pid is never signalled) it
// sends SIGTERM, on which s3gfs writes everything back, unmounts and exits,
// and waits for that. Without one it unmounts, and the serving process
// (wherever it runs) writes back and exits by itself. exited, when not nil,
// is closed when the process has exited (for a child of the caller).
func stopMount(ctx context.Context, target string, pid int, exited <-chan struct{}) error {
	if pid > 0 && isMountProcess(pid, target) {
		if err := syscall.Kill(pid, syscall.SIGTERM); err == nil {
			waitExit(ctx, target, pid, exited)
		}
	}
	// Whatever the process did, the mount must be gone (a process killed
	// before it could unmount leaves a dead one).
	for {
		_, mounted, err := mountAt(target)
		if err != nil {
			return err
		}
		if !mounted {
			return nil
		}
		if err := syscall.Unmount(target, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			if errors.Is(err, syscall.EBUSY) {
				return fmt.Errorf("%w: unmount %s: still in use (is it still published?)", ErrPrecondition, target)
			}
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// isMountProcess reports whether pid is an `s3gfs mount` of target.
func isMountProcess(pid int, target string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	if len(args) < 3 || args[len(args)-1] != target {
		return false
	}
	for _, a := range args[1:] {
		if a == "mount" {
			// A zombie keeps its cmdline readable only while not reaped;
			// its state says whether it still runs.
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err == nil {
				if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
					return false
				}
			}
			return true
		}
	}
	return false
}

// Supervisor runs each mount as its own child process (`s3gfs mount` in the
// foreground, reporting readiness on a pipe) and keeps them until they are
// unmounted. It is what a MounterServer serves: in Kubernetes it runs in its
// own container of the node DaemonSet pod, so the CSI node plugin's
// container can restart without touching a mount.
type Supervisor struct {
	Binary string

	mu       sync.Mutex
	children map[string]*child // by target
}

type child struct {
	pid    int
	exited chan struct{}
}

func (s *Supervisor) Mount(ctx context.Context, spec MountSpec) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	cmd := exec.Command(s.Binary, spec.args(false)...)
	cmd.Env = append(spec.env(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // detached by s3gfs once the mount is ready
	// A session of its own: a signal to the supervisor's process group
	// (Ctrl-C) does not reach the mounts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("start s3gfs mount: %w", err)
	}
	w.Close()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	msgc := make(chan string, 1)
	go func() { b, _ := io.ReadAll(r); msgc <- string(b) }()
	var msg string
	select {
	case msg = <-msgc:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-exited
		return 0, fmt.Errorf("mount %s: %w", spec.URL, ctx.Err())
	}
	if msg != "ok" {
		<-exited
		if msg == "" {
			msg = strings.TrimSpace(stderr.String())
		}
		return 0, mountError(spec, scrub(msg, spec.secrets()), waitErr)
	}
	pid := cmd.Process.Pid
	s.mu.Lock()
	if s.children == nil {
		s.children = map[string]*child{}
	}
	s.children[spec.Target] = &child{pid: pid, exited: exited}
	s.mu.Unlock()
	go func() {
		<-exited
		klog.InfoS("s3gfs mount process exited", "target", spec.Target, "pid", pid, "err", waitErr)
		s.mu.Lock()
		if c := s.children[spec.Target]; c != nil && c.pid == pid {
			delete(s.children, spec.Target)
		}
		s.mu.Unlock()
	}()
	return pid, nil
}

func (s *Supervisor) Unmount(ctx context.Context, target string, pid int) error {
	s.mu.Lock()
	c := s.children[target]
	s.mu.Unlock()
	if c != nil {
		return stopMount(ctx, target, c.pid, c.exited)
	}
	return stopMount(ctx, target, pid, nil)
}

// Stop unmounts every mount the supervisor runs (for a clean shutdown).
func (s *Supervisor) Stop(ctx context.Context) {
	s.mu.Lock()
	var targets []string
	for t := range s.children {
		targets = append(targets, t)
	}
	s.mu.Unlock()
	for _, t := range targets {
		if err := s.Unmount(ctx, t, 0); err != nil {
			klog.ErrorS(err, "unmount at shutdown", "target", t)
		}
	}
}

// waitExit waits for the mount process pid, asked to stop, to exit: it
// writes everything back, unmounts and exits. Once the mountpoint is gone
// it waits at most 30s more (a long final write-back, or a lazy unmount
// something still holds, finishes on its own).
func waitExit(ctx context.Context, target string, pid int, exited <-chan struct{}) {
	var unmounted time.Time
	for {
		if exited != nil {
			select {
			case <-exited:
				return
			default:
			}
		} else if !isMountProcess(pid, target) {
			return
		}
		if _, mounted, err := mountAt(target); err == nil && !mounted {
			if unmounted.IsZero() {
				unmounted = time.Now()
			} else if time.Since(unmounted) > 30*time.Second {
				klog.InfoS("unmounted; the mount process is still writing back", "target", target, "pid", pid)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}
