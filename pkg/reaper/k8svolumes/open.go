package k8svolumes

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// S3Opener returns a Collector.Open that reaches each volume's bucket with
// the process's own AWS credentials (the SDK's default chain: in the chart,
// the reaper's Secret as AWS_* variables), at the endpoint and region its
// id names, else at endpoint and region ("" = the SDK's defaults). The
// StorageClasses' provisioner secrets are never read. The first time it
// opens a volume it also checks that the store honours conditional writes
// (the reaper's record and lease rely on them).
func S3Opener(endpoint, region string) func(ctx context.Context, l volumeid.Loc) (*volume.Volume, error) {
	type storeKey struct{ bucket, endpoint, region string }
	var mu sync.Mutex
	stores := map[storeKey]*s3store.Store{}
	probed := map[volumeid.Loc]bool{}
	return func(ctx context.Context, l volumeid.Loc) (*volume.Volume, error) {
		k := storeKey{l.Bucket, l.Endpoint, l.Region}
		if k.endpoint == "" {
			k.endpoint = endpoint
		}
		if k.region == "" {
			k.region = region
		}
		mu.Lock()
		st := stores[k]
		mu.Unlock()
		if st == nil {
			var err error
			st, err = s3store.New(ctx, s3store.Config{Bucket: k.bucket, Endpoint: k.endpoint, Region: k.region})
			if err != nil {
				return nil, fmt.Errorf("object store: %w", err)
			}
			mu.Lock()
			stores[k] = st
			mu.Unlock()
		}
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		vol, err := volume.Open(octx, st, l.URL(), false)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		done := probed[l]
		mu.Unlock()
		if !done {
			if err := volume.Probe(octx, st, vol.Keys); err != nil {
				return nil, err
			}
			mu.Lock()
			probed[l] = true
			mu.Unlock()
		}
		return vol, nil
	}
}
