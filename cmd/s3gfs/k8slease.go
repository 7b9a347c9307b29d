package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/reaper/k8slease"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// k8sLeaseFlags choose the reaper's lease: the bucket's, or a Kubernetes
// Lease.
type k8sLeaseFlags struct {
	kind       string
	namespace  string
	name       string
	kubeconfig string
}

func (k *k8sLeaseFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kind, "lease", "bucket", `where the reaper's lease lives: "bucket" (an object in the volume) or "kubernetes" (a coordination.k8s.io Lease)`)
	fs.StringVar(&k.namespace, "lease-namespace", "", "namespace of the Kubernetes Lease (default: $POD_NAMESPACE, else the service account's namespace, else default)")
	fs.StringVar(&k.name, "lease-name", "", "name of the Kubernetes Lease (default: s3gfs-reaper- and a hash of the volume URL)")
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file for --lease kubernetes outside a cluster (default: in-cluster config)")
}

// lease returns the lease the flags name and the owner id the reaper
// records.
func (k *k8sLeaseFlags) lease(vol *volume.Volume, f *reaperFlags, log *slog.Logger) (reaper.Lease, string, error) {
	switch k.kind {
	case "bucket":
		l := &reaper.BucketLease{Store: vol.Store, Keys: vol.Keys, Owner: f.owner, Duration: time.Duration(f.leaseFor), Logger: log}
		return l, l.Owner, nil
	case "kubernetes":
	default:
		return nil, "", fmt.Errorf("%w: --lease %q: want bucket or kubernetes", errUsage, k.kind)
	}
	klog.SetSlogLogger(log) // client-go logs through klog: keep one log format
	cfg, err := k.restConfig()
	if err != nil {
		return nil, "", fmt.Errorf("--lease kubernetes: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("--lease kubernetes: %w", err)
	}
	id := f.owner
	if id == "" {
		id, _ = os.Hostname() // the pod's name in a pod
	}
	name := k.name
	if name == "" {
		sum := sha256.Sum256([]byte(vol.URL.String()))
		name = "s3gfs-reaper-" + hex.EncodeToString(sum[:8])
	}
	ns := k.namespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = string(b)
		}
	}
	if ns == "" {
		ns = "default"
	}
	l := &k8slease.Lease{Client: client, Namespace: ns, Name: name, Identity: id, Duration: time.Duration(f.leaseFor), Logger: log}
	return l, id, nil
}

func (k *k8sLeaseFlags) restConfig() (*rest.Config, error) {
	if k.kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	}
	return rest.InClusterConfig()
}
