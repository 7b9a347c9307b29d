// Package k8svolumes lets one reaper collect every s3gfs volume of a
// Kubernetes cluster (s3gfs reaper --volumes-from kubernetes). Each pass
// it finds the volumes from the cluster itself: the PersistentVolumes of
// the CSI driver (their volume handles are the driver's volume ids), plus
// the source volumes of the driver's VolumeSnapshotContents (a volume
// whose PersistentVolume was deleted while snapshots of it remain keeps
// its objects, and is still collected, until its last snapshot goes). It
// then runs a reaper pass on each volume in turn, while the caller holds
// the reaper's lease, and checks that every VolumeSnapshotContent's
// snapshot pin is still in its volume.
//
// Everything read from the cluster is untrusted input: a handle that is
// not a valid id of this driver is logged and skipped, never fatal.
package k8svolumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// DefaultDriver is the CSI driver name of s3gfs (pkg/driver's
// DefaultDriverName).
const DefaultDriver = "csi.s3gfs.io"

// listPage is how many objects one LIST request asks for.
const listPage = 500

// Finder finds the volumes of one CSI driver in a cluster.
type Finder struct {
	Client kubernetes.Interface
	// Snapshots reads VolumeSnapshotContents; nil: they are not read (no
	// volume is then found through its snapshots, and no pin is checked).
	Snapshots snapclient.Interface
	// Driver is the CSI driver name (DefaultDriver when empty).
	Driver string
	Logger *slog.Logger
}

// Volume is one volume to collect.
type Volume struct {
	Loc volumeid.Loc
	// PVs are the PersistentVolumes whose handle names it (none for a
	// volume kept only for its snapshots).
	PVs []string
	// Snapshots are the VolumeSnapshotContents of its snapshots.
	Snapshots []Snapshot
	// Deleted: found from the CSI controller's record of a volume deleted
	// while snapshots or clones of it remain (Collector.Kept).
	Deleted bool
}

// ID is the volume's CSI volume id.
func (v *Volume) ID() string { return v.Loc.VolumeID() }

// Snapshot is a VolumeSnapshotContent of this driver.
type Snapshot struct {
	Content string // the VolumeSnapshotContent's name
	Pin     string // the snapshot pin's name in the volume (s/<Pin>)
	// Deleting: the content is being deleted, so its pin may already be
	// gone.
	Deleting bool
}

// Skipped is an object of the driver whose handle names no volume.
type Skipped struct {
	Object string // "PersistentVolume/NAME" or "VolumeSnapshotContent/NAME"
	Handle string // the handle, clipped
	Reason string
}

// Found is what one Find returned.
type Found struct {
	Volumes []*Volume // sorted by volume id
	Skipped []Skipped
	// SnapshotsErr: the VolumeSnapshotContents could not be listed (the
	// snapshot CRDs are not installed, or reading them is not allowed).
	// Volumes kept only for their snapshots are then not found, and no pin
	// is checked, this time; never unsafe: a volume not found is not
	// collected.
	SnapshotsErr error
}

func (f *Finder) driver() string {
	if f.Driver != "" {
		return f.Driver
	}
	return DefaultDriver
}

func (f *Finder) log() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

// Find lists the driver's PersistentVolumes and VolumeSnapshotContents and
// returns the volumes they name. Only failing to list the
// PersistentVolumes is an error.
func (f *Finder) Find(ctx context.Context) (*Found, error) {
	if f.Client == nil {
		return nil, errors.New("k8svolumes: no Kubernetes client")
	}
	out := &Found{}
	byID := map[volumeid.Loc]*Volume{}
	get := func(l volumeid.Loc) *Volume {
		v := byID[l]
		if v == nil {
			v = &Volume{Loc: l}
			byID[l] = v
		}
		return v
	}
	skip := func(kind, name, handle string, err error) {
		s := Skipped{Object: kind + "/" + volumeid.Clip(name), Handle: volumeid.Clip(handle), Reason: err.Error()}
		out.Skipped = append(out.Skipped, s)
		f.log().Warn("skipping an object of the driver whose handle names no s3gfs volume",
			"object", s.Object, "handle", s.Handle, "reason", s.Reason)
	}

	cont := ""
	for {
		list, err := f.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{Limit: listPage, Continue: cont})
		if err != nil {
			return nil, fmt.Errorf("list PersistentVolumes: %w", err)
		}
		for i := range list.Items {
			pv := &list.Items[i]
			csi := pv.Spec.CSI
			if csi == nil || csi.Driver != f.driver() {
				continue
			}
			l, err := volumeid.ParseVolumeID("volumeHandle", csi.VolumeHandle)
			if err != nil {
				skip("PersistentVolume", pv.Name, csi.VolumeHandle, err)
				continue
			}
			v := get(l)
			v.PVs = append(v.PVs, pv.Name)
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}

	if f.Snapshots != nil {
		if err := f.findSnapshots(ctx, get, skip); err != nil {
			out.SnapshotsErr = err
			f.log().Warn("cannot read VolumeSnapshotContents: volumes kept only for their snapshots are not collected, and snapshot pins are not checked, this pass", "err", err)
		}
	}

	for _, v := range byID {
		sort.Strings(v.PVs)
		sort.Slice(v.Snapshots, func(i, j int) bool { return v.Snapshots[i].Content < v.Snapshots[j].Content })
		out.Volumes = append(out.Volumes, v)
	}
	sort.Slice(out.Volumes, func(i, j int) bool { return out.Volumes[i].ID() < out.Volumes[j].ID() })
	return out, nil
}

func (f *Finder) findSnapshots(ctx context.Context, get func(volumeid.Loc) *Volume, skip func(kind, name, handle string, err error)) error {
	cont := ""
	for {
		list, err := f.Snapshots.SnapshotV1().VolumeSnapshotContents().List(ctx, metav1.ListOptions{Limit: listPage, Continue: cont})
		if err != nil {
			return fmt.Errorf("list VolumeSnapshotContents: %w", err)
		}
		for i := range list.Items {
			c := &list.Items[i]
			if c.Spec.Driver != f.driver() {
				continue
			}
			handle := snapshotHandle(c)
			if handle == "" {
				continue // not cut yet (or failed): no pin to keep
			}
			l, pin, err := volumeid.ParseSnapshotID("snapshotHandle", handle)
			if err != nil {
				skip("VolumeSnapshotContent", c.Name, handle, err)
				continue
			}
			v := get(l)
			v.Snapshots = append(v.Snapshots, Snapshot{Content: c.Name, Pin: pin, Deleting: c.DeletionTimestamp != nil})
		}
		if cont = list.Continue; cont == "" {
			return nil
		}
	}
}

// snapshotHandle is the content's snapshot id: its status's (a snapshot
// the driver cut), else its spec's (a pre-provisioned one).
func snapshotHandle(c *snapv1.VolumeSnapshotContent) string {
	if c.Status != nil && c.Status.SnapshotHandle != nil && *c.Status.SnapshotHandle != "" {
		return *c.Status.SnapshotHandle
	}
	if c.Spec.Source.SnapshotHandle != nil {
		return *c.Spec.Source.SnapshotHandle
	}
	return ""
}
