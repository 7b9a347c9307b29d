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

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/fusefs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testExtentSize is the extent size of the volumes the tests format: small,
// so files of several extents are cheap.
const testExtentSize = 256 << 10

// requireFUSE skips the test without root and /dev/fuse, or fails it when
// S3GFS_REQUIRE_FUSE=1.
func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		msg := fmt.Sprintf("FUSE tests need root and /dev/fuse (euid %d, stat /dev/fuse: %v)", os.Geteuid(), err)
		if os.Getenv("S3GFS_REQUIRE_FUSE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// mountOpts configure mountVolume.
type mountOpts struct {
	ExtentSize  uint32 // default testExtentSize
	InlineLimit uint32 // default: the format's default
	// Timeout is the kernel's entry and attribute cache time (fusefs default
	// when 0).
	Timeout time.Duration
	VFS     vfs.Options // Logger is always replaced by the mount's log
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
	engine, err := vfs.New(m.Vol, vo)
	if err != nil {
		m.t.Fatalf("vfs.New: %v", err)
	}
	server, err := fusefs.Mount(m.Dir, engine, fusefs.MountOptions{Timeout: m.opts.Timeout, Logger: vo.Logger})
	if err != nil {
		engine.Close(context.Background())
		m.t.Fatalf("mount %s: %v", m.Dir, err)
	}
	m.Engine, m.server = engine, server
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
	var err error
	for try := 0; try < 40; try++ {
		if err = server.Unmount(); err == nil {
			break
		}
		if !errors.Is(err, syscall.EBUSY) && !strings.Contains(err.Error(), "busy") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		m.t.Errorf("unmount %s: %v; detaching it lazily", m.Dir, err)
		syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	}
	waited := make(chan struct{})
	go func() { server.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
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
	vol, err := volume.Open(ctx, m.Store, m.URL, true)
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
	Nlink  uint64      // non-directories only (a directory's count depends on the fs's policy for "." and "..")
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
		e := treeEntry{Type: fi.Mode().Type(), Perm: fi.Mode() &^ fs.ModeType}
		// Go maps the setuid/setgid/sticky bits into Mode(); keep the raw
		// bits too so that they compare like for like.
		e.Perm = fs.FileMode(st.Mode & 0o7777)
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
			e.Nlink = uint64(st.Nlink)
			data, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			e.Data = data
			if int64(len(data)) != e.Size {
				return fmt.Errorf("%s: stat says %d bytes, read gave %d", p, e.Size, len(data))
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Nlink = uint64(st.Nlink)
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
