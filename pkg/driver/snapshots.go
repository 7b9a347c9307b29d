package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
)

// A CSI snapshot is a snapshot pin of its source volume (s/<name> under
// the volume's prefix; FORMAT.md §13): the instant the pin object was
// created, by the store's clock, which the reaper keeps mountable until
// the pin is deleted. The driver also keeps a record per snapshot name,
// snapshotsPrefix + name, holding the source volume id, so that a name
// reused for another volume is refused (AlreadyExists) as CSI requires.
const snapshotsPrefix = ".s3gfs-csi/snapshots/"

type snapRecord struct {
	Version        int    `json:"version"`
	SourceVolumeID string `json:"sourceVolumeID"`
	// Deleted: DeleteSnapshot ran while clones restored from the snapshot
	// still read through its pin. The snapshot is gone for the CO; its
	// pin goes with the last of those clones (releaseSource).
	Deleted bool `json:"deleted,omitempty"`
}

// snapDeleted reports whether the snapshot name of the volume at l was
// deleted while clones kept its pin (a hidden pin).
func snapDeleted(ctx context.Context, store objstore.Store, l loc, name string) bool {
	old, _, err := store.Get(ctx, snapshotsPrefix+name)
	if err != nil {
		return false
	}
	var have snapRecord
	return json.Unmarshal(old, &have) == nil && have.SourceVolumeID == l.VolumeID() && have.Deleted
}

// A writable volume restored from a snapshot (a clone) leaves a marker in
// the snapshot's bucket, clonesPrefix + snapshot name + "/" + escaped
// clone volume id: the pin stays while one exists.
const clonesPrefix = ".s3gfs-csi/clones/"

func cloneMarker(snap, cloneID string) string {
	return clonesPrefix + snap + "/" + url.QueryEscape(cloneID)
}

// dropSnapshot deletes a snapshot's pin and its name record, and purges
// its volume if that was deleted and this was its last pin.
func (c *controllerServer) dropSnapshot(ctx context.Context, store objstore.Store, l loc, name string, secrets map[string]string) error {
	keys, _ := format.NewKeys(l.Prefix)
	if err := snapshot.Delete(ctx, store, keys, name); err != nil && !errors.Is(err, objstore.ErrNoBucket) {
		return err
	}
	// The name record only if it names this volume.
	if old, _, err := store.Get(ctx, snapshotsPrefix+name); err == nil {
		var have snapRecord
		if json.Unmarshal(old, &have) == nil && have.SourceVolumeID == l.VolumeID() {
			if err := store.Delete(ctx, snapshotsPrefix+name); err != nil {
				return err
			}
		}
	}
	// The source volume, deleted while it had snapshots, goes with the
	// last of them.
	if rec, err := getRecord(ctx, store, l.Prefix); err == nil && rec.Deleted && !rec.Retain {
		return c.purgeIfUnpinned(ctx, store, l, rec, secrets)
	}
	return nil
}

func snapshotEntry(l loc, pin snapshot.Pin) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId: l.SnapshotID(pin.Name), SourceVolumeId: l.VolumeID(),
		CreationTime: timestamppb.New(pin.Time), ReadyToUse: true,
	}
}

func (c *controllerServer) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name := req.GetName()
	if err := validateName("name", name); err != nil {
		return nil, err
	}
	if err := snapshot.ValidateName(name); err != nil {
		return nil, invalid("name", "%v", err)
	}
	if strings.HasPrefix(name, clonePinPrefix) {
		return nil, invalid("name", "%q: names starting with %s are the driver's own", name, clonePinPrefix)
	}
	if req.GetSourceVolumeId() == "" {
		return nil, invalid("source_volume_id", "missing")
	}
	l, err := parseVolumeID("source_volume_id", req.GetSourceVolumeId())
	if err != nil {
		return nil, err
	}
	for k := range req.GetParameters() {
		if len(k) < len(kubernetesParamPrefix) || k[:len(kubernetesParamPrefix)] != kubernetesParamPrefix {
			return nil, invalid("parameter "+k, "unknown parameter (snapshots take none)")
		}
	}
	release, err := c.guard.acquire("snap:"+name, l.key())
	if err != nil {
		return nil, err
	}
	defer release()
	store, rec, err := c.volumeExists(ctx, l, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	if rec.ReadOnlyView {
		return nil, fmt.Errorf("%w: volume %s is a read-only view of a snapshot; snapshot its source instead", ErrPrecondition, l.VolumeID())
	}
	c.remember(l)
	want := snapRecord{Version: 1, SourceVolumeID: l.VolumeID()}
	b, _ := json.Marshal(want)
	if _, err := store.PutIfAbsent(ctx, snapshotsPrefix+name, b); errors.Is(err, objstore.ErrExists) {
		old, _, gerr := store.Get(ctx, snapshotsPrefix+name)
		var have snapRecord
		if gerr != nil || json.Unmarshal(old, &have) != nil || have != want {
			return nil, fmt.Errorf("%w: snapshot %q exists for another volume", ErrExists, name)
		}
	} else if err != nil {
		return nil, err
	}
	keys, _ := format.NewKeys(l.Prefix)
	pin, err := snapshot.CreateWith(ctx, store, keys, name, snapshot.Options{Creator: "s3gfs-csi"})
	if err != nil && !errors.Is(err, snapshot.ErrExists) {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: snapshotEntry(l, pin)}, nil
}

func (c *controllerServer) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	l, name, err := parseSnapshotID("snapshot_id", req.GetSnapshotId())
	if errors.Is(err, ErrNotFound) {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	release, err := c.guard.acquire("snap:"+name, l.key())
	if err != nil {
		return nil, err
	}
	defer release()
	store, err := c.openStore(ctx, l, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	// A read-only view restored from the snapshot mounts its pin by name:
	// the snapshot stays until the view is deleted.
	if page, err := store.List(ctx, viewsPrefix+name+"/", "", 1); err == nil && len(page.Objects) > 0 {
		view, _ := url.QueryUnescape(strings.TrimPrefix(page.Objects[0].Key, viewsPrefix+name+"/"))
		return nil, fmt.Errorf("%w: snapshot %s is in use by volume %s (a read-only view of it); delete that first", ErrPrecondition, req.GetSnapshotId(), clip(view))
	} else if err != nil && !errors.Is(err, objstore.ErrNoBucket) {
		return nil, err
	}
	// Clones restored from it read through its pin: the snapshot goes for
	// the CO at once, its pin with the last clone (releaseSource).
	if page, err := store.List(ctx, clonesPrefix+name+"/", "", 1); err == nil && len(page.Objects) > 0 {
		old, _, err := store.Get(ctx, snapshotsPrefix+name)
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return nil, err
		}
		var have snapRecord
		if err == nil && json.Unmarshal(old, &have) == nil && have.SourceVolumeID == l.VolumeID() && !have.Deleted {
			have.Deleted = true
			b, _ := json.Marshal(have)
			if _, err := store.Put(ctx, snapshotsPrefix+name, b); err != nil {
				return nil, err
			}
			return &csi.DeleteSnapshotResponse{}, nil
		}
		if err == nil && have.Deleted {
			return &csi.DeleteSnapshotResponse{}, nil
		}
		// No record of this volume's (not the driver's, or another
		// volume's snapshot of that name): keep the pin for the clones.
		return nil, fmt.Errorf("%w: snapshot %s is in use by clones restored from it and has no record this driver can mark", ErrPrecondition, req.GetSnapshotId())
	} else if err != nil && !errors.Is(err, objstore.ErrNoBucket) {
		return nil, err
	}
	if err := c.dropSnapshot(ctx, store, l, name, req.GetSecrets()); err != nil {
		return nil, err
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (c *controllerServer) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, invalid("max_entries", "negative")
	}
	var entries []*csi.Snapshot
	switch {
	case req.GetSnapshotId() != "":
		l, name, err := parseSnapshotID("snapshot_id", req.GetSnapshotId())
		if err != nil {
			return &csi.ListSnapshotsResponse{}, nil
		}
		store, err := c.openStore(ctx, l, req.GetSecrets())
		if err != nil {
			return nil, err
		}
		keys, _ := format.NewKeys(l.Prefix)
		pin, err := snapshot.Get(ctx, store, keys, name)
		if errors.Is(err, snapshot.ErrNotFound) || errors.Is(err, objstore.ErrNoBucket) || (err == nil && snapDeleted(ctx, store, l, name)) {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if err != nil && !errors.Is(err, snapshot.ErrCorrupt) {
			return nil, err
		}
		if req.GetSourceVolumeId() == "" || req.GetSourceVolumeId() == l.VolumeID() {
			entries = append(entries, snapshotEntry(l, pin))
		}
	case req.GetSourceVolumeId() != "":
		l, err := parseVolumeID("source_volume_id", req.GetSourceVolumeId())
		if err != nil {
			return &csi.ListSnapshotsResponse{}, nil
		}
		store, err := c.openStore(ctx, l, req.GetSecrets())
		if err != nil {
			return nil, err
		}
		if entries, err = pinsOf(ctx, store, l); err != nil {
			return nil, err
		}
	default:
		for _, b := range c.knownLocs() {
			store, err := c.openStore(ctx, b, req.GetSecrets())
			if err != nil {
				return nil, err
			}
			vols, err := volumesIn(ctx, store, b)
			if errors.Is(err, objstore.ErrNoBucket) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, v := range vols {
				e, err := pinsOf(ctx, store, v)
				if err != nil {
					return nil, err
				}
				entries = append(entries, e...)
			}
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].SnapshotId < entries[j].SnapshotId })
	start := 0
	if t := req.GetStartingToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(entries) {
			return nil, fmt.Errorf("%w: starting_token %q is not one this driver returned", errBadToken, clip(t))
		}
		start = n
	}
	entries = entries[start:]
	next := ""
	if m := int(req.GetMaxEntries()); m > 0 && len(entries) > m {
		entries = entries[:m]
		next = strconv.Itoa(start + m)
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: e})
	}
	return resp, nil
}

func pinsOf(ctx context.Context, store objstore.Store, l loc) ([]*csi.Snapshot, error) {
	keys, _ := format.NewKeys(l.Prefix)
	pins, err := snapshot.List(ctx, store, keys)
	if errors.Is(err, objstore.ErrNoBucket) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*csi.Snapshot
	for _, p := range pins {
		if validateName("", p.Name) == nil && !strings.HasPrefix(p.Name, clonePinPrefix) && !snapDeleted(ctx, store, l, p.Name) {
			out = append(out, snapshotEntry(l, p))
		}
	}
	return out, nil
}

func (c *controllerServer) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	l, name, err := parseSnapshotID("snapshot_id", req.GetSnapshotId())
	if err != nil {
		return nil, err
	}
	store, err := c.openStore(ctx, l, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	keys, _ := format.NewKeys(l.Prefix)
	pin, err := snapshot.Get(ctx, store, keys, name)
	if errors.Is(err, objstore.ErrNoBucket) || (err == nil && snapDeleted(ctx, store, l, name)) {
		return nil, fmt.Errorf("%w: snapshot %s", ErrNotFound, req.GetSnapshotId())
	}
	if err != nil && !errors.Is(err, snapshot.ErrCorrupt) {
		return nil, err
	}
	return &csi.GetSnapshotResponse{Snapshot: snapshotEntry(l, pin)}, nil
}
