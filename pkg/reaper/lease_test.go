package reaper_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

func TestBucketLease(t *testing.T) {
	e := newTEnv(t)
	a := &reaper.BucketLease{Store: e.store, Keys: e.vol.Keys, Owner: "a", Duration: 3 * time.Second, Logger: quiet}
	b := &reaper.BucketLease{Store: e.store, Keys: e.vol.Keys, Owner: "b", Duration: 3 * time.Second, Logger: quiet}
	heldA, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx); !errors.Is(err, reaper.ErrLeaseHeld) {
		t.Fatalf("second acquire: %v", err)
	}
	// Released: free at once.
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if heldA.Err() == nil {
		t.Fatal("released lease's context still live")
	}
	heldB, err := b.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	// Renewal keeps it (the renewal loop runs on real time).
	time.Sleep(1500 * time.Millisecond)
	if heldB.Err() != nil {
		t.Fatalf("renewed lease lost: %v", context.Cause(heldB))
	}
	if _, err := a.Acquire(ctx); !errors.Is(err, reaper.ErrLeaseHeld) {
		t.Fatalf("acquire of a renewed lease: %v", err)
	}
	// Taken over once expired by the store's clock: the old holder
	// notices at its next renewal.
	e.advance(4 * time.Second)
	heldA, err = a.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire of an expired lease: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for heldB.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !errors.Is(context.Cause(heldB), reaper.ErrLeaseLost) {
		t.Fatalf("taken-over holder: cause %v", context.Cause(heldB))
	}
	b.Release(ctx) // must not disturb a's lease
	if _, err := b.Acquire(ctx); !errors.Is(err, reaper.ErrLeaseHeld) {
		t.Fatalf("after b's late release: %v", err)
	}
	a.Release(ctx)
	_ = heldA
	// An unreadable lease object counts as held for the longest lease.
	e.store.Put(ctx, e.vol.Keys.Lease(), []byte("garbage"))
	if _, err := b.Acquire(ctx); !errors.Is(err, reaper.ErrLeaseHeld) {
		t.Fatalf("acquire over an unreadable lease: %v", err)
	}
	e.advance(format.MaxLeaseDuration + time.Second)
	if _, err := b.Acquire(ctx); err != nil {
		t.Fatalf("acquire over an old unreadable lease: %v", err)
	}
	b.Release(ctx)
}
