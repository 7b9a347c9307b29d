package vfs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
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

// closeStore gates one host's requests for the Close tests: conditional
// creates under gatePrefix wait for the host's ping to be renewed
// gatePings times (or for their context to end), and LISTs of the pings
// wait for their context to end once listHold is set, as a store client
// retrying a failed LIST with back-off does.
type closeStore struct {
	objstore.Store
	ping       string // the host's ping key
	pingsDir   string // the pings' prefix
	pings      atomic.Int64
	renewed    chan struct{} // signalled on every ping
	gatePrefix atomic.Pointer[string]
	gatePings  int64
	listHold   atomic.Bool
	listHeld   chan struct{}
	listEnded  chan error
}

func (s *closeStore) Put(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	info, err := s.Store.Put(ctx, key, body)
	if err == nil && key == s.ping {
		s.pings.Add(1)
		select {
		case s.renewed <- struct{}{}:
		default:
		}
	}
	return info, err
}

func (s *closeStore) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	if p := s.gatePrefix.Load(); p != nil && strings.HasPrefix(key, *p) {
		until := s.pings.Load() + s.gatePings
		for s.pings.Load() < until {
			select {
			case <-s.renewed:
			case <-ctx.Done():
				return objstore.ObjectInfo{}, ctx.Err()
			}
		}
	}
	return s.Store.PutIfAbsent(ctx, key, body)
}

func (s *closeStore) List(ctx context.Context, prefix, after string, max int) (objstore.ListPage, error) {
	if s.listHold.Load() && prefix == s.pingsDir {
		select {
		case s.listHeld <- struct{}{}:
		default:
		}
		<-ctx.Done()
		select {
		case s.listEnded <- ctx.Err():
		default:
		}
		return objstore.ListPage{}, ctx.Err()
	}
	return s.Store.List(ctx, prefix, after, max)
}

// closeHost opens an engine that pings every 100 ms with a 1 s expiry
// through a closeStore.
func closeHost(t *testing.T, e *env) (*vfs.FS, *closeStore) {
	t.Helper()
	hostID := uint64(0x5eed_c105e)
	cs := &closeStore{Store: e.store, ping: e.vol.Keys.Ping(hostID), pingsDir: e.vol.Keys.PingsPrefix(), renewed: make(chan struct{}, 1),
		listHeld: make(chan struct{}, 1), listEnded: make(chan error, 1)}
	o := defaultOpts()
	o.HostID, o.SyncInterval, o.HostExpiry = hostID, 100*time.Millisecond, time.Second
	o.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	vol, err := volume.Open(ctx, cs, e.url, true)
	must(t, err)
	fs, err := vfs.New(vol, o)
	must(t, err)
	t.Cleanup(func() { fs.Close(ctx) })
	return fs, cs
}

// TestCloseKeepsPingingUntilWrittenBack: the write-back an unmount does
// may take longer than the host expiry (here: five files, each of whose
// commits the store holds until the ping has been renewed five times). The host must go on
// renewing its ping until it is done, or its lease lapses under the
// write-back, the commits fail (fenced) and the data is lost. Close used
// to stop the ping first.
func TestCloseKeepsPingingUntilWrittenBack(t *testing.T) {
	e := newEnv(t)
	a, cs := closeHost(t, e)
	d := mkdir(t, a, root, "d")
	var ids []uint64
	for i := range 5 {
		id, h := create(t, a, d, fmt.Sprintf("f%d", i))
		write(t, a, h, []byte(fmt.Sprintf("written back at unmount %d", i)), 0)
		ids = append(ids, id)
	}
	cs.gatePings = 5
	prefix := e.vol.Keys.InodesPrefix()
	cs.gatePrefix.Store(&prefix)
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v\n%s", err, e.log)
	}
	cs.gatePrefix.Store(nil)
	b := e.engine()
	for i, id := range ids {
		if got, want := string(readFile(t, b, id)), fmt.Sprintf("written back at unmount %d", i); got != want {
			t.Fatalf("file %d holds %q, want %q", i, got, want)
		}
	}
}

// TestCloseEndsFollowing: a LIST of the other hosts' pings that the
// store's client is still retrying when the host unmounts is cut short
// by Close, which neither waits for it to time out nor lets the host's
// lease lapse meanwhile: the write-back that follows succeeds.
func TestCloseEndsFollowing(t *testing.T) {
	e := newEnv(t)
	a, cs := closeHost(t, e)
	id, h := create(t, a, root, "f")
	write(t, a, h, []byte("written back at unmount"), 0)
	cs.listHold.Store(true)
	<-cs.listHeld
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v\n%s", err, e.log)
	}
	if err := <-cs.listEnded; !errors.Is(err, context.Canceled) {
		t.Fatalf("the held LIST ended with %v, want it cancelled by Close", err)
	}
	if got := string(readFile(t, e.engine(), id)); got != "written back at unmount" {
		t.Fatalf("f holds %q", got)
	}
}
