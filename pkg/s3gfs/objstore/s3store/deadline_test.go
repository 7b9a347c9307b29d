package s3store_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// PutIfAbsentWithin against the real server: it creates like PutIfAbsent,
// loses to an existing key like PutIfAbsent, and a request that reaches
// the store after its deadline is refused by the store, with no effect,
// however long the network held it (here: a proxy that holds every
// request while paused and forwards it when the pause is lifted, long
// after the client gave up waiting).
func TestPutIfAbsentWithin(t *testing.T) {
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	ctx := t.Context()

	info, err := store.PutIfAbsentWithin(ctx, "k1", []byte("one"), 5*time.Second)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if info.LastModified.IsZero() {
		t.Fatal("no store time for the create")
	}
	got, _, err := store.Get(ctx, "k1")
	if err != nil || !bytes.Equal(got, []byte("one")) {
		t.Fatalf("read back %q, %v", got, err)
	}
	if _, err := store.PutIfAbsentWithin(ctx, "k1", []byte("two"), 5*time.Second); !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("create of an existing key: %v, want ErrExists", err)
	}

	proxy, err := faultproxy.New(srv.Endpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	cfg := srv.Config(store.Bucket())
	cfg.Endpoint = proxy.URL()
	cfg.Retries = -1
	late := newStore(t, cfg)
	if _, err := late.Now(ctx); err != nil { // learn the store's clock offset
		t.Fatal(err)
	}
	proxy.SetFaults(faultproxy.Faults{Latency: 3500 * time.Millisecond})
	start := time.Now()
	_, err = late.PutIfAbsentWithin(ctx, "k2", []byte("late"), time.Second)
	t.Logf("a request held %v by the network, with a 1 s deadline: %v (after %v)", 3500*time.Millisecond, err, time.Since(start).Round(time.Millisecond))
	if !errors.Is(err, objstore.ErrExpired) {
		t.Fatalf("late request: %v, want ErrExpired", err)
	}
	proxy.SetFaults(faultproxy.Faults{})
	if _, _, err := store.Get(ctx, "k2"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("the expired request took effect: get k2: %v", err)
	}
}

// Keys that need escaping in a URL (a volume prefix may hold spaces,
// '+', '%', non-ASCII letters...) are created by PutIfAbsentWithin at
// exactly that key, and refused as existing the second time: the
// presigned request's signature covers the path as the store sees it.
func TestPutIfAbsentWithinEscapedKeys(t *testing.T) {
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	ctx := t.Context()
	for _, key := range []string{"my vol/i/0/1", "a+b/c%d/e~f/é/x=y&z;w", "sp  two/(paren)/[br]/!*'@$,"} {
		if _, err := store.PutIfAbsentWithin(ctx, key, []byte(key), 5*time.Second); err != nil {
			t.Fatalf("create %q: %v", key, err)
		}
		got, _, err := store.Get(ctx, key)
		if err != nil || string(got) != key {
			t.Fatalf("read back %q: %q, %v", key, got, err)
		}
		if _, err := store.PutIfAbsentWithin(ctx, key, []byte("again"), 5*time.Second); !errors.Is(err, objstore.ErrExists) {
			t.Fatalf("second create of %q: %v, want ErrExists", key, err)
		}
	}
}
