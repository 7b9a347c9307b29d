package format_test

// Benchmarks of the inode codec on the shapes that cost the most: a big
// directory's full version (written every MaxDeltaChain commits, read on
// every cold lookup of the directory), a delta version (every directory
// commit), and a large file's version with many extents (every commit of
// the file). Run with `make bench-go` (go test -bench . -benchmem).

import (
	"fmt"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

func benchDir(entries int) *format.Inode {
	n := &format.Inode{
		ID: 0x3f9a0c7e12b45d81, Version: 1, Base: 1, Kind: format.KindDir, Writer: 0x5e1f00d2c4a7b931,
		Mode: 0o755, UID: 1000, GID: 1000, Atime: 1735689600123456789, Mtime: 1735689600123456789, Ctime: 1735689600123456789,
	}
	for i := 0; i < entries; i++ {
		n.Entries = append(n.Entries, format.Entry{
			Op: format.EntryPut, Name: fmt.Sprintf("file-%08d.txt", i),
			Child: 0x7c1e3a5b9d2f4e60 + uint64(i)*0x9e3779b97f4a7c15, ChildKind: format.KindFile,
		})
	}
	format.SortEntries(n.Entries)
	return n
}

func benchDelta(changes int) *format.Inode {
	n := benchDir(0)
	n.Version, n.Base = 40, 1
	for i := 0; i < changes; i++ {
		e := format.Entry{Op: format.EntryPut, Name: fmt.Sprintf("new-%06d", i), Child: uint64(i) + 2, ChildKind: format.KindFile}
		if i%4 == 3 {
			e = format.Entry{Op: format.EntryRemove, Name: fmt.Sprintf("file-%08d.txt", i)}
		}
		n.Entries = append(n.Entries, e)
	}
	format.SortEntries(n.Entries)
	return n
}

// benchFile is a file version of extents full extents of the default size,
// referenced with a whole-extent crc (as before block checksums).
func benchFile(extents int) *format.Inode { return benchFileBlocks(extents, 0) }

// benchFileBlocks is benchFile with block checksums of 1<<shift bytes
// (0: a whole-extent crc).
func benchFileBlocks(extents int, shift uint8) *format.Inode {
	n := &format.Inode{
		ID: 0x7c1e3a5b9d2f4e60, Version: 7, Kind: format.KindFile, Writer: 0x5e1f00d2c4a7b931,
		Mode: 0o644, Nlink: 1, Size: uint64(extents) * format.DefaultExtentSize,
		Atime: 1735689600123456789, Mtime: 1735689600123456789, Ctime: 1735689600123456789,
	}
	for i := 0; i < extents; i++ {
		x := format.ExtentRef{
			Index: uint64(i), EID: 0xa1b2c3d4e5f60718 + uint64(i)*0x9e3779b97f4a7c15,
			Length: format.DefaultExtentSize, CRC: uint32(i) * 2654435761,
		}
		if shift != 0 {
			x.CRC, x.BlockShift = 0, shift
			x.Sums = sums(format.DefaultExtentSize>>shift, uint32(i)*2654435761)
		}
		n.Extents = append(n.Extents, x)
	}
	return n
}

var benchShapes = []struct {
	name string
	n    func() *format.Inode
}{
	{"dir-full-1k", func() *format.Inode { return benchDir(1000) }},
	{"dir-full-10k", func() *format.Inode { return benchDir(10000) }},
	{"dir-full-100k", func() *format.Inode { return benchDir(100000) }},
	{"dir-delta-16", func() *format.Inode { return benchDelta(16) }},
	{"file-256-extents", func() *format.Inode { return benchFile(256) }},   // 1 GiB
	{"file-4096-extents", func() *format.Inode { return benchFile(4096) }}, // 16 GiB
	// The same with 64 KiB block checksums (what s3gfs writes).
	{"file-256-extents-blocks", func() *format.Inode { return benchFileBlocks(256, format.DefaultBlockShift) }},
	{"file-4096-extents-blocks", func() *format.Inode { return benchFileBlocks(4096, format.DefaultBlockShift) }},
}

func BenchmarkEncodeInode(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			n := s.n()
			obj, err := format.EncodeInode(n)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(obj)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := format.EncodeInode(n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeInode(b *testing.B) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			obj, err := format.EncodeInode(s.n())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(obj)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := format.DecodeInode(obj, format.DefaultExtentSize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSortEntries: a full directory version is sorted before it is
// encoded (commitDirBatch builds it from a map).
func BenchmarkSortEntries(b *testing.B) {
	src := benchDir(10000).Entries
	// Map order: a fixed shuffle.
	shuffled := make([]format.Entry, len(src))
	for i := range src {
		shuffled[(i*7919)%len(src)] = src[i]
	}
	es := make([]format.Entry, len(src))
	b.ReportAllocs()
	for b.Loop() {
		copy(es, shuffled)
		format.SortEntries(es)
	}
}

// Sealing a 4 MiB extent for upload: a copy into a new object, or in place
// around the write-back buffer (what vfs does).
func BenchmarkSealExtent4MiB(b *testing.B) {
	data := make([]byte, 4<<20)
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			format.EncodeExtent(data)
		}
	})
	b.Run("in-place", func(b *testing.B) {
		buf := make([]byte, len(data)+format.EnvelopeOverhead)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			format.SealInPlace(format.KindExtent, buf, len(data))
		}
	})
	// What an upload computes: the reference's block checksums and the
	// sealed envelope, in two passes over the data or in one.
	b.Run("ref+in-place", func(b *testing.B) {
		buf := make([]byte, len(data)+format.EnvelopeOverhead)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			format.NewExtentRef(0, 1, buf[format.EnvelopeHeader:][:len(data)], format.DefaultBlockShift)
			format.SealInPlace(format.KindExtent, buf, len(data))
		}
	})
	b.Run("ref+in-place-from-ref", func(b *testing.B) {
		buf := make([]byte, len(data)+format.EnvelopeOverhead)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			ref := format.NewExtentRef(0, 1, buf[format.EnvelopeHeader:][:len(data)], format.DefaultBlockShift)
			format.SealExtentInPlace(buf, len(data), ref)
		}
	})
}
