package csi_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/s3gfs/s3gfs/internal/testenv"
)

// TestSanityBinaries runs the csi-test sanity suite against the plugin
// binaries as separate processes: the controller, and the node plugin with
// its mounts run by a mounter process (the Kubernetes layout). pkg/driver's
// TestSanity runs it in-process with detached mounts.
func TestSanityBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("csi-sanity mounts volumes")
	}
	testenv.RequireFUSE(t)
	s3 := testenv.S3(t)
	dir := workDir(t, "s3gfs-csi-sanity-")
	bins := filepath.Join(dir, "bin")
	controllerBin, nodeBin := build(t, bins, "cmd/controller"), build(t, bins, "cmd/node")
	sock := func(n string) string { return filepath.Join(dir, n+".sock") }
	start(t, "controller", controllerBin, "--endpoint", "unix://"+sock("controller"))
	mounter := start(t, "mounter", nodeBin, "mounter", "--socket", sock("mounter"), "--s3gfs-binary", testenv.Binary(t))
	start(t, "node", nodeBin, "--endpoint", "unix://"+sock("node"), "--node-id", "sanity-node", "--state-dir", filepath.Join(dir, "state"),
		"--mounter", "unix://"+sock("mounter"))
	connect(t, sock("controller"))
	connect(t, sock("node"))

	secrets := map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey, "endpoint": s3.Endpoint, "region": s3.Region}
	var b strings.Builder
	for _, sec := range []string{"CreateVolumeSecret", "DeleteVolumeSecret", "ControllerValidateVolumeCapabilitiesSecret",
		"NodeStageVolumeSecret", "NodePublishVolumeSecret", "CreateSnapshotSecret", "DeleteSnapshotSecret",
		"ControllerExpandVolumeSecret", "ListSnapshotsSecret", "GetSnapshotSecret"} {
		fmt.Fprintf(&b, "%s:\n", sec)
		for k, v := range secrets {
			fmt.Fprintf(&b, "  %s: %q\n", k, v)
		}
	}
	secretsFile := filepath.Join(dir, "secrets.yaml")
	if err := os.WriteFile(secretsFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + sock("node")
	cfg.ControllerAddress = "unix://" + sock("controller")
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.SecretsFile = secretsFile
	cfg.TestVolumeParameters = map[string]string{"bucket": testenv.BucketName(t), "syncInterval": "200ms"}
	cfg.IdempotentCount = 2
	sanity.Test(t, cfg)

	if m := s3gfsMounts(dir); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	mounter.cmd.Process.Signal(syscall.SIGTERM)
	mounter.cmd.Wait()
}
