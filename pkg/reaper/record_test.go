package reaper_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// afterGetStore runs hook (once) right after the first Get of key
// returned: it lets another pass act between this pass's reading and
// writing of the reaper's record.
type afterGetStore struct {
	*memstore.Store
	key  string
	once sync.Once
	hook func()
}

func (s *afterGetStore) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	b, info, err := s.Store.Get(ctx, key)
	if key == s.key {
		s.once.Do(s.hook)
	}
	return b, info, err
}

// Two passes planning at once (a pass of the in-cluster reaper holding a
// Kubernetes Lease, and an `s3gfs gc` holding the bucket's lease) must
// never lower the recorded horizon (FORMAT §15.2 K1): the later writer
// read the record before the other one wrote it.
func TestConcurrentPassesNeverLowerTheRecordedHorizon(t *testing.T) {
	e := newTEnv(t)
	e.advance(48 * time.Hour)
	var first *reaper.Report
	slow := &afterGetStore{Store: e.store, key: e.vol.Keys.Reaper(), hook: func() {
		// The other pass, with a short retention: a later horizon.
		first = e.gc(reaper.Config{Retention: time.Hour, Grace: reaper.DefaultGrace, Owner: "gc"})
	}}
	vol, err := volume.Open(ctx, slow, e.url, false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := reaper.Run(ctx, vol, reaper.Config{Retention: 24 * time.Hour, Grace: reaper.DefaultGrace, Owner: "cluster", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if first == nil || !first.Recorded.Equal(e.clock().Add(-time.Hour)) {
		t.Fatalf("the other pass did not run or recorded %v", first)
	}
	rec, err := snapshot.ReadRecord(ctx, e.store, e.vol.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Horizon.Before(first.Recorded) {
		t.Fatalf("recorded horizon lowered from %v to %v by a pass that planned alongside", first.Recorded, rec.Horizon)
	}
	if !second.Recorded.Equal(rec.Horizon) {
		t.Fatalf("the second pass reports %v as recorded, the record says %v", second.Recorded, rec.Horizon)
	}
	if second.Horizon.After(rec.Horizon) {
		t.Fatalf("horizon %v after the recorded %v", second.Horizon, rec.Horizon)
	}
}
