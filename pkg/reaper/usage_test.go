package reaper_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// stored sums what the store holds under the volume's i/ and d/.
func (e *tenv) stored() (bytes, objects uint64) {
	e.t.Helper()
	for _, prefix := range []string{e.vol.Keys.Prefix() + "i/", e.vol.Keys.Prefix() + "d/"} {
		after := ""
		for {
			page, err := e.store.List(ctx, prefix, after, 1000)
			if err != nil {
				e.t.Fatal(err)
			}
			for _, o := range page.Objects {
				bytes += uint64(o.Size)
				objects++
			}
			if !page.Truncated || len(page.Objects) == 0 {
				break
			}
			after = page.Objects[len(page.Objects)-1].Key
		}
	}
	return bytes, objects
}

func (e *tenv) usage() *format.Usage {
	e.t.Helper()
	obj, _, err := e.store.Get(ctx, e.vol.Keys.Usage())
	if errors.Is(err, objstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := format.DecodeUsage(obj)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// A complete pass records what the volume holds after it (FORMAT §15.9),
// and a mount's statfs reports it; a dry run records nothing.
func TestUsageRecorded(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	if s := fs.StatFS(ctx); s.Bfree != s.Blocks || s.Ffree != s.Files {
		t.Fatalf("statfs before any pass reports use: %+v", s)
	}
	for i := range 3 {
		put(t, fs, "d/a", data(byte('1'+i), 2*extSize+100))
		put(t, fs, "d/e/small", data(byte('a'+i), 10))
		e.advance(time.Hour)
	}
	e.gc(reaper.Config{DryRun: true, Retention: 0, Grace: time.Minute, Owner: "test"})
	if u := e.usage(); u != nil {
		t.Fatalf("a dry run wrote a usage record: %+v", u)
	}
	e.advance(10 * time.Hour)
	r := e.gc(cfg(0, time.Minute))
	u := e.usage()
	if u == nil {
		t.Fatal("no usage record after a pass")
	}
	bytes, objects := e.stored()
	if u.Bytes != bytes || u.Objects != objects {
		t.Fatalf("usage %d bytes in %d objects; the store holds %d in %d", u.Bytes, u.Objects, bytes, objects)
	}
	if u.Inodes != 5 { // root, d, d/a, d/e, d/e/small
		t.Fatalf("usage counts %d inodes, want 5", u.Inodes)
	}
	if !u.At.Equal(r.Now) {
		t.Fatalf("usage at %v, pass began at %v", u.At, r.Now)
	}
	s := e.host().StatFS(ctx)
	if used := (s.Blocks - s.Bfree) * uint64(s.Bsize); used < bytes || used >= bytes+uint64(s.Bsize) {
		t.Fatalf("statfs reports %d bytes used, the record says %d", used, bytes)
	}
	if s.Files-s.Ffree != 5 {
		t.Fatalf("statfs reports %d files used, want 5", s.Files-s.Ffree)
	}
}

// beforeWriteStore runs hook (once) right before the first write of key
// reaches the store: it lets another pass end between this pass's
// measuring and its writing of the usage record.
type beforeWriteStore struct {
	*memstore.Store
	key  string
	once sync.Once
	hook func()
}

func (s *beforeWriteStore) wrote(key string) {
	if key == s.key {
		s.once.Do(s.hook)
	}
}

func (s *beforeWriteStore) Put(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	s.wrote(key)
	return s.Store.Put(ctx, key, body)
}

func (s *beforeWriteStore) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	s.wrote(key)
	return s.Store.PutIfAbsent(ctx, key, body)
}

func (s *beforeWriteStore) PutIfMatch(ctx context.Context, key string, body []byte, etag string) (objstore.ObjectInfo, error) {
	s.wrote(key)
	return s.Store.PutIfMatch(ctx, key, body, etag)
}

// Two passes overlap, and the one that began first ends last: its usage
// record must not replace the figures of the pass that began later
// (FORMAT §15.9), whether or not a record existed before.
func TestOverlappingPassesKeepTheLaterUsage(t *testing.T) {
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("record before: %v", existing), func(t *testing.T) {
			e := newTEnv(t)
			fs := e.host()
			put(t, fs, "d/a", data('1', 2*extSize+100))
			e.advance(time.Hour)
			if existing {
				e.gc(cfg(0, time.Minute))
				e.advance(time.Hour)
			}
			put(t, fs, "d/b", data('2', 10))
			var later *reaper.Report
			slow := &beforeWriteStore{Store: e.store, key: e.vol.Keys.Usage(), hook: func() {
				e.advance(time.Minute)
				put(t, fs, "d/c", data('3', 10))
				later = e.gc(cfg(0, time.Minute))
			}}
			vol, err := volume.Open(ctx, slow, e.url, false)
			if err != nil {
				t.Fatal(err)
			}
			first, err := reaper.Run(ctx, vol, reaper.Config{Retention: 0, Grace: time.Minute, Owner: "slow", Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if later == nil || first.Usage == nil || later.Usage == nil || !later.Usage.At.After(first.Usage.At) {
				t.Fatalf("the passes did not overlap as planned: %+v, %+v", first, later)
			}
			if u := e.usage(); !u.At.Equal(later.Usage.At) || u.Inodes != later.Usage.Inodes {
				t.Fatalf("usage record %+v, want the later pass's %+v (the earlier pass's: %+v)", u, later.Usage, first.Usage)
			}
		})
	}
}
