package integration

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// TestSubSecondHostExpiryCommits: a host expiry under a second (which
// `s3gfs mount` accepts: at least three sync intervals of at least 10ms)
// must not make commits fail on a healthy store. A commit is a presigned
// conditional PUT that must reach the store before the fence instant;
// X-Amz-Expires counts whole seconds and the signing time is estimated
// from the store's Date (to the second). Until 5791b74 ("Commit deadlines
// count whole store seconds") the store refused such commits with 403
// "Request has expired" and the host reported itself fenced although its
// pings were fine (found by TestGCIsolation's first version).
func TestSubSecondHostExpiryCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the S3 server")
	}
	store := testenv.NewBucket(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	u := volume.URL{Bucket: store.Bucket(), Prefix: "v"}
	v, err := volume.Format(ctx, store, u, volume.FormatOptions{})
	must(t, "format", err)
	e, err := vfs.New(v, vfs.Options{Logger: slog.New(slog.DiscardHandler), SyncInterval: 100 * time.Millisecond, HostExpiry: 500 * time.Millisecond})
	must(t, "vfs.New", err)
	defer e.Close(ctx)
	failed := 0
	var first error
	for i := 0; i < 20; i++ {
		if _, err := e.Mkdir(ctx, 1, fmt.Sprintf("d%d", i), 0o755, vfs.Caller{}); err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if failed > 0 {
		t.Fatalf("with --host-expiry 500ms on a healthy store, %d of 20 mkdirs failed; the first with: %v", failed, first)
	}
}
