package vfs_test

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// TestCloseSettlesUnknownRename: a rename whose commit landed but whose
// answer was lost is settled in the background; a Close that follows
// (an unmount) waits for it, so that when Close returns the rename is
// finished exactly as a live host would have finished it: the directories
// folded and what the new name replaced released. (Close used to return
// at once, and the process exited with the pending entries unfolded and
// the replaced file with a link too many.)
func TestCloseSettlesUnknownRename(t *testing.T) {
	for _, c := range txCases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.engine()
			src, old, dst, nu, moved, target := c.setup(t, a)
			var answered atomic.Bool
			var lost, failed atomic.Int64
			prefix := e.vol.Keys.DecisionsPrefix()
			e.store.SetHooks(memstore.Hooks{
				Before: func(op memstore.Op, key string) error {
					if op == memstore.OpGet && strings.HasPrefix(key, prefix) && !answered.Load() {
						failed.Add(1)
						return errInjected
					}
					return nil
				},
				After: func(op memstore.Op, key string) error {
					if op == memstore.OpPutIfAbsent && strings.HasPrefix(key, prefix) && lost.Add(1) == 1 {
						return errInjected
					}
					return nil
				},
			})
			if err := a.Rename(ctx, src, old, dst, nu, 0); err == nil {
				t.Fatal("a rename whose commit could not be confirmed reported success")
			}
			if lost.Load() == 0 {
				t.Fatal("the decision's answer was never lost")
			}
			// The rename's create of its decision read it back 4 times in
			// vain; the background settle's first try does too, then waits
			// to try again.
			for failed.Load() < 8 {
				runtime.Gosched()
			}
			answered.Store(true)
			must(t, a.Close(ctx))
			for _, d := range []uint64{src, dst} {
				for _, x := range e.newest(d).Entries {
					if x.Op.Pending() {
						t.Fatalf("Close returned with directory %x holding pending entry %+v", d, x)
					}
				}
			}
			if target != 0 {
				if n := e.newest(target); n.Kind != format.KindTombstone {
					t.Fatalf("Close returned with the replaced inode %x at %v nlink %d, want a tombstone", target, n.Kind, n.Nlink)
				}
			}
			e.store.SetHooks(memstore.Hooks{})
			if !onlyOne(t, e.engine(), src, old, dst, nu, moved, target, "after Close") {
				t.Fatal("the commit landed, but the old name is live")
			}
		})
	}
}

// TestCloseAbandonsUnsettledRename: a rename whose decision could not be
// written at all (the store refuses it) is still unsettled when Close's
// context ends. Close gives it up, logging it, and nothing of the closed
// host touches the store afterwards; the rename stays recoverable by the
// other hosts as a crash would leave it (FORMAT.md §5.5): once the host's
// expiry has passed, another host's change of the new name aborts it and
// the old name stands.
func TestCloseAbandonsUnsettledRename(t *testing.T) {
	e := newEnv(t)
	a := e.engine(func(o *vfs.Options) { o.SyncInterval, o.HostExpiry = 100*time.Millisecond, time.Second })
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	f := writeFile(t, a, s, "f", []byte("moved"))
	prefix := e.vol.Keys.DecisionsPrefix()
	e.store.SetHooks(memstore.Hooks{Before: func(op memstore.Op, key string) error {
		if op == memstore.OpPutIfAbsent && strings.HasPrefix(key, prefix) {
			return errInjected
		}
		return nil
	}})
	if err := a.Rename(ctx, s, "f", d, "g", 0); err == nil {
		t.Fatal("a rename whose decision could not be written reported success")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel() // Close may not wait
	must(t, a.Close(cctx))
	if !strings.Contains(e.log.String(), "abandoning a rename") {
		t.Fatal("Close did not log the rename it abandoned")
	}
	e.store.SetHooks(memstore.Hooks{})
	b := e.engine()
	g := writeFile(t, b, d, "g", []byte("new file")) // waits for a's expiry, then aborts
	if g == f {
		t.Fatal("the create found the moved file")
	}
	if at := lookup(t, b, s, "f"); at.Ino != f {
		t.Fatalf("old name -> %x, want %x", at.Ino, f)
	}
	keys := e.keysUnder(prefix)
	if len(keys) != 1 {
		t.Fatalf("decisions %v", keys)
	}
	obj, _, err := e.store.Get(ctx, keys[0])
	must(t, err)
	dec, err := format.DecodeDecision(obj)
	must(t, err)
	if dec.Outcome != format.Abort || dec.Host != a.HostID() || dec.Writer != b.HostID() {
		t.Fatalf("decision %+v, want an abort of host %x written by host %x (the closed host wrote it after Close)", dec, a.HostID(), b.HostID())
	}
}
