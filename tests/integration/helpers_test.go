// Package integration runs s3gfs through real FUSE mounts against a real S3
// server (versitygw, started by internal/testenv): POSIX conformance
// (go-fuse's posixtest), every file operation, large multi-extent files,
// a differential test against a local directory, and the s3gfs CLI end to
// end, including bad input and corrupt objects in the bucket.
//
// The tests need root and /dev/fuse; without them they skip, or fail when
// S3GFS_REQUIRE_FUSE=1. Run them with
//
//	S3GFS_REQUIRE_S3=1 S3GFS_REQUIRE_FUSE=1 go test -count=1 ./tests/integration/
package integration

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/fusefs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) {
	// The FUSE servers run in this process, so a test stuck in a system
	// call on a mount would, at the -timeout panic, leave the process
	// unable to exit: exiting flushes its open files on its own mounts,
	// whose servers are gone. A little before the deadline, abort the
	// mounts' FUSE connections instead: stuck calls fail with ENOTCONN
	// and the run ends with a failure, not a wedged process.
	flag.Parse()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			time.AfterFunc(d-min(d/10, 20*time.Second), abortMounts)
		}
	}
	testenv.Main(m)
}

// liveMounts maps the mountpoints of this process's mounts to their FUSE
// connection ids (the minor of the mount's device number).
var (
	liveMu     sync.Mutex
	liveMounts = map[string]uint32{}
)

func registerMount(dir string) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return
	}
	liveMu.Lock()
	liveMounts[dir] = unix.Minor(st.Dev)
	liveMu.Unlock()
}

func unregisterMount(dir string) {
	liveMu.Lock()
	delete(liveMounts, dir)
	liveMu.Unlock()
}

// abortMounts aborts the FUSE connection of every mount still up.
func abortMounts() {
	liveMu.Lock()
	defer liveMu.Unlock()
	if len(liveMounts) == 0 {
		return
	}
	const ctl = "/sys/fs/fuse/connections"
	if es, err := os.ReadDir(ctl); err == nil && len(es) == 0 {
		syscall.Mount("fusectl", ctl, "fusectl", 0, "")
	}
	for dir, conn := range liveMounts {
		err := os.WriteFile(fmt.Sprintf("%s/%d/abort", ctl, conn), []byte("1"), 0)
		fmt.Fprintf(os.Stderr, "integration: test deadline near: aborted the FUSE connection of %s (%d): %v\n", dir, conn, err)
	}
}

// testExtentSize is the extent size of the volumes the tests format: small,
// so files of several extents are cheap.
const testExtentSize = 256 << 10

func requireFUSE(t testing.TB) { testenv.RequireFUSE(t) }

// mountOpts configure mountVolume.
type mountOpts struct {
	ExtentSize  uint32 // default testExtentSize
	InlineLimit uint32 // default: the format's default
	// Timeout is the kernel's entry and attribute cache time (fusefs default
	// when 0).
	Timeout time.Duration
	VFS     vfs.Options // Logger is always replaced by the mount's log
	// ReadOnly mounts read-only (the engine and the kernel mount both).
	ReadOnly bool
}

// logBuffer collects a mount's log lines. It outlives the test (background
// goroutines may still log), so it never calls t.Log itself.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < 4<<20 {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mount is one volume mounted in this process.
type mount struct {
	t      testing.TB
	Dir    string // the mountpoint
	Store  *s3store.Store
	URL    volume.URL
	Vol    *volume.Volume
	Engine *vfs.FS
	Log    *logBuffer
	opts   mountOpts
	server *fuse.Server
}

// mountVolume formats a volume in a fresh bucket and mounts it on a fresh
// directory. Cleanup unmounts it and closes the engine.
func mountVolume(t testing.TB, o mountOpts) *mount {
	t.Helper()
	requireFUSE(t)
	store := testenv.S3(t).NewBucket(t)
	if o.ExtentSize == 0 {
		o.ExtentSize = testExtentSize
	}
	u := volume.URL{Bucket: store.Bucket()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vol, err := volume.Format(ctx, store, u, volume.FormatOptions{ExtentSize: o.ExtentSize, InlineLimit: o.InlineLimit})
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	m := &mount{t: t, Dir: t.TempDir(), Store: store, URL: u, Vol: vol, Log: &logBuffer{}, opts: o}
	m.mount()
	t.Cleanup(func() {
		m.unmount()
		if t.Failed() {
			t.Logf("log of the mount at %s:\n%s", m.Dir, m.Log)
		}
	})
	return m
}

// logger is the mount's logger: everything at debug level and above goes to
// the mount's log buffer.
func (m *mount) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(m.Log, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mount starts a fresh engine on m.Vol and mounts it on m.Dir.
func (m *mount) mount() {
	m.t.Helper()
	vo := m.opts.VFS
	vo.Logger = m.logger()
	vo.ReadOnly = m.opts.ReadOnly
	engine, err := vfs.New(m.Vol, vo)
	if err != nil {
		m.t.Fatalf("vfs.New: %v", err)
	}
	server, err := fusefs.Mount(m.Dir, engine, fusefs.MountOptions{Timeout: m.opts.Timeout, ReadOnly: m.opts.ReadOnly, Logger: vo.Logger})
	if err != nil {
		engine.Close(context.Background())
		m.t.Fatalf("mount %s: %v", m.Dir, err)
	}
	m.Engine, m.server = engine, server
	registerMount(m.Dir)
}

// unmount unmounts m (retrying while the kernel says it is busy, then
// detaching it lazily) and closes the engine, which commits everything
// still dirty. It is a no-op when m is not mounted.
func (m *mount) unmount() {
	if m.server == nil {
		return
	}
	server, engine := m.server, m.Engine
	m.server, m.Engine = nil, nil
	defer unregisterMount(m.Dir)
	// go-fuse's Unmount retries a few times itself, then falls back to
	// fusermount, whose error hides the EBUSY: retry while the kernel
	// still has the mount.
	var err error
	for try := 0; try < 20; try++ {
		if err = server.Unmount(); err == nil || !isMounted(m.Dir) {
			err = nil
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wait := 30 * time.Second
	if err != nil {
		// Something (a descriptor leaked by a failed test) holds the mount.
		m.t.Errorf("unmount %s: %v; detaching it lazily", m.Dir, err)
		syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		wait = 2 * time.Second
	}
	waited := make(chan struct{})
	go func() { server.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(wait):
		m.t.Errorf("FUSE server of %s did not stop after unmount", m.Dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := engine.Close(ctx); err != nil {
		m.t.Errorf("close engine of %s: %v", m.Dir, err)
	}
}

// remount unmounts m and mounts the same volume again with a fresh engine
// (the volume re-opened from the store), so nothing cached in memory can
// stand in for what the bucket holds.
func (m *mount) remount() {
	m.t.Helper()
	m.unmount()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vol, err := volume.Open(ctx, m.Store, m.URL, !m.opts.ReadOnly)
	if err != nil {
		m.t.Fatalf("reopen volume: %v", err)
	}
	m.Vol = vol
	m.mount()
}

// path joins names under the mountpoint.
func (m *mount) path(names ...string) string {
	return filepath.Join(append([]string{m.Dir}, names...)...)
}

// errnoOf extracts the errno of an error from the os or syscall packages;
// 0 for nil, -1 for an error carrying none.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.Errno(^uintptr(0))
}

// wantErrno fails the test unless err carries errno want.
func wantErrno(t testing.TB, what string, err error, want syscall.Errno) {
	t.Helper()
	if got := errnoOf(err); got != want {
		t.Errorf("%s: got error %v (errno %d), want %v (errno %d)", what, err, int(got), want, int(want))
	}
}

// must fails the test at once on err.
func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// treeEntry is what compareTrees compares of one name.
type treeEntry struct {
	Type   fs.FileMode // type bits only
	Perm   fs.FileMode // permission bits (with setuid, setgid, sticky)
	Size   int64       // regular files only
	Nlink  uint64      // for directories: 2 + subdirectories, on s3gfs as on ext4 and tmpfs
	Target string      // symlinks
	Data   []byte      // regular files
	Xattrs map[string]string
}

func (e treeEntry) String() string {
	s := fmt.Sprintf("type=%v perm=%v", e.Type, e.Perm)
	switch {
	case e.Type&fs.ModeSymlink != 0:
		s += fmt.Sprintf(" target=%q nlink=%d", e.Target, e.Nlink)
	case e.Type.IsRegular():
		s += fmt.Sprintf(" size=%d nlink=%d", e.Size, e.Nlink)
	default:
		s += fmt.Sprintf(" nlink=%d", e.Nlink)
	}
	if len(e.Xattrs) > 0 {
		s += fmt.Sprintf(" xattrs=%v", e.Xattrs)
	}
	return s
}

// readTree walks root (not following symlinks) and returns every name
// below it, relative to root, with what compareTrees checks.
func readTree(t testing.TB, root string, xattrs bool) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		// Perm holds the raw permission bits (with setuid, setgid and
		// sticky), not Go's spelling of them.
		e := treeEntry{Type: fi.Mode().Type(), Perm: fs.FileMode(st.Mode & 0o7777), Nlink: uint64(st.Nlink)}
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
			data, err := readContent(p, e.Size)
			if err != nil {
				return err
			}
			e.Data = data
		case fi.Mode()&fs.ModeSymlink != 0:
			tg, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("readlink %s: %w", p, err)
			}
			e.Target = tg
			e.Perm = 0 // symlink permissions are meaningless
		}
		if xattrs && fi.Mode()&fs.ModeSymlink == 0 {
			e.Xattrs = listXattrs(t, p)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// readContent returns the content of the file p of the given size; of a
// file over 16 MiB (a sparse test file), only its first and last MiB.
func readContent(p string, size int64) ([]byte, error) {
	if size <= 16<<20 {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if int64(len(data)) != size {
			return nil, fmt.Errorf("%s: stat says %d bytes, read gave %d", p, size, len(data))
		}
		return data, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, 2<<20)
	if _, err := f.ReadAt(data[:1<<20], 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if _, err := f.ReadAt(data[1<<20:], size-1<<20); err != nil {
		return nil, fmt.Errorf("read the end of %s: %w", p, err)
	}
	return data, nil
}

// listXattrs returns the user.* extended attributes of p.
func listXattrs(t testing.TB, p string) map[string]string {
	t.Helper()
	sz, err := syscall.Listxattr(p, nil)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	if sz == 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = syscall.Listxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v := make([]byte, 64<<10)
		n, err := syscall.Getxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out[name] = string(v[:n])
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// compareTrees fails the test for every difference between the trees got
// (the mount) and want (the reference), as read by readTree.
func compareTrees(t testing.TB, what string, got, want map[string]treeEntry) {
	t.Helper()
	names := map[string]bool{}
	for n := range got {
		names[n] = true
	}
	for n := range want {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	diffs := 0
	for _, n := range sorted {
		g, gok := got[n]
		w, wok := want[n]
		var msg string
		switch {
		case !gok:
			msg = fmt.Sprintf("missing (want %v)", w)
		case !wok:
			msg = fmt.Sprintf("unexpected (%v)", g)
		case g.Type != w.Type || g.Perm != w.Perm || g.Size != w.Size || g.Nlink != w.Nlink || g.Target != w.Target || !equalXattrs(g.Xattrs, w.Xattrs):
			msg = fmt.Sprintf("got %v, want %v", g, w)
		case !bytes.Equal(g.Data, w.Data):
			msg = fmt.Sprintf("content differs at byte %d (size %d)", firstDiff(g.Data, w.Data), len(w.Data))
		default:
			continue
		}
		diffs++
		if diffs <= 30 {
			t.Errorf("%s: %s: %s", what, n, msg)
		}
	}
	if diffs > 30 {
		t.Errorf("%s: %d differences in all", what, diffs)
	}
}

func equalXattrs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// firstDiff returns the first index at which a and b differ, or the
// shorter length.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// statT lstats p.
func statT(t testing.TB, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func isMounted(dir string) bool { return testenv.IsMounted(dir) }

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
