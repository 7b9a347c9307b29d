package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Errors of point-in-time checks.
var (
	// ErrTooOld: the time is older than the reaper keeps (or before the
	// volume existed). The message says how far back the volume can go.
	ErrTooOld = errors.New("point in time is older than the volume can show")
	// ErrFuture: the time is after the store's clock.
	ErrFuture = errors.New("point in time is in the future")
)

// ReadRecord reads the reaper's record: nil (and no error) when no reaper
// has run on the volume. A record that cannot be decoded is an error.
func ReadRecord(ctx context.Context, store objstore.Store, keys format.Keys) (*format.ReaperRecord, error) {
	r, _, err := ReadRecordInfo(ctx, store, keys)
	return r, err
}

// ReadRecordInfo is ReadRecord that also returns the record object's info
// (its ETag, for a conditional update of the record).
func ReadRecordInfo(ctx context.Context, store objstore.Store, keys format.Keys) (*format.ReaperRecord, objstore.ObjectInfo, error) {
	obj, info, err := store.Get(ctx, keys.Reaper())
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, objstore.ObjectInfo{}, nil
	}
	if err != nil {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("read the reaper's record: %w", err)
	}
	r, err := format.DecodeReaperRecord(obj)
	if err != nil {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("%s: %w", keys.Reaper(), err)
	}
	return r, info, nil
}

// Earliest returns the earliest instant the volume can be mounted at
// (snapshot pins aside, which are always mountable): the later of the
// volume's creation (its header's store time, to the second) and the
// reaper's recorded horizon.
func Earliest(ctx context.Context, vol *volume.Volume) (time.Time, error) {
	earliest := vol.Created.Truncate(time.Second)
	r, err := ReadRecord(ctx, vol.Store, vol.Keys)
	if err != nil {
		return time.Time{}, err
	}
	if r != nil && r.Horizon.After(earliest) {
		earliest = r.Horizon
	}
	return earliest, nil
}

// Resolve turns an --as-of argument into a time: an RFC 3339 time, or
// else the name of a snapshot (then pin is set).
func Resolve(ctx context.Context, store objstore.Store, keys format.Keys, arg string) (t time.Time, pin *Pin, err error) {
	if t, err := time.Parse(time.RFC3339Nano, arg); err == nil {
		return t, nil, nil
	}
	if ValidateName(arg) != nil {
		return time.Time{}, nil, fmt.Errorf("%q is neither an RFC 3339 time (such as 2026-11-25T14:00:00Z) nor a snapshot name", arg)
	}
	p, err := Get(ctx, store, keys, arg)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return time.Time{}, nil, err
	}
	return p.Time, &p, nil
}

// CheckAsOf refuses a point in time the volume cannot show: in the future
// by the store's clock, before the volume existed, or older than the
// reaper keeps. A snapshot's pin time (pinned) is always kept. The error
// says how far back the volume can go. A time equal to a pin's time counts
// as pinned.
//
// A mount calls it twice: before it starts, and again once its first ping
// (announcing t as the oldest time it reads) is written. The reaper writes
// its record before it re-reads the pings and deletes anything, so a
// reaper pass that could delete what t needs is either seen by the second
// check or sees the ping.
func CheckAsOf(ctx context.Context, vol *volume.Volume, t time.Time, pinned bool) error {
	c, ok := vol.Store.(objstore.Clock)
	if !ok {
		return errors.New("the store cannot tell its time")
	}
	now, err := c.Now(ctx)
	if err != nil {
		return fmt.Errorf("read the store's clock: %w", err)
	}
	if t.After(now) {
		return fmt.Errorf("%w: %s (the store's clock reads %s)", ErrFuture, t.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	// Stores keep times to the second: a second not yet over may still
	// gain commits, and a view of it would change.
	if !t.Truncate(time.Second).Before(now.Truncate(time.Second)) {
		return fmt.Errorf("%w: %s is not over yet (the store keeps times to the second and its clock reads %s): use a time at least a second ago",
			ErrFuture, t.Format(time.RFC3339Nano), now.Format(time.RFC3339))
	}
	created := vol.Created.Truncate(time.Second)
	if t.Before(created) {
		return fmt.Errorf("%w: %s is before the volume existed: %s can go back to %s (its creation)",
			ErrTooOld, t.Format(time.RFC3339), vol.URL, created.Format(time.RFC3339))
	}
	if pinned {
		return nil
	}
	r, err := ReadRecord(ctx, vol.Store, vol.Keys)
	if err != nil {
		return fmt.Errorf("cannot tell how far back the volume goes: %w", err)
	}
	if r != nil && t.Before(r.Horizon) {
		// The instant of a pin is kept, however given: by name or by time.
		if pins, err := ListKeys(ctx, vol.Store, vol.Keys); err == nil {
			for _, p := range pins {
				if p.LastModified.Equal(t) {
					return nil
				}
			}
		}
		return fmt.Errorf("%w: %s is older than the reaper keeps: %s can go back to %s (or to a snapshot: s3gfs snapshot list)",
			ErrTooOld, t.Format(time.RFC3339Nano), vol.URL, r.Horizon.Format(time.RFC3339Nano))
	}
	return nil
}
