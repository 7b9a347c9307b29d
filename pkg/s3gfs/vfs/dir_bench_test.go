package vfs_test

// Benchmarks of directory operations through the engine's exported API on
// an in-memory store: creating files in a directory that already holds
// many (a group commit of a delta version, a full version every
// format.MaxDeltaChain commits), renaming within it, and listing it cold
// (delta chain replay) and warm. They measure the engine's CPU and
// allocations, not the store's latency. Run with `make bench-go`.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

var benchCaller = vfs.Caller{UID: 1000, GID: 1000}

// benchVolume formats a volume in a fresh memstore and opens an engine
// on it with a directory "d" of n files.
func benchVolume(b *testing.B, n int) (*volume.Volume, *vfs.FS, uint64) {
	b.Helper()
	ctx := context.Background()
	store := memstore.New("bench")
	u := volume.URL{Bucket: "bench", Prefix: "v"}
	vol, err := volume.Format(ctx, store, u, volume.FormatOptions{ExtentSize: 64 << 10})
	if err != nil {
		b.Fatal(err)
	}
	fs := benchEngine(b, vol)
	d, err := fs.Mkdir(ctx, format.RootID, "d", 0o755, benchCaller)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		benchCreate(b, fs, d.Ino, fmt.Sprintf("file-%08d", i))
	}
	return vol, fs, d.Ino
}

func benchEngine(b *testing.B, vol *volume.Volume) *vfs.FS {
	b.Helper()
	fs, err := vfs.New(vol, vfs.Options{BufferSize: 1 << 20, WritebackDelay: time.Hour, Revalidate: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fs.Close(context.Background()) })
	return fs
}

func benchCreate(b *testing.B, fs *vfs.FS, dir uint64, name string) {
	ctx := context.Background()
	_, h, err := fs.Create(ctx, dir, name, 0o644, true, benchCaller)
	if err != nil {
		b.Fatal(err)
	}
	if err := fs.Release(ctx, h); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkCreateInDir(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("existing-%d", n), func(b *testing.B) {
			_, fs, d := benchVolume(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				benchCreate(b, fs, d, fmt.Sprintf("new-%08d", i))
				i++
			}
		})
	}
}

func BenchmarkRenameInDir(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("entries-%d", n), func(b *testing.B) {
			ctx := context.Background()
			_, fs, d := benchVolume(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				from, to := fmt.Sprintf("file-%08d", i%n), fmt.Sprintf("moved-%08d", i%n)
				if (i/n)%2 == 1 {
					from, to = to, from
				}
				if err := fs.Rename(ctx, d, from, d, to, 0); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkReadDir(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("warm-%d", n), func(b *testing.B) {
			ctx := context.Background()
			_, fs, d := benchVolume(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if es, err := fs.ReadDir(ctx, d); err != nil || len(es) < n {
					b.Fatal(len(es), err)
				}
			}
		})
		b.Run(fmt.Sprintf("cold-%d", n), func(b *testing.B) {
			// A new engine (host) each time: the directory's newest version
			// and its delta chain are read and decoded from the store.
			ctx := context.Background()
			vol, _, d := benchVolume(b, n)
			b.ReportAllocs()
			for b.Loop() {
				fs, err := vfs.New(vol, vfs.Options{BufferSize: 1 << 20, WritebackDelay: time.Hour, Revalidate: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				if es, err := fs.ReadDir(ctx, d); err != nil || len(es) < n {
					b.Fatal(len(es), err)
				}
				fs.Close(ctx)
			}
		})
	}
}
