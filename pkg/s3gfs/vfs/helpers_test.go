package vfs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

const (
	extSize = 64 << 10 // the smallest extent size the format allows
	bufSize = 4 * extSize
	root    = format.RootID
)

var (
	ctx    = context.Background()
	caller = vfs.Caller{UID: 1000, GID: 1000}
)

// env is one volume in one memstore, shared by any number of engines
// ("hosts").
type env struct {
	t     testing.TB
	store *memstore.Store
	// used is the store engines talk to: store itself, or a wrapper.
	used objstore.Store
	url  volume.URL
	vol  *volume.Volume // the volume as formatted
	log  *logBuffer
}

func newEnv(t testing.TB) *env { return newEnvWrapped(t, nil) }

// newEnvWrapped makes engines reach the memstore through wrap(store).
func newEnvWrapped(t testing.TB, wrap func(*memstore.Store) objstore.Store) *env {
	t.Helper()
	return newEnvSized(t, extSize, wrap)
}

// newEnvSized is newEnvWrapped for a volume of extent size es.
func newEnvSized(t testing.TB, es uint32, wrap func(*memstore.Store) objstore.Store) *env {
	t.Helper()
	store := memstore.New("bkt")
	var used objstore.Store = store
	if wrap != nil {
		used = wrap(store)
	}
	u := volume.URL{Bucket: "bkt", Prefix: "v"}
	vol, err := volume.Format(ctx, used, u, volume.FormatOptions{ExtentSize: es})
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	return &env{t: t, store: store, used: used, url: u, vol: vol, log: &logBuffer{}}
}

// defaultOpts are the options every test engine starts from: a small
// write-back buffer, no timer-driven write-back (tests commit explicitly)
// and directories revalidated on every lookup (so a second host sees
// another's namespace changes at once).
func defaultOpts() vfs.Options {
	return vfs.Options{
		BufferSize:     bufSize,
		WritebackDelay: time.Hour,
		Revalidate:     time.Nanosecond,
	}
}

// engine opens a new host over the volume; every call is a different host.
func (e *env) engine(mod ...func(*vfs.Options)) *vfs.FS {
	e.t.Helper()
	o := defaultOpts()
	for _, m := range mod {
		m(&o)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	vol, err := volume.Open(ctx, e.used, e.url, !o.ReadOnly)
	if err != nil {
		e.t.Fatalf("open volume: %v", err)
	}
	fs, err := vfs.New(vol, o)
	if err != nil {
		e.t.Fatalf("vfs.New: %v", err)
	}
	e.t.Cleanup(func() { fs.Close(ctx) })
	return fs
}

// keysUnder lists the store's keys with the given prefix.
func (e *env) keysUnder(prefix string) []string {
	var out []string
	for _, k := range e.store.Keys() {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// versions lists the version numbers stored for inode id, newest first.
func (e *env) versions(id uint64) []uint64 {
	e.t.Helper()
	var out []uint64
	for _, k := range e.keysUnder(e.vol.Keys.InodeDir(id)) {
		_, v, err := e.vol.Keys.ParseInode(k)
		if err != nil {
			e.t.Fatalf("bad inode key %q: %v", k, err)
		}
		out = append(out, v)
	}
	return out
}

// newest returns the newest stored version of inode id, decoded.
func (e *env) newest(id uint64) *format.Inode {
	e.t.Helper()
	vs := e.versions(id)
	if len(vs) == 0 {
		e.t.Fatalf("inode %016x has no version in the store", id)
	}
	return e.version(id, vs[0])
}

func (e *env) version(id, v uint64) *format.Inode {
	e.t.Helper()
	obj, _, err := e.store.Get(ctx, e.vol.Keys.Inode(id, v))
	if err != nil {
		e.t.Fatalf("get inode %016x v%d: %v", id, v, err)
	}
	n, err := format.DecodeInode(obj, e.vol.Header.ExtentSize)
	if err != nil {
		e.t.Fatalf("decode inode %016x v%d: %v", id, v, err)
	}
	return n
}

// logBuffer collects an engine's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// must fails the test on err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr fails unless err wraps want.
func wantErr(t testing.TB, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func mkdir(t testing.TB, fs *vfs.FS, parent uint64, name string) uint64 {
	t.Helper()
	a, err := fs.Mkdir(ctx, parent, name, 0o755, caller)
	if err != nil {
		t.Fatalf("mkdir %q: %v", name, err)
	}
	return a.Ino
}

// create creates and opens a file.
func create(t testing.TB, fs *vfs.FS, parent uint64, name string) (uint64, *vfs.Handle) {
	t.Helper()
	a, h, err := fs.Create(ctx, parent, name, 0o644, true, caller)
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return a.Ino, h
}

// writeFile creates name with content and closes it.
func writeFile(t testing.TB, fs *vfs.FS, parent uint64, name string, data []byte) uint64 {
	t.Helper()
	id, h := create(t, fs, parent, name)
	if len(data) > 0 {
		write(t, fs, h, data, 0)
	}
	closeH(t, fs, h)
	return id
}

func write(t testing.TB, fs *vfs.FS, h *vfs.Handle, data []byte, off int64) {
	t.Helper()
	n, err := fs.Write(ctx, h, data, off)
	if err != nil || n != len(data) {
		t.Fatalf("write %d bytes at %d: n=%d err=%v", len(data), off, n, err)
	}
}

// closeH flushes and releases h, as close(2) does.
func closeH(t testing.TB, fs *vfs.FS, h *vfs.Handle) {
	t.Helper()
	must(t, fs.Flush(ctx, h))
	must(t, fs.Release(ctx, h))
}

func open(t testing.TB, fs *vfs.FS, id uint64, writable bool) *vfs.Handle {
	t.Helper()
	h, _, err := fs.Open(ctx, id, writable)
	if err != nil {
		t.Fatalf("open %016x: %v", id, err)
	}
	return h
}

// readAll reads the whole file through h (size from GetAttr), checking
// that a read past the end returns nothing.
func readAll(t testing.TB, fs *vfs.FS, h *vfs.Handle) []byte {
	t.Helper()
	a, err := fs.GetAttr(ctx, h.ID())
	must(t, err)
	out := make([]byte, a.Size)
	readAt(t, fs, h, out, 0)
	var extra [16]byte
	if n, err := fs.Read(ctx, h, extra[:], int64(a.Size)); n != 0 || err != nil {
		t.Fatalf("read at end of file (%d): n=%d err=%v", a.Size, n, err)
	}
	return out
}

// readAt fills dest from off, failing on a short read.
func readAt(t testing.TB, fs *vfs.FS, h *vfs.Handle, dest []byte, off int64) {
	t.Helper()
	n, err := fs.Read(ctx, h, dest, off)
	if err != nil || n != len(dest) {
		t.Fatalf("read %d bytes at %d: n=%d err=%v", len(dest), off, n, err)
	}
}

// readFile opens id read-only, reads it whole and releases it.
func readFile(t testing.TB, fs *vfs.FS, id uint64) []byte {
	t.Helper()
	h := open(t, fs, id, false)
	defer fs.Release(ctx, h)
	return readAll(t, fs, h)
}

func lookup(t testing.TB, fs *vfs.FS, parent uint64, name string) vfs.Attr {
	t.Helper()
	a, err := fs.Lookup(ctx, parent, name)
	if err != nil {
		t.Fatalf("lookup %q: %v", name, err)
	}
	return a
}

func names(t testing.TB, fs *vfs.FS, dir uint64) []string {
	t.Helper()
	es, err := fs.ReadDir(ctx, dir)
	must(t, err)
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

// randBytes returns n pseudo-random bytes from r (never all zeros, so a
// hole or a stale-zero bug cannot match them by accident).
func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(255) + 1)
	}
	return b
}

// sameBytes compares got with want and reports the first difference.
func sameBytes(t testing.TB, got, want []byte, what string) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s: got %d bytes, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			end := min(i+16, len(got))
			t.Fatalf("%s: first difference at byte %d (extent %d, offset %d): got % x, want % x", what, i, i/extSize, i%extSize, got[i:end], want[i:end])
		}
	}
}

var _ = io.Discard
