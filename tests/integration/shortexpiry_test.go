package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// TestKnownBugSubSecondHostExpiry (skipped unless S3GFS_KNOWN_BUGS=1): a
// host expiry under about two seconds, which `s3gfs mount` accepts (at
// least three sync intervals of at least 10ms), makes commits fail on a
// healthy store: a commit is a presigned conditional PUT that must reach
// the store before the fence instant (last accepted ping + expiry), its
// X-Amz-Expires counts whole seconds and its signing time errs up to a
// second early (the store's clock offset is estimated from a Date header
// truncated to the second), so the store answers 403 "Request has
// expired" and the host reports itself fenced although its pings are
// fine. Either such expiries should be refused (mount flag validation) or
// the deadline should be met another way. Found by TestGCIsolation's
// first version (HostExpiry 500ms: its first mkdir failed).
func TestKnownBugSubSecondHostExpiry(t *testing.T) {
	if os.Getenv("S3GFS_KNOWN_BUGS") != "1" {
		t.Skip("known bug, not yet fixed: run with S3GFS_KNOWN_BUGS=1")
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
