package format_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// The worked example of docs/FORMAT.md §10: `mkdir /a; echo hi > /a/f` in a
// fresh volume with prefix "vol". This test builds the same objects with the
// package and checks the keys, the object sizes and the annotated hex dumps
// in the document, so the document cannot drift from the code.

const (
	exA    = uint64(0x7c1e3a5b9d2f4e60)
	exF    = uint64(0x3f9a0c7e12b45d81)
	exHost = uint64(0x5e1f00d2c4a7b931)
)

type exampleObject struct {
	key  string
	name string
	obj  []byte
}

func workedExample(t *testing.T) []exampleObject {
	t.Helper()
	k := mustKeys(t, "vol")
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	t1, t2, t3 := t0+5_000_000_000, t0+7_000_000_000, t0+7_000_200_000
	vol := &format.Volume{
		ID:         [16]byte{0x9b, 0x2c, 0x6f, 0x1e, 0x0a, 0x4d, 0x4c, 0x7e, 0x8f, 0x3a, 0x5b, 0x6c, 0x7d, 0x8e, 0x9f, 0x01},
		ExtentSize: format.DefaultExtentSize, InlineLimit: format.DefaultInlineLimit,
		Retention: 24 * time.Hour, Created: time.Unix(0, t0),
	}
	dir := func(id, v uint64, atime, mtime int64, es ...format.Entry) *format.Inode {
		return &format.Inode{ID: id, Version: v, Base: 1, Kind: format.KindDir, Writer: exHost,
			Mode: 0o755, UID: 1000, GID: 1000, Atime: atime, Mtime: mtime, Ctime: mtime, Entries: es}
	}
	file := func(v, size uint64, mtime int64, data string) *format.Inode {
		return &format.Inode{ID: exF, Version: v, Kind: format.KindFile, Writer: exHost,
			Mode: 0o644, UID: 1000, GID: 1000, Nlink: 1, Size: size,
			Atime: t2, Mtime: mtime, Ctime: mtime, Inline: true, Data: []byte(data)}
	}
	inodes := []struct {
		name string
		n    *format.Inode
	}{
		{"root-v1", dir(format.RootID, 1, t0, t0)},
		{"a-v1", dir(exA, 1, t1, t1)},
		{"root-v2", dir(format.RootID, 2, t0, t1, format.Entry{Op: format.EntryPut, Name: "a", Child: exA, ChildKind: format.KindDir})},
		{"f-v1", file(1, 0, t2, "")},
		{"a-v2", dir(exA, 2, t1, t2, format.Entry{Op: format.EntryPut, Name: "f", Child: exF, ChildKind: format.KindFile})},
		{"f-v2", file(2, 3, t3, "hi\n")},
	}
	vobj, err := format.EncodeVolume(vol)
	if err != nil {
		t.Fatal(err)
	}
	out := []exampleObject{{k.Volume(), "volume", vobj}}
	for _, x := range inodes {
		obj, err := format.EncodeInode(x.n)
		if err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		out = append(out, exampleObject{k.Inode(x.n.ID, x.n.Version), x.name, obj})
	}
	return out
}

func TestWorkedExampleKeys(t *testing.T) {
	objs := workedExample(t)
	want := []struct {
		key  string
		size int
	}{
		{"vol/volume", 47},
		{"vol/i/0000000000000001/fffffffffffffffe", 69},
		{"vol/i/7c1e3a5b9d2f4e60/fffffffffffffffe", 69},
		{"vol/i/0000000000000001/fffffffffffffffd", 81},
		{"vol/i/3f9a0c7e12b45d81/fffffffffffffffe", 69},
		{"vol/i/7c1e3a5b9d2f4e60/fffffffffffffffd", 81},
		{"vol/i/3f9a0c7e12b45d81/fffffffffffffffd", 72},
	}
	if len(objs) != len(want) {
		t.Fatalf("%d objects", len(objs))
	}
	for i, o := range objs {
		if o.key != want[i].key || len(o.obj) != want[i].size {
			t.Errorf("object %d (%s): key %s, %d bytes; FORMAT.md says %s, %d bytes", i+1, o.name, o.key, len(o.obj), want[i].key, want[i].size)
		}
	}
	// LIST order: newest version of each inode first, volume last.
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.key
	}
	sort.Strings(keys)
	listed := []string{
		"vol/i/0000000000000001/fffffffffffffffd", "vol/i/0000000000000001/fffffffffffffffe",
		"vol/i/3f9a0c7e12b45d81/fffffffffffffffd", "vol/i/3f9a0c7e12b45d81/fffffffffffffffe",
		"vol/i/7c1e3a5b9d2f4e60/fffffffffffffffd", "vol/i/7c1e3a5b9d2f4e60/fffffffffffffffe",
		"vol/volume",
	}
	if strings.Join(keys, "\n") != strings.Join(listed, "\n") {
		t.Errorf("LIST order:\n%s", strings.Join(keys, "\n"))
	}
}

// exampleHex extracts the annotated hex dump following
// "<!-- example-hex: NAME -->" in FORMAT.md: on each line, the text before
// ';' is space-separated hex bytes.
func exampleHex(t *testing.T, doc, name string) []byte {
	t.Helper()
	marker := "<!-- example-hex: " + name + " -->"
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("FORMAT.md has no %s", marker)
	}
	rest := doc[i+len(marker):]
	start := strings.Index(rest, "```text\n")
	end := strings.Index(rest[start+8:], "```")
	if start < 0 || end < 0 {
		t.Fatalf("FORMAT.md: no code block after %s", marker)
	}
	var out []byte
	for _, line := range strings.Split(rest[start+8:start+8+end], "\n") {
		if j := strings.IndexByte(line, ';'); j >= 0 {
			line = line[:j]
		}
		for _, f := range strings.Fields(line) {
			b, err := hex.DecodeString(f)
			if err != nil || len(b) != 1 {
				t.Fatalf("FORMAT.md %s: bad hex byte %q", name, f)
			}
			out = append(out, b...)
		}
	}
	return out
}

func TestWorkedExampleHexMatchesFormatMD(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "FORMAT.md"))
	if err != nil {
		t.Fatalf("reading docs/FORMAT.md: %v", err)
	}
	byName := map[string][]byte{}
	for _, o := range workedExample(t) {
		byName[o.name] = o.obj
	}
	for _, name := range []string{"f-v2", "root-v2", "volume"} {
		if got := exampleHex(t, string(doc), name); !bytes.Equal(got, byName[name]) {
			t.Errorf("FORMAT.md hex of %s differs from the encoder:\n doc % x\n enc % x", name, got, byName[name])
		}
	}
}

// The example decodes back to what §10 says, through the hand decoder path
// a second client would take: the directory chain root v1 + v2.
func TestWorkedExampleDirectoryChain(t *testing.T) {
	objs := workedExample(t)
	get := func(name string) *format.Inode {
		for _, o := range objs {
			if o.name == name {
				n, err := format.DecodeInode(o.obj, format.DefaultExtentSize)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
		t.Fatalf("no %s", name)
		return nil
	}
	v1, v2 := get("root-v1"), get("root-v2")
	if !v1.IsFull() || v2.IsFull() || v2.Base != 1 {
		t.Fatalf("root v1 full=%v, v2 full=%v base %d", v1.IsFull(), v2.IsFull(), v2.Base)
	}
	entries := map[string]uint64{}
	for _, n := range []*format.Inode{v1, v2} {
		for _, e := range n.Entries {
			if e.Op == format.EntryPut {
				entries[e.Name] = e.Child
			} else {
				delete(entries, e.Name)
			}
		}
	}
	if len(entries) != 1 || entries["a"] != exA {
		t.Fatalf("root at v2 = %v", entries)
	}
	if f := get("f-v2"); string(f.Data) != "hi\n" || f.Size != 3 {
		t.Fatalf("f v2 = %+v", f)
	}
}
