package format_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

func TestChecksumIsCRC32C(t *testing.T) {
	// The standard check value of CRC-32C (Castagnoli, reflected).
	if got := format.Checksum([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("Checksum(123456789) = %08x, want e3069283", got)
	}
	if got := format.Checksum(nil); got != 0 {
		t.Fatalf("Checksum(nil) = %08x, want 0", got)
	}
}

func TestSealLayout(t *testing.T) {
	if format.EnvelopeOverhead != 12 {
		t.Fatalf("EnvelopeOverhead = %d, want 12", format.EnvelopeOverhead)
	}
	payload := []byte("payload")
	obj := format.Seal(format.KindExtent, payload)
	if want := sealRaw("S3GF", 'E', 1, 0, payload); !bytes.Equal(obj, want) {
		t.Fatalf("Seal = % x\nwant   % x", obj, want)
	}
	got, err := format.Open(format.KindExtent, obj)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// An empty payload is a valid envelope.
	if got, err := format.Open(format.KindExtent, format.Seal(format.KindExtent, nil)); err != nil || len(got) != 0 {
		t.Fatalf("Open(empty) = %q, %v", got, err)
	}
}

// SealInPlace builds the same object as Seal around a payload already in
// place, touching nothing beyond the object.
func TestSealInPlace(t *testing.T) {
	payload := []byte("some extent bytes")
	for _, extra := range []int{0, 5} {
		buf := make([]byte, format.EnvelopeOverhead+len(payload)+extra)
		for i := range buf {
			buf[i] = 0xaa
		}
		copy(buf[format.EnvelopeHeader:], payload)
		obj := format.SealInPlace(format.KindExtent, buf, len(payload))
		if want := format.Seal(format.KindExtent, payload); !bytes.Equal(obj, want) {
			t.Fatalf("SealInPlace = % x\nwant          % x", obj, want)
		}
		if &obj[0] != &buf[0] {
			t.Fatal("SealInPlace copied")
		}
		for i := len(obj); i < len(buf); i++ {
			if buf[i] != 0xaa {
				t.Fatalf("SealInPlace wrote byte %d past the object", i)
			}
		}
	}
}

func TestKindBytes(t *testing.T) {
	for k, b := range map[format.Kind]byte{
		format.KindVolume: 'V', format.KindInode: 'I', format.KindExtent: 'E',
		format.KindPing: 'H', format.KindSnapshot: 'S', format.KindLease: 'L',
	} {
		if byte(k) != b {
			t.Errorf("%s = %q, want %q", k, byte(k), b)
		}
	}
	for k, b := range map[format.InodeKind]byte{
		format.KindFile: 1, format.KindDir: 2, format.KindSymlink: 3, format.KindTombstone: 4, format.KindSpecial: 5,
	} {
		if byte(k) != b {
			t.Errorf("%s = %d, want %d", k, byte(k), b)
		}
	}
	if format.EntryPut != 1 || format.EntryRemove != 2 {
		t.Errorf("entry ops changed")
	}
}

func TestVolumeRoundTrip(t *testing.T) {
	vols := map[string]*format.Volume{
		"sample": sampleVolume(),
		"min":    {ExtentSize: format.MinExtentSize, InlineLimit: 0}, // zero Created encodes as 0 = unknown
		"max": {
			ExtentSize: format.MaxExtentSize, InlineLimit: format.MaxInlineLimit,
			Retention: 100 * 365 * 24 * time.Hour, Created: time.Unix(0, -1<<63),
			ID: [16]byte{0: 0xff, 15: 0xff},
		},
		"odd":   {ExtentSize: 5 * 4096 * 16, InlineLimit: 1, Retention: time.Second, Created: time.Unix(0, 1<<63-1)},
		"clone": func() *format.Volume { v := sampleVolume(); setClone(v); return v }(),
		"clone-max": func() *format.Volume {
			v := sampleVolume()
			c := setClone(v)
			c.Bucket, c.Prefix, c.Pin, c.Depth = strings.Repeat("b", 63), strings.Repeat("p", 512), strings.Repeat("n", 253), format.MaxCloneDepth
			c.At = time.Unix(0, -1)
			return v
		}(),
		"clone-root": func() *format.Volume { v := sampleVolume(); c := setClone(v); c.Prefix, c.Bucket = "", "b.c"; return v }(),
	}
	for name, v := range vols {
		t.Run(name, func(t *testing.T) {
			obj, err := format.EncodeVolume(v)
			if err != nil {
				t.Fatal(err)
			}
			if want := rawVolume(v); !bytes.Equal(obj, want) {
				t.Errorf("EncodeVolume differs from FORMAT.md:\n got % x\nwant % x", obj, want)
			}
			got, err := format.DecodeVolume(obj)
			if err != nil {
				t.Fatal(err)
			}
			if !sameVolume(got, v) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, v)
			}
			again, err := format.EncodeVolume(got)
			if err != nil || !bytes.Equal(again, obj) {
				t.Errorf("re-encoding differs (%v)", err)
			}
		})
	}
}

func TestVolumeRetentionIsWholeSeconds(t *testing.T) {
	v := sampleVolume()
	v.Retention = 90*time.Second + 999*time.Millisecond
	obj, err := format.EncodeVolume(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := format.DecodeVolume(obj)
	if err != nil {
		t.Fatal(err)
	}
	if got.Retention != 90*time.Second {
		t.Fatalf("retention %v, want it truncated to 1m30s", got.Retention)
	}
}

func TestInodeRoundTrip(t *testing.T) {
	for name, n := range sampleInodes() {
		t.Run(name, func(t *testing.T) {
			if err := n.Validate(); err != nil {
				t.Fatal(err)
			}
			obj, err := format.EncodeInode(n)
			if err != nil {
				t.Fatal(err)
			}
			if want := rawInode(n); !bytes.Equal(obj, want) {
				t.Errorf("EncodeInode differs from FORMAT.md:\n got % x\nwant % x", obj, want)
			}
			got, err := format.DecodeInode(obj, format.DefaultExtentSize)
			if err != nil {
				t.Fatal(err)
			}
			if !sameInode(got, n) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, n)
			}
			again, err := format.EncodeInode(got)
			if err != nil || !bytes.Equal(again, obj) {
				t.Errorf("re-encoding differs (%v)", err)
			}
			if got.Kind == format.KindDir && got.IsFull() != (got.Base == got.Version) {
				t.Errorf("IsFull wrong")
			}
		})
	}
}

func TestInodeDecodeDoesNotAlias(t *testing.T) {
	n := sampleInodes()["file-inline"]
	obj, _ := format.EncodeInode(n)
	got, err := format.DecodeInode(obj, format.DefaultExtentSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := range obj {
		obj[i] = 0
	}
	if string(got.Data) != "hi\n" || string(got.Xattrs[2].Value) != "text/plain" {
		t.Fatalf("decoded inode aliases its object: %q %q", got.Data, got.Xattrs[2].Value)
	}
}

func TestDeltaChainLimit(t *testing.T) {
	n := &format.Inode{ID: 9, Kind: format.KindDir, Mode: 0o755, Base: 1}
	for v := uint64(1); v <= 1+format.MaxDeltaChain; v++ {
		n.Version = v
		obj, err := format.EncodeInode(n)
		if err != nil {
			t.Fatalf("v%d base 1: %v", v, err)
		}
		if _, err := format.DecodeInode(obj, format.DefaultExtentSize); err != nil {
			t.Fatalf("v%d base 1: %v", v, err)
		}
	}
	n.Version = 2 + format.MaxDeltaChain
	if _, err := format.EncodeInode(n); err == nil {
		t.Fatalf("v%d base 1 accepted: chain too long", n.Version)
	}
}

func TestExtentRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 3, 4095, 4096, 64 << 10, format.DefaultExtentSize} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		obj := format.EncodeExtent(data)
		if want := seal(format.KindExtent, data); !bytes.Equal(obj, want) {
			t.Fatalf("size %d: EncodeExtent differs from FORMAT.md", size)
		}
		ref := format.ExtentRef{Index: 7, EID: 42, Length: uint32(size), CRC: format.Checksum(data)}
		got, err := format.DecodeExtent(obj, ref)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: DecodeExtent: %v", size, err)
		}
	}
}

func TestSortHelpers(t *testing.T) {
	es := []format.Entry{{Name: "b"}, {Name: "B"}, {Name: "a"}, {Name: "\xff"}, {Name: "ab"}}
	format.SortEntries(es)
	if !sort.SliceIsSorted(es, func(i, j int) bool { return es[i].Name < es[j].Name }) || es[0].Name != "B" {
		t.Fatalf("SortEntries: %v", es)
	}
	xs := []format.Xattr{{Name: "user.z"}, {Name: "security.a"}, {Name: "user.a"}}
	format.SortXattrs(xs)
	if xs[0].Name != "security.a" || xs[2].Name != "user.z" {
		t.Fatalf("SortXattrs: %v", xs)
	}
}

// A born put's version 1 is an empty inline file with one link and the
// birth's attributes, valid as a version object of its own.
func TestBirthVersion1(t *testing.T) {
	b := &format.Birth{Mode: 0o640, UID: 7, GID: 8, Time: t2025}
	n := b.Version1(0x1234)
	want := &format.Inode{ID: 0x1234, Version: 1, Kind: format.KindFile, Mode: 0o640, UID: 7, GID: 8, Nlink: 1,
		Atime: t2025, Mtime: t2025, Ctime: t2025, Inline: true}
	if !sameInode(n, want) {
		t.Fatalf("Version1 = %+v, want %+v", n, want)
	}
	if _, err := format.EncodeInode(n); err != nil {
		t.Fatalf("Version1 does not encode: %v", err)
	}
}

func TestCapsRoundTrip(t *testing.T) {
	k, err := format.NewKeys("vol")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := k.ParseCaps(k.Caps(0xabc)); err != nil || id != 0xabc {
		t.Fatalf("ParseCaps(Caps) = %x, %v", id, err)
	}
	for _, bad := range []string{"vol/caps/0000000000000000", "vol/caps/ABC0000000000000", "vol/caps/abc", "vol/h/0000000000000abc"} {
		if _, err := k.ParseCaps(bad); err == nil {
			t.Errorf("ParseCaps(%q) accepted", bad)
		}
	}
	c := &format.Caps{HostID: 0x5e1f00d2c4a7b931, Bits: format.KnownCaps | 1<<40}
	obj, err := format.EncodeCaps(c)
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	s.u64(c.HostID)
	s.uv(c.Bits)
	if want := seal(format.KindCaps, s.b); !bytes.Equal(obj, want) {
		t.Fatalf("EncodeCaps differs from FORMAT.md:\n got % x\nwant % x", obj, want)
	}
	got, err := format.DecodeCaps(obj)
	if err != nil || *got != *c {
		t.Fatalf("DecodeCaps = %+v, %v", got, err)
	}
	var zero spec
	zero.u64(0)
	zero.uv(1)
	if _, err := format.DecodeCaps(seal(format.KindCaps, zero.b)); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("capabilities of host 0: %v", err)
	}
	if _, err := format.DecodeCaps(append(obj[:len(obj)-4:len(obj)-4], 1, 2, 3, 4)); err == nil {
		t.Fatal("a damaged capabilities object decodes")
	}
}
