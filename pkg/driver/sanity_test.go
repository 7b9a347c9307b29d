package driver_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/driver"
)

// TestSanity runs the csi-test sanity suite against the controller and node
// plugins, a real S3 server and real FUSE mounts.
func TestSanity(t *testing.T) {
	if testing.Short() {
		t.Skip("csi-sanity mounts volumes")
	}
	p := startPlugins(t)
	// Every call gets the S3 credentials as CSI secrets.
	var b strings.Builder
	for _, sec := range []string{"CreateVolumeSecret", "DeleteVolumeSecret", "ControllerValidateVolumeCapabilitiesSecret",
		"NodeStageVolumeSecret", "NodePublishVolumeSecret", "CreateSnapshotSecret", "DeleteSnapshotSecret",
		"ControllerExpandVolumeSecret", "ListSnapshotsSecret", "GetSnapshotSecret", "ControllerPublishVolumeSecret",
		"ControllerUnpublishVolumeSecret", "ControllerModifyVolumeSecret"} {
		fmt.Fprintf(&b, "%s:\n", sec)
		for k, v := range p.secrets {
			fmt.Fprintf(&b, "  %s: %q\n", k, v)
		}
	}
	secretsFile := filepath.Join(p.dir, "secrets.yaml")
	if err := os.WriteFile(secretsFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + p.nodeSock
	cfg.ControllerAddress = "unix://" + p.controllerSock
	cfg.TargetPath = filepath.Join(p.dir, "target")
	cfg.StagingPath = filepath.Join(p.dir, "staging")
	cfg.SecretsFile = secretsFile
	cfg.TestVolumeParameters = map[string]string{
		driver.ParamBucket: testenv.BucketName(t), driver.ParamPrefix: "sanity",
		driver.ParamSyncInterval: "200ms",
	}
	cfg.IdempotentCount = 2
	sanity.Test(t, cfg)
}
