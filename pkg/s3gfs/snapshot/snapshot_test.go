package snapshot_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/memstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestCreateGetListDelete(t *testing.T) {
	ctx := context.Background()
	store := memstore.New("b")
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	store.SetClock(func() time.Time { return clock })
	keys, _ := format.NewKeys("vol")

	a, err := snapshot.CreateWith(ctx, store, keys, "a", snapshot.Options{Label: "csi-1", Creator: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Time.Equal(clock) || a.Label != "csi-1" || a.Creator != "me" || a.Key != "vol/s/a" {
		t.Fatalf("created %+v", a)
	}
	clock = clock.Add(time.Minute)
	again, err := snapshot.Create(ctx, store, keys, "a")
	if !errors.Is(err, snapshot.ErrExists) || !again.Time.Equal(a.Time) || again.Label != "csi-1" {
		t.Fatalf("second create: %+v, %v", again, err)
	}
	b, err := snapshot.Create(ctx, store, keys, "b-2.x_y")
	if err != nil {
		t.Fatal(err)
	}
	got, err := snapshot.Get(ctx, store, keys, "b-2.x_y")
	if err != nil || !got.Time.Equal(b.Time) {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := snapshot.Get(ctx, store, keys, "nope"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	list, err := snapshot.List(ctx, store, keys)
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Name != "b-2.x_y" {
		t.Fatalf("list: %+v %v", list, err)
	}
	// A corrupt pin still lists, with its time, and is reported.
	store.Put(ctx, "vol/s/c", []byte("garbage"))
	list, err = snapshot.List(ctx, store, keys)
	if !errors.Is(err, snapshot.ErrCorrupt) || len(list) != 3 || !strings.Contains(err.Error(), "vol/s/c") {
		t.Fatalf("list with corrupt pin: %+v %v", list, err)
	}
	if err := snapshot.Delete(ctx, store, keys, "a"); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Delete(ctx, store, keys, "a"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := snapshot.Get(ctx, store, keys, "a"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	good := []string{"a", "snap-1", "A.b_c", strings.Repeat("x", 253), "snapshot-3f2a1c8e-4b7d-11ee-be56-0242ac120002"}
	bad := []string{"", ".", "..", "a..b", ".hidden", "-x", "a/b", "a b", "é", strings.Repeat("x", 254), "a\x00"}
	for _, n := range good {
		if err := snapshot.ValidateName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range bad {
		if err := snapshot.ValidateName(n); !errors.Is(err, snapshot.ErrBadName) {
			t.Errorf("%q: got %v, want ErrBadName", n, err)
		}
	}
	ctx := context.Background()
	keys, _ := format.NewKeys("")
	if _, err := snapshot.Create(ctx, memstore.New("b"), keys, "a/b"); !errors.Is(err, snapshot.ErrBadName) {
		t.Errorf("create bad name: %v", err)
	}
}

func TestCheckAsOf(t *testing.T) {
	ctx := context.Background()
	store := memstore.New("b")
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	store.SetClock(func() time.Time { return clock })
	u := volume.URL{Bucket: "b", Prefix: "v"}
	vol, err := volume.Format(ctx, store, u, volume.FormatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	if err := snapshot.CheckAsOf(ctx, vol, clock.Add(-time.Minute), false); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.CheckAsOf(ctx, vol, clock.Add(time.Minute), false); !errors.Is(err, snapshot.ErrFuture) {
		t.Fatalf("future: %v", err)
	}
	err = snapshot.CheckAsOf(ctx, vol, clock.Add(-2*time.Hour), false)
	if !errors.Is(err, snapshot.ErrTooOld) || !strings.Contains(err.Error(), "can go back to 2030-01-01T00:00:00Z") {
		t.Fatalf("before creation: %v", err)
	}
	rec, _ := format.EncodeReaperRecord(&format.ReaperRecord{Horizon: clock.Add(-30 * time.Minute), Pass: clock, Owner: "r"})
	store.Put(ctx, vol.Keys.Reaper(), rec)
	err = snapshot.CheckAsOf(ctx, vol, clock.Add(-40*time.Minute), false)
	if !errors.Is(err, snapshot.ErrTooOld) || !strings.Contains(err.Error(), "can go back to 2030-01-01T00:30:00Z") {
		t.Fatalf("older than horizon: %v", err)
	}
	if err := snapshot.CheckAsOf(ctx, vol, clock.Add(-40*time.Minute), true); err != nil {
		t.Fatalf("pinned time refused: %v", err)
	}
	if got, _ := snapshot.Earliest(ctx, vol); !got.Equal(clock.Add(-30 * time.Minute)) {
		t.Fatalf("earliest %v", got)
	}
	p, _ := snapshot.Create(ctx, store, vol.Keys, "s1")
	// A pin's time, given as a time, is mountable even before the horizon.
	rec, _ = format.EncodeReaperRecord(&format.ReaperRecord{Horizon: clock.Add(time.Hour), Pass: clock, Owner: "r"})
	store.Put(ctx, vol.Keys.Reaper(), rec)
	clock = clock.Add(2 * time.Hour)
	if err := snapshot.CheckAsOf(ctx, vol, p.Time, false); err != nil {
		t.Fatalf("a pin's time: %v", err)
	}
	if err := snapshot.CheckAsOf(ctx, vol, p.Time.Add(time.Second), false); !errors.Is(err, snapshot.ErrTooOld) {
		t.Fatalf("a second after a pin's time: %v", err)
	}
	tm, pin, err := snapshot.Resolve(ctx, store, vol.Keys, "s1")
	if err != nil || pin == nil || !tm.Equal(p.Time) {
		t.Fatalf("resolve: %v %v %v", tm, pin, err)
	}
	tm, pin, err = snapshot.Resolve(ctx, store, vol.Keys, "2030-01-01T00:10:00Z")
	if err != nil || pin != nil || !tm.Equal(time.Date(2030, 1, 1, 0, 10, 0, 0, time.UTC)) {
		t.Fatalf("resolve time: %v %v %v", tm, pin, err)
	}
	if _, _, err := snapshot.Resolve(ctx, store, vol.Keys, "2030-13-01"); err == nil {
		t.Fatal("resolve of a bad time succeeded")
	}
}
