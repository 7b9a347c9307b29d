package vfs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
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

// A first read of the usage record cut short because its statfs gave up
// (its context cancelled) is no read: a later statfs, and one that was
// waiting for it, read the record and report what is used, rather than
// nothing for a minute.
func TestStatFSCancelledFirstReadIsNoRead(t *testing.T) {
	u := &format.Usage{At: time.Unix(1700000000, 0), Bytes: 1 << 30, Objects: 300, Inodes: 100}
	obj, err := format.EncodeUsage(u)
	must(t, err)
	usedOf := func(fs interface {
		StatFS(context.Context) vfs.StatFS
	}, c context.Context) (blocks, files uint64) {
		s := fs.StatFS(c)
		return s.Blocks - s.Bfree, s.Files - s.Ffree
	}
	wantBlocks, wantFiles := u.Bytes/4096, u.Inodes

	t.Run("later call", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.store.Put(ctx, e.vol.Keys.Usage(), obj)
		must(t, err)
		fs := e.engine()
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		usedOf(fs, cancelled)
		if b, f := usedOf(fs, ctx); b != wantBlocks || f != wantFiles {
			t.Fatalf("after a cancelled first read, statfs reports %d blocks and %d files used, want %d and %d", b, f, wantBlocks, wantFiles)
		}
	})

	t.Run("waiting call", func(t *testing.T) {
		g := &usageGate{entered: make(chan struct{}, 4), release: make(chan struct{})}
		e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store {
			g.Store = m
			return g
		})
		_, err := e.store.Put(ctx, e.vol.Keys.Usage(), obj)
		must(t, err)
		fs := e.engine()
		waiting := make(chan struct{}, 1)
		fs.SetUsageWaitHook(func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		})
		firstCtx, cancel := context.WithCancel(ctx)
		firstDone := make(chan struct{})
		go func() { usedOf(fs, firstCtx); close(firstDone) }()
		<-g.entered // the first read is in flight
		type used struct{ blocks, files uint64 }
		second := make(chan used, 1)
		go func() { b, f := usedOf(fs, ctx); second <- used{b, f} }()
		<-waiting
		cancel() // the first caller gives up: its read fails
		close(g.release)
		<-firstDone
		if r := <-second; r.blocks != wantBlocks || r.files != wantFiles {
			t.Fatalf("a statfs that waited for a cancelled first read reports %d blocks and %d files used, want %d and %d", r.blocks, r.files, wantBlocks, wantFiles)
		}
	})
}
