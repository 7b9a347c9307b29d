package vfs

// Benchmarks of the engine's in-memory hot paths: finding an extent in a
// file version, recording written ranges, overlaying pending extents at
// commit, and rebuilding a directory's entries from a delta chain. Run
// with `make bench-go` (go test -bench . -benchmem).

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

const benchExtSize = format.DefaultExtentSize

func benchFileVersion(extents int) *format.Inode {
	n := &format.Inode{ID: 7, Version: 3, Kind: format.KindFile, Nlink: 1, Size: uint64(extents) * benchExtSize}
	for i := 0; i < extents; i++ {
		n.Extents = append(n.Extents, format.ExtentRef{Index: uint64(i), EID: uint64(i)*31 + 1, Length: benchExtSize})
	}
	return n
}

// BenchmarkVersionSource: the extent lookup behind every read and write
// of a file not held in a dirty buffer.
func BenchmarkVersionSource(b *testing.B) {
	for _, extents := range []int{16, 256, 4096, 65536} {
		b.Run(fmt.Sprintf("extents-%d", extents), func(b *testing.B) {
			v := benchFileVersion(extents)
			rng := rand.New(rand.NewPCG(1, 2))
			idx := make([]uint64, 1024)
			for i := range idx {
				idx[i] = rng.Uint64N(uint64(extents))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if s := versionSource(v, idx[i&1023]); !s.hasRef {
					b.Fatal("extent not found")
				}
				i++
			}
		})
	}
}

// BenchmarkAddSpan: every write records its byte range for a possible
// merge (noteWriteLocked); sequential writes extend one span, random
// ones build up many.
func BenchmarkAddSpan(b *testing.B) {
	const block = 4096
	blocks := benchExtSize / block
	b.Run("sequential-4k", func(b *testing.B) {
		b.ReportAllocs()
		var s []span
		i := 0
		for b.Loop() {
			if i == blocks {
				s, i = s[:0], 0
			}
			s = addSpan(s, i*block, (i+1)*block)
			i++
		}
	})
	b.Run("random-4k", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 4))
		order := rng.Perm(blocks)
		b.ReportAllocs()
		var s []span
		i := 0
		for b.Loop() {
			if i == blocks {
				s, i = s[:0], 0
			}
			// Every other block only, so spans stay disjoint and the list grows.
			o := order[i] &^ 1
			s = addSpan(s, o*block, o*block+block)
			i++
		}
	})
}

// BenchmarkMergeExtents: a commit overlays the extents uploaded since the
// last one on the committed version's (mergeExtentsLocked).
func BenchmarkMergeExtents(b *testing.B) {
	for _, c := range []struct{ extents, pending int }{{256, 1}, {256, 256}, {4096, 1}, {4096, 64}} {
		b.Run(fmt.Sprintf("extents-%d-pending-%d", c.extents, c.pending), func(b *testing.B) {
			fs := &FS{extSize: benchExtSize, log: slog.New(slog.DiscardHandler)}
			ino := newInode(7)
			ino.cur = benchFileVersion(c.extents)
			ino.file.pending = map[uint64]*pendingExtent{}
			for i := 0; i < c.pending; i++ {
				idx := uint64(i * (c.extents / c.pending))
				ino.file.pending[idx] = &pendingExtent{ref: &format.ExtentRef{Index: idx, EID: 1 << 40, Length: benchExtSize}}
			}
			size := ino.cur.Size
			b.ReportAllocs()
			for b.Loop() {
				if xs := fs.mergeExtentsLocked(ino, size); len(xs) != c.extents {
					b.Fatalf("%d extents, want %d", len(xs), c.extents)
				}
			}
		})
	}
}

// BenchmarkApplyEntries: loading a directory rebuilds its entry map from
// the full version its newest one builds on plus every delta since
// (up to format.MaxDeltaChain of them).
func BenchmarkApplyEntries(b *testing.B) {
	for _, c := range []struct{ entries, deltas, per int }{{1000, 0, 0}, {10000, 0, 0}, {10000, 63, 1}, {10000, 63, 32}} {
		b.Run(fmt.Sprintf("entries-%d-deltas-%dx%d", c.entries, c.deltas, c.per), func(b *testing.B) {
			full := make([]format.Entry, c.entries)
			for i := range full {
				full[i] = format.Entry{Op: format.EntryPut, Name: fmt.Sprintf("file-%08d", i), Child: uint64(i) + 2, ChildKind: format.KindFile}
			}
			var deltas [][]format.Entry
			for d := 0; d < c.deltas; d++ {
				var es []format.Entry
				for j := 0; j < c.per; j++ {
					k := d*c.per + j
					if k%2 == 0 {
						es = append(es, format.Entry{Op: format.EntryPut, Name: fmt.Sprintf("new-%08d", k), Child: uint64(k) + 1<<32, ChildKind: format.KindFile})
					} else {
						es = append(es, format.Entry{Op: format.EntryRemove, Name: fmt.Sprintf("file-%08d", k)})
					}
				}
				deltas = append(deltas, es)
			}
			b.ReportAllocs()
			for b.Loop() {
				st := &format.DirState{Committed: make(map[string]format.Entry, len(full)), Pending: map[string]format.Entry{}}
				st.Apply(full)
				for _, es := range deltas {
					st.Apply(es)
				}
			}
		})
	}
}
