package objstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
)

// unconditional is a store that ignores If-None-Match, as some
// S3-compatible servers do.
type unconditional struct{ *memstore.Store }

func (u unconditional) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	return u.Put(ctx, key, body)
}

func TestProbe(t *testing.T) {
	ctx := context.Background()
	s := memstore.New("b")
	if err := objstore.Probe(ctx, s, "probe"); err != nil {
		t.Fatalf("Probe of a conforming store: %v", err)
	}
	if keys := s.Keys(); len(keys) != 0 {
		t.Errorf("Probe left keys behind: %q", keys)
	}

	// A stale probe object is not mistaken for a failure.
	s.Put(ctx, "probe", []byte("stale"))
	if err := objstore.Probe(ctx, s, "probe"); err != nil {
		t.Fatalf("Probe over a stale key: %v", err)
	}

	u := unconditional{memstore.New("u")}
	err := objstore.Probe(ctx, u, "probe")
	if !errors.Is(err, objstore.ErrNoConditionalWrites) {
		t.Fatalf("Probe of a store ignoring conditions: got %v, want ErrNoConditionalWrites", err)
	}
	if keys := u.Keys(); len(keys) != 0 {
		t.Errorf("failed Probe left keys behind: %q", keys)
	}

	s.SetHooks(memstore.Hooks{Before: memstore.FailOnce(memstore.OpPutIfAbsent, "", objstore.ErrAccessDenied)})
	if err := objstore.Probe(ctx, s, "probe"); !errors.Is(err, objstore.ErrAccessDenied) {
		t.Fatalf("got %v, want ErrAccessDenied", err)
	}
}
