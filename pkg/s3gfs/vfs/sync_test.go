package vfs_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// netStore is one host's view of the store: it can be partitioned away,
// and it counts the requests the host makes.
type netStore struct {
	objstore.Store
	down     atomic.Bool
	requests atomic.Int64
}

func (n *netStore) gate() error {
	n.requests.Add(1)
	if n.down.Load() {
		return fmt.Errorf("partitioned: %w", objstore.ErrUnavailable)
	}
	return nil
}

func (n *netStore) PutIfAbsent(ctx context.Context, k string, b []byte) (objstore.ObjectInfo, error) {
	if err := n.gate(); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return n.Store.PutIfAbsent(ctx, k, b)
}

func (n *netStore) Put(ctx context.Context, k string, b []byte) (objstore.ObjectInfo, error) {
	if err := n.gate(); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return n.Store.Put(ctx, k, b)
}

func (n *netStore) Get(ctx context.Context, k string) ([]byte, objstore.ObjectInfo, error) {
	if err := n.gate(); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	return n.Store.Get(ctx, k)
}

func (n *netStore) List(ctx context.Context, p, after string, max int) (objstore.ListPage, error) {
	if err := n.gate(); err != nil {
		return objstore.ListPage{}, err
	}
	return n.Store.List(ctx, p, after, max)
}

func (n *netStore) Head(ctx context.Context, k string) (objstore.ObjectInfo, error) {
	if err := n.gate(); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return n.Store.Head(ctx, k)
}

// host opens an engine that syncs through its own netStore.
func (e *env) host(mod ...func(*vfs.Options)) (*vfs.FS, *netStore) {
	e.t.Helper()
	ns := &netStore{Store: e.store}
	o := defaultOpts()
	for _, m := range mod {
		m(&o)
	}
	vol, err := volume.Open(ctx, ns, e.url, !o.ReadOnly)
	if err != nil {
		e.t.Fatal(err)
	}
	fs, err := vfs.New(vol, o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ns.down.Store(false); fs.Close(ctx) })
	return fs, ns
}

func syncEvery(interval, expiry time.Duration) func(*vfs.Options) {
	return func(o *vfs.Options) { o.SyncInterval, o.HostExpiry = interval, expiry }
}

// TestFencedHostServesNothingUntilReachable: a host cut off from the store
// for longer than its host expiry refuses reads and writes (instead of
// serving what may be stale), then recovers by itself and sees what other
// hosts did meanwhile.
func TestFencedHostServesNothingUntilReachable(t *testing.T) {
	e := newEnv(t)
	a, net := e.host(syncEvery(50*time.Millisecond, 500*time.Millisecond))
	b, _ := e.host(syncEvery(50*time.Millisecond, 2*time.Second))
	rec := newRecorder(a)
	attr, h, err := a.Create(ctx, root, "f", 0o644, true, caller)
	must(t, err)
	write(t, a, h, []byte("from a"), 0)
	must(t, a.Release(ctx, h))

	net.down.Store(true)
	time.Sleep(time.Second) // two host expiries
	if _, err := a.GetAttr(ctx, attr.Ino); !errors.Is(err, vfs.ErrFenced) {
		t.Fatalf("getattr on a partitioned host after its expiry: %v, want ErrFenced", err)
	}
	if _, err := a.Lookup(ctx, root, "f"); !errors.Is(err, vfs.ErrFenced) {
		t.Fatalf("lookup on a fenced host: %v, want ErrFenced", err)
	}
	if _, err := a.Mkdir(ctx, root, "d", 0o755, caller); !errors.Is(err, vfs.ErrFenced) {
		t.Fatalf("mkdir on a fenced host: %v, want ErrFenced", err)
	}
	// Nor may the kernel answer from its caches (they last long).
	if _, _, all := rec.take(a); all != 1 {
		t.Fatalf("the fence dropped the kernel's caches %d times, want once", all)
	}
	// Meanwhile host b changes the file.
	hb, _, err := b.Open(ctx, attr.Ino, true)
	must(t, err)
	write(t, b, hb, []byte("from b, longer"), 0)
	must(t, b.Release(ctx, hb))
	must(t, b.Sync(ctx))

	net.down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		at, err := a.GetAttr(ctx, attr.Ino)
		if err == nil {
			if at.Size != uint64(len("from b, longer")) {
				t.Fatalf("after unfencing, a reports size %d: it did not revalidate", at.Size)
			}
			break
		}
		if !errors.Is(err, vfs.ErrFenced) || time.Now().After(deadline) {
			t.Fatalf("host did not recover after the partition healed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := readFile(t, a, attr.Ino); string(got) != "from b, longer" {
		t.Fatalf("after unfencing a reads %q", got)
	}
	if _, _, all := rec.take(a); all != 1 {
		t.Fatalf("the recovery dropped the kernel's caches %d times, want once", all)
	}
}

// TestSyncCostGrowsWithChangesNotCache: with 10,000 inodes cached, a sync
// costs the same few requests as with none; one changed file adds the
// requests to fetch that file's new version, nothing per cached inode.
func TestSyncCostGrowsWithChangesNotCache(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 files")
	}
	e := newEnv(t)
	a, net := e.host(syncEvery(time.Hour, 3*time.Hour)) // syncs only when called
	b, _ := e.host(syncEvery(time.Hour, 3*time.Hour))
	const n = 10000
	var ids []uint64
	for i := 0; i < n; i++ {
		at, err := b.Mknod(ctx, root, fmt.Sprintf("f%05d", i), 0o100644, 0, caller)
		must(t, err)
		ids = append(ids, at.Ino)
	}
	must(t, b.Sync(ctx))
	must(t, a.Sync(ctx))
	for i := 0; i < n; i++ {
		if _, err := a.Lookup(ctx, root, fmt.Sprintf("f%05d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cost := func() int64 {
		before := net.requests.Load()
		must(t, a.Sync(ctx))
		return net.requests.Load() - before
	}
	idle := cost()
	h, _, err := b.Open(ctx, ids[n/2], true)
	must(t, err)
	write(t, b, h, []byte("changed"), 0)
	must(t, b.Release(ctx, h))
	must(t, b.Sync(ctx))
	oneChange := cost()
	t.Logf("sync requests with %d inodes cached: %d idle, %d with one changed file", n, idle, oneChange)
	if idle > 3 {
		t.Errorf("an idle sync made %d requests; want at most 3 (ping put, ping list, one changed ping)", idle)
	}
	if oneChange > idle+4 {
		t.Errorf("a sync with one changed file made %d requests; want at most %d", oneChange, idle+4)
	}
	if at, err := a.GetAttr(ctx, ids[n/2]); err != nil || at.Size != 7 {
		t.Fatalf("the changed file on the syncing host: %+v, %v", at, err)
	}
}

// BenchmarkSyncOneChange10kCached measures a sync on a host that caches
// 10,000 inodes while another host changes one file per iteration. It
// reports requests per sync: the number that must not grow with the cache.
func BenchmarkSyncOneChange10kCached(b *testing.B) {
	e := newEnv(b)
	a, net := e.host(syncEvery(time.Hour, 3*time.Hour))
	w, _ := e.host(syncEvery(time.Hour, 3*time.Hour))
	const n = 10000
	var ids []uint64
	for i := 0; i < n; i++ {
		at, err := w.Mknod(ctx, root, fmt.Sprintf("f%05d", i), 0o100644, 0, caller)
		must(b, err)
		ids = append(ids, at.Ino)
	}
	must(b, w.Sync(ctx))
	for i := 0; i < n; i++ {
		if _, err := a.Lookup(ctx, root, fmt.Sprintf("f%05d", i)); err != nil {
			b.Fatal(err)
		}
	}
	must(b, a.Sync(ctx))
	var requests int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h, _, err := w.Open(ctx, ids[i%n], true)
		must(b, err)
		write(b, w, h, []byte(fmt.Sprint(i)), 0)
		must(b, w.Release(ctx, h))
		must(b, w.Sync(ctx))
		before := net.requests.Load()
		b.StartTimer()
		must(b, a.Sync(ctx))
		requests += net.requests.Load() - before
	}
	b.ReportMetric(float64(requests)/float64(b.N), "requests/sync")
}
