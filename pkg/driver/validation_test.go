package driver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/driver"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func wantCode(t *testing.T, what string, err error, want codes.Code, mention string) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: got %v (%v), want %v", what, status.Code(err), err, want)
		return
	}
	if mention != "" && !strings.Contains(status.Convert(err).Message(), mention) {
		t.Errorf("%s: message %q does not name %q", what, status.Convert(err).Message(), mention)
	}
}

// TestHostileRequests sends malformed and hostile names, parameters and ids
// and checks each gets InvalidArgument (naming the culprit) or NotFound,
// and that the bucket is exactly as it was.
func TestHostileRequests(t *testing.T) {
	p := startPlugins(t)
	ctx := context.Background()
	bucket := testenv.BucketName(t)
	base := map[string]string{driver.ParamBucket: bucket, driver.ParamPrefix: "vols"}
	good, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "good", Parameters: base, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	if err != nil {
		t.Fatal(err)
	}
	before := keysOf(t, p.s3, bucket)

	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	creates := []struct {
		name    string
		params  map[string]string
		mention string
	}{
		{"../escape", base, "name"}, {"/abs", base, "name"}, {"a/b", base, "name"}, {"", base, "name"},
		{"nul\x00byte", base, "name"}, {strings.Repeat("n", 129), base, "name"}, {".hidden", base, "name"},
		{"a..b", base, "name"}, {"sp ace", base, "name"},
		{"v", with("prefix", "../up"), "prefix"}, {"v", with("prefix", "/abs"), "prefix"},
		{"v", with("prefix", "a//b"), "prefix"}, {"v", with("prefix", "a/../b"), "prefix"},
		{"v", with("prefix", "a/./b"), "prefix"}, {"v", with("prefix", "a/"), "prefix"},
		{"v", with("prefix", "x\ny"), "prefix"}, {"v", with("prefix", ".s3gfs-csi"), "prefix"},
		{"v", with("bucket", "Bad_Bucket"), "bucket"}, {"v", with("bucket", ".."), "bucket"},
		{"v", with("bucket", "abc--x-s3"), "bucket"}, {"v", with("bucket", ""), "bucket"},
		{"v", with("endpoint", "ftp://x"), "endpoint"}, {"v", with("endpoint", "http://user:pw@h"), "endpoint"},
		{"v", with("endpoint", "http://h/p?q=1"), "endpoint"}, {"v", with("region", "US EAST"), "region"},
		{"v", with("extentSize", "3000"), "extentSize"}, {"v", with("extentSize", "banana"), "extentSize"},
		{"v", with("inlineLimit", "1GiB"), "inlineLimit"}, {"v", with("retention", "-1h"), "retention"},
		{"v", with("retention", "soon"), "retention"}, {"v", with("onDelete", "maybe"), "onDelete"},
		{"v", with("buckett", "typo"), "buckett"}, {"v", with("bucketPerVolume", "yes please"), "bucketPerVolume"},
		{"v", with("bucketPerVolume", "true"), "prefix"}, {"v", with("cacheSize", "1"), "cacheSize"},
		{"v", with("syncInterval", "1ns"), "syncInterval"},
	}
	for _, c := range creates {
		_, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: c.name, Parameters: c.params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
		wantCode(t, "CreateVolume "+strings.ToValidUTF8(c.name, "?")+" "+c.mention, err, codes.InvalidArgument, c.mention)
	}
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}, AccessMode: rwx.AccessMode}
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "blk", Parameters: base, VolumeCapabilities: []*csi.VolumeCapability{block}, Secrets: p.secrets})
	wantCode(t, "block volume", err, codes.InvalidArgument, "block")
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", Parameters: base, VolumeCapabilities: []*csi.VolumeCapability{rwx},
		Secrets: map[string]string{driver.SecretAccessKeyID: "only-half"}})
	wantCode(t, "half credentials", err, codes.InvalidArgument, "secretAccessKey")

	ids := []string{
		"v1:" + bucket + ":../other", "v1:" + bucket + ":/abs", "v1:" + bucket + ":vols//good", "v1:" + bucket + ":vols/../x",
		"v1:" + bucket + ":vols/good/", "v1:BAD:vols", "v1:" + bucket + ":vols/good:us-east-1:ftp://evil",
		"v1:" + bucket + ":vols/good::", "v1:" + bucket, "v1::", "v1:" + bucket + ":.s3gfs-csi/volumes",
	}
	staging := filepath.Join(p.dir, "hostile-staging")
	os.MkdirAll(staging, 0o755)
	for _, id := range ids {
		_, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: p.secrets})
		wantCode(t, "DeleteVolume "+id, err, codes.InvalidArgument, "volume_id")
		_, err = p.ctrl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
		wantCode(t, "ValidateVolumeCapabilities "+id, err, codes.InvalidArgument, "volume_id")
		_, err = p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: rwx, Secrets: p.secrets})
		wantCode(t, "NodeStageVolume "+id, err, codes.InvalidArgument, "volume_id")
		_, err = p.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: id, Secrets: p.secrets})
		wantCode(t, "CreateSnapshot "+id, err, codes.InvalidArgument, "source_volume_id")
	}
	// Hostile volume context on a good id: the node refuses, mounts nothing.
	for k, v := range map[string]string{"endpoint": "http://u:p@evil", "asOf": "yesterday", "sourcePrefix": "../x", "cacheSize": "lots",
		"sourceBucket": "../b", "snapshot": "../s", "syncInterval": "0"} {
		vctx := map[string]string{k: v}
		if k == "sourcePrefix" || k == "sourceBucket" || k == "snapshot" {
			vctx["asOf"] = "2026-01-01T00:00:00Z"
		}
		_, err = p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: good.Volume.VolumeId, StagingTargetPath: staging, VolumeCapability: rwx, VolumeContext: vctx, Secrets: p.secrets})
		wantCode(t, "NodeStageVolume context "+k, err, codes.InvalidArgument, k)
	}
	for _, path := range []string{"relative/path", "/a/../b", staging + "/"} {
		_, err = p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: good.Volume.VolumeId, StagingTargetPath: path, VolumeCapability: rwx, Secrets: p.secrets})
		wantCode(t, "NodeStageVolume path "+path, err, codes.InvalidArgument, "staging_target_path")
	}
	for _, id := range []string{"s1:snap:" + bucket + ":../x", "s1:../snap:" + bucket + ":vols/good", "s1::" + bucket + ":vols/good"} {
		_, err := p.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id, Secrets: p.secrets})
		wantCode(t, "DeleteSnapshot "+id, err, codes.InvalidArgument, "snapshot_id")
	}
	// A name reused with other parameters.
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "good", Parameters: with("retention", "1h"), VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	wantCode(t, "name reused with other parameters", err, codes.AlreadyExists, "")

	if after := keysOf(t, p.s3, bucket); !slices.Equal(before, after) {
		t.Errorf("hostile requests changed the bucket:\nbefore %q\nafter  %q", before, after)
	}
	if mounted(p.dir) {
		t.Errorf("hostile requests left a mount under %s", p.dir)
	}
}

// mounted reports whether any s3gfs mount lies under dir.
func mounted(dir string) bool {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") && strings.Contains(line, "fuse.s3gfs") {
			return true
		}
	}
	return false
}

// TestIsolation: two volumes in one bucket, each with files; deleting one
// leaves every object of the other. A volume the driver did not create is
// neither deleted nor nested into.
func TestIsolation(t *testing.T) {
	p := startPlugins(t)
	ctx := context.Background()
	bucket := testenv.BucketName(t)
	params := map[string]string{driver.ParamBucket: bucket, driver.ParamSyncInterval: "100ms"}
	var ids []string
	for _, name := range []string{"vol-a", "vol-a2"} { // vol-a is a string prefix of vol-a2
		r, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.Volume.VolumeId)
		staging, target := filepath.Join(p.dir, name+"-staging"), filepath.Join(p.dir, name+"-target")
		os.MkdirAll(staging, 0o755)
		if _, err := p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: r.Volume.VolumeId, StagingTargetPath: staging, VolumeCapability: rwx, VolumeContext: r.Volume.VolumeContext, Secrets: p.secrets}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: r.Volume.VolumeId, StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwx}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(target, "f"), bytes.Repeat([]byte(name), 100000), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: r.Volume.VolumeId, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: r.Volume.VolumeId, StagingTargetPath: staging}); err != nil {
			t.Fatal(err)
		}
	}
	store, err := s3store.New(ctx, p.s3.Config(bucket))
	if err != nil {
		t.Fatal(err)
	}
	// A volume made by hand, not by the driver.
	if _, err := volume.Format(ctx, store, volume.URL{Bucket: bucket, Prefix: "manual"}, volume.FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	under := func(prefix string) []string {
		var out []string
		for _, k := range keysOf(t, p.s3, bucket) {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
		return out
	}
	a2, manual := under("vol-a2/"), under("manual/")
	if len(under("vol-a/")) < 3 || len(a2) < 3 {
		t.Fatalf("volumes have too few objects: %q %q", under("vol-a/"), a2)
	}
	if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[0], Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	if left := under("vol-a/"); len(left) != 0 {
		t.Errorf("deleted volume left %q", left)
	}
	if got := under("vol-a2/"); !slices.Equal(got, a2) {
		t.Errorf("deleting vol-a changed vol-a2: %q, was %q", got, a2)
	}
	_, err = p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "v1:" + bucket + ":manual", Secrets: p.secrets})
	wantCode(t, "DeleteVolume of a volume the driver did not make", err, codes.FailedPrecondition, "did not create")
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "inner", Parameters: map[string]string{driver.ParamBucket: bucket, driver.ParamPrefix: "manual"}, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	wantCode(t, "CreateVolume inside a foreign volume", err, codes.FailedPrecondition, "inside")
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "manual", Parameters: map[string]string{driver.ParamBucket: bucket}, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	wantCode(t, "CreateVolume over a foreign volume", err, codes.FailedPrecondition, "did not create")
	if got := under("manual/"); !slices.Equal(got, manual) {
		t.Errorf("the hand-made volume changed: %q, was %q", got, manual)
	}
	if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[1], Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsNeverShown: the credentials of a request appear in no log
// line, error, metric, volume context, mount command line or mount log.
func TestSecretsNeverShown(t *testing.T) {
	var logs syncBuf
	driver.SetupLogging(&logs, 5)
	t.Cleanup(func() { driver.SetupLogging(os.Stderr, envInt("S3GFS_CSI_V", 0)) })
	p := startPlugins(t)
	ctx := context.Background()
	bucket := testenv.BucketName(t)
	params := map[string]string{driver.ParamBucket: bucket}

	// Wrong credentials: the failure's message must not carry them.
	wrong := map[string]string{driver.SecretAccessKeyID: "AKIAMARKERKEYID00042", driver.SecretSecretAccessKey: "wrongSecretMARKER/xyz+0042",
		driver.SecretEndpoint: p.s3.Endpoint, driver.SecretRegion: p.s3.Region}
	_, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: wrong})
	if err == nil {
		t.Fatal("CreateVolume with wrong credentials succeeded")
	}
	secrets := []string{wrong[driver.SecretAccessKeyID], wrong[driver.SecretSecretAccessKey], p.s3.SecretKey}
	check := func(what, s string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s shows a secret (%.6s...): %s", what, sec, s)
			}
		}
	}
	check("error", err.Error())

	r, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	if err != nil {
		t.Fatal(err)
	}
	check("volume id", r.Volume.VolumeId)
	for k, v := range r.Volume.VolumeContext {
		check("volume context "+k, v)
	}
	staging, target := filepath.Join(p.dir, "staging"), filepath.Join(p.dir, "target")
	os.MkdirAll(staging, 0o755)
	if _, err := p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: r.Volume.VolumeId, StagingTargetPath: staging, VolumeCapability: rwx, VolumeContext: r.Volume.VolumeContext, Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	// The mount process's command line is readable by every user.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(staging)) {
			check("mount command line "+f, string(b))
		}
	}
	_, err = p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: r.Volume.VolumeId, StagingTargetPath: staging, VolumeCapability: rwx,
		VolumeContext: r.Volume.VolumeContext, Secrets: map[string]string{driver.SecretAccessKeyID: p.s3.AccessKey, driver.SecretSecretAccessKey: "x", driver.SecretEndpoint: "not a url"}})
	if err == nil {
		t.Fatal("stage with a bad secret endpoint succeeded")
	}
	check("stage error", err.Error())
	if _, err := p.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: r.Volume.VolumeId, StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwx, Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: r.Volume.VolumeId, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: r.Volume.VolumeId, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId, Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*driver.Server{p.cs, p.ns} {
		rec := httptest.NewRecorder()
		srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		check("metrics", string(body))
		if !strings.Contains(string(body), "s3gfs_csi_operations_total") {
			t.Errorf("metrics lack s3gfs_csi_operations_total:\n%.2000s", body)
		}
	}
	mountLogs, _ := filepath.Glob(filepath.Join(p.dir, "state", "logs", "*"))
	for _, f := range mountLogs {
		b, _ := os.ReadFile(f)
		check("mount log "+f, string(b))
	}
	out := logs.String()
	check("logs", out)
	if !strings.Contains(out, "CreateVolume") || !strings.Contains(out, "stripped") {
		t.Errorf("logs do not show the calls with their secrets stripped:\n%.3000s", out)
	}
}

// TestBucketPerVolume: each volume gets a bucket of its own, named from the
// StorageClass's stem and the volume name, and loses it on deletion.
func TestBucketPerVolume(t *testing.T) {
	p := startPlugins(t)
	ctx := context.Background()
	stem := "bpv-" + randomStem()
	params := map[string]string{driver.ParamBucket: stem, driver.ParamBucketPerVolume: "true", driver.ParamOnDelete: "delete"}
	var ids []string
	for _, name := range []string{"pvc-0e5f9a2c", "Mixed_Case.Name"} {
		r, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
		if err != nil {
			t.Fatal(err)
		}
		bucket := r.Volume.VolumeContext["bucket"]
		if !strings.HasPrefix(bucket, stem+"-") || r.Volume.VolumeContext["prefix"] != "" {
			t.Errorf("volume %s: bucket %q prefix %q", name, bucket, r.Volume.VolumeContext["prefix"])
		}
		if name == "pvc-0e5f9a2c" && bucket != stem+"-pvc-0e5f9a2c" {
			t.Errorf("bucket %q, want %s-pvc-0e5f9a2c", bucket, stem)
		}
		if len(keysOf(t, p.s3, bucket)) < 2 {
			t.Errorf("bucket %s has no volume", bucket)
		}
		ids = append(ids, r.Volume.VolumeId)
	}
	for _, id := range ids {
		if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: p.secrets}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: p.secrets}); err != nil {
			t.Fatal("second DeleteVolume:", err)
		}
		bucket := strings.Split(id, ":")[1]
		store, _ := s3store.New(ctx, p.s3.Config(bucket))
		if _, err := store.List(ctx, "", "", 1); err == nil || !strings.Contains(err.Error(), "bucket does not exist") {
			t.Errorf("bucket %s still there after DeleteVolume: %v", bucket, err)
		}
	}
}

func randomStem() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestStoreUnavailable: a store that cannot be reached is Unavailable.
func TestStoreUnavailable(t *testing.T) {
	p := startPlugins(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	sec := map[string]string{driver.SecretAccessKeyID: p.s3.AccessKey, driver.SecretSecretAccessKey: p.s3.SecretKey, driver.SecretEndpoint: closed}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "v", Parameters: map[string]string{driver.ParamBucket: testenv.BucketName(t)},
		VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: sec})
	wantCode(t, "CreateVolume on a store that is down", err, codes.Unavailable, "")
}

// TestRetain: onDelete=retain keeps the volume's objects; the name cannot
// then be created again over them (the objects are no longer the driver's).
func TestRetain(t *testing.T) {
	p := startPlugins(t)
	ctx := context.Background()
	bucket := testenv.BucketName(t)
	params := map[string]string{driver.ParamBucket: bucket, driver.ParamOnDelete: "retain"}
	r, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "kept", Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	if err != nil {
		t.Fatal(err)
	}
	var before []string
	for _, k := range keysOf(t, p.s3, bucket) {
		if strings.HasPrefix(k, "kept/") {
			before = append(before, k)
		}
	}
	for range 2 {
		if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId, Secrets: p.secrets}); err != nil {
			t.Fatal(err)
		}
	}
	var after []string
	for _, k := range keysOf(t, p.s3, bucket) {
		if strings.HasPrefix(k, "kept/") {
			after = append(after, k)
		}
	}
	if len(before) < 2 || !slices.Equal(before, after) {
		t.Errorf("retained volume: %q before, %q after", before, after)
	}
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "kept", Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	wantCode(t, "CreateVolume over a retained volume", err, codes.FailedPrecondition, "retain")
	_, err = p.ctrl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: r.Volume.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	wantCode(t, "a deleted, retained volume", err, codes.NotFound, "")
}

// TestSnapshotOutlivesVolume: a volume deleted while it has snapshots keeps
// its objects, its snapshots stay usable (restore), and it goes with the
// last snapshot.
func TestSnapshotOutlivesVolume(t *testing.T) {
	p := startPlugins(t)
	ctx := context.Background()
	bucket := testenv.BucketName(t)
	params := map[string]string{driver.ParamBucket: bucket}
	r, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "src", Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	if err != nil {
		t.Fatal(err)
	}
	var snaps []string
	for _, name := range []string{"snap-a", "snap-b"} {
		s, err := p.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: r.Volume.VolumeId, Secrets: p.secrets})
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s.Snapshot.SnapshotId)
	}
	srcKeys := func() int {
		n := 0
		for _, k := range keysOf(t, p.s3, bucket) {
			if strings.HasPrefix(k, "src/") {
				n++
			}
		}
		return n
	}
	before := srcKeys()
	for range 2 {
		if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: r.Volume.VolumeId, Secrets: p.secrets}); err != nil {
			t.Fatal(err)
		}
	}
	if n := srcKeys(); n != before {
		t.Fatalf("deleting a volume with snapshots removed objects: %d left of %d", n, before)
	}
	_, err = p.ctrl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: r.Volume.VolumeId, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	wantCode(t, "a deleted volume", err, codes.NotFound, "")
	_, err = p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "clone", Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: r.Volume.VolumeId}}}})
	wantCode(t, "clone of a deleted volume", err, codes.NotFound, "")
	restored, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "restored", Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snaps[0]}}}})
	if err != nil {
		t.Fatal("restore from a snapshot of a deleted volume:", err)
	}
	if _, err := p.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snaps[0], Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	if n := srcKeys(); n == 0 {
		t.Fatal("the volume went with its first snapshot of two")
	}
	// The restored volume is a clone reading through snap-a's pin: the
	// snapshot is gone for the CO, its pin and the source stay.
	_, err = p.ctrl.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: snaps[0], Secrets: p.secrets})
	wantCode(t, "GetSnapshot of a deleted snapshot a clone still reads through", err, codes.NotFound, "")
	if list, err := p.ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: r.Volume.VolumeId, Secrets: p.secrets}); err != nil || len(list.Entries) != 1 {
		t.Errorf("ListSnapshots after one of two was deleted: %v %v", list, err)
	}
	if _, err := p.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snaps[0], Secrets: p.secrets}); err != nil {
		t.Fatal("DeleteSnapshot again:", err)
	}
	if _, err := p.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snaps[1], Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	if n := srcKeys(); n == 0 {
		t.Fatal("the volume went while a clone restored from its snapshot still reads it")
	}
	if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: restored.Volume.VolumeId, Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	if n := srcKeys(); n != 0 {
		t.Errorf("%d objects of the deleted volume left after its last snapshot and clone went", n)
	}
	if keys := keysOf(t, p.s3, bucket); len(keys) != 0 {
		t.Errorf("left in the bucket: %q", keys)
	}
}

// TestRestoreAcrossBuckets: with a bucket per volume, restores (a read-only
// view and a writable copy) and clones live in other buckets than their
// source; the view holds its snapshot; everything goes, buckets included.
func TestRestoreAcrossBuckets(t *testing.T) {
	p := startPlugins(t)
	ctx := context.Background()
	params := map[string]string{driver.ParamBucket: "xb-" + randomStem(), driver.ParamBucketPerVolume: "true"}
	create := func(name string, c *csi.VolumeCapability, src *csi.VolumeContentSource) *csi.Volume {
		t.Helper()
		r, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{c}, Secrets: p.secrets, VolumeContentSource: src})
		if err != nil {
			t.Fatalf("CreateVolume %s: %v", name, err)
		}
		return r.Volume
	}
	mountAndRead := func(v *csi.Volume, c *csi.VolumeCapability, write bool) string {
		t.Helper()
		staging, target := filepath.Join(p.dir, "s-"+v.VolumeId[3:15]), filepath.Join(p.dir, "t-"+v.VolumeId[3:15])
		os.MkdirAll(staging, 0o755)
		if _, err := p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging, VolumeCapability: c, VolumeContext: v.VolumeContext, Secrets: p.secrets}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging, TargetPath: target, VolumeCapability: c}); err != nil {
			t.Fatal(err)
		}
		if write {
			if err := os.WriteFile(filepath.Join(target, "f"), []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := os.ReadFile(filepath.Join(target, "f"))
		if _, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging}); err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	rox := mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	src := create("src", rwx, nil)
	mountAndRead(src, rwx, true)
	snap, err := p.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "xb-snap", SourceVolumeId: src.VolumeId, Secrets: p.secrets})
	if err != nil {
		t.Fatal(err)
	}
	fromSnap := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}}
	view := create("view", rox, fromSnap)
	copied := create("copied", rwx, fromSnap)
	clone := create("clone", rwx, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.VolumeId}}})
	for _, v := range []*csi.Volume{view, copied, clone} {
		if v.VolumeContext["bucket"] == src.VolumeContext["bucket"] {
			t.Errorf("%s shares its source's bucket", v.VolumeId)
		}
	}
	if got := mountAndRead(view, rox, false); got != "hello" {
		t.Errorf("read-only view in another bucket: %q", got)
	}
	for _, v := range []*csi.Volume{copied, clone} {
		if got := mountAndRead(v, rwx, false); got != "hello" {
			t.Errorf("%s: %q", v.VolumeId, got)
		}
	}
	_, err = p.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.Snapshot.SnapshotId, Secrets: p.secrets})
	wantCode(t, "DeleteSnapshot with a view in another bucket", err, codes.FailedPrecondition, "view")
	for _, v := range []*csi.Volume{view, src, copied, clone} {
		if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId, Secrets: p.secrets}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.Snapshot.SnapshotId, Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*csi.Volume{view, src, copied, clone} {
		store, _ := s3store.New(ctx, p.s3.Config(v.VolumeContext["bucket"]))
		if page, err := store.List(ctx, "", "", 10); err == nil || !strings.Contains(err.Error(), "bucket does not exist") {
			t.Errorf("bucket of %s left: %v %v", v.VolumeId, page, err)
		}
	}
}
