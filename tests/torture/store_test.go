package torture

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

// TestStoreListRetriesCutBody: s3store promises to retry transient
// failures (its package doc; objstore.ErrUnavailable only once retries
// are exhausted). A listing whose response body breaks off (a dropped
// connection) is such a failure, as it is for Get, which retries it. In
// the torture runs these surfaced as EIO from open() and as failed syncs
// ("deserialization failed, failed to decode response body, unexpected
// EOF"), which in turn let hosts' pings lapse.
func TestStoreListRetriesCutBody(t *testing.T) {
	srv := testenv.S3(t)
	p, err := faultproxy.New(srv.Endpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := srv.Config(testenv.BucketName(t))
	cfg.Endpoint = p.URL()
	cfg.MaxBackoff = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := s3store.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := store.Put(ctx, fmt.Sprintf("k/%02d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// One response in four cut short: ten attempts all failing is a
	// one-in-a-million event.
	p.SetFaults(faultproxy.Faults{DropMidBody: 0.25})
	failed := 0
	var last error
	for i := 0; i < 20; i++ {
		page, err := store.List(ctx, "k/", "", 0)
		if err != nil {
			failed++
			last = err
		} else if len(page.Objects) != 20 {
			t.Fatalf("list: %d objects", len(page.Objects))
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 20 listings failed instead of being retried (proxy: %v); last: %v", failed, p.Stats(), last)
	}
	for i := 0; i < 20; i++ {
		if _, _, err := store.Get(ctx, fmt.Sprintf("k/%02d", i)); err != nil {
			t.Fatalf("get (which does retry a cut body): %v", err)
		}
	}
}
