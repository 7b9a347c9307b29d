package k8svolumes

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// untrustedStore is a bucket whose listing lies: it reports every record
// as small, may answer with empty pages that say more keys follow, and
// counts what was read.
type untrustedStore struct {
	*memstore.Store
	emptyTruncated bool
	lists          int
	read           int // bytes returned by Get and GetRange
}

var errSpun = errors.New("listed the records 1000 times")

func (s *untrustedStore) List(ctx context.Context, prefix, after string, max int) (objstore.ListPage, error) {
	if s.lists++; s.lists > 1000 {
		return objstore.ListPage{}, errSpun
	}
	if s.emptyTruncated {
		return objstore.ListPage{Truncated: true}, nil
	}
	p, err := s.Store.List(ctx, prefix, after, max)
	for i := range p.Objects {
		p.Objects[i].Size = 100
	}
	return p, err
}

func (s *untrustedStore) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	b, info, err := s.Store.Get(ctx, key)
	s.read += len(b)
	return b, info, err
}

func (s *untrustedStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	b, err := s.Store.GetRange(ctx, key, off, n)
	s.read += len(b)
	return b, err
}

func none(string) bool { return false }

// A record is read only up to its bound, whatever the listing says its
// size is, and one larger than that is not a controller's.
func TestKeptBoundsTheRecordRead(t *testing.T) {
	st := &untrustedStore{Store: memstore.New("bkt")}
	huge := `{"version":1,"prefix":"pvs/big","deleted":true}` + strings.Repeat(" ", 4<<20)
	if _, err := st.Put(t.Context(), volumeid.RecordKey("pvs/big"), []byte(huge)); err != nil {
		t.Fatal(err)
	}
	locs, err := kept(t.Context(), st, volumeid.Loc{Bucket: "bkt"}, none)
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) != 0 {
		t.Fatalf("a 4 MiB record was accepted: %v", locs)
	}
	if st.read > maxRecordSize+1 {
		t.Fatalf("read %d bytes of a record, the bound is %d", st.read, maxRecordSize)
	}
}

// A listing page that says more keys follow but holds none stops the
// listing with an error: a broken or hostile store must not hang the
// reaper.
func TestKeptStopsOnAnEmptyTruncatedPage(t *testing.T) {
	st := &untrustedStore{Store: memstore.New("bkt"), emptyTruncated: true}
	_, err := kept(t.Context(), st, volumeid.Loc{Bucket: "bkt"}, none)
	if err == nil || errors.Is(err, errSpun) || st.lists != 1 {
		t.Fatalf("after %d listings: %v", st.lists, err)
	}
}

// A kept volume is reached where its record was read (the bucket's
// endpoint and region, from a PersistentVolume), never where the record,
// an object anyone who writes the bucket can forge, points.
func TestKeptUsesTheBucketsEndpoint(t *testing.T) {
	st := &untrustedStore{Store: memstore.New("bkt")}
	rec := `{"version":1,"prefix":"pvs/d","deleted":true,"endpoint":"https://attacker.example","region":"xx-evil-1"}`
	if _, err := st.Put(t.Context(), volumeid.RecordKey("pvs/d"), []byte(rec)); err != nil {
		t.Fatal(err)
	}
	bucket := volumeid.Loc{Bucket: "bkt", Endpoint: "https://s3.example", Region: "eu-west-1"}
	locs, err := kept(t.Context(), st, bucket, none)
	if err != nil {
		t.Fatal(err)
	}
	want := volumeid.Loc{Bucket: "bkt", Prefix: "pvs/d", Endpoint: bucket.Endpoint, Region: bucket.Region}
	if len(locs) != 1 || locs[0] != want {
		t.Fatalf("kept %v, want %v", locs, want)
	}
}
