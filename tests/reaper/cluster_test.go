package reaper

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// TestReaperVolumesFromKubernetes runs the s3gfs binary as the chart does
// (`reaper --volumes-from kubernetes`, its own S3 credentials in the
// environment) against a stand-in for the API server that serves a
// PersistentVolume list and a VolumeSnapshotContent list: it collects the
// volume the PV names, skips a bad handle, reports a missing pin, says so
// in its metrics and readiness, and asks the API for nothing but those
// lists (no Secret, no write).
func TestReaperVolumesFromKubernetes(t *testing.T) {
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: "pvs/a"}
	if _, err := volume.Format(t.Context(), store, u, volume.FormatOptions{ExtentSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	loc := volumeid.Loc{Bucket: u.Bucket, Prefix: u.Prefix}
	handle := loc.SnapshotID("gone")
	pvs := corev1.PersistentVolumeList{TypeMeta: metav1.TypeMeta{Kind: "PersistentVolumeList", APIVersion: "v1"}, Items: []corev1.PersistentVolume{
		{ObjectMeta: metav1.ObjectMeta{Name: "pv-a"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
			CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.s3gfs.io", VolumeHandle: loc.VolumeID()}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pv-bad"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
			CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.s3gfs.io", VolumeHandle: "v1:" + u.Bucket + ":../etc"}}}},
	}}
	vsc := snapv1.VolumeSnapshotContent{TypeMeta: metav1.TypeMeta{Kind: "VolumeSnapshotContent", APIVersion: "snapshot.storage.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-gone"},
		Spec:       snapv1.VolumeSnapshotContentSpec{Driver: "csi.s3gfs.io", DeletionPolicy: snapv1.VolumeSnapshotContentDelete},
		Status:     &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: &handle}}
	vscs := snapv1.VolumeSnapshotContentList{TypeMeta: metav1.TypeMeta{Kind: "VolumeSnapshotContentList", APIVersion: "snapshot.storage.k8s.io/v1"},
		Items: []snapv1.VolumeSnapshotContent{vsc}}

	var mu sync.Mutex
	var asked []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Method+" "+r.URL.Path)
		mu.Unlock()
		var body any
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/persistentvolumes":
			body = pvs
		case r.Method == http.MethodGet && r.URL.Path == "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents":
			body = vscs
		case r.Method == http.MethodGet && r.URL.Path == "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/snapcontent-gone":
			body = vsc
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(body)
	}))
	defer api.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: test-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, api.URL)), 0o600); err != nil {
		t.Fatal(err)
	}

	log := &testenv.LogBuffer{}
	cmd := exec.Command(testenv.Binary(t), "reaper", "--volumes-from", "kubernetes", "--kubeconfig", kubeconfig,
		"--endpoint", srv.Endpoint, "--lease", "bucket", "--interval", "1s", "--metrics-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION="+srv.Region)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(log.String(), "reaper pass over the cluster's volumes") {
		if time.Now().After(deadline) {
			t.Fatalf("no pass within a minute:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := log.String()
	for _, want := range []string{"volumes=1 collected=1 failed=0", "badHandles=1", "missingPins=1", "PersistentVolume/pv-bad", "snapcontent-gone"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	m := metricsAddrRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", out)
	}
	body := scrape(t, "http://"+m[1]+"/metrics")
	for name, want := range map[string]float64{
		"s3gfs_reaper_discovered_volumes":    1,
		"s3gfs_reaper_skipped_handles":       1,
		"s3gfs_reaper_snapshot_pins_missing": 1,
	} {
		if got := metric(body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if metric(body, `s3gfs_reaper_volume_last_success_timestamp_seconds{volume="`+loc.VolumeID()+`"}`) <= 0 {
		t.Errorf("no last success for %s:\n%s", loc.VolumeID(), body)
	}
	resp, err := http.Get("http://" + m[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s %s", resp.Status, b)
	}

	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, a := range asked {
		switch a {
		case "GET /api/v1/persistentvolumes", "GET /apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents",
			"GET /apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/snapcontent-gone":
		default:
			t.Errorf("the reaper asked the API server for %s", a)
		}
	}
}
