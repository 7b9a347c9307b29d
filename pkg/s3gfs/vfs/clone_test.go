package vfs_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Clones (FORMAT.md §16), on one memstore: a source volume at prefix v and
// clones of it at other prefixes of the same bucket.

// cloneOf pins src (a snapshot called pin) and formats a clone of it at
// prefix, returning an env whose engines mount the clone, and the pin.
func (e *env) cloneOf(prefix, pin string) (*env, snapshot.Pin) {
	e.t.Helper()
	src, err := volume.Open(ctx, e.used, e.url, false)
	must(e.t, err)
	p, err := snapshot.Create(ctx, e.used, src.Keys, pin)
	must(e.t, err)
	u := volume.URL{Bucket: e.url.Bucket, Prefix: prefix}
	vol, err := volume.FormatClone(ctx, e.used, u, src, pin, p.Time, 0)
	must(e.t, err)
	return &env{t: e.t, store: e.store, used: e.used, url: u, vol: vol, log: e.log}, p
}

// sourceTree writes /d/f (a file of 3 extents and a tail), /d/g (inline)
// and /keep, and returns their ids and f's content.
func sourceTree(t *testing.T, fs *vfs.FS) (d, f, g, keep uint64, fdata []byte) {
	r := rand.New(rand.NewPCG(1, 2))
	d = mkdir(t, fs, root, "d")
	fdata = randBytes(r, 3*extSize+100)
	f = writeFile(t, fs, d, "f", fdata)
	g = writeFile(t, fs, d, "g", []byte("small"))
	keep = writeFile(t, fs, root, "keep", []byte("kept"))
	return
}

func TestCloneFallsThroughAndCopiesNothing(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	d, f, g, _, fdata := sourceTree(t, src)
	c, _ := e.cloneOf("c", "p1")
	// The source changes after the pin: the clone never sees it.
	h := open(t, src, f, true)
	write(t, src, h, []byte("SOURCE-LATER"), 0)
	closeH(t, src, h)
	must(t, src.Unlink(ctx, d, "g"))
	writeFile(t, src, d, "new-in-source", []byte("x"))

	fs := c.engine()
	if got := names(t, fs, d); strings.Join(got, ",") != "f,g" {
		t.Fatalf("clone lists /d as %v, want f,g", got)
	}
	sameBytes(t, readFile(t, fs, f), fdata, "clone's /d/f")
	if got := readFile(t, fs, g); string(got) != "small" {
		t.Fatalf("clone's /d/g = %q", got)
	}
	if a := lookup(t, fs, d, "g"); a.Ino != g {
		t.Fatalf("clone's /d/g is inode %016x, want %016x", a.Ino, g)
	}
	if _, err := fs.Lookup(ctx, d, "new-in-source"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("the clone sees a name made in the source after the pin: %v", err)
	}
	// Nothing was copied: the clone has its header and nothing else of
	// inodes or extents.
	if ks := append(e.keysUnder("c/i/"), e.keysUnder("c/d/")...); len(ks) != 0 {
		t.Fatalf("reading a clone wrote objects: %v", ks)
	}
	// The source is untouched by the clone and still sees its own change.
	got := readFile(t, src, f)
	if !bytes.HasPrefix(got, []byte("SOURCE-LATER")) {
		t.Fatalf("source's /d/f lost its later change")
	}
}

func TestCloneCopyUpNumberingAndOrigins(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	_, f, _, _, fdata := sourceTree(t, src)
	srcVer := e.versions(f)[0]
	srcRefs := e.newest(f).Extents
	c, _ := e.cloneOf("c", "p1")
	fs := c.engine()
	// Change bytes of extent 1 only.
	h := open(t, fs, f, true)
	write(t, fs, h, []byte("CLONE"), extSize+7)
	closeH(t, fs, h)
	want := append([]byte(nil), fdata...)
	copy(want[extSize+7:], "CLONE")

	vs := c.versions(f)
	if len(vs) != 1 || vs[0] != srcVer+1 {
		t.Fatalf("clone's versions of f: %v, want exactly [%d] (the source's %d + 1)", vs, srcVer+1, srcVer)
	}
	n := c.newest(f)
	if len(n.Extents) != len(srcRefs) {
		t.Fatalf("clone's f has %d extents, want %d", len(n.Extents), len(srcRefs))
	}
	for i, x := range n.Extents {
		if x.Index == 1 {
			if x.Origin != 0 {
				t.Errorf("the rewritten extent has origin %d, want 0 (own)", x.Origin)
			}
			if len(e.keysUnder(c.vol.Keys.Extent(f, x.EID))) != 1 {
				t.Errorf("the rewritten extent is not under the clone's prefix")
			}
			continue
		}
		own := x
		own.Origin = 0 // the same reference as the source's, checksums included
		if x.Origin != 1 || own != srcRefs[i] {
			t.Errorf("extent %d: %+v, want the source's %+v with origin 1", x.Index, x, srcRefs[i])
		}
	}
	if ks := e.keysUnder("c/d/"); len(ks) != 1 {
		t.Errorf("the clone holds %d extents, want 1 (the rewritten one): %v", len(ks), ks)
	}
	sameBytes(t, readFile(t, fs, f), want, "clone's f after its write")
	// Another host of the clone reads the same; the source is unchanged.
	sameBytes(t, readFile(t, c.engine(), f), want, "clone's f on a second host")
	sameBytes(t, readFile(t, e.engine(), f), fdata, "source's f")
	// A second write continues the clone's own numbering.
	h = open(t, fs, f, true)
	write(t, fs, h, []byte("AGAIN"), 0)
	closeH(t, fs, h)
	if vs := c.versions(f); vs[0] != srcVer+2 {
		t.Fatalf("clone's versions of f: %v", vs)
	}
}

func TestCloneDirectoryFirstVersionIsFull(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	d, _, _, _, _ := sourceTree(t, src)
	// Make /d's current version in the source a delta.
	writeFile(t, src, d, "h", nil)
	if n := e.newest(d); n.IsFull() {
		t.Fatalf("test setup: the source's /d is full, want a delta")
	}
	srcVer := e.versions(d)[0]
	c, _ := e.cloneOf("c", "p1")
	fs := c.engine()
	writeFile(t, fs, d, "x", []byte("1"))
	n := c.newest(d)
	if n.Version != srcVer+1 || !n.IsFull() {
		t.Fatalf("the clone's first version of /d: v%d base %d, want v%d full", n.Version, n.Base, srcVer+1)
	}
	if got := len(n.Entries); got != 4 { // f g h x
		t.Fatalf("the clone's full /d holds %d entries, want 4", got)
	}
	writeFile(t, fs, d, "y", []byte("2"))
	if n := c.newest(d); n.Base != srcVer+1 || n.Version != srcVer+2 {
		t.Fatalf("the clone's second version of /d: v%d base %d, want a delta on v%d", n.Version, n.Base, srcVer+1)
	}
	if got := strings.Join(names(t, c.engine(), d), ","); got != "f,g,h,x,y" {
		t.Fatalf("a second clone host lists /d as %s", got)
	}
	if got := strings.Join(names(t, e.engine(), d), ","); got != "f,g,h" {
		t.Fatalf("the source lists /d as %s", got)
	}
}

func TestCloneTombstoneHidesSourceInode(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	d, f, g, keep, _ := sourceTree(t, src)
	c, _ := e.cloneOf("c", "p1")
	fs := c.engine()
	must(t, fs.Unlink(ctx, d, "g"))
	must(t, fs.Unlink(ctx, root, "keep"))
	if n := c.newest(g); n.Kind != format.KindTombstone {
		t.Fatalf("unlinking a source file in the clone wrote %s, want a tombstone", n.Kind)
	}
	other := c.engine()
	for _, id := range []uint64{g, keep} {
		if _, err := other.GetAttr(ctx, id); !errors.Is(err, vfs.ErrNotExist) {
			t.Fatalf("a tombstone in the clone does not hide the source's inode %016x: %v", id, err)
		}
	}
	if got := strings.Join(names(t, other, root), ","); got != "d" {
		t.Fatalf("clone's root lists %s", got)
	}
	if _, err := other.GetAttr(ctx, f); err != nil {
		t.Fatal(err)
	}
	// The source still has both.
	s2 := e.engine()
	lookup(t, s2, d, "g")
	lookup(t, s2, root, "keep")
}

func TestCloneNewInodeIDsAvoidSourceIDs(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	_, f, _, _, _ := sourceTree(t, src)
	c, _ := e.cloneOf("c", "p1")
	fs := c.engine()
	if taken, err := fs.TakenBelow(f); err != nil || !taken {
		t.Fatalf("TakenBelow(source inode) = %v, %v; want true", taken, err)
	}
	if taken, err := fs.TakenBelow(0x0123456789abcdef); err != nil || taken {
		t.Fatalf("TakenBelow(unused id) = %v, %v; want false", taken, err)
	}
	if taken, err := src.TakenBelow(f); err != nil || taken {
		t.Fatalf("a volume that is not a clone checks nothing: %v, %v", taken, err)
	}
	id := writeFile(t, fs, root, "new", []byte("n"))
	if len(e.keysUnder(e.vol.Keys.InodeDir(id))) != 0 {
		t.Fatalf("the clone's new inode id is used in the source")
	}
}

func TestCloneAsOf(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	_, f, _, _, fdata := sourceTree(t, src)
	c, _ := e.cloneOf("c", "p1")
	fs := c.engine()
	sameBytes(t, readFile(t, fs, f), fdata, "clone's f")
	before, err := e.store.Now(ctx)
	must(t, err)
	h := open(t, fs, f, true)
	write(t, fs, h, []byte("LATER"), 0)
	closeH(t, fs, h)
	x := c.engine(func(o *vfs.Options) { o.AsOf = before })
	sameBytes(t, readFile(t, x, f), fdata, "clone as of before its write (falls through)")
	after, err := e.store.Now(ctx)
	must(t, err)
	y := c.engine(func(o *vfs.Options) { o.AsOf = after })
	if got := readFile(t, y, f); !bytes.HasPrefix(got, []byte("LATER")) {
		t.Fatalf("clone as of after its write does not show it")
	}
	// A snapshot of the clone, mounted by name's time, is the same.
	p, err := snapshot.Create(ctx, e.used, c.vol.Keys, "cs")
	must(t, err)
	z := c.engine(func(o *vfs.Options) { o.AsOf = p.Time })
	if got := readFile(t, z, f); !bytes.HasPrefix(got, []byte("LATER")) {
		t.Fatalf("clone's snapshot does not show its write")
	}
}

func TestCloneOfClone(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	d, f, g, _, fdata := sourceTree(t, src)
	c1, _ := e.cloneOf("c1", "p1")
	fs1 := c1.engine()
	h := open(t, fs1, f, true)
	write(t, fs1, h, []byte("C1"), 2*extSize)
	closeH(t, fs1, h)
	want1 := append([]byte(nil), fdata...)
	copy(want1[2*extSize:], "C1")
	c2, _ := c1.cloneOf("c2", "p2")
	if c2.vol.Header.Depth() != 2 || len(c2.vol.Chain) != 2 {
		t.Fatalf("clone of a clone: depth %d, chain %d", c2.vol.Header.Depth(), len(c2.vol.Chain))
	}
	fs2 := c2.engine()
	sameBytes(t, readFile(t, fs2, f), want1, "clone of clone reads through both levels")
	if got := readFile(t, fs2, g); string(got) != "small" {
		t.Fatalf("clone of clone's g = %q", got)
	}
	h = open(t, fs2, f, true)
	write(t, fs2, h, []byte("C2"), 0)
	closeH(t, fs2, h)
	want2 := append([]byte(nil), want1...)
	copy(want2, "C2")
	n := c2.newest(f)
	origins := map[uint64]uint8{}
	for _, x := range n.Extents {
		origins[x.Index] = x.Origin
	}
	if origins[0] != 0 || origins[1] != 2 || origins[2] != 1 || origins[3] != 2 {
		t.Fatalf("origins in the clone of a clone: %v, want 0:0 1:2 2:1 3:2", origins)
	}
	sameBytes(t, readFile(t, c2.engine(), f), want2, "clone of clone after its write")
	sameBytes(t, readFile(t, c1.engine(), f), want1, "the middle clone is unchanged")
	sameBytes(t, readFile(t, e.engine(), f), fdata, "the source is unchanged")
	writeFile(t, fs2, d, "z", nil)
	if got := strings.Join(names(t, c2.engine(), d), ","); got != "f,g,z" {
		t.Fatalf("clone of clone lists /d as %s", got)
	}
}

func TestCloneDepthIsBounded(t *testing.T) {
	e := newEnv(t)
	e.engine()
	cur := e
	for i := 1; i <= format.MaxCloneDepth; i++ {
		cur, _ = cur.cloneOf("c"+string(rune('0'+i)), "p")
	}
	if cur.vol.Header.Depth() != format.MaxCloneDepth {
		t.Fatalf("depth %d", cur.vol.Header.Depth())
	}
	cur.engine() // the deepest chain still mounts
	srcVol, err := volume.Open(ctx, cur.used, cur.url, false)
	must(t, err)
	_, err = volume.FormatClone(ctx, cur.used, volume.URL{Bucket: "bkt", Prefix: "too-deep"}, srcVol, "p", time.Now(), 0)
	wantErr(t, err, volume.ErrTooDeep, "a clone deeper than MaxCloneDepth")
}

func TestCloneChainIsChecked(t *testing.T) {
	e := newEnv(t)
	e.engine()
	c, _ := e.cloneOf("c", "p1")
	// The pin gone: the clone refuses to open rather than read a source
	// its reaper may have collected.
	must(t, snapshot.Delete(ctx, e.used, e.vol.Keys, "p1"))
	_, err := volume.Open(ctx, c.used, c.url, false)
	wantErr(t, err, volume.ErrBadChain, "clone whose source pin is gone")
	// A source in another bucket needs a way to reach it.
	other := memstore.New("other")
	_, err = volume.FormatClone(ctx, other, volume.URL{Bucket: "other", Prefix: "x"}, e.vol, "p2", time.Now(), 0)
	must(t, err)
	_, err = volume.Open(ctx, other, volume.URL{Bucket: "other", Prefix: "x"}, false)
	wantErr(t, err, volume.ErrBadChain, "clone in another bucket without a store opener")
}

func TestUnknownFeatureRefused(t *testing.T) {
	e := newEnv(t)
	h := *e.vol.Header
	h.Features = 1 << 5
	obj := rawHeaderWithFeatures(t, &h)
	_, err := e.store.Put(ctx, "w/volume", obj)
	must(t, err)
	_, err = volume.Open(ctx, e.used, volume.URL{Bucket: "bkt", Prefix: "w"}, false)
	wantErr(t, err, format.ErrUnsupported, "a header with an unknown feature bit")
}

// rawHeaderWithFeatures encodes h with any features (EncodeVolume refuses
// unknown ones): a valid header, then its features field patched.
func rawHeaderWithFeatures(t *testing.T, h *format.Volume) []byte {
	feat := h.Features
	h.Features = 0
	obj, err := format.EncodeVolume(h)
	must(t, err)
	p, err := format.Open(format.KindVolume, obj)
	must(t, err)
	p = append(p[:len(p)-1], byte(feat)) // features is the last field, one byte
	return format.Seal(format.KindVolume, p)
}

// FORMAT.md §16.2: a level whose versions of an inode are all newer than
// its time is passed through; a level whose visible version is corrupt is
// read back to an older readable one there, and never passed through.
func TestCloneLevelsPassThroughAndCorruption(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	_, f, g, _, fdata := sourceTree(t, src)
	h := open(t, src, f, true)
	write(t, src, h, []byte("V-LATEST"), 0) // f's newest before the pin
	closeH(t, src, h)
	want := append([]byte(nil), fdata...)
	copy(want, "V-LATEST")
	c1, _ := e.cloneOf("c1", "p1")
	c2, _ := c1.cloneOf("c2", "p2")
	// c1 changes f and g only after c2's pin: c2 passes c1 through.
	fs1 := c1.engine()
	h = open(t, fs1, f, true)
	write(t, fs1, h, []byte("C1-LATER"), 0)
	closeH(t, fs1, h)
	must(t, fs1.Unlink(ctx, lookup(t, fs1, root, "d").Ino, "g"))
	fs2 := c2.engine()
	sameBytes(t, readFile(t, fs2, f), want, "c2 passes through c1's later versions")
	if got := readFile(t, fs2, g); string(got) != "small" {
		t.Fatalf("c2 sees c1's later tombstone of g: %q", got)
	}

	// The source's version of f visible at the pin is corrupt: an older
	// one is read there.
	vs := e.versions(f)
	if len(vs) < 2 {
		t.Fatalf("test setup: f has versions %v", vs)
	}
	key := e.vol.Keys.Inode(f, vs[0])
	good, _, err := e.store.Get(ctx, key)
	must(t, err)
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 0xff
	_, err = e.store.Put(ctx, key, bad)
	must(t, err)
	c3, _ := e.cloneOf("c3", "p3")
	if got := readFile(t, c3.engine(), f); !bytes.Equal(got, fdata) {
		t.Fatalf("with its newest version corrupt the clone does not read the older one")
	}
	if !strings.Contains(e.log.String(), "skipping corrupt inode version of a clone's source") {
		t.Errorf("the corrupt source version was not logged")
	}
	// Every version of f in the source corrupt: EIO, never a fall-through.
	for _, v := range vs {
		k := e.vol.Keys.Inode(f, v)
		obj, _, err := e.store.Get(ctx, k)
		must(t, err)
		obj[len(obj)/2] ^= 0x55
		_, err = e.store.Put(ctx, k, obj)
		must(t, err)
	}
	c4, _ := e.cloneOf("c4", "p4")
	_, err = c4.engine().GetAttr(ctx, f)
	wantErr(t, err, vfs.ErrCorrupt, "a clone whose source's versions of f are all corrupt")
}

// A file a clone reads from its source, held open, holds back nothing of
// the clone (its versions and extents are the source's, which the source
// keeps for the pin): the host's ping announces no oldest instant for it.
// (It announced the clone's creation, which kept the clone's reaper from
// collecting anything for as long as the file stayed open.) A file of
// the clone's own still holds its version.
func TestCloneFallThroughHoldsNothing(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	_, _, _, keep, _ := sourceTree(t, src)
	c, _ := e.cloneOf("c", "p1")
	a := c.engine()
	h := open(t, a, keep, false)
	if held := a.OldestHeld(); !held.IsZero() {
		t.Fatalf("a file read from the source holds the clone at %s", held)
	}
	// Changed in the clone by another host: the open handle still reads
	// the source's version, and still holds nothing of the clone.
	b := c.engine()
	hb := open(t, b, keep, true)
	write(t, b, hb, []byte("changed in the clone"), 0)
	closeH(t, b, hb)
	if _, err := a.GetAttr(ctx, keep); err != nil {
		t.Fatal(err)
	}
	page, err := e.store.List(ctx, c.vol.Keys.InodeDir(keep), "", 1)
	must(t, err)
	if len(page.Objects) != 1 {
		t.Fatal("the clone holds no version of the changed file")
	}
	if held := a.OldestHeld(); !held.IsZero() && held.Before(page.Objects[0].LastModified) {
		t.Fatalf("a handle on the source's version holds the clone at %s, before its first own version (%s)", held, page.Objects[0].LastModified)
	}
	closeH(t, a, h)
	// A file of the clone's own holds its version's time.
	hf := open(t, a, keep, false)
	if held, want := a.OldestHeld(), hf.VersionTime(); held.IsZero() || !held.Equal(want) {
		t.Fatalf("a file of the clone's own holds %s, want its version's time %s", held, want)
	}
	closeH(t, a, hf)
}

// A key under a clone's inode prefix that is not a version key (FORMAT
// §2.2: not an s3gfs object) does not stop the inode from falling through
// to the source: it was read as an inode with no readable version (EIO).
func TestCloneStrayKeyFallsThrough(t *testing.T) {
	e := newEnv(t)
	src := e.engine()
	_, _, _, keep, _ := sourceTree(t, src)
	c, _ := e.cloneOf("c", "p1")
	e.plant(c.vol.Keys.InodeDir(keep)+"0", []byte("stray"))
	fs := c.engine()
	if got := readFile(t, fs, lookup(t, fs, root, "keep").Ino); string(got) != "kept" {
		t.Fatalf("the clone reads %q", got)
	}
}
