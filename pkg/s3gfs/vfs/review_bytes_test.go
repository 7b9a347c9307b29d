package vfs_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

type bytesStore struct {
	objstore.Store
	n atomic.Int64
}

func (s *bytesStore) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	s.n.Add(int64(len(body)))
	return s.Store.PutIfAbsent(ctx, key, body)
}

func (s *bytesStore) Put(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	s.n.Add(int64(len(body)))
	return s.Store.Put(ctx, key, body)
}

// R4: after a lost deferred create every fsync copies the whole file
// again (truncate + rewrite + re-upload), besides committing the orphan.
func TestReviewLostCreateFsyncBytes(t *testing.T) {
	for _, lost := range []bool{false, true} {
		var bs *bytesStore
		e := newEnvWrapped(t, func(m *memstore.Store) objstore.Store { bs = &bytesStore{Store: m}; return bs })
		a := e.engine(func(o *vfs.Options) { o.Revalidate = time.Hour })
		b := e.engine()
		names(t, a, root)
		var h *vfs.Handle
		if lost {
			writeFile(t, b, root, "f", nil)
			_, h = createOpen(t, a, root, "f", truncFlags)
		} else {
			_, h = createOpen(t, a, root, "f", truncFlags)
		}
		before := bs.n.Load()
		chunk := make([]byte, extSize)
		const n = 16
		for i := 0; i < n; i++ {
			write(t, a, h, chunk, int64(i)*int64(extSize))
			must(t, a.Fsync(ctx, h))
		}
		closeH(t, a, h)
		t.Logf("lost=%v: %d fsyncs of %d KiB each: %d KiB sent", lost, n, extSize>>10, (bs.n.Load()-before)>>10)
	}
}
