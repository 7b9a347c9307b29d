package format_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// This file holds what the other tests share: an independent encoder written
// from docs/FORMAT.md (it never calls the package's encoder, and does no
// validation, so tests can build objects the package would refuse to write),
// sample values of every kind, and normalisation for comparisons.

// spec appends fields exactly as docs/FORMAT.md describes them.
type spec struct{ b []byte }

func (s *spec) u8(v byte) { s.b = append(s.b, v) }

func (s *spec) u32(v uint32) {
	s.b = append(s.b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func (s *spec) u64(v uint64) {
	for i := 0; i < 8; i++ {
		s.b = append(s.b, byte(v>>(8*i)))
	}
}

// uv is an unsigned LEB128 varint, minimal length.
func (s *spec) uv(v uint64) {
	for v >= 0x80 {
		s.b = append(s.b, byte(v)|0x80)
		v >>= 7
	}
	s.b = append(s.b, byte(v))
}

// sv is a signed varint: zigzag, then unsigned LEB128.
func (s *spec) sv(v int64) { s.uv(uint64(v<<1) ^ uint64(v>>63)) }

func (s *spec) blob(p []byte) { s.uv(uint64(len(p))); s.b = append(s.b, p...) }
func (s *spec) str(p string)  { s.uv(uint64(len(p))); s.b = append(s.b, p...) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealRaw builds an envelope by hand: magic, kind, version, flags (LE),
// payload, CRC-32C (LE) of everything before it.
func sealRaw(magic string, kind byte, version byte, flags uint16, payload []byte) []byte {
	var s spec
	s.b = append(s.b, magic...)
	s.u8(kind)
	s.u8(version)
	s.u8(byte(flags))
	s.u8(byte(flags >> 8))
	s.b = append(s.b, payload...)
	s.u32(crc32.Checksum(s.b, castagnoli))
	return s.b
}

func seal(kind format.Kind, payload []byte) []byte {
	return sealRaw("S3GF", byte(kind), 1, 0, payload)
}

// rawVolumePayload encodes v per FORMAT.md §4 without validation.
func rawVolumePayload(v *format.Volume) []byte {
	var s spec
	s.b = append(s.b, v.ID[:]...)
	s.uv(uint64(v.ExtentSize))
	s.uv(uint64(v.InlineLimit))
	s.uv(uint64(v.Retention / time.Second))
	if v.Created.IsZero() {
		s.sv(0) // 0 = unknown
	} else {
		s.sv(v.Created.UnixNano())
	}
	s.uv(v.Features)
	if c := v.Clone; c != nil && v.Features&format.FeatureClone != 0 {
		s.str(c.Bucket)
		s.str(c.Prefix)
		s.b = append(s.b, c.ID[:]...)
		if c.At.IsZero() {
			s.sv(0)
		} else {
			s.sv(c.At.UnixNano())
		}
		s.str(c.Pin)
		s.uv(uint64(c.Depth))
	}
	return s.b
}

// sampleClone is a valid clone source.
func sampleClone() *format.CloneSource {
	return &format.CloneSource{
		Bucket: "src-bucket.example", Prefix: "vols/pvc-1",
		ID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		At: time.Unix(0, t2025+5_000_000_000).UTC(), Pin: "csi-clone-pvc-2", Depth: 1,
	}
}

// setClone makes v a clone and returns its source for a test to spoil.
func setClone(v *format.Volume) *format.CloneSource {
	v.Features |= format.FeatureClone
	v.Clone = sampleClone()
	return v.Clone
}

// rawInodePayload encodes n per FORMAT.md §5 without validation. The body
// written is chosen by n.Kind, as in the format; an unknown kind gets none.
func rawInodePayload(n *format.Inode) []byte {
	var s spec
	s.u64(n.ID)
	s.uv(n.Version)
	s.u8(byte(n.Kind))
	s.u64(n.Writer)
	s.uv(uint64(n.Mode))
	s.uv(uint64(n.UID))
	s.uv(uint64(n.GID))
	s.uv(uint64(n.Nlink))
	s.uv(n.Size)
	s.uv(uint64(n.Rdev))
	s.sv(n.Atime)
	s.sv(n.Mtime)
	s.sv(n.Ctime)
	s.uv(uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		s.str(x.Name)
		s.blob(x.Value)
	}
	switch n.Kind {
	case format.KindFile:
		if n.Inline {
			s.u8(1)
			s.blob(n.Data)
		} else {
			origins, blocks := false, false
			for _, x := range n.Extents {
				origins = origins || x.Origin != 0
				blocks = blocks || x.BlockShift != 0
			}
			var flags byte
			if origins {
				flags |= 2
			}
			if blocks {
				flags |= 4
			}
			s.u8(flags)
			s.uv(uint64(len(n.Extents)))
			for _, x := range n.Extents {
				s.uv(x.Index)
				s.u64(x.EID)
				s.uv(uint64(x.Length))
				if blocks {
					s.u8(x.BlockShift)
				}
				if x.BlockShift == 0 {
					s.u32(x.CRC)
				} else {
					s.b = append(s.b, x.Sums...)
				}
				if origins {
					s.u8(x.Origin)
				}
			}
		}
	case format.KindDir:
		s.uv(n.Base)
		s.uv(uint64(len(n.Entries)))
		for _, e := range n.Entries {
			if e.Born != nil {
				s.u8(6) // a born put
			} else {
				s.u8(byte(e.Op))
			}
			s.str(e.Name)
			if e.Op == format.EntryPut {
				s.u64(e.Child)
				s.u8(byte(e.ChildKind))
			}
			if b := e.Born; b != nil {
				s.uv(uint64(b.Mode))
				s.uv(uint64(b.UID))
				s.uv(uint64(b.GID))
				s.sv(b.Time)
			}
		}
	case format.KindSymlink:
		s.str(n.Target)
	}
	return s.b
}

func rawInode(n *format.Inode) []byte   { return seal(format.KindInode, rawInodePayload(n)) }
func rawVolume(v *format.Volume) []byte { return seal(format.KindVolume, rawVolumePayload(v)) }

// Fixed times used by samples (nanoseconds since the epoch).
const (
	t2025 = int64(1735689600123456789) // 2025-01-01T00:00:00.123456789Z
	t1969 = int64(-86400_000000001)    // before the epoch: negative varints
)

const host = uint64(0x5e1f00d2c4a7b931)

func sampleVolume() *format.Volume {
	return &format.Volume{
		ID:          [16]byte{0x9b, 0x2c, 0x6f, 0x1e, 0x0a, 0x4d, 0x4c, 0x7e, 0x8f, 0x3a, 0x5b, 0x6c, 0x7d, 0x8e, 0x9f, 0x01},
		ExtentSize:  format.DefaultExtentSize,
		InlineLimit: format.DefaultInlineLimit,
		Retention:   7 * 24 * time.Hour,
		Created:     time.Unix(0, t2025).UTC(),
	}
}

// sampleInodes returns one valid inode version of every shape, by name.
// Decode them with format.DefaultExtentSize.
func sampleInodes() map[string]*format.Inode {
	const es = format.DefaultExtentSize
	return map[string]*format.Inode{
		"file-empty": {
			ID: 0x3f9a0c7e12b45d81, Version: 1, Kind: format.KindFile, Writer: host,
			Mode: 0o644, UID: 1000, GID: 1000, Nlink: 1,
			Atime: t2025, Mtime: t2025, Ctime: t2025,
			Inline: true,
		},
		"file-empty-extents": {
			ID: 0x3f9a0c7e12b45d81, Version: 1, Kind: format.KindFile, Writer: host,
			Mode: 0o600, Nlink: 1,
		},
		"file-inline": {
			ID: 0x3f9a0c7e12b45d81, Version: 2, Kind: format.KindFile, Writer: host,
			Mode: 0o4755, UID: 1000, GID: 100, Nlink: 2, Size: 3,
			Atime: t1969, Mtime: t2025, Ctime: t2025 + 1,
			Xattrs: []format.Xattr{
				{Name: "security.selinux", Value: []byte("system_u:object_r:s3gfs_t:s0\x00")},
				{Name: "user.empty", Value: []byte{}},
				{Name: "user.mime", Value: []byte("text/plain")},
			},
			Inline: true, Data: []byte("hi\n"),
		},
		"file-inline-max": {
			ID: 0x0102030405060708, Version: 9, Kind: format.KindFile, Writer: host,
			Mode: 0o644, Nlink: 1, Size: format.MaxInlineLimit,
			Inline: true, Data: bytes.Repeat([]byte{0xa5}, format.MaxInlineLimit),
		},
		"file-extents": {
			// extent 0 partly filled, extent 1 a hole, extent 2 ends the file,
			// extent 3 full.
			ID: 0x7c1e3a5b9d2f4e60, Version: 1 << 40, Kind: format.KindFile, Writer: ^uint64(0),
			Mode: 0o640, UID: 0xffffffff, GID: 0xfffffffe, Nlink: 0xffffffff, Size: 4*es - 1,
			Atime: -1, Mtime: 0, Ctime: 1<<63 - 1,
			Extents: []format.ExtentRef{
				{Index: 0, EID: 0xa1b2c3d4e5f60718, Length: 1000, CRC: 0xdeadbeef},
				{Index: 2, EID: 0, Length: es, CRC: 0},
				{Index: 3, EID: ^uint64(0), Length: es - 1, CRC: 0xffffffff},
			},
		},
		"file-origins": {
			// a clone's file (FORMAT.md §16.3): extent 0 its own, 1 from
			// its source, 3 from the source's source, at the deepest origin.
			ID: 0x7c1e3a5b9d2f4e61, Version: 7, Kind: format.KindFile, Writer: host,
			Mode: 0o644, Nlink: 1, Size: 4 * es,
			Extents: []format.ExtentRef{
				{Index: 0, EID: 0x1111111111111111, Length: es, CRC: 1},
				{Index: 1, EID: 0x1111111111111111, Length: 10, CRC: 2, Origin: 1},
				{Index: 2, EID: 0x2222, Length: 1, CRC: 3, Origin: format.MaxCloneDepth},
				{Index: 3, EID: 0x3333, Length: es, CRC: 4, Origin: 2},
			},
		},
		"file-blocks": {
			// block checksums (FORMAT.md §5.3): extent 0 of 64 KiB blocks,
			// extent 1 whole (a reference carried over from before block
			// checksums), extent 2 one short block of 4 KiB, extent 3 the
			// most blocks a reference can have.
			ID: 0x7c1e3a5b9d2f4e62, Version: 3, Kind: format.KindFile, Writer: host,
			Mode: 0o644, Nlink: 1, Size: 4 * es,
			Extents: []format.ExtentRef{
				{Index: 0, EID: 0x1111, Length: es - 1, BlockShift: 16, Sums: sums(es/(64<<10), 0x100)},
				{Index: 1, EID: 0x2222, Length: 10, CRC: 2},
				{Index: 2, EID: 0x3333, Length: 100, BlockShift: 12, Sums: sums(1, 0x200)},
				{Index: 3, EID: 0x4444, Length: es, BlockShift: 12, Sums: sums(es/4096, 0x300)},
			},
		},
		"file-blocks-origins": {
			// block checksums in a clone's file: flags 6.
			ID: 0x7c1e3a5b9d2f4e63, Version: 8, Kind: format.KindFile, Writer: host,
			Mode: 0o644, Nlink: 1, Size: 2 * es,
			Extents: []format.ExtentRef{
				{Index: 0, EID: 0x1111, Length: es, CRC: 1, Origin: 1},
				{Index: 1, EID: 0x2222, Length: 3 << 16, BlockShift: 16, Sums: sums(3, 0x400)},
			},
		},
		"dir-root-empty": {
			ID: format.RootID, Version: 1, Base: 1, Kind: format.KindDir, Writer: host,
			Mode: 0o755, Atime: t2025, Mtime: t2025, Ctime: t2025,
		},
		"dir-full": {
			ID: 0x7c1e3a5b9d2f4e60, Version: 66, Base: 66, Kind: format.KindDir, Writer: host,
			Mode: 0o1777, UID: 0, GID: 0,
			Atime: t2025, Mtime: t2025, Ctime: t2025,
			Xattrs: []format.Xattr{{Name: "user.a", Value: []byte{0}}},
			Entries: []format.Entry{
				{Op: format.EntryPut, Name: "-", Child: 9, ChildKind: format.KindSpecial},
				{Op: format.EntryPut, Name: "A", Child: 2, ChildKind: format.KindFile},
				{Op: format.EntryPut, Name: "a", Child: 3, ChildKind: format.KindDir},
				{Op: format.EntryPut, Name: "a b", Child: ^uint64(0), ChildKind: format.KindSymlink},
				{Op: format.EntryPut, Name: "ab", Child: 3, ChildKind: format.KindDir},
				{Op: format.EntryPut, Name: strings.Repeat("n", format.MaxNameLen), Child: 5, ChildKind: format.KindFile},
				{Op: format.EntryPut, Name: "\xff\xfe", Child: 4, ChildKind: format.KindFile},
			},
		},
		"dir-delta": {
			// Delta entries are the ordered changes of this version: here a
			// rename of "old" to "new" over an existing "new", a removal and
			// a new subdirectory. Not sorted: order is application order.
			ID: 0x7c1e3a5b9d2f4e60, Version: 66 + format.MaxDeltaChain, Base: 66, Kind: format.KindDir, Writer: host,
			Mode: 0o755,
			Entries: []format.Entry{
				{Op: format.EntryRemove, Name: "old"},
				{Op: format.EntryPut, Name: "new", Child: 0x1111, ChildKind: format.KindFile},
				{Op: format.EntryRemove, Name: "ab"},
				{Op: format.EntryPut, Name: "sub", Child: 0x2222, ChildKind: format.KindDir},
			},
		},
		"dir-delta-born": {
			// Creates of new files (born puts): their version 1 is the entry.
			ID: 0x7c1e3a5b9d2f4e60, Version: 67, Base: 66, Kind: format.KindDir, Writer: host,
			Mode: 0o755,
			Entries: []format.Entry{
				{Op: format.EntryPut, Name: "new", Child: 0x1111, ChildKind: format.KindFile,
					Born: &format.Birth{Mode: 0o644, UID: 1000, GID: 1000, Time: t2025}},
				{Op: format.EntryRemove, Name: "new"},
				{Op: format.EntryPut, Name: "old-clock", Child: 0x2222, ChildKind: format.KindFile,
					Born: &format.Birth{Mode: 0o7777, UID: 0xffffffff, GID: 0, Time: t1969}},
			},
		},
		"dir-full-born": {
			ID: 0x7c1e3a5b9d2f4e60, Version: 68, Base: 68, Kind: format.KindDir, Writer: host,
			Mode: 0o755,
			Entries: []format.Entry{
				{Op: format.EntryPut, Name: "a", Child: 0x1111, ChildKind: format.KindFile,
					Born: &format.Birth{Mode: 0o600, Time: t2025}},
				{Op: format.EntryPut, Name: "b", Child: 0x2222, ChildKind: format.KindFile},
			},
		},
		"dir-delta-empty": {
			// A delta that changes only attributes (chmod of a directory).
			ID: 0x7c1e3a5b9d2f4e60, Version: 67, Base: 66, Kind: format.KindDir, Writer: host,
			Mode: 0o700,
		},
		"symlink": {
			ID: 0x00000000000000ff, Version: 1, Kind: format.KindSymlink, Writer: host,
			Mode: 0o777, Nlink: 1, Size: 13, Atime: t2025, Mtime: t2025, Ctime: t2025,
			Target: "../a/b/target",
		},
		"symlink-max": {
			ID: 0x00000000000000fe, Version: 3, Kind: format.KindSymlink, Writer: host,
			Mode: 0o777, Nlink: 3, Size: format.MaxSymlinkLen,
			Target: strings.Repeat("x/", format.MaxSymlinkLen/2) + "y",
		},
		"tombstone": {
			ID: 0x3f9a0c7e12b45d81, Version: 7, Kind: format.KindTombstone, Writer: host,
			Ctime: t2025,
		},
		"special-chr": {
			ID: 0x4000000000000001, Version: 1, Kind: format.KindSpecial, Writer: host,
			Mode: 0o020000 | 0o660, UID: 0, GID: 6, Nlink: 1, Rdev: 8<<8 | 1,
			Atime: t2025, Mtime: t2025, Ctime: t2025,
		},
		"special-fifo": {
			ID: 0x4000000000000002, Version: 2, Kind: format.KindSpecial, Writer: host,
			Mode: 0o010000 | 0o644, Nlink: 1,
		},
	}
}

// sums returns n made-up block checksums, from, from+1, ...
func sums(n int, from uint32) string {
	var b []byte
	for i := 0; i < n; i++ {
		b = binary.LittleEndian.AppendUint32(b, from+uint32(i))
	}
	return string(b)
}

// normInode makes empty slices nil so decoded and built values compare.
func normInode(n *format.Inode) *format.Inode {
	c := *n
	if len(c.Data) == 0 {
		c.Data = nil
	}
	if len(c.Extents) == 0 {
		c.Extents = nil
	}
	if len(c.Entries) == 0 {
		c.Entries = nil
	}
	if len(c.Xattrs) == 0 {
		c.Xattrs = nil
	} else {
		c.Xattrs = append([]format.Xattr(nil), c.Xattrs...)
		for i := range c.Xattrs {
			if len(c.Xattrs[i].Value) == 0 {
				c.Xattrs[i].Value = nil
			}
		}
	}
	return &c
}

// normVolume drops the time's location and monotonic reading.
func normVolume(v *format.Volume) *format.Volume {
	c := *v
	c.Created = time.Unix(0, c.Created.UnixNano()).UTC()
	if v.Clone != nil {
		cs := *v.Clone
		cs.At = time.Unix(0, cs.At.UnixNano()).UTC()
		c.Clone = &cs
	}
	return &c
}

func sameInode(a, b *format.Inode) bool { return reflect.DeepEqual(normInode(a), normInode(b)) }

func sameVolume(a, b *format.Volume) bool { return reflect.DeepEqual(normVolume(a), normVolume(b)) }

func cloneInode(n *format.Inode) *format.Inode {
	c := *n
	c.Data = append([]byte(nil), n.Data...)
	c.Extents = append([]format.ExtentRef(nil), n.Extents...)
	c.Entries = append([]format.Entry(nil), n.Entries...)
	c.Xattrs = append([]format.Xattr(nil), n.Xattrs...)
	return &c
}

// wantErr checks err wraps want (nil: no error).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error: %v", what, err)
	case want != nil && err == nil:
		t.Errorf("%s: accepted, want an error wrapping %q", what, want)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error %q does not wrap %q", what, err, want)
	}
}
