package driver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// HostMounter runs every mount outside the node plugin's container, so
// that no container or pod lifecycle reaches it: deleting or upgrading the
// node plugin's pod leaves the pods' volumes serving. (With the other
// mounters the mount processes live in a container of the node pod and die
// with it.) A mount process it starts:
//
//   - is moved, right after it starts, into the cgroup Cgroup in every
//     hierarchy of the host's cgroup file system (CgroupRoot), so the
//     container runtime, which kills every process of the container's
//     cgroup when it stops it, does not find it there;
//   - when the host's root is reachable (HostRoot, /proc/1/root with the
//     pod's hostPID), runs the s3gfs binary copied to BinDir (a hostPath
//     at the same path on the host) chrooted to the host's root, and joins
//     the host's mount namespace with the host's nsenter when it may: it
//     then needs nothing of the container at all. Otherwise it runs in the
//     container's mount namespace, which lives on, with the container's
//     files it holds, for as long as a process uses it;
//   - uses the network namespace it was started in: the pod's must be the
//     host's (hostNetwork), or it would lose the network with the pod.
//
// A new plugin process (the next pod) finds the mounts from its state files
// and stops them by pid (hostPID again), like any other.
type HostMounter struct {
	Binary     string // the s3gfs binary in the plugin's filesystem
	BinDir     string // where the binary is copied for HostRoot: the same path on the host
	HostRoot   string // the host's root directory as the plugin sees it; "" to stay in the container's
	CgroupRoot string // the host's cgroup file system as the plugin sees it
	Cgroup     string // cgroup path, the same in every hierarchy, e.g. /s3gfs

	mu     sync.Mutex
	staged string // BinDir path of the copied binary
}

// DefaultHostCgroup is where the host mounter puts mount processes.
const DefaultHostCgroup = "/s3gfs"

// CheckHost reports whether the host mounter can work here: it needs to
// see the host's processes (hostPID) and its cgroup file system. A host
// root it cannot reach is dropped (HostRoot = ""), with a warning.
func (m *HostMounter) CheckHost() error {
	data, err := os.ReadFile("/proc/1/cgroup")
	if err != nil {
		return fmt.Errorf("host mounter: %w", err)
	}
	if strings.Contains(string(data), "kubepods") {
		return errors.New("host mounter: process 1 is in a pod's cgroup: the node pod needs hostPID: true")
	}
	if !strings.HasPrefix(m.Cgroup, "/") || strings.Contains(m.Cgroup, "..") || m.Cgroup == "/" {
		return fmt.Errorf("host mounter: cgroup %q: want an absolute path below the root, e.g. %s", m.Cgroup, DefaultHostCgroup)
	}
	if len(m.hierarchies()) == 0 {
		return fmt.Errorf("host mounter: no cgroup hierarchy under %s (mount the host's /sys/fs/cgroup there)", m.CgroupRoot)
	}
	if m.HostRoot != "" {
		if _, err := os.Stat(filepath.Join(m.HostRoot, "bin")); err != nil {
			klog.InfoS("the host's root is out of reach: mount processes stay in this container's mount namespace (which outlives the container while they run)",
				"hostRoot", m.HostRoot, "err", err)
			m.HostRoot = ""
		}
	}
	return nil
}

func (m *HostMounter) Mount(ctx context.Context, spec MountSpec) (int, error) {
	env, path, args := spec.env(), m.Binary, spec.args(true)
	var attr syscall.SysProcAttr
	attr.Setsid = true
	if m.HostRoot != "" {
		bin, err := m.stageBinary()
		if err != nil {
			return 0, err
		}
		if env, err = m.hostEnv(env); err != nil {
			return 0, err
		}
		path, attr.Chroot = bin, m.HostRoot
		if nsenter := m.hostNsenter(); nsenter != "" {
			// Join the host's mount namespace too: the mount is then
			// made, and kept, where the kubelet sees it, whatever
			// becomes of the container's namespace.
			path, args = nsenter, append([]string{"--target", "1", "--mount", "--", bin}, args...)
		}
	}
	// Copies no mount uses any more (the previous binary after an
	// upgrade, a rotated CA bundle) go once this mount has started.
	defer m.removeUnused()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Args[0] = filepath.Base(path)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &attr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start s3gfs mount (%s, root %q): %w", path, m.HostRoot, err)
	}
	// Out of the container's cgroup before it forks its serving process,
	// which inherits the cgroup.
	if err := m.moveToCgroup(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, err
	}
	err := cmd.Wait()
	pid, err := backgroundResult(spec, stderr.String(), err)
	if err != nil {
		return 0, err
	}
	if pid > 0 {
		// Already there (inherited); checked so that a failure shows.
		if err := m.moveToCgroup(pid); err != nil {
			klog.ErrorS(err, "mount process left in the plugin's cgroup: it ends with the pod", "target", spec.Target, "pid", pid)
		}
	}
	return pid, nil
}

func (m *HostMounter) Unmount(ctx context.Context, target string, pid int) error {
	err := stopMount(ctx, target, pid, nil)
	m.removeUnused()
	return err
}

// stagedKeep: a copy in BinDir handed out (or made) less than this long
// ago is kept even if no process uses it yet: a mount process that
// another plugin process (the previous or next pod's) is starting may be
// about to exec it or read it.
const stagedKeep = 10 * time.Minute

// stagedName matches the names of the copies the host mounter makes in
// BinDir (copyByContent), and of the temporary files of a copy.
var stagedName = regexp.MustCompile(`^(s3gfs-[0-9a-f]{16}|ca-[0-9a-f]{16}\.pem|\.tmp-(s3gfs|ca)-[0-9]+)$`)

// removeUnused removes from BinDir the copies of the s3gfs binary and of
// CA bundles that no running process uses, so that upgrades and CA
// rotations do not pile them up on every node: a binary is used while a
// process runs it (/proc/<pid>/exe is that file, matched by device and
// inode, whatever mount namespace or root the process has), a CA bundle
// while a process running one of those binaries names it in its
// AWS_CA_BUNDLE. A mount process execs nothing new and reads its CA
// bundle at start, so once it runs nothing else of BinDir is needed by
// it. The binary this plugin process stages, and anything handed out
// less than stagedKeep ago, stay. Best effort: a failure is logged.
func (m *HostMounter) removeUnused() {
	if m.HostRoot == "" || m.BinDir == "" {
		return // nothing is staged
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, err := os.ReadDir(m.BinDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			klog.ErrorS(err, "host mounter: list the staged binaries", "dir", m.BinDir)
		}
		return
	}
	type fileID struct{ dev, ino uint64 }
	idOf := func(fi os.FileInfo) (fileID, bool) {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fileID{}, false
		}
		return fileID{uint64(st.Dev), st.Ino}, true
	}
	binaries := map[fileID]string{}
	var candidates []string
	for _, e := range entries {
		if !stagedName.MatchString(e.Name()) {
			continue
		}
		candidates = append(candidates, e.Name())
		if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "s3gfs-") {
			if id, ok := idOf(fi); ok {
				binaries[id] = e.Name()
			}
		}
	}
	if len(candidates) == 0 {
		return
	}
	used := map[string]bool{}
	if m.staged != "" {
		used[filepath.Base(m.staged)] = true
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		klog.ErrorS(err, "host mounter: list processes; no staged binary removed")
		return
	}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join("/proc", p.Name(), "exe"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		id, ok := idOf(fi)
		if !ok || binaries[id] == "" {
			continue
		}
		used[binaries[id]] = true
		env, err := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "AWS_CA_BUNDLE="); ok && filepath.Dir(v) == filepath.Clean(m.BinDir) {
				used[filepath.Base(v)] = true
			}
		}
	}
	for _, name := range candidates {
		path := filepath.Join(m.BinDir, name)
		fi, err := os.Lstat(path)
		if err != nil || used[name] || time.Since(fi.ModTime()) < stagedKeep {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			klog.ErrorS(err, "host mounter: remove an unused staged copy", "file", path)
			continue
		}
		klog.V(2).InfoS("host mounter: removed a staged copy no mount process uses", "file", path)
	}
}

// stageBinary copies the s3gfs binary into BinDir once, named by its
// content, and returns its path (the same on the host).
func (m *HostMounter) stageBinary() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.staged != "" {
		return m.staged, nil
	}
	dst, err := copyByContent(m.Binary, m.BinDir, "s3gfs-", "", 0o755)
	if err != nil {
		return "", fmt.Errorf("copy the s3gfs binary to the host directory %s: %w", m.BinDir, err)
	}
	m.staged = dst
	return dst, nil
}

// hostEnv rewrites what in the environment names a file of the plugin's
// filesystem (the CA bundle) to a copy the host can read.
func (m *HostMounter) hostEnv(env []string) ([]string, error) {
	out := make([]string, 0, len(env))
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		if k == "AWS_CA_BUNDLE" && v != "" {
			// Copied by content at every mount: the bundle may change
			// under the same path (a ConfigMap volume updated on a CA
			// rotation), and the copy must follow it.
			m.mu.Lock()
			cp, err := copyByContent(v, m.BinDir, "ca-", ".pem", 0o644)
			m.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("copy AWS_CA_BUNDLE %s for the host's mount process: %w", v, err)
			}
			e = k + "=" + cp
		}
		out = append(out, e)
	}
	return out, nil
}

// hostNsenter is the host's nsenter (a path inside HostRoot), or "" when
// there is none or process 1's mount namespace is out of reach.
func (m *HostMounter) hostNsenter() string {
	if f, err := os.Open("/proc/1/ns/mnt"); err != nil {
		return ""
	} else {
		f.Close()
	}
	for _, p := range []string{"/usr/bin/nsenter", "/bin/nsenter", "/usr/sbin/nsenter", "/sbin/nsenter"} {
		if st, err := os.Stat(filepath.Join(m.HostRoot, p)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// copyByContent copies src into dir as prefix + a hash of its content +
// suffix, atomically, unless that file is already there; it returns the
// copy's path.
func copyByContent(src, dir, prefix, suffix string, mode os.FileMode) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	dst := filepath.Join(dir, prefix+hex.EncodeToString(sum[:8])+suffix)
	if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, data) {
		// Its time says when it was last handed out (removeUnused).
		now := time.Now()
		if err := os.Chtimes(dst, now, now); err != nil {
			return "", err
		}
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+prefix)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp.Name(), dst)
}

// hierarchies lists the host's cgroup hierarchies: cgroup v2's one, or
// every mounted v1 controller (and the hybrid unified one).
func (m *HostMounter) hierarchies() []string {
	root := m.CgroupRoot
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return []string{root}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 || !e.IsDir() { // cpu -> cpu,cpuacct and such
			continue
		}
		d := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// moveToCgroup puts pid into m.Cgroup in every cgroup hierarchy.
func (m *HostMounter) moveToCgroup(pid int) error {
	dirs := m.hierarchies()
	if len(dirs) == 0 {
		return fmt.Errorf("host mounter: no cgroup hierarchy under %s", m.CgroupRoot)
	}
	for _, h := range dirs {
		cg := filepath.Join(h, filepath.FromSlash(strings.TrimPrefix(m.Cgroup, "/")))
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return fmt.Errorf("host mounter: create cgroup %s: %w", cg, err)
		}
		if err := inheritCpuset(cg); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("host mounter: move pid %d to cgroup %s (a private cgroup namespace forbids it: cgroup v2 nodes need the host's): %w", pid, cg, err)
		}
	}
	return nil
}

// inheritCpuset fills an empty v1 cpuset cgroup (and its empty ancestors)
// from its parent: no process may join a cpuset without cpus and mems.
func inheritCpuset(cg string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		p := filepath.Join(cg, f)
		have, err := os.ReadFile(p)
		if err != nil {
			return nil // not a v1 cpuset hierarchy
		}
		if len(bytes.TrimSpace(have)) > 0 {
			continue
		}
		if err := inheritCpuset(filepath.Dir(cg)); err != nil {
			return err
		}
		parent, err := os.ReadFile(filepath.Join(filepath.Dir(cg), f))
		if err != nil {
			return fmt.Errorf("host mounter: %w", err)
		}
		if err := os.WriteFile(p, bytes.TrimSpace(parent), 0); err != nil {
			return fmt.Errorf("host mounter: set %s: %w", p, err)
		}
	}
	return nil
}
