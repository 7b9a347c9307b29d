package reaper

import (
	"context"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// D7 (FORMAT §15.5) reads which rename transactions a directory's kept
// versions hold once per pass, not once per decision: in a busy
// directory (a mail spool moving every message in), each of thousands of
// decisions scanned every kept version again, full ones of 10^5 entries
// included (2,000 decisions over 8 kept versions of 50,000 entries: 2.2 s
// of a pass, growing with their product). The decisions held stay, the
// others go.
func TestDecisionsReadEachDirectoryOnce(t *testing.T) {
	ctx := context.Background()
	store := memstore.New("bkt")
	vol, err := volume.Format(ctx, store, volume.URL{Bucket: "bkt", Prefix: "v"}, volume.FormatOptions{ExtentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const host, x, y = 0x77, 0x1001, 0x1002
	for _, id := range []uint64{x, y} {
		obj, err := format.EncodeInode(&format.Inode{ID: id, Version: 1, Kind: format.KindFile, Mode: 0o644, Nlink: 1, Inline: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.PutIfAbsent(ctx, vol.Keys.Inode(id, 1), obj); err != nil {
			t.Fatal(err)
		}
	}
	root, err := format.EncodeInode(&format.Inode{ID: format.RootID, Version: 2, Kind: format.KindDir, Mode: 0o755, Base: 2, Entries: []format.Entry{
		{Op: format.EntryPut, Name: "a", Child: x, ChildKind: format.KindFile},
		{Op: format.EntryPendingRemove, Name: "a", Tx: 1, Host: host},
		{Op: format.EntryPendingPut, Name: "b", Child: y, ChildKind: format.KindFile, Tx: 2, Host: host},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutIfAbsent(ctx, vol.Keys.Inode(format.RootID, 2), root); err != nil {
		t.Fatal(err)
	}
	for tx := uint64(1); tx <= 10; tx++ {
		obj, err := format.EncodeDecision(&format.Decision{Outcome: format.Commit, Host: host, Writer: host, Dirs: []uint64{format.RootID}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.PutIfAbsent(ctx, vol.Keys.Decision(tx), obj); err != nil {
			t.Fatal(err)
		}
	}
	s, err := newScan(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	kept := func(id uint64) (func(uint64) bool, bool) {
		asked++
		return func(uint64) bool { return true }, true
	}
	dropped := map[string]bool{}
	r := &Report{Kept: map[string]int{}}
	if err := planDecisions(ctx, s, time.Now().Add(time.Hour), kept, func(o objstore.ObjectInfo) { dropped[o.Key] = true }, r); err != nil {
		t.Fatal(err)
	}
	for tx := uint64(1); tx <= 10; tx++ {
		if want := tx > 2; dropped[vol.Keys.Decision(tx)] != want {
			t.Fatalf("decision %d dropped: %v, want %v", tx, !want, want)
		}
	}
	if asked != 1 {
		t.Fatalf("the kept versions of the one directory were gone through %d times for 10 decisions", asked)
	}
}
