package vfs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// bodiless stores large objects (extents) empty.
type bodiless struct{ objstore.Store }

func (s bodiless) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	if len(body) > 1<<20 {
		body = nil
	}
	return s.Store.PutIfAbsent(ctx, key, body)
}

// BenchmarkSequentialWrite: the engine's own cost of writing a 64 MiB
// file as the kernel sends it (1 MiB writes) and closing it, on an
// in-memory store: copying into write-back buffers, checksums, sealing,
// and recycling the buffers (most of them come back from the pool).
func BenchmarkSequentialWrite(b *testing.B) {
	const es = format.DefaultExtentSize
	const size = 64 << 20
	// Extents are stored empty: a copy of every body in the memstore
	// would cost as much as what is measured.
	e := newEnvSized(b, es, func(s *memstore.Store) objstore.Store { return bodiless{s} })
	fs := e.engine(func(o *vfs.Options) { o.BufferSize = 32 << 20 })
	chunk := randBytes(rand.New(rand.NewPCG(3, 3)), 1<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, h := create(b, fs, root, fmt.Sprintf("f%d", i))
		for off := 0; off < size; off += len(chunk) {
			write(b, fs, h, chunk, int64(off))
		}
		closeH(b, fs, h)
		i++
	}
}
