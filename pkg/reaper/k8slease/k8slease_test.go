package k8slease_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/reaper/k8slease"
)

// These tests run the election against client-go's fake clientset (an
// in-memory object tracker): they check this package's use of leader
// election, not an API server. The fake does not check resourceVersion on
// update, as an API server does (optimistic concurrency, which leader
// election relies on); newClient adds that check for Leases.

// newClient is a fake clientset whose Lease updates fail with Conflict
// unless they carry the stored resourceVersion, and bump it.
func newClient() *fake.Clientset {
	c := fake.NewClientset()
	var rv int
	c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease)
		rv++
		obj.ResourceVersion = strconv.Itoa(rv)
		return false, nil, nil
	})
	c.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		cur, err := c.Tracker().Get(a.GetResource(), obj.Namespace, obj.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != obj.ResourceVersion {
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), obj.Name, errors.New("resourceVersion changed"))
		}
		rv++
		obj.ResourceVersion = strconv.Itoa(rv)
		return false, nil, nil
	})
	return c
}

func candidate(c kubernetes.Interface, id string) *k8slease.Lease {
	return &k8slease.Lease{Client: c, Namespace: "s3gfs", Name: "reaper-vol1", Identity: id, Duration: time.Second}
}

func acquireWithin(t *testing.T, l *k8slease.Lease, within time.Duration) context.Context {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		held, err := l.Acquire(t.Context())
		if err == nil {
			return held
		}
		if !errors.Is(err, reaper.ErrLeaseHeld) {
			t.Fatalf("%s: acquire: %v", l.Identity, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: lease not acquired within %v: %v", l.Identity, within, err)
		}
	}
}

func TestOneHolderAndHandOver(t *testing.T) {
	c := newClient()
	a, b := candidate(c, "pod-a"), candidate(c, "pod-b")
	defer a.Release(context.Background())
	defer b.Release(context.Background())

	heldA := acquireWithin(t, a, 5*time.Second)
	if _, err := b.Acquire(t.Context()); !errors.Is(err, reaper.ErrLeaseHeld) {
		t.Fatalf("second candidate while the first holds: %v, want ErrLeaseHeld", err)
	}
	lease, err := c.CoordinationV1().Leases("s3gfs").Get(t.Context(), "reaper-vol1", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "pod-a" {
		t.Fatalf("Lease object: %+v, %v", lease, err)
	}
	// Release hands over at once (the holder is cleared).
	if err := a.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if heldA.Err() == nil {
		t.Fatal("the released holder's context is still live")
	}
	acquireWithin(t, b, 5*time.Second)
}

func TestHolderLosesTakenLease(t *testing.T) {
	c := newClient()
	a := candidate(c, "pod-a")
	defer a.Release(context.Background())
	held := acquireWithin(t, a, 5*time.Second)
	// Another party takes the Lease over (as a candidate that saw it
	// expire would): the holder must notice and stop acting.
	lease, err := c.CoordinationV1().Leases("s3gfs").Get(t.Context(), "reaper-vol1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := "pod-z"
	future := metav1.NewMicroTime(time.Now().Add(time.Hour))
	lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &other, RenewTime: &future, AcquireTime: &future, LeaseDurationSeconds: lease.Spec.LeaseDurationSeconds}
	if _, err := c.CoordinationV1().Leases("s3gfs").Update(t.Context(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
		if !errors.Is(context.Cause(held), reaper.ErrLeaseLost) {
			t.Fatalf("cause %v, want ErrLeaseLost", context.Cause(held))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the holder kept acting after its Lease was taken over")
	}
}
