package k8svolumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// S3 reaches the volumes' buckets with the process's own AWS credentials
// (the SDK's default chain: in the chart, the reaper's Secret as AWS_*
// variables), at the endpoint and region a volume's id names, else at
// Endpoint and Region ("" = the SDK's defaults). The StorageClasses'
// provisioner secrets are never read. Its Open and Kept are a Collector's.
type S3 struct {
	Endpoint, Region string

	mu     sync.Mutex
	stores map[storeKey]*s3store.Store
	probed map[volumeid.Loc]bool
}

type storeKey struct{ bucket, endpoint, region string }

// S3Opener is (&S3{Endpoint: endpoint, Region: region}).Open.
func S3Opener(endpoint, region string) func(ctx context.Context, l volumeid.Loc) (*volume.Volume, error) {
	return (&S3{Endpoint: endpoint, Region: region}).Open
}

func (s *S3) store(ctx context.Context, l volumeid.Loc) (*s3store.Store, error) {
	k := storeKey{l.Bucket, l.Endpoint, l.Region}
	if k.endpoint == "" {
		k.endpoint = s.Endpoint
	}
	if k.region == "" {
		k.region = s.Region
	}
	s.mu.Lock()
	st := s.stores[k]
	s.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := s3store.New(ctx, s3store.Config{Bucket: k.bucket, Endpoint: k.endpoint, Region: k.region})
	if err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stores == nil {
		s.stores = map[storeKey]*s3store.Store{}
	}
	s.stores[k] = st
	return st, nil
}

// Open opens the volume at l. The first time it opens a volume it also
// checks that the store honours conditional writes (the reaper's record
// and lease rely on them).
func (s *S3) Open(ctx context.Context, l volumeid.Loc) (*volume.Volume, error) {
	st, err := s.store(ctx, l)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vol, err := volume.Open(octx, st, l.URL(), false)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	done := s.probed[l]
	s.mu.Unlock()
	if !done {
		if err := volume.Probe(octx, st, vol.Keys); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.probed == nil {
			s.probed = map[volumeid.Loc]bool{}
		}
		s.probed[l] = true
		s.mu.Unlock()
	}
	return vol, nil
}

// maxRecordSize bounds a controller record the reaper reads: the
// controller's are a few hundred bytes.
const maxRecordSize = 64 << 10

// Kept lists the volumes of bucket's bucket that the CSI controller's
// records say were deleted but keep their objects until their last
// snapshot or clone is gone (not those retained on purpose, nor read-only
// views, which have no objects). Records whose prefix known reports are
// not read. A record that makes no sense is skipped.
//
// A kept volume lives in the bucket its record was read from, so it is
// reached at that bucket's endpoint and region (bucket's, which come from
// a PersistentVolume's handle): the endpoint and region a record names
// are not used (records are objects in the bucket, writable by whoever
// can write there; following them would send the reaper's credentials
// wherever a record points).
func (s *S3) Kept(ctx context.Context, bucket volumeid.Loc, known func(prefix string) bool) ([]volumeid.Loc, error) {
	st, err := s.store(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return kept(ctx, st, bucket, known)
}

// kept is Kept over st, the store of bucket. Every record and every
// listing page is untrusted: a record is read only up to maxRecordSize
// (whatever the listing says its size is), and a page that says more
// keys follow but does not advance the listing is an error, not a loop.
func kept(ctx context.Context, st objstore.Store, bucket volumeid.Loc, known func(prefix string) bool) ([]volumeid.Loc, error) {
	var out []volumeid.Loc
	after := ""
	for {
		page, err := st.List(ctx, volumeid.RecordsPrefix, after, 0)
		if errors.Is(err, objstore.ErrNoBucket) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s in bucket %s: %w", volumeid.RecordsPrefix, bucket.Bucket, err)
		}
		for _, o := range page.Objects {
			if o.Key <= after {
				return nil, fmt.Errorf("list %s in bucket %s: the store returned %q after %q (keys out of order)",
					volumeid.RecordsPrefix, bucket.Bucket, o.Key, after)
			}
			after = o.Key
			prefix, ok := volumeid.RecordPrefix(o.Key)
			if !ok || known(prefix) || o.Size > maxRecordSize {
				continue
			}
			b, err := st.GetRange(ctx, o.Key, 0, maxRecordSize+1)
			if errors.Is(err, objstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read %s in bucket %s: %w", o.Key, bucket.Bucket, err)
			}
			if len(b) > maxRecordSize {
				continue // larger than its listing said: not the controller's
			}
			var r volumeid.Record
			if json.Unmarshal(b, &r) != nil || r.Version != 1 || r.Prefix != prefix || !r.Deleted || r.Retain || r.ReadOnlyView {
				continue
			}
			l := volumeid.Loc{Bucket: bucket.Bucket, Prefix: prefix, Endpoint: bucket.Endpoint, Region: bucket.Region}
			if l.Validate("record") != nil {
				continue
			}
			out = append(out, l)
		}
		if !page.Truncated {
			return out, nil
		}
		if len(page.Objects) == 0 {
			return nil, fmt.Errorf("list %s in bucket %s: the store says more keys follow %q but returned none",
				volumeid.RecordsPrefix, bucket.Bucket, after)
		}
	}
}
