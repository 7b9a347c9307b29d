package reaper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Lease grants one reaper at a time the right to act on a volume. The
// bucket lease (BucketLease) is one implementation; a Kubernetes Lease
// (client-go leader election) can be another.
type Lease interface {
	// Acquire tries once to take the lease. On success it returns a
	// context, derived from ctx, that stays live while the lease is held:
	// it is cancelled when the lease is lost (or released), and the holder
	// keeps it renewed until then. A lease held by someone else is an
	// error wrapping ErrLeaseHeld.
	Acquire(ctx context.Context) (context.Context, error)
	// Release gives the lease up and cancels the context Acquire returned.
	Release(ctx context.Context) error
}

// Lease errors.
var (
	// ErrLeaseHeld: another reaper holds the lease.
	ErrLeaseHeld = errors.New("the reaper lease is held by another reaper")
	// ErrLeaseLost: the lease was taken over or could not be renewed in time.
	ErrLeaseLost = errors.New("the reaper lease was lost")
)

// DefaultLeaseDuration is how long a bucket lease lasts between renewals.
const DefaultLeaseDuration = time.Minute

// BucketLease is the lease object `lease` in the volume (FORMAT.md §14):
// created with a conditional create when absent, taken over with a
// conditional overwrite (If-Match its ETag) once expired by the store's
// clock, renewed by its holder with If-Match on its own ETag, and lost on
// a failed condition.
type BucketLease struct {
	Store    objstore.Store
	Keys     format.Keys
	Owner    string        // unique per reaper process; NewOwnerID by default
	Duration time.Duration // DefaultLeaseDuration by default
	Logger   *slog.Logger

	mu       sync.Mutex
	etag     string
	seq      uint64
	acquired time.Time
	cancel   context.CancelCauseFunc
	stopped  chan struct{}
}

// NewOwnerID returns "host-pid-random", a lease owner id unique to this
// process.
func NewOwnerID() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	id := fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	if len(id) > format.MaxOwnerLen {
		id = id[len(id)-format.MaxOwnerLen:]
	}
	return id
}

func (l *BucketLease) defaults() {
	if l.Owner == "" {
		l.Owner = NewOwnerID()
	}
	if l.Duration <= 0 {
		l.Duration = DefaultLeaseDuration
	}
	if l.Duration > format.MaxLeaseDuration {
		l.Duration = format.MaxLeaseDuration
	}
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
}

// margin is how long before its expiry by the store's clock the holder
// considers its lease gone: LastModified is kept to the second by S3, and
// the holder's clock may run a little slow.
func (l *BucketLease) margin() time.Duration { return min(2*time.Second+l.Duration/10, l.Duration/2) }

func (l *BucketLease) body(duration time.Duration) ([]byte, error) {
	return format.EncodeLease(&format.Lease{Owner: l.Owner, Duration: duration, Acquired: l.acquired, Seq: l.seq})
}

// Holder describes the current lease object, for messages.
type Holder struct {
	Owner string
	Until time.Time // store time
}

// Current reads the lease object: who holds it until when (zero Holder
// when there is none).
func (l *BucketLease) Current(ctx context.Context) (Holder, error) {
	obj, info, err := l.Store.Get(ctx, l.Keys.Lease())
	if errors.Is(err, objstore.ErrNotFound) {
		return Holder{}, nil
	}
	if err != nil {
		return Holder{}, err
	}
	ls, err := format.DecodeLease(obj)
	if err != nil {
		return Holder{Owner: "(unreadable lease object)", Until: info.LastModified.Add(format.MaxLeaseDuration)}, nil
	}
	return Holder{Owner: ls.Owner, Until: info.LastModified.Add(ls.Duration)}, nil
}

// Acquire takes the lease if it is free or expired.
func (l *BucketLease) Acquire(ctx context.Context) (context.Context, error) {
	l.defaults()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return nil, errors.New("lease already acquired by this BucketLease")
	}
	key := l.Keys.Lease()
	now, err := hosts.ServerNow(ctx, l.Store)
	if err != nil {
		return nil, fmt.Errorf("read the store's clock: %w", err)
	}
	l.seq = 0
	l.acquired = time.Now().UTC()
	body, err := l.body(l.Duration)
	if err != nil {
		return nil, err
	}
	sent := time.Now()
	obj, info, err := l.Store.Get(ctx, key)
	var put objstore.ObjectInfo
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		put, err = l.Store.PutIfAbsent(ctx, key, body)
	case err != nil:
		return nil, fmt.Errorf("read the lease: %w", err)
	default:
		until := info.LastModified.Add(format.MaxLeaseDuration)
		owner := "(unreadable lease object)"
		if ls, derr := format.DecodeLease(obj); derr == nil {
			until, owner = info.LastModified.Add(ls.Duration), ls.Owner
			if ls.Duration == 0 {
				until = time.Time{} // released
			}
		} else {
			l.Logger.Warn("the lease object is unreadable; it counts as held for the longest lease", "key", key, "err", derr)
		}
		if now.Before(until) && owner != l.Owner {
			return nil, fmt.Errorf("%w: by %s until %s (store time; now %s)", ErrLeaseHeld, owner, until.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		sent = time.Now()
		put, err = l.Store.PutIfMatch(ctx, key, body, info.ETag)
	}
	if errors.Is(err, objstore.ErrExists) || errors.Is(err, objstore.ErrPrecondition) || errors.Is(err, objstore.ErrNotFound) {
		h, _ := l.Current(ctx)
		return nil, fmt.Errorf("%w: another reaper took it first (%s, until %s)", ErrLeaseHeld, h.Owner, h.Until.Format(time.RFC3339))
	}
	if err != nil {
		return nil, fmt.Errorf("take the lease: %w", err)
	}
	l.etag = put.ETag
	held, cancel := context.WithCancelCause(ctx)
	l.cancel = cancel
	l.stopped = make(chan struct{})
	go l.renew(held, sent)
	l.Logger.Info("reaper lease acquired", "owner", l.Owner, "duration", l.Duration)
	return held, nil
}

// renew keeps the lease until it is lost or ctx ends.
func (l *BucketLease) renew(ctx context.Context, sent time.Time) {
	defer close(l.stopped)
	validUntil := sent.Add(l.Duration - l.margin())
	for {
		wait := min(l.Duration/3, time.Until(validUntil)/2)
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !time.Now().Before(validUntil) {
			l.cancel(fmt.Errorf("%w: not renewed in time", ErrLeaseLost))
			l.Logger.Warn("reaper lease lost: not renewed in time", "owner", l.Owner)
			return
		}
		l.mu.Lock()
		l.seq++
		body, err := l.body(l.Duration)
		etag := l.etag
		l.mu.Unlock()
		if err != nil {
			l.cancel(err)
			return
		}
		start := time.Now()
		rctx, rcancel := context.WithDeadline(ctx, validUntil)
		info, err := l.Store.PutIfMatch(rctx, l.Keys.Lease(), body, etag)
		rcancel()
		switch {
		case err == nil:
			l.mu.Lock()
			l.etag = info.ETag
			l.mu.Unlock()
			validUntil = start.Add(l.Duration - l.margin())
		case errors.Is(err, objstore.ErrPrecondition) || errors.Is(err, objstore.ErrNotFound):
			l.cancel(fmt.Errorf("%w: taken over by another reaper", ErrLeaseLost))
			l.Logger.Warn("reaper lease lost: taken over", "owner", l.Owner)
			return
		case ctx.Err() != nil:
			return
		default:
			l.Logger.Warn("renewing the reaper lease failed; retrying", "err", err)
		}
	}
}

// Release gives the lease up: it overwrites the lease with an expired one
// (If-Match its own ETag), so the next reaper need not wait.
func (l *BucketLease) Release(ctx context.Context) error {
	l.mu.Lock()
	cancel, stopped := l.cancel, l.stopped
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel(errors.New("lease released"))
	<-stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancel = nil
	l.seq++
	body, err := l.body(0)
	if err != nil {
		return err
	}
	_, err = l.Store.PutIfMatch(ctx, l.Keys.Lease(), body, l.etag)
	if err != nil && !errors.Is(err, objstore.ErrPrecondition) && !errors.Is(err, objstore.ErrNotFound) {
		return fmt.Errorf("release the lease: %w", err)
	}
	return nil
}
