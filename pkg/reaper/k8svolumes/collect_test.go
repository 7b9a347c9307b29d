package k8svolumes_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/reaper/k8svolumes"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var caller = vfs.Caller{UID: 1000, GID: 1000}

const extSize = 64 << 10

// put writes a whole file at the root of the volume and commits it.
func put(t *testing.T, fs *vfs.FS, name string, data []byte) {
	t.Helper()
	ctx := t.Context()
	_, h, err := fs.Create(ctx, format.RootID, name, 0o644, false, caller)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	zero := uint64(0)
	if _, err := fs.SetAttr(ctx, h.ID(), vfs.SetAttr{Size: &zero}); err != nil {
		t.Fatalf("truncate %s: %v", name, err)
	}
	if _, err := fs.Write(ctx, h, data, 0); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := fs.Flush(ctx, h); err != nil {
		t.Fatalf("flush %s: %v", name, err)
	}
	if err := fs.Release(ctx, h); err != nil {
		t.Fatalf("release %s: %v", name, err)
	}
}

// get reads a whole file at the root of the volume.
func get(ctx context.Context, fs *vfs.FS, name string) ([]byte, error) {
	a, err := fs.Lookup(ctx, format.RootID, name)
	if err != nil {
		return nil, err
	}
	h, _, err := fs.Open(ctx, a.Ino, false)
	if err != nil {
		return nil, err
	}
	defer fs.Release(ctx, h)
	var out []byte
	buf := make([]byte, 256<<10)
	for {
		n, err := fs.Read(ctx, h, buf, int64(len(out)))
		out = append(out, buf[:n]...)
		if n == 0 || err != nil {
			return out, nil
		}
	}
}

func body(tag string) []byte { return bytes.Repeat([]byte(tag), (3*extSize)/len(tag)) }

// tvol is one volume of the test's bucket.
type tvol struct {
	loc volumeid.Loc
	vol *volume.Volume
	fs  *vfs.FS
}

func newVol(t *testing.T, store objstore.Store, prefix string) *tvol {
	t.Helper()
	l := volumeid.Loc{Bucket: store.Bucket(), Prefix: prefix}
	vol, err := volume.Format(t.Context(), store, l.URL(), volume.FormatOptions{ExtentSize: extSize})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := vfs.New(vol, vfs.Options{BufferSize: 4 * extSize, WritebackDelay: time.Hour, Revalidate: time.Nanosecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close(context.Background()) })
	return &tvol{loc: l, vol: vol, fs: fs}
}

// pin creates a snapshot pin as the CSI driver does, and waits until the
// store's clock has left its second (what a view at the pin shows is then
// fixed).
func (v *tvol) pin(t *testing.T, name string) snapshot.Pin {
	t.Helper()
	p, err := snapshot.CreateWith(t.Context(), v.vol.Store, v.vol.Keys, name, snapshot.Options{Creator: "s3gfs-csi"})
	if err != nil {
		t.Fatal(err)
	}
	waitPast(t, v.vol.Store, p.Time)
	return p
}

func waitPast(t *testing.T, store objstore.Store, at time.Time) {
	t.Helper()
	for {
		now, err := hosts.ServerNow(t.Context(), store)
		if err != nil {
			t.Fatal(err)
		}
		if now.Truncate(time.Second).After(at.Truncate(time.Second)) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// count is the number of objects under the volume's prefix.
func (v *tvol) count(t *testing.T) int {
	t.Helper()
	n, after := 0, ""
	for {
		page, err := v.vol.Store.List(t.Context(), v.vol.Keys.Prefix(), after, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Objects {
			n++
			after = o.Key
		}
		if !page.Truncated {
			return n
		}
	}
}

// readAt reads name as the volume was at (the newest version at or before
// it), or now when at is zero.
func (v *tvol) readAt(t *testing.T, name string, at time.Time) []byte {
	t.Helper()
	vol, err := volume.Open(t.Context(), v.vol.Store, v.loc.URL(), false)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := vfs.New(vol, vfs.Options{AsOf: at, ReadOnly: at.IsZero(), Logger: quiet, BufferSize: 4 * extSize})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close(context.Background())
	b, err := get(t.Context(), fs, name)
	if err != nil {
		t.Fatalf("%s: read %s as of %v: %v", v.loc.VolumeID(), name, at, err)
	}
	return b
}

func (v *tvol) fsck(t *testing.T) {
	t.Helper()
	r, err := reaper.Check(t.Context(), v.vol, reaper.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Healthy() {
		t.Fatalf("fsck %s:\n%s", v.loc.VolumeID(), strings.Join(r.Damage, "\n"))
	}
}

// TestCollectEndToEnd: volumes of one versitygw bucket found from fake
// PersistentVolumes and VolumeSnapshotContents are collected, each with
// its own pass: the two live volumes, a volume whose PV is gone but whose
// snapshot remains, and one the controller's record says is deleted but
// kept for a clone's pin, shrink; a volume deleted with onDelete=retain is
// left alone; what every snapshot shows survives and
// stays readable; a volume of another driver is never touched; foreign
// and invalid handles are skipped; a read-only view (no objects of its
// own) is skipped quietly; a VolumeSnapshotContent whose pin is missing
// is reported. A pass whose lease is lost after its first volume stops
// there, leaving the volumes healthy, and the next holder's pass
// collects them all.
func TestCollectEndToEnd(t *testing.T) {
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	// The reaper reaches the store with its own credentials, from the
	// environment as in its pod.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bkt := store.Bucket()
	const drv = k8svolumes.DefaultDriver

	a := newVol(t, store, "pvs/a")
	b := newVol(t, store, "pvs/b")
	c := newVol(t, store, "pvs/c")   // its PV deleted; kept for its snapshot
	z := newVol(t, store, "other/z") // another driver's PV names it
	d := newVol(t, store, "pvs/d")   // deleted, kept for a clone: only the controller's record says so
	e := newVol(t, store, "pvs/e")   // deleted with onDelete=retain: left alone
	put(t, a.fs, "f", body("a1"))
	pinA := a.pin(t, "snap-a")
	put(t, a.fs, "f", body("a2"))
	put(t, a.fs, "f", body("a3"))
	put(t, b.fs, "g", body("b1"))
	put(t, b.fs, "g", body("b2"))
	put(t, b.fs, "g", body("b3"))
	put(t, c.fs, "h", body("c1"))
	put(t, c.fs, "h", body("c2"))
	pinC := c.pin(t, "snap-c")
	put(t, c.fs, "h", body("c3"))
	put(t, z.fs, "k", body("z1"))
	put(t, z.fs, "k", body("z2"))
	put(t, d.fs, "m", body("d1"))
	pinD := d.pin(t, "csi-clone-pvc-x")
	put(t, d.fs, "m", body("d2"))
	put(t, d.fs, "m", body("d3"))
	put(t, e.fs, "n", body("e1"))
	put(t, e.fs, "n", body("e2"))
	for _, v := range []*tvol{a, b, c, z, d, e} {
		if err := v.fs.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	view := volumeid.Loc{Bucket: bkt, Prefix: "pvs/view"} // a read-only view: a record, no objects
	// The CSI controller's records (only their keys and the fields the
	// reaper reads; the controller's have more).
	for key, rec := range map[string]string{
		volumeid.RecordKey("pvs/a"):    `{"version":1,"prefix":"pvs/a"}`,
		volumeid.RecordKey("pvs/view"): `{"version":1,"prefix":"pvs/view","readOnlyView":true,"deleted":true}`,
		volumeid.RecordKey("pvs/d"):    `{"version":1,"prefix":"pvs/d","deleted":true}`,
		volumeid.RecordKey("pvs/e"):    `{"version":1,"prefix":"pvs/e","deleted":true,"retain":true}`,
		volumeid.RecordKey("other/z"):  `{"version":1,"prefix":"pvs/a","deleted":true}`, // lies about its prefix
		volumeid.RecordKey("pvs/junk"): `not json`,
	} {
		if _, err := store.Put(t.Context(), key, []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}

	kube := fake.NewClientset(
		csiPV("pv-a", drv, a.loc.VolumeID()),
		csiPV("pv-b", drv, b.loc.VolumeID()),
		csiPV("pv-view", drv, view.VolumeID()),
		csiPV("pv-foreign", drv, "vol-0123456789abcdef"),
		csiPV("pv-bad", drv, "v1:"+bkt+":pvs/../other/z"),
		csiPV("pv-z", "other.csi.example.com", z.loc.VolumeID()),
	)
	snaps := snapfake.NewSimpleClientset(
		content("snapcontent-a", drv, a.loc.SnapshotID("snap-a"), false),
		content("snapcontent-c", drv, c.loc.SnapshotID("snap-c"), false),
		content("snapcontent-lost", drv, b.loc.SnapshotID("lost"), false), // its pin is gone
	)
	newCollector := func(reg *prometheus.Registry) *k8svolumes.Collector {
		s3 := &k8svolumes.S3{Endpoint: srv.Endpoint, Region: srv.Region}
		return &k8svolumes.Collector{
			Finder:    &k8svolumes.Finder{Client: kube, Snapshots: snaps, Logger: quiet},
			Open:      s3.Open,
			Kept:      s3.Kept,
			Config:    reaper.Config{Retention: 0, Grace: 5 * time.Second, Owner: "test-reaper"},
			Metrics:   reaper.NewMetrics(reg),
			Discovery: k8svolumes.NewMetrics(reg),
			Logger:    quiet,
		}
	}
	before := map[*tvol]int{a: a.count(t), b: b.count(t), c: c.count(t), z: z.count(t), d: d.count(t), e: e.count(t)}
	// Past the grace period (at least 5 s without pings) by the store's clock.
	last, err := hosts.ServerNow(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	waitPast(t, store, last.Add(6*time.Second))

	// A holder that loses the lease while collecting its first volume.
	held, lose := context.WithCancelCause(t.Context())
	lossy := newCollector(prometheus.NewRegistry())
	open := lossy.Open
	opened := 0
	lossy.Open = func(ctx context.Context, l volumeid.Loc) (*volume.Volume, error) {
		vol, err := open(ctx, l)
		if opened++; opened == 1 {
			lose(reaper.ErrLeaseLost)
		}
		return vol, err
	}
	pr, err := lossy.Pass(held)
	if !errors.Is(err, reaper.ErrLeaseLost) {
		t.Fatalf("pass that lost the lease: %v", err)
	}
	if len(pr.Results) != 1 || pr.Results[0].Err == nil {
		t.Fatalf("pass that lost the lease went on: %+v", pr.Results)
	}
	for _, v := range []*tvol{a, b, c, d} {
		v.fsck(t)
	}

	// The next holder collects them all.
	reg := prometheus.NewRegistry()
	pr, err = newCollector(reg).Pass(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]k8svolumes.Result{}
	for _, r := range pr.Results {
		res[r.Volume] = r
	}
	for _, v := range []*tvol{a, b, c, d} {
		r, ok := res[v.loc.VolumeID()]
		if !ok || r.Err != nil || r.Skip != "" || r.Report == nil {
			t.Fatalf("%s: not collected: %+v", v.loc.VolumeID(), r)
		}
		if r.Report.Deleted[reaper.KindVersion] == 0 {
			t.Errorf("%s: no version deleted: %+v", v.loc.VolumeID(), r.Report.Deleted)
		}
		if after := v.count(t); after >= before[v] {
			t.Errorf("%s: %d objects before the pass, %d after", v.loc.VolumeID(), before[v], after)
		}
		v.fsck(t)
	}
	if r := res[view.VolumeID()]; r.Skip == "" || r.Err != nil {
		t.Errorf("the read-only view: %+v, want skipped without an error", r)
	}
	if _, ok := res[z.loc.VolumeID()]; ok || z.count(t) != before[z] {
		t.Errorf("another driver's volume was collected: %d objects, had %d", z.count(t), before[z])
	}
	if _, ok := res[e.loc.VolumeID()]; ok || e.count(t) != before[e] {
		t.Errorf("a retained deleted volume was collected: %d objects, had %d", e.count(t), before[e])
	}
	if len(pr.Results) != 5 {
		t.Errorf("%d results, want 5 (a, b, c, d, view): %+v", len(pr.Results), pr.Results)
	}
	var skipped []string
	for _, s := range pr.Found.Skipped {
		skipped = append(skipped, s.Object)
	}
	if fmt.Sprint(skipped) != "[PersistentVolume/pv-bad PersistentVolume/pv-foreign]" {
		t.Errorf("skipped handles: %v", skipped)
	}
	if len(pr.MissingPins) != 1 || pr.MissingPins[0] != (k8svolumes.MissingPin{Content: "snapcontent-lost", Volume: b.loc.VolumeID(), Pin: "lost"}) {
		t.Errorf("missing pins: %+v", pr.MissingPins)
	}

	// What the snapshots show, and what is current, reads back.
	for _, c := range []struct {
		v    *tvol
		name string
		at   time.Time
		want []byte
	}{
		{a, "f", pinA.Time, body("a1")}, {a, "f", time.Time{}, body("a3")},
		{b, "g", time.Time{}, body("b3")},
		{c, "h", pinC.Time, body("c2")}, {c, "h", time.Time{}, body("c3")},
		{d, "m", pinD.Time, body("d1")}, {d, "m", time.Time{}, body("d3")},
	} {
		if got := c.v.readAt(t, c.name, c.at); !bytes.Equal(got, c.want) {
			t.Errorf("%s %s as of %v: %d bytes %.8q..., want %.8q...", c.v.loc.VolumeID(), c.name, c.at, len(got), got, c.want)
		}
	}

	// The metrics say the same.
	for name, want := range map[string]float64{
		"s3gfs_reaper_discovered_volumes":    5,
		"s3gfs_reaper_skipped_handles":       2,
		"s3gfs_reaper_snapshot_pins_missing": 1,
	} {
		if got := gauge(t, reg, name, ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if gauge(t, reg, "s3gfs_reaper_volume_last_success_timestamp_seconds", a.loc.VolumeID()) == 0 {
		t.Error("no last success for volume a")
	}
	if gauge(t, reg, "s3gfs_reaper_last_success_timestamp_seconds", "") == 0 {
		t.Error("no last success for the whole pass")
	}
}

// gauge reads a gauge (with the label volume=volume, when set) from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name, volume string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := volume == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "volume" && lp.GetValue() == volume {
					match = true
				}
			}
			if match {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
