package reaper_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
)

// BenchmarkPass10k measures a pass over a volume of 10,000 small files in
// one directory, each with two versions (one superseded), and reports the
// store requests a pass makes.
func BenchmarkPass10k(b *testing.B) {
	const n = 10000
	e := newTEnv(b)
	keys := e.vol.Keys
	var entries []format.Entry
	for i := range n {
		id := uint64(0x1000 + i)
		for v := uint64(1); v <= 2; v++ {
			obj, err := format.EncodeInode(&format.Inode{ID: id, Version: v, Kind: format.KindFile, Mode: 0o644, Nlink: 1, Inline: true})
			if err != nil {
				b.Fatal(err)
			}
			e.store.PutIfAbsent(ctx, keys.Inode(id, v), obj)
		}
		entries = append(entries, format.Entry{Op: format.EntryPut, Name: fmt.Sprintf("f%05d", i), Child: id, ChildKind: format.KindFile})
	}
	root, err := format.EncodeInode(&format.Inode{ID: format.RootID, Version: 2, Kind: format.KindDir, Mode: 0o755, Base: 2, Entries: entries})
	if err != nil {
		b.Fatal(err)
	}
	e.store.PutIfAbsent(ctx, keys.Inode(format.RootID, 2), root)
	e.advance(time.Hour)
	r := e.gc(cfg(0, time.Minute))
	b.Logf("first pass: deleted %v in %s", r.Deleted, r.Duration)
	var gets, lists atomic.Int64
	e.store.SetHooks(memstore.Hooks{Before: func(op memstore.Op, key string) error {
		switch op {
		case memstore.OpGet:
			gets.Add(1)
		case memstore.OpList:
			lists.Add(1)
		}
		return nil
	}})
	b.ResetTimer()
	for range b.N {
		e.gc(cfg(0, time.Minute))
	}
	b.StopTimer()
	b.ReportMetric(float64(gets.Load())/float64(b.N), "gets/pass")
	b.ReportMetric(float64(lists.Load())/float64(b.N), "lists/pass")
	_ = reaper.KindVersion
}
