package integration

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// TestGCIsolation: volumes sharing a bucket, with prefixes that share a
// string prefix (team/a, team/a2, team/ab) and foreign objects next to
// them, some shaped like s3gfs keys. A reaper pass on team/a, after every
// file of it was deleted, deletes only keys under team/a/, and leaves
// every other object of the bucket byte for byte as it was (same ETag);
// fsck of the other volumes stays healthy. (The CSI driver's side of
// isolation is pkg/driver's TestIsolation.)
func TestGCIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the S3 server")
	}
	store := testenv.NewBucket(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	prefixes := []string{"team/a", "team/a2", "team/ab"}
	vols := map[string]*volume.Volume{}
	for _, p := range prefixes {
		u := volume.URL{Bucket: store.Bucket(), Prefix: p}
		v, err := volume.Format(ctx, store, u, volume.FormatOptions{ExtentSize: format.MinExtentSize})
		must(t, "format "+p, err)
		vols[p] = v
		e, err := vfs.New(v, vfs.Options{Logger: log, SyncInterval: 500 * time.Millisecond, HostExpiry: 2 * time.Second})
		must(t, "vfs.New "+p, err)
		d, err := e.Mkdir(ctx, format.RootID, "d", 0o755, vfs.Caller{})
		must(t, "mkdir", err)
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("f%d", i)
			_, h, err := e.Create(ctx, d.Ino, name, 0o644, true, vfs.Caller{})
			must(t, "create", err)
			_, err = e.Write(ctx, h, []byte(strings.Repeat(p+" ", 40000)), 0) // several extents
			must(t, "write", err)
			must(t, "release", e.Release(ctx, h))
		}
		if p == "team/a" {
			// Everything of team/a becomes garbage.
			for i := 0; i < 5; i++ {
				must(t, "unlink", e.Unlink(ctx, d.Ino, fmt.Sprintf("f%d", i)))
			}
		}
		must(t, "close", e.Close(ctx))
	}
	// Foreign objects: next to the volumes, and inside team/a with shapes
	// that are not s3gfs's (FORMAT §15.4 G9: left alone).
	foreign := []string{
		"team/a-notes.txt",
		"team/a2x/i/0000000000000001/fffffffffffffffe",
		"team/i/0000000000000001/fffffffffffffffe",
		"team/a/i/NOT-HEX/fffffffffffffffe",
		"team/a/d/zz",
		"team/a/other/file",
	}
	for _, k := range foreign {
		_, err := store.Put(ctx, k, []byte("not s3gfs's: "+k))
		must(t, "put "+k, err)
	}

	before := listAll(t, ctx, store)
	// Passes until the garbage is past the grace period (at least twice
	// the hosts' expiry; 1 s stamps).
	var deleted []string
	var r *reaper.Report
	var err error
	for deadline := time.Now().Add(90 * time.Second); len(deleted) == 0 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		r, err = reaper.Run(ctx, vols["team/a"], reaper.Config{
			Retention: 0, Grace: time.Millisecond, Owner: "isolation-test", Logger: log,
			Deleted: func(key, kind string) { deleted = append(deleted, key) },
		})
		must(t, "reaper pass on team/a", err)
	}
	t.Logf("pass on team/a deleted %v", r.Deleted)
	if len(deleted) == 0 {
		t.Fatal("the pass deleted nothing: the test proves nothing")
	}
	for _, k := range deleted {
		if !strings.HasPrefix(k, "team/a/") {
			t.Errorf("a pass on team/a deleted %s, outside its prefix", k)
		}
	}
	after := listAll(t, ctx, store)
	for k, etag := range before {
		if strings.HasPrefix(k, "team/a/") && !contains(foreign, k) {
			continue
		}
		switch got, ok := after[k]; {
		case !ok:
			t.Errorf("%s is gone after a reaper pass on team/a", k)
		case got != etag:
			t.Errorf("%s changed after a reaper pass on team/a", k)
		}
	}
	for _, p := range prefixes[1:] {
		rep, err := reaper.Check(ctx, vols[p], reaper.CheckOptions{})
		must(t, "fsck "+p, err)
		if !rep.Healthy() || rep.Inodes < 7 {
			t.Errorf("fsck of %s after a pass on team/a: damage %v, %d inodes", p, rep.Damage, rep.Inodes)
		}
	}
}

func listAll(t *testing.T, ctx context.Context, store objstore.Store) map[string]string {
	out := map[string]string{}
	after := ""
	for {
		page, err := store.List(ctx, "", after, 1000)
		must(t, "list", err)
		for _, o := range page.Objects {
			out[o.Key] = o.ETag
		}
		if !page.Truncated || len(page.Objects) == 0 {
			return out
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
