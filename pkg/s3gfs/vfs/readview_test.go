package vfs_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// within reports whether s lies inside buf.
func within(s, buf []byte) bool {
	if len(s) == 0 || len(buf) == 0 {
		return false
	}
	p, b := uintptr(unsafe.Pointer(&s[0])), uintptr(unsafe.Pointer(&buf[0]))
	return p >= b && p+uintptr(len(s)) <= b+uintptr(len(buf))
}

// TestReadView: a view of a read across committed (cached) extents, a
// dirty one and a hole holds the working content; the committed extents'
// parts are slices of the cache, not copies in the scratch buffer, and
// the dirty extent's part is a copy (its buffer changes with the next
// write). Read returns the same bytes.
func TestReadView(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	r := rand.New(rand.NewPCG(21, 21))
	content := randBytes(r, 6*extSize)
	clear(content[4*extSize : 5*extSize]) // a hole, once truncated and rewritten below
	id, h := create(t, fs, root, "f")
	write(t, fs, h, content[:4*extSize], 0)
	write(t, fs, h, content[5*extSize:], 5*extSize)
	closeH(t, fs, h)

	h = open(t, fs, id, true)
	defer fs.Release(ctx, h)
	readAll(t, fs, h) // caches the committed extents
	dirty := randBytes(r, 100)
	write(t, fs, h, dirty, 2*extSize+10)
	copy(content[2*extSize+10:], dirty)

	off := int64(extSize / 2)
	scratch := make([]byte, 5*extSize)
	v, err := fs.ReadView(ctx, h, scratch, off)
	must(t, err)
	want := content[off : off+int64(len(scratch))]
	if v.Len() != len(want) {
		t.Fatalf("view of %d bytes, want %d", v.Len(), len(want))
	}
	var got []byte
	for _, s := range v.Slices() {
		got = append(got, s...)
	}
	sameBytes(t, got, want, "the view's slices")
	segs := v.Slices()
	if len(segs) != 6 {
		t.Fatalf("view of %d slices, want one per extent touched (6)", len(segs))
	}
	for idx, s := range segs { // the read starts in extent 0
		inScratch := within(s, scratch)
		switch idx {
		case 2, 4: // dirty, hole
			if !inScratch {
				t.Errorf("part of extent %d is not in the scratch buffer", idx)
			}
		default:
			if inScratch {
				t.Errorf("part of cached extent %d was copied into the scratch buffer", idx)
			}
		}
	}
	// The dirty part is a copy: a later write does not change the view.
	write(t, fs, h, bytes.Repeat([]byte{0xee}, 100), 2*extSize+10)
	got = got[:0]
	for _, s := range v.Slices() {
		got = append(got, s...)
	}
	sameBytes(t, got, want, "the view after another write")
	v.Release()

	dest := make([]byte, len(scratch))
	readAt(t, fs, h, dest, off)
	copy(content[2*extSize+10:], bytes.Repeat([]byte{0xee}, 100))
	sameBytes(t, dest, content[off:off+int64(len(dest))], "Read")
}
