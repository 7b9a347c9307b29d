package format_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Fixtures are objects written by an earlier build of this package and
// committed under testdata/fixtures. Each must keep decoding to exactly the
// value below: if one stops decoding, the format changed incompatibly and
// every bucket written so far would become unreadable. NEVER edit a value
// here or regenerate a fixture to make this test pass; a deliberate format
// change adds new fixtures under a new format version instead.

type fixture struct {
	file   string
	check  func(t *testing.T, obj []byte)
	encode func() ([]byte, error) // how the fixture was first written
}

var (
	fxExtentData = []byte("hello, s3gfs\n")
	fxBlockData  = func() []byte { // extent-blocks.bin: 9000 bytes, "abc...zabc..."
		b := make([]byte, 9000)
		for i := range b {
			b[i] = 'a' + byte(i%26)
		}
		return b
	}()
	fxCreated = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fxTime    = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC).UnixNano()
)

func fxVolume() *format.Volume {
	return &format.Volume{
		ID:          [16]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
		ExtentSize:  4 << 20,
		InlineLimit: 4 << 10,
		Retention:   24 * time.Hour,
		Created:     fxCreated,
	}
}

// fxCloneVolume is a clone's header (FORMAT.md §16.1).
func fxCloneVolume() *format.Volume {
	v := fxVolume()
	v.ID[0] = 0xc1
	v.Features = format.FeatureClone
	v.Clone = &format.CloneSource{
		Bucket: "source-bucket", Prefix: "vols/pvc-src", ID: fxVolume().ID,
		At: time.Date(2025, 6, 1, 12, 0, 1, 0, time.UTC), Pin: "csi-clone-pvc-dst", Depth: 2,
	}
	return v
}

func fxInodes() map[string]*format.Inode {
	return map[string]*format.Inode{
		"inode-file-origins.bin": {
			// A clone's file: extent 0 its own, extent 1 its source's,
			// extent 2 its source's source's.
			ID: 0x3f9a0c7e12b45d81, Version: 4, Kind: format.KindFile, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o600, UID: 1000, GID: 1000, Nlink: 1, Size: 2*(4<<20) + 5,
			Atime: fxTime, Mtime: fxTime + 1, Ctime: fxTime + 2,
			Extents: []format.ExtentRef{
				{Index: 0, EID: 0xa1b2c3d4e5f60718, Length: 13, CRC: 0x258aeed7},
				{Index: 1, EID: 0xa1b2c3d4e5f60718, Length: 4 << 20, CRC: 0x01020304, Origin: 1},
				{Index: 2, EID: 0x0badc0ffee0ddf00, Length: 5, CRC: 0x12345678, Origin: 2},
			},
		},
		"inode-file-blocks.bin": {
			// Block checksums (FORMAT.md §5.3, body flags 4): extent 0 is
			// extent.bin with its whole-extent crc (carried over from a
			// version written before block checksums), extent 1 is
			// extent-blocks.bin in 4 KiB blocks.
			ID: 0x3f9a0c7e12b45d81, Version: 5, Kind: format.KindFile, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o600, UID: 1000, GID: 1000, Nlink: 1, Size: 4<<20 + 9000,
			Atime: fxTime, Mtime: fxTime + 1, Ctime: fxTime + 2,
			Extents: []format.ExtentRef{
				{Index: 0, EID: 0xa1b2c3d4e5f60718, Length: 13, CRC: 0x258aeed7},
				{Index: 1, EID: 0xb10cb10cb10cb10c, Length: 9000, BlockShift: 12,
					Sums: "\x14\x7f\xc6\x15\x1d\x8e\xe1\xcc\x0b\x35\xab\xda"},
			},
		},
		"inode-file-inline.bin": {
			ID: 0x3f9a0c7e12b45d81, Version: 2, Kind: format.KindFile, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o644, UID: 1000, GID: 1000, Nlink: 1, Size: 3,
			Atime: fxTime, Mtime: fxTime, Ctime: fxTime,
			Xattrs: []format.Xattr{{Name: "user.comment", Value: []byte("fixture")}},
			Inline: true, Data: []byte("hi\n"),
		},
		"inode-file-extents.bin": {
			// Extent 0 holds extent.bin; extent 1 is a hole; extent 2 holds
			// the last 5 bytes. Size = 2*4 MiB + 5.
			ID: 0x3f9a0c7e12b45d81, Version: 3, Kind: format.KindFile, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o600, UID: 1000, GID: 1000, Nlink: 2, Size: 2*(4<<20) + 5,
			Atime: fxTime, Mtime: fxTime + 1, Ctime: fxTime + 2,
			Extents: []format.ExtentRef{
				{Index: 0, EID: 0xa1b2c3d4e5f60718, Length: 13, CRC: 0x258aeed7},
				{Index: 2, EID: 0x0badc0ffee0ddf00, Length: 5, CRC: 0x12345678},
			},
		},
		"inode-dir-full.bin": {
			ID: 0x7c1e3a5b9d2f4e60, Version: 65, Base: 65, Kind: format.KindDir, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o755, UID: 1000, GID: 1000,
			Atime: fxTime, Mtime: fxTime, Ctime: fxTime,
			Entries: []format.Entry{
				{Op: format.EntryPut, Name: "dev", Child: 0x4000000000000001, ChildKind: format.KindSpecial},
				{Op: format.EntryPut, Name: "f", Child: 0x3f9a0c7e12b45d81, ChildKind: format.KindFile},
				{Op: format.EntryPut, Name: "link", Child: 0x00000000000000ff, ChildKind: format.KindSymlink},
				{Op: format.EntryPut, Name: "sub", Child: 0x2222222222222222, ChildKind: format.KindDir},
			},
		},
		"inode-dir-delta.bin": {
			ID: 0x7c1e3a5b9d2f4e60, Version: 67, Base: 65, Kind: format.KindDir, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o755, UID: 1000, GID: 1000,
			Atime: fxTime, Mtime: fxTime + 5, Ctime: fxTime + 5,
			Entries: []format.Entry{
				{Op: format.EntryRemove, Name: "f"},
				{Op: format.EntryPut, Name: "g", Child: 0x3f9a0c7e12b45d81, ChildKind: format.KindFile},
				{Op: format.EntryRemove, Name: "dev"},
			},
		},
		"inode-dir-pending.bin": {
			// A rename transaction's versions (FORMAT.md §5.5): a pending
			// remove of f and a pending put of g -> f's inode, and a
			// pending delete.
			ID: 0x7c1e3a5b9d2f4e60, Version: 68, Base: 68, Kind: format.KindDir, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o755, UID: 1000, GID: 1000,
			Atime: fxTime, Mtime: fxTime + 6, Ctime: fxTime + 6,
			Entries: []format.Entry{
				{Op: format.EntryPut, Name: "f", Child: 0x3f9a0c7e12b45d81, ChildKind: format.KindFile},
				{Op: format.EntryPendingRemove, Name: "f", Tx: 0x9d04c1e7a2b35f68, Host: 0x5e1f00d2c4a7b931},
				{Op: format.EntryPendingPut, Name: "g", Child: 0x3f9a0c7e12b45d81, ChildKind: format.KindFile, Tx: 0x9d04c1e7a2b35f68, Host: 0x5e1f00d2c4a7b931},
			},
		},
		"inode-dir-pending-delete.bin": {
			ID: 0x2222222222222222, Version: 3, Base: 2, Kind: format.KindDir, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o755, UID: 1000, GID: 1000,
			Atime: fxTime, Mtime: fxTime + 6, Ctime: fxTime + 6,
			Entries: []format.Entry{
				{Op: format.EntryRemove, Name: "x"},
				{Op: format.EntryPendingDelete, Tx: 0x9d04c1e7a2b35f68, Host: 0x5e1f00d2c4a7b931},
			},
		},
		"inode-dir-born.bin": {
			// Born puts (FORMAT.md §5.4, entry op 6): n is a new empty
			// file whose version 1 is the entry itself; m a plain put.
			ID: 0x7c1e3a5b9d2f4e60, Version: 69, Base: 68, Kind: format.KindDir, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o755, UID: 1000, GID: 1000,
			Atime: fxTime, Mtime: fxTime + 7, Ctime: fxTime + 7,
			Entries: []format.Entry{
				{Op: format.EntryPut, Name: "n", Child: 0x4b1d4b1d4b1d4b1d, ChildKind: format.KindFile,
					Born: &format.Birth{Mode: 0o640, UID: 1000, GID: 100, Time: fxTime + 7}},
				{Op: format.EntryPut, Name: "m", Child: 0x3f9a0c7e12b45d81, ChildKind: format.KindFile},
			},
		},
		"inode-symlink.bin": {
			ID: 0x00000000000000ff, Version: 1, Kind: format.KindSymlink, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o777, UID: 1000, GID: 1000, Nlink: 1, Size: 6,
			Atime: fxTime, Mtime: fxTime, Ctime: fxTime,
			Target: "../f.d",
		},
		"inode-tombstone.bin": {
			ID: 0x2222222222222222, Version: 4, Kind: format.KindTombstone, Writer: 0x5e1f00d2c4a7b931,
			Ctime: fxTime,
		},
		"inode-special.bin": {
			ID: 0x4000000000000001, Version: 1, Kind: format.KindSpecial, Writer: 0x5e1f00d2c4a7b931,
			Mode: 0o020666, UID: 0, GID: 0, Nlink: 1, Rdev: 1<<8 | 3, // /dev/null: char 1,3
			Atime: fxTime, Mtime: fxTime, Ctime: fxTime,
		},
	}
}

func fixtures() []fixture {
	out := []fixture{
		{
			file: "volume.bin",
			check: func(t *testing.T, obj []byte) {
				v, err := format.DecodeVolume(obj)
				if err != nil {
					t.Fatal(err)
				}
				want := fxVolume()
				if v.ID != want.ID || v.ExtentSize != 4<<20 || v.InlineLimit != 4096 || v.Retention != 24*time.Hour ||
					!v.Created.Equal(fxCreated) || v.Features != 0 {
					t.Fatalf("volume.bin decodes to %+v", v)
				}
			},
			encode: func() ([]byte, error) { return format.EncodeVolume(fxVolume()) },
		},
		{
			file: "volume-clone.bin",
			check: func(t *testing.T, obj []byte) {
				v, err := format.DecodeVolume(obj)
				if err != nil {
					t.Fatal(err)
				}
				want := fxCloneVolume()
				c := v.Clone
				if v.ID != want.ID || v.Features != format.FeatureClone || c == nil || c.Bucket != "source-bucket" ||
					c.Prefix != "vols/pvc-src" || c.ID != fxVolume().ID || !c.At.Equal(want.Clone.At) ||
					c.Pin != "csi-clone-pvc-dst" || c.Depth != 2 || v.Depth() != 2 {
					t.Fatalf("volume-clone.bin decodes to %+v %+v", v, c)
				}
			},
			encode: func() ([]byte, error) { return format.EncodeVolume(fxCloneVolume()) },
		},
		{
			file: "extent.bin",
			check: func(t *testing.T, obj []byte) {
				ref := fxInodes()["inode-file-extents.bin"].Extents[0]
				data, err := format.DecodeExtent(obj, ref)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, fxExtentData) {
					t.Fatalf("extent.bin holds %q", data)
				}
			},
			encode: func() ([]byte, error) { return format.EncodeExtent(fxExtentData), nil },
		},
		{
			file: "extent-blocks.bin",
			check: func(t *testing.T, obj []byte) {
				ref := fxInodes()["inode-file-blocks.bin"].Extents[1]
				data, err := format.DecodeExtent(obj, ref)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, fxBlockData) {
					t.Fatalf("extent-blocks.bin holds %q", data)
				}
				// A range read of its middle block alone (FORMAT.md §6).
				first, last, off, n := ref.BlockSpan(5000, 5001)
				if first != 1 || last != 2 || off != 8+4096 || n != 4096 {
					t.Fatalf("span of byte 5000: blocks %d-%d, bytes %d+%d", first, last, off, n)
				}
				got, err := format.DecodeBlocks(getRange(obj, off, n), ref, first, last)
				if err != nil || !bytes.Equal(got, fxBlockData[4096:8192]) {
					t.Fatalf("block 1: %v", err)
				}
			},
			encode: func() ([]byte, error) { return format.EncodeExtent(fxBlockData), nil },
		},
	}
	fxDecision := &format.Decision{Outcome: format.Commit, Host: 0x5e1f00d2c4a7b931, Writer: 0x5e1f00d2c4a7b931, Dirs: []uint64{0x7c1e3a5b9d2f4e60, 0x2222222222222222}}
	out = append(out, fixture{
		file: "decision.bin",
		check: func(t *testing.T, obj []byte) {
			d, err := format.DecodeDecision(obj)
			if err != nil {
				t.Fatal(err)
			}
			if d.Outcome != fxDecision.Outcome || d.Host != fxDecision.Host || d.Writer != fxDecision.Writer || len(d.Dirs) != 2 || d.Dirs[0] != fxDecision.Dirs[0] || d.Dirs[1] != fxDecision.Dirs[1] {
				t.Fatalf("decision.bin decodes to %+v", d)
			}
		},
		encode: func() ([]byte, error) { return format.EncodeDecision(fxDecision) },
	})
	fxCaps := &format.Caps{HostID: 0x5e1f00d2c4a7b931, Bits: format.CapBlockSums | format.CapBornPuts}
	out = append(out, fixture{
		file: "caps.bin",
		check: func(t *testing.T, obj []byte) {
			c, err := format.DecodeCaps(obj)
			if err != nil || *c != *fxCaps {
				t.Fatalf("caps.bin decodes to %+v, %v", c, err)
			}
		},
		encode: func() ([]byte, error) { return format.EncodeCaps(fxCaps) },
	})
	for file, want := range fxInodes() {
		file, want := file, want
		out = append(out, fixture{
			file: file,
			check: func(t *testing.T, obj []byte) {
				n, err := format.DecodeInode(obj, 4<<20)
				if err != nil {
					t.Fatal(err)
				}
				if !sameInode(n, want) {
					t.Fatalf("%s decodes to\n%+v\nwant\n%+v", file, n, want)
				}
			},
			encode: func() ([]byte, error) { return format.EncodeInode(want) },
		})
	}
	return out
}

func TestFixtureExtentCRC(t *testing.T) {
	// The CRC recorded in the extents fixture is the extent's real CRC.
	if got := format.Checksum(fxExtentData); got != 0x258aeed7 {
		t.Fatalf("CRC-32C(%q) = %08x", fxExtentData, got)
	}
}

func TestFixtureBlockSums(t *testing.T) {
	// The block checksums recorded in the blocks fixture are the extent's.
	want := format.BlockSums(fxBlockData, 12)
	if got := fxInodes()["inode-file-blocks.bin"].Extents[1].Sums; got != want {
		t.Fatalf("recorded % x, the data's are % x", got, want)
	}
}

// References written before block checksums (the fixtures of the first
// format) carry a whole-extent crc: readers read them whole, never by
// range, exactly as then.
func TestFixtureOldReferencesReadWhole(t *testing.T) {
	obj, err := os.ReadFile(filepath.Join("testdata", "fixtures", "extent.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"inode-file-extents.bin", "inode-file-origins.bin"} {
		raw, err := os.ReadFile(filepath.Join("testdata", "fixtures", file))
		if err != nil {
			t.Fatal(err)
		}
		n, err := format.DecodeInode(raw, 4<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range n.Extents {
			if x.Blocks() != 0 || x.BlockShift != 0 || x.Sums != "" {
				t.Errorf("%s: extent %d has block checksums: %+v", file, x.Index, x)
			}
		}
		x := n.Extents[0]
		if data, err := format.DecodeExtent(obj, x); err != nil || !bytes.Equal(data, fxExtentData) {
			t.Errorf("%s: extent.bin does not read whole: %v", file, err)
		}
		if _, err := format.DecodeBlocks(obj[8:8+13], x, 0, 1); err == nil {
			t.Errorf("%s: a range of a whole-crc extent was accepted", file)
		}
	}
}

func TestFixturesDecode(t *testing.T) {
	for _, fx := range fixtures() {
		t.Run(fx.file, func(t *testing.T) {
			obj, err := os.ReadFile(filepath.Join("testdata", "fixtures", fx.file))
			if err != nil {
				t.Fatal(err)
			}
			fx.check(t, obj)
			// Writers are stable too: today's encoder writes the same bytes.
			// (A change here alone is a writer change old readers may still
			// accept; it needs a look, not a regenerated fixture.)
			if again, err := fx.encode(); err != nil || !bytes.Equal(again, obj) {
				t.Errorf("encoding the fixture's value today gives different bytes (%v):\n got % x\nwant % x", err, again, obj)
			}
		})
	}
}

// Every fixture file is checked and listed in the README.
func TestFixturesListed(t *testing.T) {
	known := map[string]bool{}
	for _, fx := range fixtures() {
		known[fx.file] = true
	}
	readme, err := os.ReadFile(filepath.Join("testdata", "fixtures", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "fixtures", "*.bin"))
	if len(files) != len(known) {
		t.Errorf("%d fixture files, %d checked", len(files), len(known))
	}
	for _, f := range files {
		base := filepath.Base(f)
		if !known[base] {
			t.Errorf("%s is not checked by any test", base)
		}
		if !strings.Contains(string(readme), "`"+base+"`") {
			t.Errorf("%s is not described in testdata/fixtures/README.md", base)
		}
	}
}
