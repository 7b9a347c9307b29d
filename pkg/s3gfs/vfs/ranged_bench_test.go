package vfs_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// BenchmarkRandomRead4K: the engine's own cost of a cold random 4 KiB
// read on an in-memory store (no network): with block checksums (one
// 64 KiB block fetched and checked) and without (a whole 4 MiB extent).
// The cache holds a few blocks only, so nearly every read misses it.
func BenchmarkRandomRead4K(b *testing.B) {
	for _, shift := range []uint8{format.DefaultBlockShift, 0} {
		b.Run(fmt.Sprintf("block-shift-%d", shift), func(b *testing.B) {
			const es = format.DefaultExtentSize
			e := newEnvSized(b, es, nil)
			mod := func(o *vfs.Options) {
				o.BufferSize, o.CacheSize = 4*es, 4*blk
				o.WholeExtentChecksums = shift == 0
			}
			w := e.engine(mod)
			r := rand.New(rand.NewPCG(12, 12))
			data := randBytes(r, 16*es)
			id := writeFile(b, w, root, "f", data)
			fs := e.engine(mod)
			h := open(b, fs, id, false)
			buf := make([]byte, 4096)
			b.SetBytes(4096)
			b.ReportAllocs()
			for b.Loop() {
				off := int64(r.IntN(len(data)/4096-1))*4096 + 1 // +1: never sequential
				if _, err := fs.Read(ctx, h, buf, off); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
