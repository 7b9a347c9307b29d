package s3store_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

// TestConnectionsReused: rounds of 8 concurrent requests (a mount's 8
// upload streams, or readahead) of every kind that moves a body keep using
// the same few connections. Go's default transport keeps 2 idle
// connections per host, so each round would open 6 new ones (132 in all,
// measured); a GET body left unread would also cost a new connection per
// request. The bound leaves room for the transport dialling while a
// finished request's connection is still on its way back to the idle pool
// (8 in all, measured).
func TestConnectionsReused(t *testing.T) {
	const (
		streams = 8
		rounds  = 20
	)
	f := &fakeS3{objs: map[string][]byte{}, calls: map[string]int{}}
	srv := httptest.NewUnstartedServer(f)
	var opened atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	store := newStore(t, s3store.Config{Bucket: "b", Endpoint: srv.URL, AccessKey: "a", SecretKey: "s"})
	ctx := t.Context()
	body := make([]byte, 64<<10)
	for r := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, streams)
		for i := range streams {
			wg.Go(func() {
				key := fmt.Sprintf("k%d-%d", r, i)
				var err error
				switch i % 3 {
				case 0:
					_, err = store.Put(ctx, key, body)
				case 1:
					_, err = store.PutIfAbsentWithin(ctx, key, body, 10*time.Second)
				default:
					_, err = store.PutIfAbsent(ctx, key, body)
				}
				if err == nil && r > 0 {
					_, _, err = store.Get(ctx, fmt.Sprintf("k%d-%d", r-1, i))
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	n := opened.Load()
	t.Logf("%d requests in rounds of %d opened %d connections", f.count("PUT")+f.count("GET"), streams, n)
	if n > 3*streams {
		t.Errorf("%d connections opened for rounds of %d concurrent requests: connections are not reused", n, streams)
	}
}
