package reaper_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

const extSize = 64 << 10

var (
	ctx    = context.Background()
	caller = vfs.Caller{UID: 1000, GID: 1000}
	t0     = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

// tenv is one volume in a memstore whose clock the test moves.
type tenv struct {
	t     testing.TB
	store *memstore.Store
	url   volume.URL
	vol   *volume.Volume
	mu    sync.Mutex
	now   time.Time
}

func newTEnv(t testing.TB) *tenv {
	t.Helper()
	e := &tenv{t: t, store: memstore.New("bkt"), url: volume.URL{Bucket: "bkt", Prefix: "v"}, now: t0}
	e.store.SetClock(e.clock)
	vol, err := volume.Format(ctx, e.store, e.url, volume.FormatOptions{ExtentSize: extSize})
	if err != nil {
		t.Fatal(err)
	}
	e.vol = vol
	return e
}

func (e *tenv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

// advance moves the store's clock forward and returns the new time.
func (e *tenv) advance(d time.Duration) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
	return e.now
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// host opens an engine ("host") over the volume, without pings.
// withVersion1Objects makes a host write every new file's version 1 as an
// object of its own (no born puts).
func withVersion1Objects(o *vfs.Options) { o.Version1Objects = true }

func (e *tenv) host(mod ...func(*vfs.Options)) *vfs.FS {
	e.t.Helper()
	o := vfs.Options{BufferSize: 4 * extSize, WritebackDelay: time.Hour, Revalidate: time.Nanosecond, Logger: quiet}
	for _, m := range mod {
		m(&o)
	}
	vol, err := volume.Open(ctx, e.store, e.url, !o.ReadOnly && o.AsOf.IsZero())
	if err != nil {
		e.t.Fatal(err)
	}
	fs, err := vfs.New(vol, o)
	if err != nil {
		e.t.Fatalf("vfs.New: %v", err)
	}
	e.t.Cleanup(func() { fs.Close(ctx) })
	return fs
}

func (e *tenv) asOf(at time.Time) (*vfs.FS, error) {
	vol, err := volume.Open(ctx, e.store, e.url, false)
	if err != nil {
		return nil, err
	}
	return vfs.New(vol, vfs.Options{AsOf: at, Logger: quiet, BufferSize: 4 * extSize})
}

func (e *tenv) gc(cfg reaper.Config) *reaper.Report {
	e.t.Helper()
	r, err := e.gcErr(cfg)
	if err != nil {
		e.t.Fatalf("gc: %v", err)
	}
	return r
}

func (e *tenv) gcErr(cfg reaper.Config) (*reaper.Report, error) {
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	vol, err := volume.Open(ctx, e.store, e.url, false)
	if err != nil {
		return nil, err
	}
	return reaper.Run(ctx, vol, cfg)
}

// fsck fails the test unless the volume is healthy.
func (e *tenv) fsck() *reaper.CheckReport {
	e.t.Helper()
	r, err := reaper.Check(ctx, e.vol, reaper.CheckOptions{})
	if err != nil {
		e.t.Fatalf("fsck: %v", err)
	}
	if !r.Healthy() {
		e.t.Fatalf("fsck found damage:\n%s", strings.Join(r.Damage, "\n"))
	}
	return r
}

func (e *tenv) count(prefix string) int {
	n := 0
	for _, k := range e.store.Keys() {
		if strings.HasPrefix(k, e.vol.Keys.Prefix()+prefix) {
			n++
		}
	}
	return n
}

// lookup resolves a slash-separated path.
func lookup(fs *vfs.FS, path string) (uint64, error) {
	id := format.RootID
	for _, name := range strings.Split(path, "/") {
		if name == "" {
			continue
		}
		a, err := fs.Lookup(ctx, id, name)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		id = a.Ino
	}
	return id, nil
}

// mkdirs creates every directory of path (like mkdir -p) and returns the last.
func mkdirs(t testing.TB, fs *vfs.FS, path string) uint64 {
	t.Helper()
	id := format.RootID
	for _, name := range strings.Split(path, "/") {
		if name == "" {
			continue
		}
		a, err := fs.Lookup(ctx, id, name)
		if errors.Is(err, vfs.ErrNotExist) {
			a, err = fs.Mkdir(ctx, id, name, 0o755, caller)
		}
		if err != nil {
			t.Fatalf("mkdir %s: %v", path, err)
		}
		id = a.Ino
	}
	return id
}

func splitPath(path string) (string, string) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "", path
	}
	return path[:i], path[i+1:]
}

// put writes a whole file (creating it and its directories), and commits.
func put(t testing.TB, fs *vfs.FS, path string, data []byte) {
	t.Helper()
	dir, name := splitPath(path)
	parent := mkdirs(t, fs, dir)
	_, h, err := fs.Create(ctx, parent, name, 0o644, false, caller)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	zero := uint64(0)
	if _, err := fs.SetAttr(ctx, h.ID(), vfs.SetAttr{Size: &zero}); err != nil {
		t.Fatalf("truncate %s: %v", path, err)
	}
	if len(data) > 0 {
		if _, err := fs.Write(ctx, h, data, 0); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	if err := fs.Flush(ctx, h); err != nil {
		t.Fatalf("flush %s: %v", path, err)
	}
	if err := fs.Release(ctx, h); err != nil {
		t.Fatalf("release %s: %v", path, err)
	}
}

// readAll reads a whole file through handle h.
func readAll(fs *vfs.FS, h *vfs.Handle) ([]byte, error) {
	var out []byte
	buf := make([]byte, 100<<10)
	for {
		n, err := fs.Read(ctx, h, buf, int64(len(out)))
		out = append(out, buf[:n]...)
		if err != nil && !errors.Is(err, io.EOF) {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
	}
}

func get(fs *vfs.FS, path string) ([]byte, error) {
	id, err := lookup(fs, path)
	if err != nil {
		return nil, err
	}
	h, _, err := fs.Open(ctx, id, false)
	if err != nil {
		return nil, err
	}
	defer fs.Release(ctx, h)
	return readAll(fs, h)
}

// tree reads every file and directory under the root: path -> content
// ("<dir>" for directories, "-> target" for symlinks).
func tree(fs *vfs.FS) (map[string]string, error) {
	out := map[string]string{}
	var walk func(id uint64, path string) error
	walk = func(id uint64, path string) error {
		ents, err := fs.ReadDir(ctx, id)
		if err != nil {
			return fmt.Errorf("readdir %q: %w", path, err)
		}
		for _, d := range ents {
			if d.Name == "." || d.Name == ".." {
				continue
			}
			p := path + "/" + d.Name
			a, err := fs.Lookup(ctx, id, d.Name)
			if err != nil {
				return fmt.Errorf("lookup %q: %w", p, err)
			}
			switch {
			case a.IsDir():
				out[p] = "<dir>"
				if err := walk(a.Ino, p); err != nil {
					return err
				}
			case a.Mode&0o170000 == 0o120000:
				tg, err := fs.Readlink(ctx, a.Ino)
				if err != nil {
					return fmt.Errorf("readlink %q: %w", p, err)
				}
				out[p] = "-> " + tg
			default:
				h, _, err := fs.Open(ctx, a.Ino, false)
				if err != nil {
					return fmt.Errorf("open %q: %w", p, err)
				}
				data, err := readAll(fs, h)
				fs.Release(ctx, h)
				if err != nil {
					return fmt.Errorf("read %q: %w", p, err)
				}
				out[p] = string(data)
			}
		}
		return nil
	}
	return out, walk(format.RootID, "")
}

func diffTrees(got, want map[string]string) string {
	var out []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			out = append(out, "missing "+p)
		} else if g != w {
			out = append(out, fmt.Sprintf("%s: got %d bytes %q..., want %d bytes %q...", p, len(g), clip(g), len(w), clip(w)))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "unexpected "+p)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func clip(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

func data(seed byte, n int) []byte { return bytes.Repeat([]byte{seed}, n) }

// plantPing writes a ping for host id as the store's clock reads now.
func (e *tenv) plantPing(id uint64, expiry time.Duration, oldest time.Time) {
	e.t.Helper()
	obj, err := format.EncodePing(&format.Ping{HostID: id, Seq: 1, FeedFrom: 1, Expiry: expiry, Oldest: oldest, Node: "planted"})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Put(ctx, e.vol.Keys.Ping(id), obj); err != nil {
		e.t.Fatal(err)
	}
}
