package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/storetest"
)

func TestConformance(t *testing.T) {
	shared := memstore.New("shared")
	storetest.Run(t, func(t *testing.T) objstore.Store { return shared })
}

func TestClockNeverGoesBack(t *testing.T) {
	s := memstore.New("b")
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.SetClock(func() time.Time { return fixed })
	ctx := context.Background()
	a, _ := s.Put(ctx, "a", nil)
	b, _ := s.Put(ctx, "b", nil)
	if !a.LastModified.Equal(fixed) || !b.LastModified.After(a.LastModified) {
		t.Errorf("stalled clock: got %v then %v, want %v then later", a.LastModified, b.LastModified, fixed)
	}
	s.SetClock(func() time.Time { return fixed.Add(-time.Hour) })
	c, _ := s.Put(ctx, "c", nil)
	if !c.LastModified.After(b.LastModified) {
		t.Errorf("clock stepped back: got %v after %v", c.LastModified, b.LastModified)
	}
}

func TestHooks(t *testing.T) {
	ctx := context.Background()
	s := memstore.New("b")
	boom := errors.New("boom")

	// Before: the operation fails and has no effect.
	s.SetHooks(memstore.Hooks{Before: memstore.FailOnce(memstore.OpPutIfAbsent, "k", boom)})
	if _, err := s.PutIfAbsent(ctx, "k", []byte("1")); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if _, err := s.Head(ctx, "k"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("failed put left an object: %v", err)
	}
	if _, err := s.PutIfAbsent(ctx, "k", []byte("1")); err != nil {
		t.Fatalf("FailOnce failed twice: %v", err)
	}

	// After: the caller sees an error, but the write happened.
	s.SetHooks(memstore.Hooks{After: memstore.FailOnce(memstore.OpPut, "", objstore.ErrUnavailable)})
	if _, err := s.Put(ctx, "j", []byte("2")); !errors.Is(err, objstore.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if got, _, err := s.Get(ctx, "j"); err != nil || string(got) != "2" {
		t.Fatalf("lost-response put: Get = %q, %v", got, err)
	}

	// DeleteMany: a failing key does not stop the others.
	s.SetHooks(memstore.Hooks{Before: func(op memstore.Op, key string) error {
		if op == memstore.OpDeleteMany && key == "k" {
			return objstore.ErrAccessDenied
		}
		return nil
	}})
	if err := s.DeleteMany(ctx, []string{"j", "k"}); !errors.Is(err, objstore.ErrAccessDenied) {
		t.Fatalf("got %v, want ErrAccessDenied", err)
	}
	if got := s.Keys(); len(got) != 1 || got[0] != "k" {
		t.Fatalf("keys left = %q, want [k]", got)
	}
}
