package vfs_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
)

type slowStore struct{ objstore.Store }

func (s *slowStore) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	time.Sleep(20 * time.Millisecond)
	return s.Store.PutIfAbsent(ctx, key, body)
}

// R5 (experiment): ReadDir waits until the directory has no undecided
// deferred create at all, including ones started after it.
func TestReviewReadDirWhileCreating(t *testing.T) {
	e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store { return &slowStore{m} })
	fs := e.engine()
	names(t, fs, root)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var made atomic.Int64
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				a, h, err := fs.CreateOpen(ctx, root, fmt.Sprintf("w%d-%d", w, i), 0o644, truncFlags, caller)
				if err != nil {
					t.Error(err)
					return
				}
				_ = a
				fs.Write(ctx, h, []byte("x"), 0)
				fs.Flush(ctx, h)
				fs.Release(ctx, h)
				made.Add(1)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 5; i++ {
		start := time.Now()
		m0 := made.Load()
		names(t, fs, root)
		t.Logf("ReadDir took %v while %d files were written", time.Since(start), made.Load()-m0)
	}
	stop.Store(true)
	wg.Wait()
}
