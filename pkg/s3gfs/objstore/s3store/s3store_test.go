package s3store_test

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestConformance runs the whole suite against the test server (versitygw,
// or MinIO with S3GFS_S3_SERVER=minio), every subtest in one shared bucket
// (the suite keeps tests apart by key prefix).
func TestConformance(t *testing.T) {
	srv := testenv.S3(t)
	t.Logf("S3 server: %s at %s", srv.Impl, srv.Endpoint)
	var (
		once  sync.Once
		store *s3store.Store
	)
	storetest.Run(t, func(t *testing.T) objstore.Store {
		once.Do(func() { store = srv.NewBucket(t) })
		if store == nil {
			t.Fatal("no shared bucket")
		}
		return store
	})
}

func newStore(t *testing.T, cfg s3store.Config) *s3store.Store {
	t.Helper()
	s, err := s3store.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProbe(t *testing.T) {
	store := testenv.NewBucket(t)
	if err := objstore.Probe(t.Context(), store, "s3gfs-probe"); err != nil {
		t.Fatalf("%s failed the conditional-write probe: %v", testenv.S3(t).Impl, err)
	}
}

func TestEnsureBucketIdempotent(t *testing.T) {
	store := testenv.NewBucket(t) // created once already
	for range 2 {
		if err := store.EnsureBucket(t.Context()); err != nil {
			t.Fatalf("EnsureBucket of an existing bucket: %v", err)
		}
	}
}

func TestWrongCredentials(t *testing.T) {
	srv := testenv.S3(t)
	good := srv.NewBucket(t)
	ctx := t.Context()
	if _, err := good.Put(ctx, "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*s3store.Config){
		"secret": func(c *s3store.Config) { c.SecretKey = "wrong-secret" },
		"access": func(c *s3store.Config) { c.AccessKey = "no-such-access-key" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := srv.Config(good.Bucket())
			mutate(&cfg)
			bad := newStore(t, cfg)
			_, _, err := bad.Get(ctx, "k")
			checkIs(t, "Get", err, objstore.ErrAccessDenied)
			_, err = bad.PutIfAbsent(ctx, "new", []byte("x"))
			checkIs(t, "PutIfAbsent", err, objstore.ErrAccessDenied)
			_, err = bad.Head(ctx, "k")
			if name == "access" && srv.Impl == testenv.Versitygw && errors.Is(err, objstore.ErrNotFound) {
				// versitygw answers an unknown access key with 404 (and
				// an XAdminUserNotFound code, but HEAD has no body);
				// MinIO, like AWS, with 403.
				t.Logf("Head with unknown access key: %v", err)
			} else {
				checkIs(t, "Head", err, objstore.ErrAccessDenied)
			}
			_, err = bad.List(ctx, "", "", 0)
			checkIs(t, "List", err, objstore.ErrAccessDenied)
			checkIs(t, "Probe", objstore.Probe(ctx, bad, "probe"), objstore.ErrAccessDenied)
		})
	}
}

func TestNoBucket(t *testing.T) {
	srv := testenv.S3(t)
	store := newStore(t, srv.Config(testenv.BucketName(t))) // never created
	ctx := t.Context()
	_, _, err := store.Get(ctx, "k")
	checkIs(t, "Get", err, objstore.ErrNoBucket)
	_, err = store.GetRange(ctx, "k", 0, 10)
	checkIs(t, "GetRange", err, objstore.ErrNoBucket)
	_, err = store.PutIfAbsent(ctx, "k", []byte("x"))
	checkIs(t, "PutIfAbsent", err, objstore.ErrNoBucket)
	_, err = store.Put(ctx, "k", []byte("x"))
	checkIs(t, "Put", err, objstore.ErrNoBucket)
	_, err = store.List(ctx, "", "", 0)
	checkIs(t, "List", err, objstore.ErrNoBucket)
	checkIs(t, "DeleteMany", store.DeleteMany(ctx, []string{"k"}), objstore.ErrNoBucket)
	// A HEAD response has no body to tell a missing bucket from a missing key.
	_, err = store.Head(ctx, "k")
	checkIs(t, "Head", err, objstore.ErrNotFound)
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: connections are refused

	store := newStore(t, s3store.Config{
		Bucket: "b", Endpoint: endpoint, AccessKey: "a", SecretKey: "s",
		Retries: 2, MaxBackoff: 50 * time.Millisecond,
	})
	start := time.Now()
	_, _, err = store.Get(t.Context(), "k")
	checkIs(t, "Get", err, objstore.ErrUnavailable)
	_, err = store.PutIfAbsent(t.Context(), "k", []byte("x"))
	checkIs(t, "PutIfAbsent", err, objstore.ErrUnavailable)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to give up on a refused connection", d)
	}
	t.Logf("gave up after %v: %v", time.Since(start), err)
}

// TestEndpointFromEnvironment checks the SDK's own AWS_ENDPOINT_URL_S3 and
// AWS_ENDPOINT_URL still work, with path-style addressing and the default
// region chosen automatically.
func TestEndpointFromEnvironment(t *testing.T) {
	srv := testenv.S3(t)
	bucket := srv.NewBucket(t).Bucket()
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	for _, name := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("AWS_ENDPOINT_URL_S3", "")
			os.Unsetenv("AWS_ENDPOINT_URL_S3")
			t.Setenv(name, srv.Endpoint)
			store := newStore(t, s3store.Config{Bucket: bucket}) // no endpoint, region or keys
			if _, err := store.Put(t.Context(), name, []byte("x")); err != nil {
				t.Fatalf("Put via %s: %v", name, err)
			}
		})
	}
}

// TestCABundle checks a store can be made, and used, with AWS_CA_BUNDLE
// set: the SDK rejects custom HTTP clients it cannot load the bundle into.
func TestCABundle(t *testing.T) {
	const bundle = "/etc/ssl/certs/ca-certificates.crt"
	if os.Getenv("AWS_CA_BUNDLE") == "" {
		if _, err := os.Stat(bundle); err != nil {
			t.Skip("no CA bundle to test with")
		}
		t.Setenv("AWS_CA_BUNDLE", bundle)
	}
	store := testenv.NewBucket(t)
	if _, err := store.Put(t.Context(), "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func checkIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}
