package vfs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
)

// usageGate holds every GET of the usage record until released.
type usageGate struct {
	objstore.Store
	entered chan struct{} // one value per GET of the record that began
	release chan struct{}
}

func (s *usageGate) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	if strings.HasSuffix(key, "/usage") {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.Store.Get(ctx, key)
}

// A statfs made while the mount's first read of the usage record is in
// flight waits for it, rather than report nothing used (FORMAT §15.9).
func TestStatFSWaitsForTheFirstUsageRead(t *testing.T) {
	g := &usageGate{entered: make(chan struct{}, 4), release: make(chan struct{})}
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
		g.Store = m
		return g
	})
	u := &format.Usage{At: time.Unix(1700000000, 0), Bytes: 1 << 30, Objects: 300, Inodes: 100}
	obj, err := format.EncodeUsage(u)
	must(t, err)
	_, err = e.store.Put(ctx, e.vol.Keys.Usage(), obj)
	must(t, err)

	fs := e.engine()
	waiting := make(chan struct{}, 1)
	fs.SetUsageWaitHook(func() { waiting <- struct{}{} })
	type result struct{ bfree, blocks, ffree, files uint64 }
	results := make(chan result, 2)
	statfs := func() {
		s := fs.StatFS(ctx)
		results <- result{s.Bfree, s.Blocks, s.Ffree, s.Files}
	}
	go statfs()
	<-g.entered // the first read is in flight, held by the gate
	go statfs()
	select {
	case <-waiting:
	case r := <-results:
		close(g.release)
		t.Fatalf("a statfs racing the first read answered before it: %+v", r)
	}
	close(g.release)
	for range 2 {
		r := <-results
		if r.blocks-r.bfree != u.Bytes/4096 || r.files-r.ffree != u.Inodes {
			t.Fatalf("statfs reports %d blocks and %d files used, want %d and %d", r.blocks-r.bfree, r.files-r.ffree, u.Bytes/4096, u.Inodes)
		}
	}
	select {
	case <-g.entered:
		t.Fatal("the waiting statfs read the record again")
	default:
	}
}
