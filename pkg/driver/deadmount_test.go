package driver_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/driver"
)

// TestDeadMount: when the process serving a staged volume dies (what a
// restart of the mounter does), the mount answers ENOTCONN; the node says
// so instead of publishing it, unpublish and unstage still work, and a new
// NodeStageVolume mounts the volume again, with its data.
func TestDeadMount(t *testing.T) {
	p := startPlugins(t)
	ctx := context.Background()
	r, err := p.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "dead", Parameters: map[string]string{driver.ParamBucket: testenv.BucketName(t)},
		VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: p.secrets})
	if err != nil {
		t.Fatal(err)
	}
	id := r.Volume.VolumeId
	staging, t1, t2 := filepath.Join(p.dir, "staging"), filepath.Join(p.dir, "t1"), filepath.Join(p.dir, "t2")
	os.MkdirAll(staging, 0o755)
	stage := func() error {
		_, err := p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: rwx, VolumeContext: r.Volume.VolumeContext, Secrets: p.secrets})
		return err
	}
	publish := func(target string) error {
		_, err := p.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwx})
		return err
	}
	if err := stage(); err != nil {
		t.Fatal(err)
	}
	if err := publish(t1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t1, "kept"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Kill the mount process, as a restart of the mounter would.
	files, _ := filepath.Glob(filepath.Join(p.dir, "state", "*.json"))
	if len(files) != 1 {
		t.Fatalf("state files: %v", files)
	}
	var st struct{ PID int }
	b, _ := os.ReadFile(files[0])
	if err := json.Unmarshal(b, &st); err != nil || st.PID == 0 {
		t.Fatalf("state file %s: %s (%v)", files[0], b, err)
	}
	syscall.Kill(st.PID, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(t1, "kept"))
		if errors.Is(err, syscall.ENOTCONN) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mount still answers after its process was killed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantCode(t, "publish onto a dead mount", publish(t2), codes.FailedPrecondition, "dead")
	_, err = p.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: t1})
	if err == nil {
		t.Error("volume stats of a dead mount succeeded")
	}
	if _, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: t1}); err != nil {
		t.Fatal("unpublish of a dead mount:", err)
	}
	// Stage again: the dead mount is cleared and the volume mounted anew.
	if err := stage(); err != nil {
		t.Fatal("stage over a dead mount:", err)
	}
	if err := publish(t2); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(t2, "kept")); err != nil || string(got) != "data" {
		t.Errorf("after remount: %q, %v", got, err)
	}
	if _, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: t2}); err != nil {
		t.Fatal(err)
	}
	// Kill it again and unstage the dead mount.
	b, _ = os.ReadFile(files[0])
	if err := json.Unmarshal(b, &st); err != nil || st.PID == 0 {
		t.Fatalf("state file %s: %s (%v)", files[0], b, err)
	}
	syscall.Kill(st.PID, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(staging); errors.Is(err, syscall.ENOTCONN) || time.Now().After(deadline) {
			break
		}
	}
	if _, err := p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal("unstage of a dead mount:", err)
	}
	if mounted(p.dir) {
		t.Error("mounts left")
	}
	if _, err := p.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: p.secrets}); err != nil {
		t.Fatal(err)
	}
}
