package vfs_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// A live host without a capabilities object (a build from before them)
// cannot read born puts or block checksums: while its ping is live, every
// other host writes what it reads (FORMAT.md §12.1), and once it is gone
// they write the additions again.
func TestOlderHostHoldsBackFormatAdditions(t *testing.T) {
	e := newEnv(t)
	const old = 0x01de0001de0001de
	ping, err := format.EncodePing(&format.Ping{HostID: old, Node: "old", Seq: 1, FeedFrom: 1, Expiry: time.Minute})
	must(t, err)
	_, err = e.store.Put(ctx, e.vol.Keys.Ping(old), ping)
	must(t, err)
	a := e.engine(func(o *vfs.Options) { o.SyncInterval = 50 * time.Millisecond; o.HostExpiry = 150 * time.Millisecond })
	if _, _, err := e.store.Get(ctx, e.vol.Keys.Caps(a.HostID())); err != nil {
		t.Fatalf("the engine wrote no capabilities object: %v", err)
	}

	id := writeFile(t, a, root, "compat", nil)
	if vs := e.versions(id); len(vs) != 1 || vs[0] != 1 {
		t.Fatalf("with an older host live, a new file has versions %v, want a version 1 object", vs)
	}
	if ent := bornEntry(t, e, root, "compat"); ent.Born != nil {
		t.Fatal("with an older host live, a new file's entry is a born put")
	}
	big := writeFile(t, a, root, "big", make([]byte, extSize+10))
	for _, x := range e.newest(big).Extents {
		if x.BlockShift != 0 {
			t.Fatalf("with an older host live, extent %d has block checksums", x.Index)
		}
	}

	// The older host is gone (its ping deleted, as the reaper does once
	// it has lapsed): the additions come back within a sync or two.
	must(t, e.store.Delete(ctx, e.vol.Keys.Ping(old)))
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		name := fmt.Sprintf("born%d", i)
		id := writeFile(t, a, root, name, nil)
		if len(e.versions(id)) == 0 && bornEntry(t, e, root, name).Born != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("born puts did not come back after the older host's ping went")
		}
		time.Sleep(20 * time.Millisecond)
	}
	big2 := writeFile(t, a, root, "big2", make([]byte, extSize+10))
	for _, x := range e.newest(big2).Extents {
		if x.BlockShift == 0 {
			t.Fatalf("with every host up to date, extent %d has no block checksums", x.Index)
		}
	}
}

// Hosts of this build see each other's capabilities: born puts from the
// first create.
func TestCurrentHostsUseFormatAdditions(t *testing.T) {
	e := newEnv(t)
	opts := func(o *vfs.Options) { o.SyncInterval = 50 * time.Millisecond; o.HostExpiry = 150 * time.Millisecond }
	a := e.engine(opts)
	e.engine(opts) // a second host of this build, live
	id := writeFile(t, a, root, "f", nil)
	if len(e.versions(id)) != 0 || bornEntry(t, e, root, "f").Born == nil {
		t.Fatal("two current hosts: a new file is not a born put")
	}
}

// A host held back (an older host live) writes no born put: not in the
// full directory versions either, which would otherwise carry earlier
// born puts forward (the files get versions of their own first).
func TestHeldBackFullVersionHoldsNoBornPut(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.SyncInterval = 50 * time.Millisecond; o.HostExpiry = 150 * time.Millisecond })
	writeFile(t, a, root, "x", nil)
	if bornEntry(t, e, root, "x").Born == nil {
		t.Fatal("x not born")
	}
	const old = 0x01de0001de0001de
	ping, err := format.EncodePing(&format.Ping{HostID: old, Node: "old", Seq: 1, FeedFrom: 1, Expiry: time.Hour})
	must(t, err)
	_, err = e.store.Put(ctx, e.vol.Keys.Ping(old), ping)
	must(t, err)
	for i := 0; ; i++ {
		id := writeFile(t, a, root, fmt.Sprintf("w%d", i), nil)
		if len(e.versions(id)) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < format.MaxDeltaChain+2; i++ {
		writeFile(t, a, root, fmt.Sprintf("f%d", i), nil)
	}
	n := e.newest(root)
	full := false
	for v := n.Version; v >= 1; v-- {
		d := e.version(root, v)
		if d.Base == d.Version {
			full = true
			for _, en := range d.Entries {
				if en.Born != nil {
					t.Errorf("held back, yet full directory version %d (written with an old host live) holds born put %q (op 6)", v, en.Name)
				}
			}
			break
		}
	}
	if !full {
		t.Fatal("no full version")
	}
}

// capsFail fails the reads of capabilities objects while armed.
type capsFail struct {
	objstore.Store
	armed atomic.Bool
}

func (c *capsFail) Get(ctx context.Context, k string) ([]byte, objstore.ObjectInfo, error) {
	if c.armed.Load() && strings.Contains(k, "/caps/") {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("503: %w", objstore.ErrUnavailable)
	}
	return c.Store.Get(ctx, k)
}

// A capabilities object that cannot be read does not stop the following
// of the other hosts: the changes announced in the same pass are applied,
// and no format addition is written until the capabilities are learnt.
func TestCapsReadFailureKeepsFollowing(t *testing.T) {
	e := newEnv(t)
	cf := &capsFail{Store: e.store}
	o := defaultOpts()
	syncEvery(time.Hour, 3*time.Hour)(&o)
	o.Logger = slog.New(slog.NewTextHandler(e.log, nil))
	vol, err := volume.Open(ctx, cf, e.url, true)
	must(t, err)
	a, err := vfs.New(vol, o)
	must(t, err)
	t.Cleanup(func() { a.Close(ctx) })
	b, _ := e.host(syncEvery(time.Hour, 3*time.Hour))
	rec := newRecorder(a)
	f := writeFile(t, b, root, "f", []byte("f"))
	must(t, b.Sync(ctx))
	must(t, a.Sync(ctx))
	lookup(t, a, root, "f")
	rec.take(a)

	mode := uint32(0o600)
	_, err = b.SetAttr(ctx, f, vfs.SetAttr{Mode: &mode})
	must(t, err)
	must(t, b.SyncAll(ctx))
	must(t, b.Sync(ctx))
	// a third host appears (any build); its capabilities GET fails once
	const c = 0x0c0c0c0c0c0c0c0c
	ping, err := format.EncodePing(&format.Ping{HostID: c, Node: "c", Seq: 1, FeedFrom: 1, Expiry: time.Hour})
	must(t, err)
	_, err = e.store.Put(ctx, e.vol.Keys.Ping(c), ping)
	must(t, err)
	cf.armed.Store(true)
	must(t, a.Sync(ctx))
	inodes, _, all := rec.take(a)
	if !slices.Contains(inodes, f) && all == 0 {
		t.Errorf("b's chmod of f, announced, was not invalidated on a: %v", inodes)
	}
	if id := writeFile(t, a, root, "g", nil); len(e.versions(id)) != 1 {
		t.Errorf("capabilities unknown, yet a new file has versions %v, not a version 1 object", e.versions(id))
	}
	cf.armed.Store(false)
}
