// Command controller is the s3gfs CSI controller plugin: it creates,
// deletes, expands and snapshots s3gfs volumes in S3 buckets for the
// Kubernetes external-provisioner and external-snapshotter sidecars.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/s3gfs/s3gfs/pkg/driver"
)

var version = "dev"

const usage = `Usage: PROG [flags]

The s3gfs CSI controller plugin. It serves the CSI identity and controller
services on --endpoint for the csi-provisioner and csi-snapshotter sidecars.
It needs no FUSE and no privileges: only S3 access.

Each CreateVolume formats a new s3gfs volume at s3://BUCKET/[PREFIX/]NAME
(StorageClass parameters bucket and prefix; bucketPerVolume=true gives each
volume a bucket of its own). S3 credentials come from the CSI secrets
(accessKeyID, secretAccessKey, optional endpoint and region), else from this
process's AWS environment (AWS_ACCESS_KEY_ID..., a web identity token, the
instance profile). AWS_CA_BUNDLE is honoured. See docs/csi.md.

Example (outside Kubernetes, against a local S3 server):
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
    PROG --endpoint unix:///tmp/csi/controller.sock --s3-endpoint http://127.0.0.1:7070

Flags:
`

func main() {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), strings.ReplaceAll(usage, "PROG", prog())); fs.PrintDefaults() }
	endpoint := fs.String("endpoint", "unix:///csi/csi.sock", "CSI endpoint: the unix socket to serve on, unix:///path/csi.sock")
	name := fs.String("driver-name", driver.DefaultDriverName, "CSI driver name (the StorageClass provisioner)")
	metrics := fs.String("metrics-addr", "", "serve Prometheus metrics at this address's /metrics (and /healthz, as --health-addr), e.g. :9809 (default: off)")
	health := fs.String("health-addr", "", "serve /healthz at this address for the kubelet's liveness probe, e.g. :9808: it calls the plugin's CSI Probe through --endpoint, as /healthz on --metrics-addr does (default: off)")
	s3Endpoint := fs.String("s3-endpoint", "", "S3 endpoint when neither the StorageClass nor the secret names one (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)")
	s3Region := fs.String("s3-region", "", "S3 region when neither the StorageClass nor the secret names one (default: the AWS SDK chain, else us-east-1)")
	listBuckets := fs.String("list-buckets", "", "comma-separated buckets whose snapshots an unfiltered ListSnapshots reports, besides those used since start")
	v := fs.Int("v", 0, "log verbosity (0 logs every call but probes and volume statistics; 5 those too)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "controller: unexpected arguments %q (see --help)\n", fs.Args())
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("s3gfs csi controller", version)
		return
	}
	driver.SetupLogging(os.Stderr, *v)
	cfg := driver.ControllerConfig{Endpoint: *s3Endpoint, Region: *s3Region}
	if *listBuckets != "" {
		cfg.ListBuckets = strings.Split(*listBuckets, ",")
	}
	srv := driver.NewControllerServer(*name, version, cfg)
	// /healthz (on --health-addr, and on --metrics-addr) calls the
	// plugin's own CSI Probe through its socket.
	check, err := driver.ProbeCSI(*endpoint)
	if err != nil {
		klog.ErrorS(err, "--endpoint")
		os.Exit(1)
	}
	driver.ServeMetrics(*metrics, srv.MetricsHandler(), check)
	driver.ServeHealth(*health, check)
	if err := driver.RunUntilSignal(func() error { return srv.Serve(*endpoint) }, srv.Stop); err != nil {
		klog.ErrorS(err, "controller stopped")
		klog.Flush()
		os.Exit(1)
	}
}

// prog is the name this binary was started as.
func prog() string { return filepath.Base(os.Args[0]) }
