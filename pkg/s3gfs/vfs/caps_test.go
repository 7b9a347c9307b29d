package vfs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
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
