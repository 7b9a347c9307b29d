package reaper

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// afterGet runs hook once, right after the first Get of key returned.
type afterGet struct {
	*s3store.Store
	key  string
	once sync.Once
	hook func()
}

func (s *afterGet) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	b, info, err := s.Store.Get(ctx, key)
	if key == s.key {
		s.once.Do(s.hook)
	}
	return b, info, err
}

// TestConcurrentPassesKeepTheRecordedHorizon: on the real store, a pass
// that read the reaper's record before another pass wrote a later
// horizon must not lower it (FORMAT §15.2 K1: the record is replaced
// with If-Match the ETag read). This is the in-cluster reaper (a
// Kubernetes Lease) and an `s3gfs gc` (the bucket's lease) planning at once.
func TestConcurrentPassesKeepTheRecordedHorizon(t *testing.T) {
	t.Parallel()
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: "vol"}
	vol, err := volume.Format(t.Context(), store, u, volume.FormatOptions{ExtentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(st objstore.Store, owner string, retention time.Duration) *reaper.Report {
		v, err := volume.Open(t.Context(), st, u, false)
		if err != nil {
			t.Fatal(err)
		}
		r, err := reaper.Run(t.Context(), v, reaper.Config{Retention: retention, Grace: time.Second, Owner: owner, Logger: quiet})
		if err != nil {
			t.Fatalf("pass of %s: %v", owner, err)
		}
		return r
	}
	var first *reaper.Report
	slow := &afterGet{Store: store, key: vol.Keys.Reaper(), hook: func() { first = run(store, "gc", 0) }}
	second := run(slow, "cluster", time.Hour)
	if first == nil {
		t.Fatal("the other pass did not run")
	}
	rec, err := snapshot.ReadRecord(t.Context(), store, vol.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || rec.Horizon.Before(first.Recorded) {
		t.Fatalf("recorded horizon lowered from %v to %v by a pass that planned alongside", first.Recorded, rec)
	}
	if !second.Recorded.Equal(rec.Horizon) || rec.Owner != "cluster" {
		t.Fatalf("the second pass reports %v recorded, the record says %v by %s", second.Recorded, rec.Horizon, rec.Owner)
	}
}
