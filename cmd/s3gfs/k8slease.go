package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/reaper/k8slease"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// k8sLeaseFlags choose the reaper's lease (the bucket's, or a Kubernetes
// Lease) and reach the Kubernetes API.
type k8sLeaseFlags struct {
	kind       string
	namespace  string
	name       string
	kubeconfig string
}

func (k *k8sLeaseFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kind, "lease", "bucket", `where the reaper's lease lives: "bucket" (an object in the volume; with --volumes-from, each volume's own, taken around its pass) or "kubernetes" (a coordination.k8s.io Lease; with --volumes-from, one for all the volumes)`)
	fs.StringVar(&k.namespace, "lease-namespace", "", "namespace of the Kubernetes Lease (default: $POD_NAMESPACE, else the service account's namespace, else default)")
	fs.StringVar(&k.name, "lease-name", "", "name of the Kubernetes Lease (default: s3gfs-reaper- and a hash of the volume URL, or with --volumes-from of the driver name)")
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file for the Kubernetes API outside a cluster (default: in-cluster config)")
}

func (k *k8sLeaseFlags) check() error {
	if k.kind != "bucket" && k.kind != "kubernetes" {
		return fmt.Errorf("%w: --lease %q: want bucket or kubernetes", errUsage, k.kind)
	}
	return nil
}

// bucketLease is the volume's lease object.
func bucketLease(vol *volume.Volume, f *reaperFlags, log *slog.Logger) *reaper.BucketLease {
	return &reaper.BucketLease{Store: vol.Store, Keys: vol.Keys, Owner: f.owner, Duration: time.Duration(f.leaseFor), Logger: log}
}

// kubeLease is the Kubernetes Lease the flags name; key (the volume URL,
// or the driver) names it by default. It returns the owner id the reaper
// records.
func (k *k8sLeaseFlags) kubeLease(client kubernetes.Interface, key string, f *reaperFlags, log *slog.Logger) (*k8slease.Lease, string) {
	id := f.owner
	if id == "" {
		id, _ = os.Hostname() // the pod's name in a pod
	}
	name := k.name
	if name == "" {
		sum := sha256.Sum256([]byte(key))
		name = "s3gfs-reaper-" + hex.EncodeToString(sum[:8])
	}
	ns := k.namespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = strings.TrimSpace(string(b))
		}
	}
	if ns == "" {
		ns = "default"
	}
	return &k8slease.Lease{Client: client, Namespace: ns, Name: name, Identity: id, Duration: time.Duration(f.leaseFor), Logger: log}, id
}

// clients connect to the Kubernetes API: in a pod with its service
// account, elsewhere with --kubeconfig.
func (k *k8sLeaseFlags) clients(log *slog.Logger) (kubernetes.Interface, snapclient.Interface, error) {
	klog.SetSlogLogger(log) // client-go logs through klog: keep one log format
	var cfg *rest.Config
	var err error
	if k.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes API: %w", err)
	}
	cfg.UserAgent = "s3gfs-reaper/" + version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes API: %w", err)
	}
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes API: %w", err)
	}
	return client, snaps, nil
}
