package reaper_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// A handle open on a born file (no version object, FORMAT §5.4) holds the
// store time of the directory version its entry was read from, so the
// reaper keeps version 2 that another host writes meanwhile; the holder's
// commit then loses the race for key 2 and merges, instead of creating
// key 2 again under a newer version (losing its acknowledged write).
func TestBornHandleHoldsItsVersion(t *testing.T) {
	for _, compat := range []bool{false, true} {
		t.Run(fmt.Sprintf("Version1Objects=%v", compat), func(t *testing.T) {
			e := newTEnv(t)
			mod := func(o *vfs.Options) { o.Version1Objects = compat }
			a := e.host(mod)
			b := e.host(mod, func(o *vfs.Options) { o.SyncInterval = time.Hour; o.HostExpiry = 3 * time.Hour })
			_, hb, err := b.Create(ctx, format.RootID, "f", 0o644, false, caller)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			e.advance(time.Second)
			put(t, a, "f", []byte("AAAA-one"))
			e.advance(time.Second)
			put(t, a, "f", []byte("AAAA-two"))
			e.advance(8 * time.Hour)
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			r := e.gc(reaper.Config{Retention: 0, Grace: time.Minute})
			t.Logf("horizon %v deleted %v", r.Horizon, r.Deleted)
			if _, err := b.Write(ctx, hb, []byte("BB"), 10); err != nil {
				t.Fatal(err)
			}
			if err := b.Release(ctx, hb); err != nil {
				t.Fatalf("B's close: %v", err)
			}
			c := e.host()
			got, err := get(c, "f")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("keys: %v", e.store.Keys())
			if len(got) < 12 || string(got[10:12]) != "BB" {
				t.Fatalf("a fresh host reads %q: B's acknowledged write (BB at 10) is lost", got)
			}
		})
	}
}

// A clone host's handle on a file read through the clone's source holds
// no time of the clone's own versions (FORMAT §16.5), so the clone's
// reaper may delete those another host writes meanwhile; the first commit
// of such a file lists the clone's own versions first (casLoop), and
// merges onto the newest instead of creating a deleted key again.
func TestCloneFallThroughCommitListsFirst(t *testing.T) {
	e := newTEnv(t)
	src := e.host(withVersion1Objects)
	put(t, src, "f", []byte("SRC-SRC-SRC-"))
	ce, _ := e.cloneOf("c", "p1")
	a := ce.host(withVersion1Objects)
	b := ce.host(withVersion1Objects, func(o *vfs.Options) { o.SyncInterval = time.Hour; o.HostExpiry = 3 * time.Hour })
	id, err := lookup(b, "f")
	if err != nil {
		t.Fatal(err)
	}
	hb, _, err := b.Open(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	e.advance(time.Second)
	writeAt(t, a, "f", []byte("A1"), 0)
	e.advance(time.Second)
	writeAt(t, a, "f", []byte("A2"), 2)
	e.advance(8 * time.Hour)
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r := ce.gc(reaper.Config{Retention: 0, Grace: time.Minute})
	if r.Deleted[reaper.KindVersion] == 0 {
		t.Fatalf("the clone's reaper deleted no version (%v): the case is not set up", r.Deleted)
	}
	if _, err := b.Write(ctx, hb, []byte("BB"), 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, hb); err != nil {
		t.Fatalf("B's close: %v", err)
	}
	got, err := get(ce.host(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "A1A2SRC-SRBB" {
		t.Fatalf("a fresh clone host reads %q, want %q", got, "A1A2SRC-SRBB")
	}
}
