package k8svolumes_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/s3gfs/s3gfs/pkg/driver"
	"github.com/s3gfs/s3gfs/pkg/reaper/k8svolumes"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// csiPV is a PersistentVolume of driver drv with volume handle handle.
func csiPV(name, drv, handle string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
			CSI: &corev1.CSIPersistentVolumeSource{Driver: drv, VolumeHandle: handle},
		}},
	}
}

// content is a VolumeSnapshotContent of driver drv: with status handle
// (cut by the driver) or, when pre is set, a pre-provisioned one.
func content(name, drv, handle string, pre bool) *snapv1.VolumeSnapshotContent {
	c := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       snapv1.VolumeSnapshotContentSpec{Driver: drv, DeletionPolicy: snapv1.VolumeSnapshotContentDelete},
	}
	switch {
	case handle == "":
	case pre:
		c.Spec.Source.SnapshotHandle = &handle
	default:
		c.Status = &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: &handle}
	}
	return c
}

func TestDefaultDriverIsTheDriversName(t *testing.T) {
	if k8svolumes.DefaultDriver != driver.DefaultDriverName {
		t.Fatalf("k8svolumes.DefaultDriver %q != driver.DefaultDriverName %q", k8svolumes.DefaultDriver, driver.DefaultDriverName)
	}
}

// TestFind: PVs and VolumeSnapshotContents of the driver name their
// volumes, once each; other drivers' objects and non-CSI volumes are
// ignored; handles that are foreign or invalid are reported and skipped.
func TestFind(t *testing.T) {
	const drv = k8svolumes.DefaultDriver
	a := volumeid.Loc{Bucket: "bkt", Prefix: "pvs/a"}
	b := volumeid.Loc{Bucket: "bkt", Prefix: "pvs/b", Region: "eu-west-1", Endpoint: "https://s3.example.com"}
	c := volumeid.Loc{Bucket: "bkt-c"} // deleted PV, kept for its snapshot; bucket of its own
	d := volumeid.Loc{Bucket: "bkt", Prefix: "pvs/d"}
	deleting := content("snapcontent-deleting", drv, a.SnapshotID("old"), false)
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	deleting.Finalizers = []string{"snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"}
	hostPath := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-hostpath"},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}}}
	kube := fake.NewClientset(
		csiPV("pv-a", drv, a.VolumeID()),
		csiPV("pv-a2", drv, a.VolumeID()), // a static PV naming the same volume
		csiPV("pv-b", drv, b.VolumeID()),
		csiPV("pv-foreign", drv, "projects/p/zones/z/disks/d"),
		csiPV("pv-traversal", drv, "v1:bkt:pvs/../../etc"),
		csiPV("pv-noncanonical", drv, "v1:bkt:pvs/a::"),
		csiPV("pv-other-driver", "ebs.csi.aws.com", d.VolumeID()),
		hostPath,
	)
	snaps := snapfake.NewSimpleClientset(
		content("snapcontent-a", drv, a.SnapshotID("snap-a"), false),
		content("snapcontent-c", drv, c.SnapshotID("snap-c"), false),
		content("snapcontent-d-pre", drv, d.SnapshotID("imported"), true),
		content("snapcontent-pending", drv, "", false),
		content("snapcontent-bad", drv, "s1:x:bkt:/abs", false),
		content("snapcontent-foreign", drv, "snap-0123", false),
		content("snapcontent-other", "ebs.csi.aws.com", c.SnapshotID("x"), false),
		deleting,
	)
	f := &k8svolumes.Finder{Client: kube, Snapshots: snaps, Logger: quiet}
	got, err := f.Find(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.SnapshotsErr != nil {
		t.Fatal(got.SnapshotsErr)
	}
	want := []k8svolumes.Volume{
		{Loc: c, Snapshots: []k8svolumes.Snapshot{{Content: "snapcontent-c", Pin: "snap-c"}}},
		{Loc: a, PVs: []string{"pv-a", "pv-a2"}, Snapshots: []k8svolumes.Snapshot{
			{Content: "snapcontent-a", Pin: "snap-a"}, {Content: "snapcontent-deleting", Pin: "old", Deleting: true}}},
		{Loc: b, PVs: []string{"pv-b"}},
		{Loc: d, Snapshots: []k8svolumes.Snapshot{{Content: "snapcontent-d-pre", Pin: "imported"}}},
	}
	var have []k8svolumes.Volume
	for _, v := range got.Volumes {
		have = append(have, *v)
	}
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("volumes:\n got %+v\nwant %+v", have, want)
	}
	skipped := map[string]string{}
	for _, s := range got.Skipped {
		skipped[s.Object] = s.Reason
	}
	for _, obj := range []string{"PersistentVolume/pv-foreign", "PersistentVolume/pv-traversal", "PersistentVolume/pv-noncanonical",
		"VolumeSnapshotContent/snapcontent-bad", "VolumeSnapshotContent/snapcontent-foreign"} {
		if skipped[obj] == "" {
			t.Errorf("%s not reported as skipped (skipped: %v)", obj, skipped)
		}
	}
	if len(got.Skipped) != 5 {
		t.Errorf("skipped %d objects, want 5: %v", len(got.Skipped), skipped)
	}
	if !strings.Contains(skipped["PersistentVolume/pv-foreign"], "not an s3gfs volume id") {
		t.Errorf("foreign handle reason: %q", skipped["PersistentVolume/pv-foreign"])
	}
}

// TestFindPages: the PersistentVolumes and VolumeSnapshotContents are
// read page by page, following the continue token.
func TestFindPages(t *testing.T) {
	const drv = k8svolumes.DefaultDriver
	locs := []volumeid.Loc{{Bucket: "bkt", Prefix: "p/0"}, {Bucket: "bkt", Prefix: "p/1"}, {Bucket: "bkt", Prefix: "p/2"}}
	kube := fake.NewClientset()
	calls := 0
	kube.PrependReactor("list", "persistentvolumes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts := a.(k8stesting.ListActionImpl).ListOptions
		if opts.Limit <= 0 {
			t.Errorf("list without a limit")
		}
		i := 0
		if opts.Continue != "" {
			i = int(opts.Continue[0] - '0')
		}
		calls++
		l := &corev1.PersistentVolumeList{Items: []corev1.PersistentVolume{*csiPV("pv-"+locs[i].Prefix[2:], drv, locs[i].VolumeID())}}
		if i+1 < len(locs) {
			l.Continue = string(rune('0' + i + 1))
		}
		return true, l, nil
	})
	f := &k8svolumes.Finder{Client: kube, Driver: drv, Logger: quiet}
	got, err := f.Find(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if calls != 3 || len(got.Volumes) != 3 {
		t.Fatalf("%d list calls, %d volumes; want 3 and 3", calls, len(got.Volumes))
	}
}

// TestFindErrors: failing to list PersistentVolumes fails the discovery;
// failing to list VolumeSnapshotContents (the CRDs missing, or RBAC) does
// not: the PVs' volumes are still found, and the failure is reported.
func TestFindErrors(t *testing.T) {
	const drv = k8svolumes.DefaultDriver
	a := volumeid.Loc{Bucket: "bkt", Prefix: "pvs/a"}
	kube := fake.NewClientset(csiPV("pv-a", drv, a.VolumeID()))
	snaps := snapfake.NewSimpleClientset()
	snaps.PrependReactor("list", "volumesnapshotcontents", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "snapshot.storage.k8s.io", Resource: "volumesnapshotcontents"}, "")
	})
	f := &k8svolumes.Finder{Client: kube, Snapshots: snaps, Logger: quiet}
	got, err := f.Find(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.SnapshotsErr == nil || len(got.Volumes) != 1 || got.Volumes[0].Loc != a {
		t.Fatalf("got %+v, snapshots error %v; want volume a and an error", got.Volumes, got.SnapshotsErr)
	}

	forbidden := errors.New("persistentvolumes is forbidden")
	kube.PrependReactor("list", "persistentvolumes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbidden
	})
	if _, err := f.Find(context.Background()); !errors.Is(err, forbidden) {
		t.Fatalf("Find with PVs unlistable: %v", err)
	}
}
