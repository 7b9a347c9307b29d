package driver

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// ControllerConfig configures the controller service.
type ControllerConfig struct {
	// Endpoint and Region are used when neither the StorageClass nor the
	// secrets name one (empty: the AWS SDK's environment and defaults).
	Endpoint string
	Region   string
	// ListBuckets are buckets whose volumes ListSnapshots reports without a
	// filter, besides those this controller has served since it started.
	ListBuckets []string
}

// controllerServer implements csi.ControllerServer.
type controllerServer struct {
	csi.UnimplementedControllerServer
	cfg   ControllerConfig
	guard *guard

	mu    sync.Mutex
	known map[loc]bool // buckets (with endpoint and region) seen, for ListSnapshots
}

func newControllerServer(cfg ControllerConfig, g *guard) *controllerServer {
	c := &controllerServer{cfg: cfg, guard: g, known: map[loc]bool{}}
	for _, b := range cfg.ListBuckets {
		c.known[loc{Bucket: b}] = true
	}
	return c
}

// The controller keeps one small JSON record per volume, outside every
// volume's keys, at recordsPrefix + QueryEscape("/" + volume prefix): it
// says the volume was made by this driver, with which parameters (so that
// a repeated CreateVolume is recognised) and from what source. No volume
// prefix can collide with it: prefix segments start with a letter or digit.
const recordsPrefix = ".s3gfs-csi/volumes/"

func recordKey(prefix string) string { return recordsPrefix + url.QueryEscape("/"+prefix) }

type volRecord struct {
	Version       int    `json:"version"`
	Name          string `json:"name"`
	Prefix        string `json:"prefix"`
	Endpoint      string `json:"endpoint,omitempty"` // StorageClass parameter (also in the volume id)
	Region        string `json:"region,omitempty"`
	RequiredBytes int64  `json:"requiredBytes,omitempty"`
	LimitBytes    int64  `json:"limitBytes,omitempty"`
	ExtentSize    uint32 `json:"extentSize"`
	InlineLimit   uint32 `json:"inlineLimit"`
	Retention     string `json:"retention"`
	Retain        bool   `json:"retain,omitempty"`
	CacheSize     int64  `json:"cacheSize,omitempty"`
	SyncInterval  string `json:"syncInterval,omitempty"`
	// Source is the snapshot or volume id the volume was made from.
	Source string `json:"source,omitempty"`
	// ReadOnlyView: the volume is the source volume at AsOf, shown by
	// read-only mounts of SourcePrefix; it has no objects of its own.
	ReadOnlyView bool   `json:"readOnlyView,omitempty"`
	SourcePrefix string `json:"sourcePrefix,omitempty"`
	// SourceBucket is the source's bucket when it is not the volume's own.
	SourceBucket string `json:"sourceBucket,omitempty"`
	// SourceSnapshot names the snapshot pin a read-only view mounts.
	SourceSnapshot string `json:"sourceSnapshot,omitempty"`
	// ClonePin names the pin in the source that holds a writable volume's
	// source at AsOf: the volume is a clone (FORMAT.md §16) that reads
	// what it has not changed from the source. For a source volume it is
	// the driver's own pin (clonePin), for a snapshot the snapshot's.
	ClonePin string    `json:"clonePin,omitempty"`
	AsOf     time.Time `json:"asOf,omitzero"`
	Created  time.Time `json:"created"`
	// Deleted: DeleteVolume ran on a volume with onDelete=retain; its
	// objects stay, the record says they were this driver's.
	Deleted bool `json:"deleted,omitempty"`
}

// sameRequest reports whether r and o were asked for with the same
// parameters (times chosen by the driver excepted).
func (r volRecord) sameRequest(o volRecord) bool {
	r.AsOf, o.AsOf, r.Created, o.Created = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	r.ExtentSize, o.ExtentSize = 0, 0 // a restore takes the source's
	r.InlineLimit, o.InlineLimit = 0, 0
	// Derived from the source (and absent from records of volumes an
	// earlier version of the driver copied).
	r.ClonePin, o.ClonePin = "", ""
	return r == o
}

func (c *controllerServer) remember(l loc) {
	c.mu.Lock()
	c.known[loc{Bucket: l.Bucket, Endpoint: l.Endpoint, Region: l.Region}] = true
	c.mu.Unlock()
}

// openStore reaches l's bucket with the request's credentials, else the
// plugin's own AWS environment. The location's endpoint and region (from
// the StorageClass) win over the secrets', which win over the flags'.
func (c *controllerServer) openStore(ctx context.Context, l loc, secrets map[string]string) (objstore.Store, error) {
	cr, err := parseSecrets(secrets)
	if err != nil {
		return nil, err
	}
	cfg := s3store.Config{Bucket: l.Bucket, Endpoint: l.Endpoint, Region: l.Region, AccessKey: cr.AccessKeyID, SecretKey: cr.SecretAccessKey, Retries: 4}
	if cfg.Endpoint == "" {
		cfg.Endpoint = cr.Endpoint
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = c.cfg.Endpoint
	}
	if cfg.Region == "" {
		cfg.Region = cr.Region
	}
	if cfg.Region == "" {
		cfg.Region = c.cfg.Region
	}
	st, err := s3store.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: object store: %v", objstore.ErrUnavailable, err)
	}
	return st, nil
}

func getRecord(ctx context.Context, store objstore.Store, prefix string) (*volRecord, error) {
	b, _, err := store.Get(ctx, recordKey(prefix))
	if err != nil {
		return nil, err
	}
	var r volRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Version != 1 || r.Prefix != prefix {
		return nil, fmt.Errorf("%w: volume record %s is unreadable", ErrPrecondition, recordKey(prefix))
	}
	return &r, nil
}

// volumeLoc places the volume called name.
func volumeLoc(p volParams, name string) loc {
	l := loc{Bucket: p.Bucket, Endpoint: p.Endpoint, Region: p.Region}
	if p.BucketPerVolume {
		stem := strings.ToLower(name)
		if stem != name || len(p.Bucket)+1+len(name) > 63 || volume.ValidateBucket(p.Bucket+"-"+stem) != nil {
			// Not usable in a bucket name as it is: a digest, so that
			// distinct names stay distinct.
			stem = digest(name)[:20]
		}
		l.Bucket = p.Bucket + "-" + stem
		return l
	}
	l.Prefix = name
	if p.Prefix != "" {
		l.Prefix = p.Prefix + "/" + name
	}
	return l
}

func (c *controllerServer) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if err := validateName("name", name); err != nil {
		return nil, err
	}
	caps := req.GetVolumeCapabilities()
	if len(caps) == 0 {
		return nil, invalid("volume_capabilities", "missing")
	}
	readOnly := true
	for _, vc := range caps {
		if err := checkCapability("volume_capabilities", vc); err != nil {
			return nil, err
		}
		readOnly = readOnly && readerOnly(vc)
	}
	p, err := parseParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	cr := req.GetCapacityRange()
	if cr.GetRequiredBytes() < 0 || cr.GetLimitBytes() < 0 {
		return nil, invalid("capacity_range", "negative")
	}
	if cr.GetLimitBytes() > 0 && cr.GetRequiredBytes() > cr.GetLimitBytes() {
		return nil, fmt.Errorf("%w: capacity_range: required_bytes exceeds limit_bytes", ErrOutOfRange)
	}
	l := volumeLoc(p, name)
	if err := l.validate("name"); err != nil {
		return nil, err
	}
	want := volRecord{
		Version: 1, Name: name, Prefix: l.Prefix, Endpoint: p.Endpoint, Region: p.Region,
		RequiredBytes: cr.GetRequiredBytes(), LimitBytes: cr.GetLimitBytes(),
		ExtentSize: p.ExtentSize, InlineLimit: p.InlineLimit, Retention: p.Retention.String(), Retain: p.Retain,
		CacheSize: p.CacheSize, Created: time.Now().UTC(),
	}
	if p.SyncInterval > 0 {
		want.SyncInterval = p.SyncInterval.String()
	}
	var src *csi.VolumeContentSource = req.GetVolumeContentSource()
	var srcLoc loc
	var srcSnap string
	switch {
	case src == nil:
	case src.GetSnapshot() != nil:
		want.Source = src.GetSnapshot().GetSnapshotId()
		if srcLoc, srcSnap, err = parseSnapshotID("volume_content_source.snapshot.snapshot_id", want.Source); err != nil {
			return nil, err
		}
		want.ReadOnlyView = readOnly
	case src.GetVolume() != nil:
		want.Source = src.GetVolume().GetVolumeId()
		if srcLoc, err = parseVolumeID("volume_content_source.volume.volume_id", want.Source); err != nil {
			return nil, err
		}
	default:
		return nil, invalid("volume_content_source", "neither a snapshot nor a volume")
	}
	if want.Source != "" {
		want.SourcePrefix = srcLoc.Prefix
		if srcLoc.Bucket != l.Bucket {
			want.SourceBucket = srcLoc.Bucket
		}
		switch {
		case want.ReadOnlyView:
			want.SourceSnapshot = srcSnap
		case srcSnap != "":
			want.ClonePin = srcSnap
		default:
			want.ClonePin = clonePin(name)
		}
	}
	if want.Source != "" && (srcLoc.Endpoint != l.Endpoint || srcLoc.Region != l.Region) {
		return nil, invalid("volume_content_source", "the source must be on the same endpoint and region as the new volume (its StorageClass's)")
	}

	release, err := c.guard.acquire(l.key(), "name:"+name)
	if err != nil {
		return nil, err
	}
	defer release()
	store, err := c.openStore(ctx, l, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	if bc, ok := store.(objstore.BucketCreator); ok {
		if err := bc.EnsureBucket(ctx); err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", l.Bucket, err)
		}
	}
	c.remember(l)
	srcStore := store
	if want.SourceBucket != "" {
		if srcStore, err = c.openStore(ctx, srcLoc, req.GetSecrets()); err != nil {
			return nil, err
		}
	}

	rec, err := getRecord(ctx, store, l.Prefix)
	switch {
	case err == nil:
		if rec.Deleted {
			return nil, fmt.Errorf("%w: the objects of a deleted volume %q, retained (onDelete=retain), are still at %s; remove them or use another name", ErrPrecondition, name, l.URL())
		}
		if !rec.sameRequest(want) {
			return nil, fmt.Errorf("%w: volume %q exists with other parameters, capacity or source", ErrExists, name)
		}
	case errors.Is(err, objstore.ErrNotFound):
		if err := checkFree(ctx, store, l); err != nil {
			return nil, err
		}
		// The source's point in time is fixed now, before anything is
		// written, so that a retried CreateVolume continues the same copy.
		if want.Source != "" {
			if want.AsOf, err = c.sourceTime(ctx, srcStore, srcLoc, srcSnap, name); err != nil {
				return nil, err
			}
		}
		if srcSnap != "" {
			// Before the record: DeleteSnapshot must never miss a volume
			// that needs the snapshot (a view, or a clone of it).
			marker := viewMarker(srcSnap, l.VolumeID())
			if !want.ReadOnlyView {
				marker = cloneMarker(srcSnap, l.VolumeID())
			}
			if _, err := srcStore.Put(ctx, marker, []byte(name)); err != nil {
				return nil, fmt.Errorf("write view marker: %w", err)
			}
		}
		b, _ := json.Marshal(want)
		if _, err := store.PutIfAbsent(ctx, recordKey(l.Prefix), b); err != nil {
			if errors.Is(err, objstore.ErrExists) {
				return nil, fmt.Errorf("%w: volume %q is being created by another request", ErrInFlight, name)
			}
			return nil, fmt.Errorf("write volume record: %w", err)
		}
		rec = &want
	default:
		return nil, err
	}

	if err := c.materialize(ctx, store, srcStore, l, rec); err != nil {
		return nil, err
	}
	vctx := map[string]string{CtxBucket: l.Bucket, CtxPrefix: l.Prefix}
	if l.Endpoint != "" {
		vctx[CtxEndpoint] = l.Endpoint
	}
	if l.Region != "" {
		vctx[CtxRegion] = l.Region
	}
	if rec.ReadOnlyView {
		vctx[CtxAsOf] = rec.AsOf.UTC().Format(time.RFC3339Nano)
		vctx[CtxSourcePrefix] = rec.SourcePrefix
		vctx[CtxSnapshot] = rec.SourceSnapshot
		if rec.SourceBucket != "" {
			vctx[CtxSourceBucket] = rec.SourceBucket
		}
	}
	if rec.CacheSize > 0 {
		vctx[CtxCacheSize] = strconv.FormatInt(rec.CacheSize, 10)
	}
	if rec.SyncInterval != "" {
		vctx[CtxSyncInterval] = rec.SyncInterval
	}
	capacity := rec.RequiredBytes
	if capacity == 0 {
		capacity = rec.LimitBytes
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId: l.VolumeID(), CapacityBytes: capacity, VolumeContext: vctx, ContentSource: src,
	}}, nil
}

// checkFree refuses a location that would overlap a volume this driver did
// not make: a volume at an ancestor prefix (whose keys would contain the
// new one), or any object already under the prefix itself.
func checkFree(ctx context.Context, store objstore.Store, l loc) error {
	segs := []string{}
	if l.Prefix != "" {
		segs = strings.Split(l.Prefix, "/")
	}
	for i := 0; i < len(segs); i++ {
		anc := strings.Join(segs[:i], "/")
		keys, _ := format.NewKeys(anc)
		if _, err := store.Head(ctx, keys.Volume()); err == nil {
			return fmt.Errorf("%w: %s lies inside the volume s3://%s/%s, which this driver must not touch", ErrPrecondition, l.URL(), l.Bucket, anc)
		} else if !errors.Is(err, objstore.ErrNotFound) {
			return err
		}
	}
	keys, _ := format.NewKeys(l.Prefix)
	for _, p := range []string{keys.Volume(), keys.InodesPrefix(), keys.ExtentsPrefix(), keys.Prefix()} {
		if p == "" {
			continue
		}
		page, err := store.List(ctx, p, "", 1)
		if err != nil {
			return err
		}
		if len(page.Objects) > 0 && !strings.HasPrefix(page.Objects[0].Key, ".s3gfs-csi/") {
			return fmt.Errorf("%w: %s already holds objects this driver did not create (%s); refusing to use it", ErrPrecondition, l.URL(), page.Objects[0].Key)
		}
	}
	return nil
}

// sourceTime is the point in time a new volume shows: the snapshot's pin,
// or for a clone of a volume the pin of a snapshot of the source
// (clonePin) that the driver makes and keeps for the clone's life: it keeps
// the source's reaper from collecting what the clone reads from it.
func (c *controllerServer) sourceTime(ctx context.Context, store objstore.Store, src loc, snap, name string) (time.Time, error) {
	keys, _ := format.NewKeys(src.Prefix)
	if snap != "" {
		pin, err := snapshot.Get(ctx, store, keys, snap)
		if err != nil {
			return time.Time{}, err
		}
		if snapDeleted(ctx, store, src, snap) { // kept only for its clones
			return time.Time{}, fmt.Errorf("%w: snapshot %s", ErrNotFound, src.SnapshotID(snap))
		}
		return pin.Time, waitPast(ctx, store, pin.Time)
	}
	if srec, err := getRecord(ctx, store, src.Prefix); err != nil || srec.Deleted {
		if err == nil || errors.Is(err, objstore.ErrNotFound) {
			return time.Time{}, fmt.Errorf("%w: source volume %s", ErrNotFound, src.VolumeID())
		}
		return time.Time{}, err
	}
	pin, err := snapshot.CreateWith(ctx, store, keys, clonePin(name), snapshot.Options{Creator: "s3gfs-csi", Label: "holds the source of clone " + name})
	if err != nil && !errors.Is(err, snapshot.ErrExists) {
		return time.Time{}, err
	}
	return pin.Time, waitPast(ctx, store, pin.Time)
}

// waitPast waits until the store's clock has left the second of t. Store
// times have one-second resolution and a point-in-time view at t includes
// everything stamped with t's second: until that second is over, more can
// still join it, so neither a copy nor an as-of mount may start before.
func waitPast(ctx context.Context, store objstore.Store, t time.Time) error {
	for {
		now, err := hosts.ServerNow(ctx, store)
		if err != nil {
			return fmt.Errorf("read the store's clock: %w", err)
		}
		if now.Truncate(time.Second).After(t.Truncate(time.Second)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// clonePinPrefix starts the names of the pins the driver keeps in a
// source volume for its clones; CSI snapshot names may not use it, and
// ListSnapshots does not show them.
const clonePinPrefix = "csi-clone-"

func clonePin(volumeName string) string { return clonePinPrefix + volumeName }

// materialize makes sure the volume of rec exists (finishing an
// interrupted CreateVolume): formatted, or made a clone of its source.
func (c *controllerServer) materialize(ctx context.Context, store, srcStore objstore.Store, l loc, rec *volRecord) error {
	if rec.ReadOnlyView {
		return nil
	}
	keys, _ := format.NewKeys(l.Prefix)
	opts := volume.FormatOptions{ExtentSize: rec.ExtentSize, InlineLimit: rec.InlineLimit}
	opts.Retention, _ = time.ParseDuration(rec.Retention)
	if rec.Source == "" {
		return formatOrCheck(ctx, store, l, opts)
	}
	if _, err := store.Head(ctx, keys.Volume()); err == nil {
		return nil // made by an earlier call
	}
	if rec.ClonePin == "" {
		return fmt.Errorf("%w: volume %s was being copied from %s by an earlier version of this driver, which copied; delete it and create it again (now made as a clone)", ErrPrecondition, l.VolumeID(), rec.Source)
	}
	// A clone (FORMAT.md §16): its header only; it reads everything it
	// has not changed from the source at rec.AsOf, which rec.ClonePin
	// holds. Nothing is copied.
	src, err := volume.Open(ctx, srcStore, sourceLoc(l, rec).URL(), false)
	if err != nil {
		return fmt.Errorf("source volume: %w", err)
	}
	if src.Header.Depth() >= format.MaxCloneDepth {
		return fmt.Errorf("%w: the source %s is a clone %d levels deep; a clone of it would exceed %d", ErrPrecondition, rec.Source, src.Header.Depth(), format.MaxCloneDepth)
	}
	start := time.Now()
	_, err = volume.FormatClone(ctx, store, l.URL(), src, rec.ClonePin, rec.AsOf, opts.Retention)
	if errors.Is(err, volume.ErrExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("make the clone: %w", err)
	}
	klog.InfoS("made a clone", "source", rec.Source, "asOf", rec.AsOf, "pin", rec.ClonePin, "volume", l.VolumeID(), "duration", time.Since(start))
	return nil
}

// sourceLoc is where rec's source volume lives.
func sourceLoc(l loc, rec *volRecord) loc {
	src := l
	src.Prefix = rec.SourcePrefix
	if rec.SourceBucket != "" {
		src.Bucket = rec.SourceBucket
	}
	return src
}

// releaseSource lets go of what a deleted clone held in its source (its
// pin, or its marker on a snapshot), after the clone's objects are gone,
// and purges the source if it was deleted while the clone needed it.
func (c *controllerServer) releaseSource(ctx context.Context, l loc, rec *volRecord, secrets map[string]string) error {
	if rec.ClonePin == "" {
		return nil
	}
	srcLoc := sourceLoc(l, rec)
	srcStore, err := c.openStore(ctx, srcLoc, secrets)
	if err != nil {
		return err
	}
	srcKeys, _ := format.NewKeys(srcLoc.Prefix)
	if strings.HasPrefix(rec.Source, volumeIDTag+":") {
		err = snapshot.Delete(ctx, srcStore, srcKeys, rec.ClonePin)
	} else {
		err = srcStore.Delete(ctx, cloneMarker(rec.ClonePin, l.VolumeID()))
		if err == nil && snapDeleted(ctx, srcStore, srcLoc, rec.ClonePin) {
			// The snapshot was deleted while clones needed its pin:
			// the last of them takes it along.
			page, lerr := srcStore.List(ctx, clonesPrefix+rec.ClonePin+"/", "", 1)
			if lerr != nil {
				return lerr
			}
			if len(page.Objects) == 0 {
				return c.dropSnapshot(ctx, srcStore, srcLoc, rec.ClonePin, secrets)
			}
		}
	}
	if err != nil && !errors.Is(err, objstore.ErrNoBucket) {
		return fmt.Errorf("release the source of clone %s: %w", l.VolumeID(), err)
	}
	if srec, err := getRecord(ctx, srcStore, srcLoc.Prefix); err == nil && srec.Deleted && !srec.Retain {
		return c.purgeIfUnpinned(ctx, srcStore, srcLoc, srec, secrets)
	}
	return nil
}

// formatOrCheck formats the volume at l, or checks the one already there
// (a repeated CreateVolume) has the parameters asked for.
func formatOrCheck(ctx context.Context, store objstore.Store, l loc, opts volume.FormatOptions) error {
	_, err := volume.Format(ctx, store, l.URL(), opts)
	if errors.Is(err, volume.ErrExists) {
		v, err := volume.Open(ctx, store, l.URL(), false)
		if err != nil {
			return err
		}
		if v.Header.ExtentSize != opts.ExtentSize || v.Header.InlineLimit != opts.InlineLimit || v.Header.Retention != opts.Retention.Truncate(time.Second) {
			return fmt.Errorf("%w: the volume at %s has other parameters than its record", ErrPrecondition, l.URL())
		}
		return nil
	}
	return err
}

func (c *controllerServer) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	l, err := parseVolumeID("volume_id", req.GetVolumeId())
	if errors.Is(err, ErrNotFound) {
		return &csi.DeleteVolumeResponse{}, nil // not ours: nothing to delete
	}
	if err != nil {
		return nil, err
	}
	release, err := c.guard.acquire(l.key())
	if err != nil {
		return nil, err
	}
	defer release()
	store, err := c.openStore(ctx, l, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	keys, _ := format.NewKeys(l.Prefix)
	rec, err := getRecord(ctx, store, l.Prefix)
	switch {
	case errors.Is(err, objstore.ErrNotFound) || errors.Is(err, objstore.ErrNoBucket):
		if _, herr := store.Head(ctx, keys.Volume()); herr == nil {
			return nil, fmt.Errorf("%w: %s is a volume this driver did not create (no record %s); refusing to delete it", ErrPrecondition, l.URL(), recordKey(l.Prefix))
		}
		return &csi.DeleteVolumeResponse{}, nil
	case err != nil:
		return nil, err
	}
	if rec.Deleted {
		if !rec.Retain {
			// Deleted while it had snapshots: finish once they are gone.
			if err := c.purgeIfUnpinned(ctx, store, l, rec, req.GetSecrets()); err != nil {
				return nil, err
			}
		}
		return &csi.DeleteVolumeResponse{}, nil
	}
	if rec.Retain && !rec.ReadOnlyView {
		rec.Deleted = true
		b, _ := json.Marshal(rec)
		if _, err := store.Put(ctx, recordKey(l.Prefix), b); err != nil {
			return nil, err
		}
		klog.InfoS("deleted volume; its objects are retained", "volumeID", l.VolumeID())
		return &csi.DeleteVolumeResponse{}, nil
	}
	if !rec.ReadOnlyView {
		// Snapshots outlive their volume (as Kubernetes expects): with
		// pins left, the volume is only marked deleted; its objects go
		// with its last snapshot (DeleteSnapshot).
		pins, err := snapshot.List(ctx, store, keys)
		if err != nil {
			return nil, err
		}
		if len(pins) > 0 {
			rec.Deleted = true
			b, _ := json.Marshal(rec)
			if _, err := store.Put(ctx, recordKey(l.Prefix), b); err != nil {
				return nil, err
			}
			klog.InfoS("deleted volume; its objects stay until its snapshots are deleted", "volumeID", l.VolumeID(), "snapshots", len(pins))
			return &csi.DeleteVolumeResponse{}, nil
		}
	}
	if rec.ReadOnlyView {
		srcLoc := l
		if rec.SourceBucket != "" {
			srcLoc.Bucket = rec.SourceBucket
		}
		srcStore, err := c.openStore(ctx, srcLoc, req.GetSecrets())
		if err != nil {
			return nil, err
		}
		if err := srcStore.Delete(ctx, viewMarker(rec.SourceSnapshot, l.VolumeID())); err != nil && !errors.Is(err, objstore.ErrNoBucket) {
			return nil, err
		}
	}
	if err := purge(ctx, store, l, rec); err != nil {
		return nil, err
	}
	if err := c.releaseSource(ctx, l, rec, req.GetSecrets()); err != nil {
		return nil, err
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// A read-only view of a snapshot leaves a marker in the snapshot's bucket,
// viewsPrefix + snapshot name + "/" + escaped view volume id, so that
// DeleteSnapshot finds every view, whatever bucket it lives in.
const viewsPrefix = ".s3gfs-csi/views/"

func viewMarker(snap, viewID string) string {
	return viewsPrefix + snap + "/" + url.QueryEscape(viewID)
}

// purgeIfUnpinned purges a volume deleted while it had snapshots or clones
// (their pins) once the last of them is gone, then releases its own source
// if it is a clone.
func (c *controllerServer) purgeIfUnpinned(ctx context.Context, store objstore.Store, l loc, rec *volRecord, secrets map[string]string) error {
	keys, _ := format.NewKeys(l.Prefix)
	pins, err := snapshot.List(ctx, store, keys)
	if err != nil || len(pins) > 0 {
		return err
	}
	if err := purge(ctx, store, l, rec); err != nil {
		return err
	}
	return c.releaseSource(ctx, l, rec, secrets)
}

// purge deletes a volume's objects and its record (a view has only the
// record), and the bucket of a volume that had one of its own.
func purge(ctx context.Context, store objstore.Store, l loc, rec *volRecord) error {
	keys, _ := format.NewKeys(l.Prefix)
	if !rec.ReadOnlyView {
		// The header first, so that no new mount starts on a volume half
		// deleted; the record last, so that a retry still knows the
		// prefix is this driver's.
		if err := store.Delete(ctx, keys.Volume()); err != nil {
			return err
		}
		if err := deleteUnder(ctx, store, keys.Prefix()); err != nil {
			return err
		}
	}
	if err := store.Delete(ctx, recordKey(l.Prefix)); err != nil {
		return err
	}
	if l.Prefix == "" {
		// The volume had the bucket to itself: remove the bucket too, if
		// nothing else was put in it.
		if err := deleteBucket(ctx, store); err != nil {
			klog.InfoS("kept the volume's bucket", "bucket", l.Bucket, "reason", err)
		}
	}
	klog.InfoS("deleted volume", "volumeID", l.VolumeID())
	return nil
}

// deleteUnder deletes every key under prefix ("" = the whole bucket, for a
// volume with a bucket of its own), except the driver's records.
func deleteUnder(ctx context.Context, store objstore.Store, prefix string) error {
	after := ""
	for {
		page, err := store.List(ctx, prefix, after, 0)
		if err != nil {
			return err
		}
		var del []string
		for _, o := range page.Objects {
			after = o.Key
			if !strings.HasPrefix(o.Key, ".s3gfs-csi/") {
				del = append(del, o.Key)
			}
		}
		if len(del) > 0 {
			if err := store.DeleteMany(ctx, del); err != nil {
				return err
			}
		}
		if !page.Truncated {
			return nil
		}
	}
}

// volumeExists reports NotFound unless the driver's record of l exists.
func (c *controllerServer) volumeExists(ctx context.Context, l loc, secrets map[string]string) (objstore.Store, *volRecord, error) {
	store, err := c.openStore(ctx, l, secrets)
	if err != nil {
		return nil, nil, err
	}
	rec, err := getRecord(ctx, store, l.Prefix)
	if errors.Is(err, objstore.ErrNotFound) || errors.Is(err, objstore.ErrNoBucket) || (err == nil && rec.Deleted) {
		return nil, nil, fmt.Errorf("%w: volume %s", ErrNotFound, l.VolumeID())
	}
	return store, rec, err
}

func (c *controllerServer) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	l, err := parseVolumeID("volume_id", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, invalid("volume_capabilities", "missing")
	}
	_, rec, err := c.volumeExists(ctx, l, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	for _, vc := range req.GetVolumeCapabilities() {
		if err := checkCapability("volume_capabilities", vc); err != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
		}
		if rec.ReadOnlyView && !readerOnly(vc) {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: "the volume is a read-only view of a snapshot: reader access modes only"}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters(),
	}}, nil
}

// ControllerExpandVolume records the new capacity. Capacity is advisory:
// an s3gfs volume grows with what is stored in it.
func (c *controllerServer) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	l, err := parseVolumeID("volume_id", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	cr := req.GetCapacityRange()
	if cr == nil {
		return nil, invalid("capacity_range", "missing")
	}
	if cr.GetRequiredBytes() < 0 || cr.GetLimitBytes() < 0 || (cr.GetLimitBytes() > 0 && cr.GetRequiredBytes() > cr.GetLimitBytes()) {
		return nil, fmt.Errorf("%w: capacity_range", ErrOutOfRange)
	}
	release, err := c.guard.acquire(l.key())
	if err != nil {
		return nil, err
	}
	defer release()
	store, rec, err := c.volumeExists(ctx, l, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	if cr.GetRequiredBytes() > rec.RequiredBytes {
		rec.RequiredBytes, rec.LimitBytes = cr.GetRequiredBytes(), cr.GetLimitBytes()
		b, _ := json.Marshal(rec)
		if _, err := store.Put(ctx, recordKey(l.Prefix), b); err != nil {
			return nil, err
		}
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: max(rec.RequiredBytes, cr.GetRequiredBytes()), NodeExpansionRequired: false}, nil
}

func (c *controllerServer) ControllerGetCapabilities(ctx context.Context, req *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	types := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
	types = append(types, csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT, csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_GET_SNAPSHOT)
	var caps []*csi.ControllerServiceCapability
	for _, t := range types {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// knownLocs lists the buckets ListSnapshots scans without a filter.
func (c *controllerServer) knownLocs() []loc {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]loc, 0, len(c.known))
	for l := range c.known {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VolumeID() < out[j].VolumeID() })
	return out
}

// volumesIn lists the volumes this driver made in l's bucket.
func volumesIn(ctx context.Context, store objstore.Store, l loc) ([]loc, error) {
	var out []loc
	after := ""
	for {
		page, err := store.List(ctx, recordsPrefix, after, 0)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Objects {
			after = o.Key
			p, err := url.QueryUnescape(strings.TrimPrefix(o.Key, recordsPrefix))
			if err != nil || !strings.HasPrefix(p, "/") {
				continue
			}
			v := loc{Bucket: l.Bucket, Prefix: p[1:], Endpoint: l.Endpoint, Region: l.Region}
			if v.validate("") == nil {
				out = append(out, v)
			}
		}
		if !page.Truncated {
			return out, nil
		}
	}
}

// digest is a hex digest of s.
func digest(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }

// deleteBucket removes the (empty) bucket of store, when the store can.
func deleteBucket(ctx context.Context, store objstore.Store) error {
	page, err := store.List(ctx, "", "", 1)
	if err != nil {
		return err
	}
	if len(page.Objects) > 0 {
		return fmt.Errorf("bucket not empty: %s", page.Objects[0].Key)
	}
	sc, ok := store.(interface{ Client() *s3.Client })
	if !ok {
		return errors.New("the store cannot delete buckets")
	}
	_, err = sc.Client().DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(store.Bucket())})
	return err
}
