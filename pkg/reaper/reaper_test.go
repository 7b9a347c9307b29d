package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

func cfg(retention, grace time.Duration) reaper.Config {
	return reaper.Config{Retention: retention, Grace: grace, Owner: "test"}
}

func mustGet(t *testing.T, fs *vfs.FS, path string, want []byte) {
	t.Helper()
	got, err := get(fs, path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if string(got) != string(want) {
		t.Fatalf("read %s: got %d bytes %q..., want %d bytes %q...", path, len(got), clip(string(got)), len(want), clip(string(want)))
	}
}

func (e *tenv) versionsOf(fs *vfs.FS, path string) []uint64 {
	e.t.Helper()
	id, err := lookup(fs, path)
	if err != nil {
		e.t.Fatal(err)
	}
	vs, err := reaper.Versions(ctx, e.vol, id)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []uint64
	for _, v := range vs {
		out = append(out, v.Version)
	}
	return out
}

func TestSupersededVersionsAndExtentsDeleted(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	for i := range 4 {
		put(t, fs, "d/a", data(byte('1'+i), 3*extSize+100))
		put(t, fs, "d/small", data(byte('a'+i), 10))
		e.advance(time.Hour)
	}
	before := len(e.store.Keys())
	e.advance(10 * time.Hour)
	r := e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindVersion] == 0 || r.Deleted[reaper.KindExtent] != 12 {
		t.Fatalf("deleted %v, want superseded versions and 12 extents", r.Deleted)
	}
	if after := len(e.store.Keys()); after >= before {
		t.Fatalf("%d objects before gc, %d after", before, after)
	}
	if got := e.count("d/"); got != 4 {
		t.Fatalf("%d extents left, want the newest version's 4", got)
	}
	if vs := e.versionsOf(fs, "d/a"); len(vs) != 1 {
		t.Fatalf("versions of d/a after gc: %v, want only the newest", vs)
	}
	mustGet(t, fs, "d/a", data('4', 3*extSize+100))
	mustGet(t, e.host(), "d/a", data('4', 3*extSize+100))
	mustGet(t, e.host(), "d/small", data('d', 10))
	e.fsck()
	// A second pass finds nothing more to do.
	if r := e.gc(cfg(0, time.Minute)); len(r.Deleted) != 0 {
		t.Fatalf("second pass deleted %v", r.Deleted)
	}
}

func TestVersionVisibleAtHorizonKept(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "f", data('1', 2*extSize))
	e.advance(time.Hour)
	put(t, fs, "f", data('2', 2*extSize))
	e.advance(4 * time.Hour)
	put(t, fs, "f", data('3', 2*extSize))
	now := e.advance(time.Hour) // t0+6h; the horizon is t0+4h
	r := e.gc(cfg(2*time.Hour, time.Minute))
	if !r.Horizon.Equal(now.Add(-2*time.Hour)) || !r.Recorded.Equal(r.Horizon) {
		t.Fatalf("horizon %v recorded %v, want %v", r.Horizon, r.Recorded, now.Add(-2*time.Hour))
	}
	// put makes two versions (truncate, write): the newest two, and the
	// one visible at the horizon.
	if vs := e.versionsOf(fs, "f"); len(vs) != 3 {
		t.Fatalf("versions of f: %v, want the one visible at the horizon and the newest two", vs)
	}
	for _, tc := range []struct {
		at   time.Time
		want byte
	}{{now.Add(-2 * time.Hour), '2'}, {now.Add(-90 * time.Minute), '2'}, {now.Add(-30 * time.Minute), '3'}, {now, '3'}} {
		v, err := e.asOf(tc.at)
		if err != nil {
			t.Fatal(err)
		}
		mustGet(t, v, "f", data(tc.want, 2*extSize))
		v.Close(ctx)
	}
	// Mounting before the horizon is refused, saying how far back it goes.
	err := snapshot.CheckAsOf(ctx, e.vol, now.Add(-3*time.Hour), false)
	if !errors.Is(err, snapshot.ErrTooOld) || !strings.Contains(err.Error(), r.Horizon.Format(time.RFC3339)) {
		t.Fatalf("as-of before the horizon: %v", err)
	}
	if err := snapshot.CheckAsOf(ctx, e.vol, r.Horizon, false); err != nil {
		t.Fatalf("as-of at the horizon: %v", err)
	}
	e.fsck()
	// The recorded horizon never moves back, even if retention grows.
	r2 := e.gc(cfg(100*time.Hour, time.Minute))
	if !r2.Recorded.Equal(r.Recorded) {
		t.Fatalf("recorded horizon moved from %v to %v", r.Recorded, r2.Recorded)
	}
}

func TestSnapshotKeepsItsVersionsUntilDeleted(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "f", data('1', extSize+1))
	put(t, fs, "gone", data('g', extSize+1))
	e.advance(time.Minute)
	pin, err := snapshot.Create(ctx, e.store, e.vol.Keys, "s1")
	if err != nil {
		t.Fatal(err)
	}
	e.advance(time.Minute)
	put(t, fs, "f", data('2', extSize+1))
	if err := fs.Unlink(ctx, format.RootID, "gone"); err != nil {
		t.Fatal(err)
	}
	e.advance(10 * time.Hour)
	e.gc(cfg(0, time.Minute))
	v, err := e.asOf(pin.Time)
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, v, "f", data('1', extSize+1))
	mustGet(t, v, "gone", data('g', extSize+1))
	v.Close(ctx)
	if err := snapshot.CheckAsOf(ctx, e.vol, pin.Time, true); err != nil {
		t.Fatalf("pinned time refused: %v", err)
	}
	e.fsck()
	extents := e.count("d/")
	if err := snapshot.Delete(ctx, e.store, e.vol.Keys, "s1"); err != nil {
		t.Fatal(err)
	}
	r := e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindTombstone] == 0 || e.count("d/") != extents-4 {
		t.Fatalf("after the snapshot's deletion: deleted %v, %d extents left of %d", r.Deleted, e.count("d/"), extents)
	}
	if vs := e.versionsOf(fs, "f"); len(vs) != 1 {
		t.Fatalf("versions of f: %v", vs)
	}
	e.fsck()
}

func TestHostsHoldTheHorizon(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "f", data('1', extSize))
	vs, _ := reaper.Versions(ctx, e.vol, mustLookup(t, fs, "f"))
	held := vs[0].Time // a host reads the newest version
	e.advance(time.Hour)
	put(t, fs, "f", data('2', extSize))
	e.advance(10 * time.Hour)
	e.plantPing(7, time.Minute, held) // live: written now
	r := e.gc(cfg(0, time.Minute))
	if r.LiveHosts != 1 || r.Horizon.After(held) || r.Grace != 2*time.Minute+5*time.Second {
		t.Fatalf("live host: horizon %v (want <= %v), grace %v, live %d", r.Horizon, held, r.Grace, r.LiveHosts)
	}
	// Kept: every version from the held one on, and the one before it.
	if vs := e.versionsOf(fs, "f"); len(vs) != 4 {
		t.Fatalf("a live host's oldest did not hold: versions %v", vs)
	}
	v, _ := e.asOf(held)
	mustGet(t, v, "f", data('1', extSize))
	v.Close(ctx)
	// A host with oldest 0 holds nothing.
	e.plantPing(8, time.Minute, time.Time{})
	// Once the ping lapses, the host holds nothing.
	e.advance(2 * time.Minute)
	r = e.gc(cfg(0, time.Minute))
	if r.LiveHosts != 0 || r.Deleted[reaper.KindVersion] == 0 {
		t.Fatalf("lapsed host: %+v", r)
	}
	if vs := e.versionsOf(fs, "f"); len(vs) != 1 {
		t.Fatalf("versions %v", vs)
	}
	if e.count("h/") != 2 {
		t.Fatal("a recently lapsed ping was deleted")
	}
	e.advance(2 * time.Hour) // lapsed for longer than 10 expiries and an hour
	r = e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindPing] != 2 || e.count("h/") != 0 {
		t.Fatalf("stale pings: deleted %v, %d left", r.Deleted, e.count("h/"))
	}
	// An unreadable young ping holds everything.
	put(t, fs, "f", data('3', extSize))
	e.advance(time.Hour)
	e.store.Put(ctx, e.vol.Keys.Ping(9), []byte("garbage"))
	r = e.gc(cfg(0, time.Minute))
	if !r.HoldAll || len(r.Deleted) != 0 || !strings.Contains(strings.Join(r.Problems, "\n"), e.vol.Keys.Ping(9)) {
		t.Fatalf("unreadable ping: %+v", r)
	}
}

func TestYoungExtentsAndProbesKept(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "f", data('1', extSize))
	id, _ := lookup(fs, "f")
	// An upload whose version is still in flight, and a stray probe.
	e.store.PutIfAbsent(ctx, e.vol.Keys.Extent(id, 0xabc), format.EncodeExtent([]byte("x")))
	e.store.PutIfAbsent(ctx, e.vol.Keys.Extent(0x1234, 0xdef), format.EncodeExtent([]byte("y")))
	e.store.PutIfAbsent(ctx, e.vol.Keys.Probe(5), []byte("p"))
	e.advance(30 * time.Second)
	r := e.gc(cfg(0, time.Minute))
	if len(r.Deleted) != 0 {
		t.Fatalf("young objects deleted: %v", r.Deleted)
	}
	e.advance(time.Minute)
	r = e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindExtent] != 2 || r.Deleted[reaper.KindProbe] != 1 {
		t.Fatalf("old unreferenced extents and probes: deleted %v", r.Deleted)
	}
	mustGet(t, e.host(), "f", data('1', extSize))
	e.fsck()
}

func TestDirectoryDeltaChainsKept(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	mkdirs(t, fs, "dir")
	want := map[string]string{"/dir": "<dir>"}
	for i := range 150 {
		name := fmt.Sprintf("dir/f%03d", i)
		put(t, fs, name, []byte(name))
		want["/"+name] = name
		if i%3 == 0 {
			e.advance(time.Minute)
		}
	}
	e.advance(10 * time.Hour)
	e.gc(cfg(0, time.Minute))
	vs, _ := reaper.Versions(ctx, e.vol, mustLookup(t, fs, "dir"))
	if len(vs) < 2 || len(vs) > format.MaxDeltaChain+1 {
		t.Fatalf("directory versions after gc: %d", len(vs))
	}
	got, err := tree(e.host())
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(got, want); d != "" {
		t.Fatal(d)
	}
	e.fsck()
}

func mustLookup(t *testing.T, fs *vfs.FS, path string) uint64 {
	t.Helper()
	id, err := lookup(fs, path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTombstonedInodesDropped(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "f", data('1', 2*extSize))
	put(t, fs, "f", data('2', 2*extSize))
	id := mustLookup(t, fs, "f")
	mkdirs(t, fs, "d/e")
	did := mustLookup(t, fs, "d/e")
	if err := fs.Unlink(ctx, format.RootID, "f"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rmdir(ctx, mustLookup(t, fs, "d"), "e"); err != nil {
		t.Fatal(err)
	}
	e.advance(30 * time.Second)
	r := e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindTombstone] != 0 {
		t.Fatalf("young tombstones dropped: %v", r.Deleted)
	}
	e.advance(time.Hour)
	r = e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindTombstone] == 0 || e.count(fmt.Sprintf("i/%016x/", id)) != 0 || e.count(fmt.Sprintf("i/%016x/", did)) != 0 || e.count(fmt.Sprintf("d/%016x/", id)) != 0 {
		t.Fatalf("tombstoned inodes left behind: deleted %v", r.Deleted)
	}
	e.fsck()
}

func TestOrphans(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "keep", []byte("k"))
	// An inode whose creator crashed before naming it (W3), with an extent.
	orphan := uint64(0x0bad0bad0bad0bad)
	ext := []byte("orphan data")
	e.store.PutIfAbsent(ctx, e.vol.Keys.Extent(orphan, 1), format.EncodeExtent(ext))
	obj, err := format.EncodeInode(&format.Inode{ID: orphan, Version: 1, Kind: format.KindFile, Mode: 0o644, Nlink: 1, Size: uint64(len(ext)),
		Extents: []format.ExtentRef{{Index: 0, EID: 1, Length: uint32(len(ext)), CRC: format.Checksum(ext)}}})
	if err != nil {
		t.Fatal(err)
	}
	e.store.PutIfAbsent(ctx, e.vol.Keys.Inode(orphan, 1), obj)
	e.advance(30 * time.Second)
	r := e.gc(cfg(0, time.Minute))
	if len(r.Orphans) != 1 || r.Orphans[0] != orphan || len(r.Deleted) != 0 {
		t.Fatalf("young orphan: orphans %x, deleted %v", r.Orphans, r.Deleted)
	}
	if c := e.fsck(); len(c.Orphans) != 1 {
		t.Fatalf("fsck orphans: %x", c.Orphans)
	}
	// Held by a live host: kept.
	e.advance(time.Hour)
	e.plantPing(3, time.Minute, t0)
	r = e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindOrphan] != 0 {
		t.Fatalf("held orphan deleted")
	}
	e.advance(3 * time.Minute)
	r = e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindOrphan] != 1 || r.Deleted[reaper.KindExtent] != 1 || e.count(fmt.Sprintf("i/%016x/", orphan)) != 0 {
		t.Fatalf("old orphan: deleted %v", r.Deleted)
	}
	mustGet(t, e.host(), "keep", []byte("k"))
	e.fsck()
}

func TestUnreadableObjectsKeepEverything(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	for i := range 3 {
		put(t, fs, "f", data(byte('1'+i), 2*extSize))
		e.advance(time.Minute)
	}
	id := mustLookup(t, fs, "f")
	key := e.vol.Keys.Inode(id, 3) // v1 create, v2.. writes: corrupt a middle one
	obj, _, err := e.store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	obj[len(obj)-1] ^= 1
	e.store.Put(ctx, key, obj)
	// A corrupt newest version makes readers use the one before: keep all.
	newest := e.versionsOf(fs, "f")[0]
	nk := e.vol.Keys.Inode(id, newest)
	obj, _, _ = e.store.Get(ctx, nk)
	obj[10] ^= 0xff
	e.store.Put(ctx, nk, obj)
	vs, exts := e.count(fmt.Sprintf("i/%016x/", id)), e.count(fmt.Sprintf("d/%016x/", id))
	e.advance(10 * time.Hour)
	r := e.gc(cfg(0, time.Minute))
	if e.count(fmt.Sprintf("i/%016x/", id)) != vs || e.count(fmt.Sprintf("d/%016x/", id)) != exts {
		t.Fatalf("objects of an inode with an unreadable version deleted: %v", r.Deleted)
	}
	if !strings.Contains(strings.Join(r.Problems, "\n"), nk) {
		t.Fatalf("problems do not name %s: %q", nk, r.Problems)
	}
	c, err := reaper.Check(ctx, e.vol, reaper.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Healthy() || !strings.Contains(strings.Join(c.Damage, "\n"), nk) {
		t.Fatalf("fsck damage: %q", c.Damage)
	}
}

func TestCorruptDirectoryStopsOrphanDeletion(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "d/f", []byte("x"))
	did := mustLookup(t, fs, "d")
	fid := mustLookup(t, fs, "d/f")
	vs := e.versionsOf(fs, "d")
	k := e.vol.Keys.Inode(did, vs[0])
	e.store.Put(ctx, k, []byte("garbage"))
	// Only the newest version is corrupt, but it is what the walk reads:
	// d/f looks unreachable. It must not be deleted.
	e.advance(10 * time.Hour)
	r := e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindOrphan] != 0 || e.count(fmt.Sprintf("i/%016x/", fid)) == 0 {
		t.Fatalf("deleted %v behind an unreadable directory", r.Deleted)
	}
}

func TestDamageFound(t *testing.T) {
	e := newTEnv(t)
	fs := e.host(withVersion1Objects) // see TestCheckCloneFallsThrough
	put(t, fs, "a/big", data('b', 3*extSize))
	put(t, fs, "a/x", []byte("x"))
	e.fsck()
	id := mustLookup(t, fs, "a/big")
	var ext []string
	for _, k := range e.store.Keys() {
		if strings.HasPrefix(k, e.vol.Keys.ExtentDir(id)) {
			ext = append(ext, k)
		}
	}
	// A flipped byte in an extent, a missing extent, a dangling entry.
	obj, _, _ := e.store.Get(ctx, ext[0])
	obj[20] ^= 1
	e.store.Put(ctx, ext[0], obj)
	e.store.Delete(ctx, ext[1])
	xid := mustLookup(t, fs, "a/x")
	for _, k := range e.store.Keys() {
		if strings.HasPrefix(k, e.vol.Keys.InodeDir(xid)) {
			e.store.Delete(ctx, k)
		}
	}
	c, err := reaper.Check(ctx, e.vol, reaper.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(c.Damage, "\n")
	for _, want := range []string{ext[0], ext[1] + " (index", fmt.Sprintf("names inode %016x, which has no version", xid)} {
		if !strings.Contains(all, want) {
			t.Errorf("fsck damage does not mention %q:\n%s", want, all)
		}
	}
}

// failAfter makes DeleteMany fail for every key after the first n.
func failAfter(n int) memstore.Hooks {
	var count atomic.Int64
	return memstore.Hooks{Before: func(op memstore.Op, key string) error {
		if op == memstore.OpDeleteMany && count.Add(1) > int64(n) {
			return errors.New("injected failure")
		}
		return nil
	}}
}

// TestInterruptedPassResumes interrupts a pass after every number of
// deletions: the volume stays healthy, and the next pass finishes the job.
func TestInterruptedPassResumes(t *testing.T) {
	build := func(t *testing.T) (*tenv, map[string]string) {
		e := newTEnv(t)
		fs := e.host()
		for i := range 3 {
			put(t, fs, "a/f", data(byte('1'+i), 2*extSize))
			put(t, fs, "a/g", data(byte('1'+i), 10))
			put(t, fs, "b/h", data(byte('1'+i), extSize+1))
		}
		if err := fs.Unlink(ctx, mustLookup(t, fs, "b"), "h"); err != nil {
			t.Fatal(err)
		}
		want, err := tree(fs)
		if err != nil {
			t.Fatal(err)
		}
		e.advance(10 * time.Hour)
		return e, want
	}
	ref, want := build(t)
	full := ref.gc(cfg(0, time.Minute))
	total := 0
	for _, n := range full.Deleted {
		total += n
	}
	final := len(ref.store.Keys())
	for n := 0; n < total; n += 3 {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			e, _ := build(t)
			e.store.SetHooks(failAfter(n))
			c := cfg(0, time.Minute)
			c.Batch = 4
			if _, err := e.gcErr(c); err == nil {
				t.Fatal("interrupted pass reported success")
			}
			e.store.SetHooks(memstore.Hooks{})
			e.fsck()
			got, err := tree(e.host())
			if err != nil || diffTrees(got, want) != "" {
				t.Fatalf("after interruption: %v %s", err, diffTrees(got, want))
			}
			e.gc(c)
			e.fsck()
			if len(e.store.Keys()) != final {
				t.Fatalf("after resuming: %d objects, want %d", len(e.store.Keys()), final)
			}
		})
	}
}

func TestPassStopsWhenLeaseLost(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	for i := range 10 {
		put(t, fs, fmt.Sprintf("f%d", i), data('1', 10))
		put(t, fs, fmt.Sprintf("f%d", i), data('2', 10))
	}
	e.advance(10 * time.Hour)
	held, lose := context.WithCancelCause(ctx)
	c := cfg(0, time.Minute)
	c.Batch = 2
	c.Logger = quiet
	c.Progress = func(p reaper.Progress) {
		if p.Phase == "delete" && p.Done >= 4 {
			lose(reaper.ErrLeaseLost)
		}
	}
	r, err := reaper.Run(held, e.vol, c)
	if !errors.Is(err, reaper.ErrLeaseLost) || r.Deleted[reaper.KindVersion] != 4 {
		t.Fatalf("pass after the lease was lost: %v, deleted %v", err, r.Deleted)
	}
	e.fsck()
	r = e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindVersion] == 0 {
		t.Fatal("the next pass had nothing left to do")
	}
	e.fsck()
}

func TestDryRunChangesNothing(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "f", data('1', extSize))
	put(t, fs, "f", data('2', extSize))
	e.advance(time.Hour)
	keys := e.store.Keys()
	c := cfg(0, time.Minute)
	c.DryRun = true
	r := e.gc(c)
	if r.Planned[reaper.KindVersion] == 0 || len(r.Deleted) != 0 || len(e.store.Keys()) != len(keys) {
		t.Fatalf("dry run: planned %v deleted %v, %d -> %d objects", r.Planned, r.Deleted, len(keys), len(e.store.Keys()))
	}
}

func TestRetentionSettings(t *testing.T) {
	e := newTEnv(t)
	if r, err := reaper.Retention(ctx, e.vol); err != nil || r != 0 {
		t.Fatal(r, err)
	}
	for _, d := range []time.Duration{48 * time.Hour, time.Hour} {
		if err := reaper.SetRetention(ctx, e.vol, d); err != nil {
			t.Fatal(err)
		}
		if r, err := reaper.Retention(ctx, e.vol); err != nil || r != d {
			t.Fatal(r, err)
		}
	}
	e.advance(10 * time.Hour)
	r := e.gc(reaper.Config{Retention: -1, Grace: time.Minute})
	if r.Retention != time.Hour {
		t.Fatalf("pass used retention %v", r.Retention)
	}
	e.fsck()
}

// TestTombstoneStillNamedKept: rmdir tombstones a directory before it
// removes its name (W5); after a crash between the two, the entry stays.
// The reaper keeps the tombstone while an entry names it; fsck warns.
func TestTombstoneStillNamedKept(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	mkdirs(t, fs, "d/e")
	id := mustLookup(t, fs, "d/e")
	vs := e.versionsOf(fs, "d/e")
	obj, err := format.EncodeInode(&format.Inode{ID: id, Version: vs[0] + 1, Kind: format.KindTombstone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.PutIfAbsent(ctx, e.vol.Keys.Inode(id, vs[0]+1), obj); err != nil {
		t.Fatal(err)
	}
	e.advance(10 * time.Hour)
	r := e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindTombstone] != 0 || e.count(fmt.Sprintf("i/%016x/", id)) == 0 {
		t.Fatalf("named tombstone dropped: %v", r.Deleted)
	}
	if !strings.Contains(strings.Join(r.Problems, "\n"), fmt.Sprintf("%016x is deleted but a directory entry still names it", id)) {
		t.Fatalf("problems: %q", r.Problems)
	}
	c := e.fsck()
	if !strings.Contains(strings.Join(c.Warnings, "\n"), "which is deleted") {
		t.Fatalf("fsck warnings: %q", c.Warnings)
	}
}

// TestPassReadsLittle: a pass reads (GETs) only what can change its
// decisions: not the single version of each small file.
func TestPassReadsLittle(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	for i := range 50 {
		put(t, fs, fmt.Sprintf("d/f%d", i), []byte("small"))
	}
	e.advance(time.Hour)
	e.gc(cfg(0, time.Minute)) // drops the versions put's truncation left
	// The directories are read (with their delta chains): the walk needs
	// them. The files are not.
	dirPrefix, rootPrefix := e.vol.Keys.InodeDir(mustLookup(t, fs, "d")), e.vol.Keys.InodeDir(format.RootID)
	var gets atomic.Int64
	e.store.SetHooks(memstore.Hooks{Before: func(op memstore.Op, key string) error {
		if op == memstore.OpGet && strings.Contains(key, "/i/") && !strings.HasPrefix(key, dirPrefix) && !strings.HasPrefix(key, rootPrefix) {
			gets.Add(1)
		}
		return nil
	}})
	e.advance(time.Hour)
	e.gc(cfg(0, time.Minute))
	e.store.SetHooks(memstore.Hooks{})
	if n := gets.Load(); n > 0 {
		t.Fatalf("a pass over 50 unchanged small files read %d inode versions", n)
	}
	e.fsck()
}

// TestStraysHoldNothing: objects under h/ and settings/ whose keys are not
// s3gfs's (FORMAT §15.4 G9) neither hold the pass (as an unreadable ping
// would) nor stop it (as an unreadable newest settings version would):
// they are reported and left alone, and fsck warns of them and of foreign
// keys elsewhere under the prefix without calling them damage.
func TestStraysHoldNothing(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "f", data('1', extSize))
	put(t, fs, "f", data('2', extSize))
	P := e.vol.Keys.Prefix()
	strays := []string{P + "h/junk", P + "h/0000000000000000", P + "settings/FFFFFFFFFFFFFFFE", P + "settings/0"}
	foreign := []string{P + "notes.txt", P + "other/x"}
	for _, k := range append(append([]string(nil), strays...), foreign...) {
		e.store.Put(ctx, k, []byte("not s3gfs's"))
	}
	e.advance(time.Hour)
	r, err := e.gcErr(reaper.Config{Retention: -1, Grace: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	if r.HoldAll || r.Deleted[reaper.KindVersion] == 0 {
		t.Fatalf("gc held everything or deleted no version: %+v", r)
	}
	problems := strings.Join(r.Problems, "\n")
	for _, k := range strays[:2] {
		if !strings.Contains(problems, k+": not an s3gfs key") {
			t.Errorf("gc does not report %s: %s", k, problems)
		}
	}
	for _, k := range append(append([]string(nil), strays...), foreign...) {
		if _, _, err := e.store.Get(ctx, k); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	c := e.fsck()
	warnings := strings.Join(c.Warnings, "\n")
	for _, k := range append(append([]string(nil), strays...), foreign...) {
		if !strings.Contains(warnings, k+": not an s3gfs key") {
			t.Errorf("fsck does not warn of %s: %s", k, warnings)
		}
	}
}

// TestUnreadableControlObjects: garbage at the keys of the reaper's record
// and of the newest settings version stops a pass with an error naming
// the key (the pass cannot know what earlier passes promised, or the
// retention in force), deleting nothing; fsck reports each, and a garbage
// lease, as damage naming its key.
func TestUnreadableControlObjects(t *testing.T) {
	for _, key := range []func(*tenv) string{
		func(e *tenv) string { return e.vol.Keys.Reaper() },
		func(e *tenv) string { return e.vol.Keys.Settings(1) },
		func(e *tenv) string { return e.vol.Keys.Lease() },
	} {
		e := newTEnv(t)
		fs := e.host()
		put(t, fs, "f", data('1', extSize))
		put(t, fs, "f", data('2', extSize))
		k := key(e)
		e.store.Put(ctx, k, []byte("garbage"))
		e.advance(time.Hour)
		before := len(e.store.Keys())
		r, err := e.gcErr(reaper.Config{Retention: -1, Grace: time.Minute, Logger: quiet})
		switch {
		case k == e.vol.Keys.Lease():
			if err != nil || r.Deleted[reaper.KindVersion] == 0 {
				t.Errorf("%s: a pass without the lease (as gc --dry-run or a Kubernetes lease): %v, %+v", k, err, r)
			}
		case err == nil || !strings.Contains(err.Error(), k):
			t.Errorf("%s: gc: %v, want an error naming the key", k, err)
		case len(e.store.Keys()) != before:
			t.Errorf("%s: gc deleted objects although it failed", k)
		}
		c, err := reaper.Check(ctx, e.vol, reaper.CheckOptions{})
		if err != nil {
			t.Fatalf("fsck: %v", err)
		}
		if !strings.Contains(strings.Join(c.Damage, "\n"), k) {
			t.Errorf("%s: fsck damage %q does not name it", k, c.Damage)
		}
	}
}

// A host's capabilities object (FORMAT §12.1) goes once its ping is gone
// and it is older than the grace period; with a ping, or young (a host
// mounting writes it before its first ping), it stays. fsck reads them.
func TestCapsOfGoneHostsDeleted(t *testing.T) {
	e := newTEnv(t)
	e.host()
	caps := func(id uint64) {
		obj, err := format.EncodeCaps(&format.Caps{HostID: id, Bits: format.KnownCaps})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Put(ctx, e.vol.Keys.Caps(id), obj); err != nil {
			t.Fatal(err)
		}
	}
	ping, err := format.EncodePing(&format.Ping{HostID: 7, Seq: 1, FeedFrom: 1, Expiry: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.store.Put(ctx, e.vol.Keys.Ping(7), ping)
	caps(7) // a live host's
	caps(8) // a gone host's
	e.fsck()
	e.advance(30 * time.Second)
	if r := e.gc(cfg(0, time.Minute)); r.Deleted[reaper.KindCaps] != 0 {
		t.Fatalf("young capabilities deleted: %v", r.Deleted)
	}
	e.advance(time.Minute)
	caps(9) // a host mounting now, its ping not written yet
	r := e.gc(cfg(0, time.Minute))
	if r.Deleted[reaper.KindCaps] != 1 {
		t.Fatalf("deleted %v, want the gone host's capabilities", r.Deleted)
	}
	for id, want := range map[uint64]bool{7: true, 8: false, 9: true} {
		_, _, err := e.store.Get(ctx, e.vol.Keys.Caps(id))
		if got := err == nil; got != want {
			t.Errorf("capabilities of host %d kept: %v, want %v", id, got, want)
		}
	}
}
