package vfs_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

var errInjected = errors.New("injected fault")

// failFirst returns a hook failing the first n calls of op on keys with
// the given prefix.
func failFirst(op memstore.Op, prefix string, n int64) (func(memstore.Op, string) error, *atomic.Int64) {
	var hits atomic.Int64
	return func(o memstore.Op, k string) error {
		if o == op && strings.HasPrefix(k, prefix) && hits.Add(1) <= n {
			return errInjected
		}
		return nil
	}, &hits
}

// An extent upload that fails makes the commit fail without writing an
// inode version (data before metadata); a retry then succeeds, nothing
// lost.
func TestExtentUploadFailsOnce(t *testing.T) {
	for _, writeBehind := range []bool{false, true} {
		e := newEnv(t)
		fs := e.engine()
		r := rand.New(rand.NewPCG(43, 43))
		id, h := create(t, fs, root, "f")
		must(t, fs.Fsync(ctx, h))
		versions := len(e.versions(id))
		hook, hits := failFirst(memstore.OpPutIfAbsent, e.vol.Keys.ExtentDir(id), 1)
		e.store.SetHooks(memstore.Hooks{Before: hook})
		data := randBytes(r, 3*extSize+77)
		if writeBehind {
			// Whole extents start uploading during Write: the first of
			// those uploads fails in the background.
			write(t, fs, h, data, 0)
		} else {
			// Partial extents only: every upload happens inside Flush.
			for off := 0; off < len(data); off += extSize {
				end := min(off+extSize-1, len(data))
				write(t, fs, h, data[off:end], int64(off))
			}
			for off := extSize - 1; off < len(data); off += extSize {
				write(t, fs, h, data[off:off+1], int64(off))
			}
		}
		err := fs.Flush(ctx, h)
		if !errors.Is(err, errInjected) {
			t.Fatalf("write-behind=%v: flush with a failing upload: err %v, want the injected fault", writeBehind, err)
		}
		if hits.Load() < 1 {
			t.Fatal("the fault hook never fired")
		}
		if got := len(e.versions(id)); got != versions {
			t.Fatalf("a failed flush wrote %d inode versions", got-versions)
		}
		sameBytes(t, readAll(t, fs, h), data, "working content after a failed flush")
		must(t, fs.Flush(ctx, h)) // the retry
		must(t, fs.Release(ctx, h))
		sameBytes(t, readFile(t, e.engine(), id), data, "after the retried flush")
		e.store.SetHooks(memstore.Hooks{})
	}
}

// The inode version's conditional create fails: before it takes effect
// (the store is down: after a few attempts the commit fails, and a later
// one succeeds), and after (the response is lost although the version was
// written: the commit finds its own object and succeeds, neither failing
// nor applying the change twice).
func TestInodeCommitFails(t *testing.T) {
	const attempts = 4 // createVersion's attempts
	for _, after := range []bool{false, true} {
		e := newEnv(t)
		fs := e.engine()
		id, h := create(t, fs, root, "f")
		write(t, fs, h, []byte("first"), 0)
		hook, hits := failFirst(memstore.OpPutIfAbsent, e.vol.Keys.InodeDir(id), attempts)
		if after {
			e.store.SetHooks(memstore.Hooks{After: hook})
			must(t, fs.Flush(ctx, h))
			if n := hits.Load(); n != 1 {
				t.Fatalf("the commit whose response was lost sent %d creates, want 1", n)
			}
		} else {
			e.store.SetHooks(memstore.Hooks{Before: hook})
			wantErr(t, fs.Flush(ctx, h), errInjected, "flush while inode commits fail")
			must(t, fs.Flush(ctx, h))
		}
		must(t, fs.Release(ctx, h))
		if got := readFile(t, e.engine(), id); string(got) != "first" {
			t.Fatalf("after=%v: content %q", after, got)
		}
		e.store.SetHooks(memstore.Hooks{})
		// And a directory change whose version fails.
		hook, _ = failFirst(memstore.OpPutIfAbsent, e.vol.Keys.InodeDir(root), attempts)
		if after {
			e.store.SetHooks(memstore.Hooks{After: hook})
			_, err := fs.Mkdir(ctx, root, "d", 0o755, caller)
			must(t, err)
		} else {
			e.store.SetHooks(memstore.Hooks{Before: hook})
			_, err := fs.Mkdir(ctx, root, "d", 0o755, caller)
			wantErr(t, err, errInjected, "mkdir while directory commits fail")
			e.store.SetHooks(memstore.Hooks{})
			_, err = fs.Mkdir(ctx, root, "d", 0o755, caller)
			must(t, err)
		}
		e.store.SetHooks(memstore.Hooks{})
		if got := names(t, e.engine(), root); !slices.Equal(got, []string{"d", "f"}) {
			t.Fatalf("after=%v: root lists %v", after, got)
		}
	}
}

// Uploads started to free write-back memory keep failing for a while: the
// writer must neither hang nor lose data.
func TestEvictionUploadsFail(t *testing.T) {
	e := newEnv(t)
	fs := e.engine(func(o *vfs.Options) { o.BufferSize = 2 * extSize })
	r := rand.New(rand.NewPCG(47, 47))
	id, h := create(t, fs, root, "f")
	hook, hits := failFirst(memstore.OpPutIfAbsent, e.vol.Keys.ExtentDir(id), 5)
	e.store.SetHooks(memstore.Hooks{Before: hook})
	data := randBytes(r, 10*extSize+3)
	done := make(chan error, 1)
	go func() {
		// Writes of 1000 bytes, so no extent is completed by one write.
		for off := 0; off < len(data); off += 1000 {
			end := min(off+1000, len(data))
			if _, err := fs.Write(ctx, h, data[off:end], int64(off)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("writes hung while eviction uploads failed")
	}
	if hits.Load() < 5 {
		t.Fatalf("only %d uploads were attempted", hits.Load())
	}
	// A failed background upload may be reported by the next commit.
	if err := fs.Flush(ctx, h); err != nil {
		wantErr(t, err, errInjected, "flush")
		must(t, fs.Flush(ctx, h))
	}
	must(t, fs.Release(ctx, h))
	sameBytes(t, readFile(t, e.engine(), id), data, "file written through failing evictions")
	if used, _ := fs.BufferPoolUsage(); used != 0 {
		t.Fatalf("%d bytes of buffers held after the file was committed", used)
	}
}

// gateStore holds conditional creates of keys under a prefix until the
// gate opens.
type gateStore struct {
	objstore.Store
	mu      sync.Mutex
	prefix  string
	gate    chan struct{}
	blocked chan string
}

func (s *gateStore) hold(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prefix, s.gate, s.blocked = prefix, make(chan struct{}), make(chan string, 16)
}

func (s *gateStore) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	s.mu.Lock()
	gate, blocked := s.gate, s.blocked
	match := s.prefix != "" && strings.HasPrefix(key, s.prefix)
	s.mu.Unlock()
	if match {
		blocked <- key
		<-gate
	}
	return s.Store.PutIfAbsent(ctx, key, body)
}

// A small file's dirty extent is being uploaded by eviction (another
// file needs its buffer) when the small file is committed inline: the
// commit must neither hand the buffer out twice nor lose count of the
// upload, and later commits of the file must still wait for their uploads.
func TestEvictionRacesInlineCommit(t *testing.T) {
	var gs *gateStore
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		gs = &gateStore{Store: m}
		return gs
	})
	fs := e.engine(func(o *vfs.Options) { o.BufferSize = 2 * extSize })
	r := rand.New(rand.NewPCG(53, 53))
	small, hs := create(t, fs, root, "small")
	big, hb := create(t, fs, root, "big")
	write(t, fs, hs, []byte("small file"), 0) // buffer 1, written first
	write(t, fs, hb, randBytes(r, 100), 0)    // buffer 2
	gs.hold(e.vol.Keys.ExtentDir(small))
	// big needs a third buffer: eviction uploads small's extent (the least
	// recently written), which the gate holds.
	bigData := randBytes(r, 100)
	wrote := make(chan error, 1)
	go func() {
		_, err := fs.Write(ctx, hb, bigData, int64(extSize+10))
		wrote <- err
	}()
	select {
	case <-gs.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("eviction did not upload the small file's extent")
	}
	// Commit small inline while its upload is in flight.
	must(t, fs.Flush(ctx, hs))
	if n := e.newest(small); !n.Inline || string(n.Data) != "small file" {
		t.Fatalf("small file stored as %+v", n)
	}
	close(gs.gate)
	must(t, <-wrote)
	gs.hold("") // stop gating
	// small's next commit, of a whole extent, must wait for its upload.
	sdata := randBytes(r, 2*extSize)
	write(t, fs, hs, sdata, 0)
	closeH(t, fs, hs)
	closeH(t, fs, hb)
	fresh := e.engine()
	sameBytes(t, readFile(t, fresh, small), sdata, "small file after the race")
	want := make([]byte, extSize+110)
	copy(want, readFile(t, fs, big)[:100])
	copy(want[extSize+10:], bigData)
	sameBytes(t, readFile(t, fresh, big), want, "big file after the race")
	if used, _ := fs.BufferPoolUsage(); used != 0 {
		t.Fatalf("%d bytes of buffers still in use", used)
	}
	if peak, limit := fs.BufferPoolPeak(), int64(2*extSize); peak > limit {
		t.Fatalf("peak %d over limit %d", peak, limit)
	}
}

// An rmdir interrupted between its two steps (the directory tombstoned,
// the parent's entry not yet removed) leaves an entry to a deleted inode:
// lookups treat it as absent and remove it; the name is reusable.
func TestInterruptedRmdir(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	d := mkdir(t, fs, root, "d")
	writeFile(t, fs, root, "keep", nil)
	hook, _ := failFirst(memstore.OpPutIfAbsent, e.vol.Keys.InodeDir(root), 4)
	e.store.SetHooks(memstore.Hooks{Before: hook})
	wantErr(t, fs.Rmdir(ctx, root, "d"), errInjected, "rmdir whose second step fails")
	e.store.SetHooks(memstore.Hooks{})
	if n := e.newest(d); n.Kind.String() != "tombstone" {
		t.Fatalf("rmdir's first step left a %s", n.Kind)
	}
	if got := names(t, fs, root); slices.Contains(got, "d") {
		t.Fatalf("the host that tombstoned d still lists it: %v", got)
	}
	other := e.engine()
	_, err := other.Lookup(ctx, root, "d")
	wantErr(t, err, vfs.ErrNotExist, "lookup of an entry to a tombstoned directory")
	// The lookup removes the stale entry in the background; a host that
	// has not loaded d sees it listed until then.
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(names(t, e.engine(), root), "d") {
		if time.Now().After(deadline) {
			t.Fatal("the stale entry was never removed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := names(t, e.engine(), root); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("root lists %v", got)
	}
	// The first host can remove it again (no error) or reuse the name.
	if err := fs.Rmdir(ctx, root, "d"); err != nil && !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("rmdir again: %v", err)
	}
	mkdir(t, fs, root, "d")
}

// A commit that could not be made for a while (here: inode commits fail)
// must not name extents it uploaded more than a host expiry before: the
// reaper deletes unreferenced extents older than its grace period
// (docs/FORMAT.md §15.7). Such extents are uploaded again under new ids.
func TestStaleUploadsRenewedBeforeCommit(t *testing.T) {
	e := newEnv(t)
	const expiry = 400 * time.Millisecond
	fs := e.engine(syncEvery(20*time.Millisecond, expiry))
	r := rand.New(rand.NewPCG(5, 5))
	id, h := create(t, fs, root, "f")
	must(t, fs.Fsync(ctx, h))
	data := randBytes(r, 2*extSize+10)
	write(t, fs, h, data, 0)
	hook, _ := failFirst(memstore.OpPutIfAbsent, e.vol.Keys.InodeDir(id), 1000)
	e.store.SetHooks(memstore.Hooks{Before: hook})
	wantErr(t, fs.Fsync(ctx, h), errInjected, "fsync while inode commits fail")
	stale := map[string]bool{}
	for _, k := range e.keysUnder(e.vol.Keys.ExtentDir(id)) {
		stale[k] = true
	}
	if len(stale) == 0 {
		t.Fatal("the failed fsync uploaded no extent")
	}
	time.Sleep(expiry) // the uploads are now older than half an expiry
	e.store.SetHooks(memstore.Hooks{})
	must(t, fs.Fsync(ctx, h))
	for _, x := range e.newest(id).Extents {
		if k := e.vol.Keys.Extent(id, x.EID); stale[k] {
			t.Fatalf("the commit names %s, uploaded %v before it", k, expiry)
		}
	}
	closeH(t, fs, h)
	sameBytes(t, readFile(t, e.engine(), id), data, "file after the late commit")
}
