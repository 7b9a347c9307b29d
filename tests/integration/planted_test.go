package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// reseal recomputes the trailing CRC-32C of an envelope whose bytes were
// edited, so that only the edited field (not the checksum) is wrong.
func reseal(obj []byte) []byte {
	out := append([]byte(nil), obj[:len(obj)-4]...)
	return binary.LittleEndian.AppendUint32(out, format.Checksum(out))
}

// inodeKindOffset is the offset of the kind byte of an inode object:
// envelope header, id (u64), version (uvarint).
func inodeKindOffset(n *format.Inode) int {
	return 8 + 8 + len(binary.AppendUvarint(nil, n.Version))
}

// badInode is one way to spoil the object of an inode version, given its
// valid object, the decoded version and a valid object of another inode.
type badInode struct {
	name string
	make func(cur []byte, n *format.Inode, other []byte) []byte
}

var badInodes = []badInode{
	{"truncated", func(cur []byte, _ *format.Inode, _ []byte) []byte { return cur[:len(cur)/2] }},
	{"empty", func([]byte, *format.Inode, []byte) []byte { return []byte{} }},
	{"garbage", func([]byte, *format.Inode, []byte) []byte {
		return bytes.Repeat([]byte("not an s3gfs object \x00\xff"), 20)
	}},
	{"flipped-bit", func(cur []byte, _ *format.Inode, _ []byte) []byte {
		b := append([]byte(nil), cur...)
		b[len(b)/2] ^= 0x10
		return b
	}},
	{"future-version", func(cur []byte, _ *format.Inode, _ []byte) []byte {
		b := append([]byte(nil), cur...)
		b[5] = format.Version + 1
		return reseal(b)
	}},
	{"unknown-flags", func(cur []byte, _ *format.Inode, _ []byte) []byte {
		b := append([]byte(nil), cur...)
		b[6] = 0x01
		return reseal(b)
	}},
	{"unknown-inode-kind", func(cur []byte, n *format.Inode, _ []byte) []byte {
		b := append([]byte(nil), cur...)
		b[inodeKindOffset(n)] = 9
		return reseal(b)
	}},
	{"wrong-object-kind", func(cur []byte, _ *format.Inode, _ []byte) []byte {
		b := append([]byte(nil), cur...)
		b[4] = byte(format.KindExtent)
		return reseal(b)
	}},
	{"other-inode", func(_ []byte, _ *format.Inode, other []byte) []byte { return other }},
	{"oversized-inline", func(_ []byte, n *format.Inode, _ []byte) []byte {
		// Inline data one byte over the format's 64 KiB bound: encode the
		// largest valid inline file, then lengthen its data by one byte.
		big := *n
		big.Inline, big.Extents = true, nil
		big.Data = bytes.Repeat([]byte{'x'}, format.MaxInlineLimit)
		big.Size = uint64(len(big.Data))
		obj, err := format.EncodeInode(&big)
		if err != nil {
			panic(err)
		}
		lenField := binary.AppendUvarint(nil, format.MaxInlineLimit)
		i := bytes.LastIndex(obj, append(lenField, 'x'))
		out := append([]byte(nil), obj[:i]...)
		out = binary.AppendUvarint(out, format.MaxInlineLimit+1)
		out = append(out, obj[i+len(lenField):len(obj)-4]...)
		out = append(out, 'x', 0, 0, 0, 0)
		return reseal(out)
	}},
}

// badExtent is one way to spoil an extent object, given its valid one.
type badExtent struct {
	name string
	make func(cur []byte) []byte
}

var badExtents = []badExtent{
	{"truncated", func(cur []byte) []byte { return cur[:len(cur)-100] }},
	{"empty", func([]byte) []byte { return nil }},
	{"garbage", func(cur []byte) []byte { return bytes.Repeat([]byte{0xa5}, len(cur)) }},
	{"flipped-bit", func(cur []byte) []byte {
		b := append([]byte(nil), cur...)
		b[len(b)/3] ^= 0x01
		return b
	}},
	{"oversized", func(cur []byte) []byte {
		// Longer than the volume's extent size, validly sealed.
		return format.EncodeExtent(bytes.Repeat([]byte{7}, testExtentSize+4096))
	}},
	{"huge", func(cur []byte) []byte {
		// Beyond the largest extent size any volume may have (readers
		// fetch no more than the reference allows, plus one byte).
		return bytes.Repeat([]byte{9}, format.MaxExtentSize+1<<20)
	}},
	{"future-version", func(cur []byte) []byte {
		b := append([]byte(nil), cur...)
		b[5] = format.Version + 1
		return reseal(b)
	}},
}

// TestPlantedBadObjects plants, in a volume mounted through FUSE on the
// real S3 server, every kind of bad object a bucket can hold: inode
// versions truncated, empty, garbage, damaged, of a future format version,
// with unknown flags or an unknown kind, of another kind or inode, or over
// the format's bounds; the same for extents and for a directory; keys of
// the wrong shape under i/, d/, h/, s/ and settings/; and foreign objects.
// Then:
//   - the mount (fresh, nothing cached) answers EIO for exactly the
//     affected files, with an error line naming the key, and every other
//     file keeps working, reads and writes;
//   - `s3gfs gc` finishes, deletes the garbage of the healthy files, lists
//     the bad objects as problems, and deletes none of them (nor any
//     foreign object);
//   - `s3gfs fsck` names every bad object with what is wrong with it,
//     reports the foreign keys as warnings, and exits 1.
func TestPlantedBadObjects(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	c := newCLI(t, t.TempDir())
	m := mountVolume(t, mountOpts{VFS: vfs.Options{SyncInterval: 300 * time.Millisecond, HostExpiry: 2 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rng := newDiffGen(8).rng

	// The healthy part of the volume, and garbage the reaper may delete.
	good := map[string][]byte{
		"good/small": []byte("small and inline"),
		"good/big":   randBytes(rng, 2*testExtentSize+99),
		"good/sub/c": []byte("in a subdirectory"),
	}
	must(t, "mkdir", os.MkdirAll(m.path("good/sub"), 0o755))
	for name, data := range good {
		must(t, "write "+name, os.WriteFile(m.path(name), data, 0o644))
		must(t, "rewrite "+name, os.WriteFile(m.path(name), data, 0o644)) // a superseded version
	}
	must(t, "symlink", os.Symlink("sub/c", m.path("good/link")))
	must(t, "write trash", os.WriteFile(m.path("trash"), randBytes(rng, testExtentSize+5), 0o644))
	trashID := statT(t, m.path("trash")).Ino
	must(t, "unlink trash", os.Remove(m.path("trash")))

	// Victims: one file per bad inode, one per bad extent, one directory.
	inodeVictim := map[string]uint64{}
	for _, b := range badInodes {
		p := m.path("vi-" + b.name)
		// Written twice: a file created by a born put (FORMAT.md §5.4)
		// has no version 1 object, and gc reads (and so reports) the
		// newest version of an inode only when it has older ones to
		// judge.
		must(t, "write victim", os.WriteFile(p, []byte("victim "+b.name), 0o644))
		must(t, "rewrite victim", os.WriteFile(p, []byte("victim "+b.name), 0o644))
		inodeVictim[b.name] = statT(t, p).Ino
	}
	extentData := map[string][]byte{}
	extentVictim := map[string]uint64{}
	for _, b := range badExtents {
		data := randBytes(rng, 3*testExtentSize)
		p := m.path("ve-" + b.name)
		must(t, "write victim", os.WriteFile(p, data, 0o644))
		extentData[b.name], extentVictim[b.name] = data, statT(t, p).Ino
	}
	must(t, "mkdir victim", os.Mkdir(m.path("vdir"), 0o755))
	must(t, "write in victim dir", os.WriteFile(m.path("vdir/f"), []byte("under a bad directory"), 0o644))
	vdirID := statT(t, m.path("vdir")).Ino
	goodSmallID := statT(t, m.path("good/small")).Ino
	goodBigID := statT(t, m.path("good/big")).Ino
	m.unmount()

	// Plant. Every version of an inode victim is replaced (so no older
	// good version can stand in for it), and extent 1 of each extent
	// victim.
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := m.Store.Put(ctx, key, body); err != nil {
			t.Fatalf("plant %s: %v", key, err)
		}
	}
	versions := func(id uint64) []string {
		t.Helper()
		page, err := m.Store.List(ctx, m.Vol.Keys.InodeDir(id), "", 1000)
		must(t, "list versions", err)
		var keys []string
		for _, o := range page.Objects {
			keys = append(keys, o.Key)
		}
		return keys
	}
	damaged := map[string]string{} // key -> what fsck must say of it (a regexp)
	otherObj, _, err := m.Store.Get(ctx, m.Vol.Keys.Inode(goodSmallID, newestVersion(t, m, goodSmallID)))
	must(t, "get other", err)
	for _, b := range badInodes {
		id := inodeVictim[b.name]
		cur, _, err := m.Store.Get(ctx, m.Vol.Keys.Inode(id, newestVersion(t, m, id)))
		must(t, "get victim", err)
		n, err := format.DecodeInode(cur, m.Vol.Header.ExtentSize)
		must(t, "decode victim", err)
		bad := b.make(cur, n, otherObj)
		if _, err := format.DecodeInode(bad, m.Vol.Header.ExtentSize); err == nil && b.name != "other-inode" {
			t.Fatalf("%s: the planted object decodes", b.name)
		}
		for _, k := range versions(id) {
			put(k, bad)
			damaged[k] = `corrupt|unsupported|holds inode`
		}
	}
	for _, b := range badExtents {
		id := extentVictim[b.name]
		var key string
		for _, x := range newestInode(t, m, id).Extents {
			if x.Index == 1 {
				key = m.Vol.Keys.Extent(id, x.EID)
			}
		}
		if key == "" {
			t.Fatalf("victim %s has no extent 1", b.name)
		}
		cur, _, err := m.Store.Get(ctx, key)
		must(t, "get extent", err)
		put(key, b.make(cur))
		damaged[key] = `corrupt|unsupported`
		if b.name == "oversized" || b.name == "huge" {
			damaged[key] = `larger than`
		}
	}
	for _, k := range versions(vdirID) {
		put(k, []byte("garbage where a directory was"))
		damaged[k] = `corrupt`
	}
	// A pin with a valid name but garbage inside: honoured as a pin by the
	// reaper, damage to fsck.
	pinKey := m.Vol.Keys.Snapshot("garbage-pin")
	put(pinKey, []byte("not a pin"))
	damaged[pinKey] = `corrupt`

	// Keys that are not s3gfs's (FORMAT §2.2, §15.4 G9), some inside the
	// key space of healthy inodes, and foreign objects next to them.
	P := m.Vol.Keys.Prefix()
	strays := []string{
		P + "i/NOT-HEX-AT-ALL/fffffffffffffffe",
		P + "i/0000000000000000/fffffffffffffffe",                 // id 0
		fmt.Sprintf("%si/%016x/ffffffffffffffff", P, goodSmallID), // version 0
		fmt.Sprintf("%si/%016x/0", P, goodSmallID),                // sorts before every version
		fmt.Sprintf("%si/%016X/fffffffffffffffe", P, goodBigID|0xa<<60),
		P + "d/zz",
		fmt.Sprintf("%sd/%016x/NOTHEX", P, goodBigID),
		fmt.Sprintf("%sd/%016x/0000000000000001/extra", P, goodBigID),
		P + "h/junk",
		P + "h/0000000000000000/x",
		P + "s/.hidden",
		P + "s/a/b",
		P + "settings/FFFFFFFFFFFFFFFE", // uppercase: sorts before every settings version
		P + "settings/xyz",
	}
	foreign := []string{P + "other/file", P + "volume.bak", P + "notes.txt", P + "i.txt", P + "reaperx"}
	for _, k := range append(append([]string(nil), strays...), foreign...) {
		put(k, []byte("not s3gfs's: "+k))
	}
	planted := listAll(t, ctx, m.Store) // every key and ETag, before gc

	// 1. The mount.
	m.mount()
	for name, data := range good {
		wantFile(t, m.path(name), data)
	}
	if tg, err := os.Readlink(m.path("good/link")); err != nil || tg != "sub/c" {
		t.Errorf("readlink good/link: %q, %v", tg, err)
	}
	for _, b := range badInodes {
		p := m.path("vi-" + b.name)
		_, err := os.Stat(p)
		wantErrno(t, b.name+": stat", err, syscall.EIO)
		_, err = os.ReadFile(p)
		wantErrno(t, b.name+": read", err, syscall.EIO)
		for _, k := range versions(inodeVictim[b.name]) {
			wantErrorLine(t, m, k)
		}
	}
	for _, b := range badExtents {
		id := extentVictim[b.name]
		p := m.path("ve-" + b.name)
		f, err := os.Open(p)
		must(t, b.name+": open", err)
		buf := make([]byte, testExtentSize)
		_, err = f.ReadAt(buf, testExtentSize)
		wantErrno(t, b.name+": read of the bad extent", err, syscall.EIO)
		_, err = f.ReadAt(buf, 0)
		wantContent(t, b.name+": read of extent 0", buf, err, extentData[b.name][:testExtentSize])
		_, err = f.ReadAt(buf, 2*testExtentSize)
		wantContent(t, b.name+": read of extent 2", buf, err, extentData[b.name][2*testExtentSize:])
		f.Close()
		for _, x := range newestInode(t, m, id).Extents {
			if x.Index == 1 {
				wantErrorLine(t, m, m.Vol.Keys.Extent(id, x.EID))
			}
		}
	}
	_, err = os.Stat(m.path("vdir/f"))
	wantErrno(t, "stat under the bad directory", err, syscall.EIO)
	_, err = os.ReadDir(m.path("vdir"))
	wantErrno(t, "readdir of the bad directory", err, syscall.EIO)
	// The namespace keeps working around them.
	names := readDirNames(t, m.Dir)
	if len(names) != 2+len(badInodes)+len(badExtents) {
		t.Errorf("root lists %d names: %q", len(names), names)
	}
	fresh := []byte("written after the plants")
	must(t, "write new", os.WriteFile(m.path("good/new"), fresh, 0o644))
	must(t, "rename", os.Rename(m.path("good/new"), m.path("good/sub/new")))
	good["good/sub/new"] = fresh
	// A few syncs meet the bad pings, and every lookup of good/small the
	// stray key under its prefix: each is logged once, not every time.
	// Then the volume is still whole after a remount.
	time.Sleep(3 * time.Second)
	for _, k := range []string{P + "h/junk", P + "h/0000000000000000/x", fmt.Sprintf("%si/%016x/0", P, goodSmallID)} {
		if n := len(regexp.MustCompile(`key=`+regexp.QuoteMeta(k)+`(\s|$)`).FindAllString(m.Log.String(), -1)); n != 1 {
			t.Errorf("the mount logged %s %d times in 3 s, want once", k, n)
		}
	}
	m.remount()
	for name, data := range good {
		wantFile(t, m.path(name), data)
	}
	m.unmount()

	// 2. gc: deletes the garbage of the healthy files (once older than its
	// grace: twice the host expiry + 5 s), keeps every bad object.
	u := m.URL.String()
	var r result
	var deletedAll strings.Builder // what every pass deleted: not all in one pass
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r = c.run(t, 2*time.Minute, "", "gc", "--endpoint", c.srv.Endpoint, "--grace", "1ms", "-v", u)
		if r.code != 0 {
			t.Fatalf("gc failed: %v", r)
		}
		deletedAll.WriteString(r.stdout)
		if strings.Contains(r.stdout, fmt.Sprintf("i/%016x/", trashID)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(3 * time.Second)
	}
	if !strings.Contains(deletedAll.String(), fmt.Sprintf("i/%016x/", trashID)) {
		t.Errorf("gc never deleted the unlinked file's versions:\n%s", deletedAll.String())
	}
	if !strings.Contains(deletedAll.String(), fmt.Sprintf("deleted version %si/%016x/", P, goodSmallID)) {
		t.Errorf("gc deleted no superseded version of good/small:\n%s", deletedAll.String())
	}
	for k := range damaged {
		// gc reads only the versions it would keep: it names the newest
		// bad version of each inode, and keeps all of that inode.
		if strings.HasPrefix(k, P+"i/") && !strings.Contains(r.stdout, k[:len(k)-16]) {
			t.Errorf("gc does not report the bad inode of %s as a problem", k)
		}
	}
	for _, k := range strays {
		if !strings.HasPrefix(k, P+"s/") && !strings.HasPrefix(k, P+"settings/") && !strings.Contains(r.stdout, k+": not an s3gfs key") {
			t.Errorf("gc does not report %s as not s3gfs's", k)
		}
	}
	after := listAll(t, ctx, m.Store)
	for k := range damaged {
		if after[k] != planted[k] {
			t.Errorf("gc deleted or changed the bad object %s", k)
		}
	}
	for _, k := range append(append([]string(nil), strays...), foreign...) {
		if after[k] != planted[k] {
			t.Errorf("gc deleted or changed %s, which is not s3gfs's", k)
		}
	}

	// 3. fsck: every bad object named, with what is wrong; exit 1.
	r = c.run(t, 2*time.Minute, "", "fsck", "--endpoint", c.srv.Endpoint, "-v", u)
	if r.code != 1 {
		t.Errorf("fsck: exit %d, want 1", r.code)
	}
	lines := strings.Split(r.stdout, "\n")
	named := func(prefix, key, what string) bool {
		re := regexp.MustCompile(`(?i)` + what)
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) && strings.Contains(l, key) && re.MatchString(l) {
				return true
			}
		}
		return false
	}
	for k, what := range damaged {
		if !named("DAMAGE: ", k, what) {
			t.Errorf("fsck does not report %s as damage (%s)", k, what)
		}
	}
	for _, k := range append(append([]string(nil), strays...), foreign...) {
		if !named("warning: ", k, `not an s3gfs`) {
			t.Errorf("fsck does not warn of %s", k)
		}
	}
	notOurs := append(append([]string(nil), strays...), foreign...)
	for _, l := range lines {
		if strings.HasPrefix(l, "warning: ") && !slices.ContainsFunc(notOurs, func(k string) bool { return strings.Contains(l, k+":") }) {
			t.Errorf("fsck warns of something that was not planted: %s", l)
		}
	}
	for name := range good {
		if strings.Contains(r.stdout, name) {
			t.Errorf("fsck mentions the healthy %s", name)
		}
	}
}

// TestBadVolumeHeader: a volume header of a future format version, with an
// unknown feature bit, truncated or garbage is refused by mount, gc and
// fsck with a message naming the volume and what is wrong, and nothing is
// mounted or written.
func TestBadVolumeHeader(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	c := newCLI(t, t.TempDir())
	store := testenv.S3(t).NewBucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	valid := func() []byte {
		h := &format.Volume{ExtentSize: format.MinExtentSize, InlineLimit: 4096}
		obj, err := format.EncodeVolume(h)
		must(t, "encode header", err)
		return obj
	}
	withFeature := func() []byte {
		// Features is the last field: its uvarint 0 becomes 1<<5.
		b := valid()
		b[len(b)-5] = 1 << 5
		return reseal(b)
	}
	future := func() []byte {
		b := valid()
		b[5] = format.Version + 1
		return reseal(b)
	}
	cases := []struct {
		name string
		obj  []byte
		want string
	}{
		{"future-version", future(), `format version 2.*reads version 1|unsupported`},
		{"unknown-feature", withFeature(), `unknown features 0x20`},
		{"truncated", valid()[:20], `corrupt`},
		{"garbage", []byte("this is not a volume header at all"), `corrupt`},
		{"inode-object", func() []byte {
			obj, err := format.EncodeInode(&format.Inode{ID: 1, Version: 1, Kind: format.KindDir, Mode: 0o755, Base: 1})
			must(t, "encode", err)
			return obj
		}(), `expected a volume object`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := volume.URL{Bucket: store.Bucket(), Prefix: tc.name}
			keys, err := format.NewKeys(u.Prefix)
			must(t, "keys", err)
			if _, err := store.Put(ctx, keys.Volume(), tc.obj); err != nil {
				t.Fatal(err)
			}
			mnt := t.TempDir()
			detachOnCleanup(t, mnt)
			re := regexp.MustCompile(`(?i)volume header of ` + regexp.QuoteMeta(u.String()) + `.*(` + tc.want + `)`)
			for _, args := range [][]string{
				{"mount", "--endpoint", c.srv.Endpoint, u.String(), mnt},
				{"mount", "--read-only", "--endpoint", c.srv.Endpoint, u.String(), mnt},
				{"gc", "--endpoint", c.srv.Endpoint, u.String()},
				{"fsck", "--endpoint", c.srv.Endpoint, u.String()},
			} {
				r := c.run(t, time.Minute, "", args...)
				if r.code == 0 || !re.MatchString(r.stderr) {
					t.Errorf("s3gfs %s: want a non-zero exit and an error matching %q, got %v", args[0], re, r)
				}
				if isMounted(mnt) {
					t.Fatalf("%s mounted despite a bad volume header", mnt)
				}
			}
			page, err := store.List(ctx, keys.Prefix(), "", 100)
			must(t, "list", err)
			if len(page.Objects) != 1 {
				var ks []string
				for _, o := range page.Objects {
					ks = append(ks, o.Key)
				}
				t.Errorf("the volume holds %q after refused commands, want only its header", ks)
			}
		})
	}
}
