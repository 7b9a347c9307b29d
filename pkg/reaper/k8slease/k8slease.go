// Package k8slease is the reaper's lease (reaper.Lease) as a Kubernetes
// coordination.k8s.io/v1 Lease, taken through client-go leader election:
// the reapers of a volume that run in one cluster elect one holder, and
// the others stand by. (Outside a cluster, reaper.BucketLease keeps a
// lease object in the bucket instead.)
//
// A candidate keeps running the election from its first Acquire until
// Release: leader election only lets a candidate take over a record it
// has watched go unrenewed for a whole lease duration, so a candidate that
// started afresh at every attempt would never win a record left behind by
// a holder that died.
package k8slease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/s3gfs/s3gfs/pkg/reaper"
)

// Lease is a reaper.Lease held as the Kubernetes Lease Namespace/Name.
type Lease struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Identity names this candidate in the Lease (holderIdentity); it is
	// also the owner the reaper records. Use the pod's name.
	Identity string
	// Duration is how long the Lease lasts without renewal (default 15s);
	// the holder renews it every Duration/5 and gives up leading when it
	// could not renew within 2/3 of it.
	Duration time.Duration
	Logger   *slog.Logger

	mu      sync.Mutex
	stop    context.CancelFunc // ends the election; nil when not running
	done    chan struct{}      // closed when the election has ended
	leading context.Context    // live while this candidate leads; nil otherwise
	elector *leaderelection.LeaderElector
	changed chan struct{}             // closed and replaced whenever leading changes
	held    []context.CancelCauseFunc // the contexts Acquire handed out
}

// errReleased ends the contexts Acquire returned when Release is called.
var errReleased = errors.New("the reaper lease was released")

var _ reaper.Lease = (*Lease)(nil)

// Acquire starts the election if it is not running, waits briefly for its
// outcome, and returns a context that lives while this candidate leads
// (and ctx lives), or an error wrapping reaper.ErrLeaseHeld.
func (l *Lease) Acquire(ctx context.Context) (context.Context, error) {
	if err := l.start(); err != nil {
		return nil, err
	}
	wait := time.NewTimer(l.duration() / 2)
	defer wait.Stop()
	for {
		l.mu.Lock()
		leading, changed, elector := l.leading, l.changed, l.elector
		l.mu.Unlock()
		if leading != nil && leading.Err() == nil {
			held, cancel := context.WithCancelCause(ctx)
			context.AfterFunc(leading, func() { cancel(reaper.ErrLeaseLost) })
			l.mu.Lock()
			l.held = append(l.held, cancel)
			l.mu.Unlock()
			return held, nil
		}
		select {
		case <-changed:
			continue
		case <-wait.C:
			return nil, fmt.Errorf("%w: Lease %s/%s is held by %q", reaper.ErrLeaseHeld, l.Namespace, l.Name, elector.GetLeader())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Release ends the election; a Lease this candidate holds is released
// (its holder cleared), so a standby can take it at once.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	stop, done, held := l.stop, l.done, l.held
	l.stop, l.held = nil, nil
	l.mu.Unlock()
	for _, cancel := range held {
		cancel(errReleased) // at once, before the Lease is given up
	}
	if stop == nil {
		return nil
	}
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Lease) duration() time.Duration {
	if l.Duration > 0 {
		return l.Duration
	}
	return 15 * time.Second
}

func (l *Lease) start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop != nil {
		return nil
	}
	if l.Client == nil || l.Namespace == "" || l.Name == "" || l.Identity == "" {
		return errors.New("k8slease: Client, Namespace, Name and Identity are required")
	}
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	d := l.duration()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name},
		Client:     l.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: l.Identity},
	}
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   d,
		RenewDeadline:   d * 2 / 3,
		RetryPeriod:     d / 5,
		ReleaseOnCancel: true,
		Name:            l.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("reaper Lease acquired", "lease", l.Namespace+"/"+l.Name, "identity", l.Identity)
				l.setLeading(ctx)
			},
			OnStoppedLeading: func() {
				l.setLeading(nil)
			},
			OnNewLeader: func(id string) {
				if id != l.Identity {
					log.Info("reaper Lease held by another candidate", "lease", l.Namespace+"/"+l.Name, "holder", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("k8slease: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	l.stop, l.done, l.elector = stop, make(chan struct{}), elector
	go func(done chan struct{}) {
		defer close(done)
		for ctx.Err() == nil {
			elector.Run(ctx) // returns when leadership is lost, or ctx ends
		}
	}(l.done)
	return nil
}

func (l *Lease) setLeading(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leading = ctx
	close(l.changed)
	l.changed = make(chan struct{})
}
