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

// After a deferred create lost the name, each fsync applies to the other
// file only what was written since the previous one: the bytes sent stay
// proportional to the bytes written (the local, never named file is
// committed too, so about twice those of a create that won), where
// copying the whole file at each fsync sent a quadratic amount.
func TestLostCreateFsyncSendsWritesOnce(t *testing.T) {
	var sent [2]int64
	for i, lost := range []bool{false, true} {
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
		for j := 0; j < n; j++ {
			write(t, a, h, chunk, int64(j)*int64(extSize))
			must(t, a.Fsync(ctx, h))
		}
		closeH(t, a, h)
		sent[i] = bs.n.Load() - before
		t.Logf("lost=%v: %d fsyncs of %d KiB each: %d KiB sent", lost, n, extSize>>10, sent[i]>>10)
	}
	if sent[1] > 3*sent[0] {
		t.Fatalf("a lost create sent %d KiB for what a won create sent in %d KiB", sent[1]>>10, sent[0]>>10)
	}
}
