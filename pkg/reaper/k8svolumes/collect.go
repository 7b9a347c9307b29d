package k8svolumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// Collector runs reaper passes over every volume a Finder finds.
type Collector struct {
	Finder *Finder
	// Open opens the volume at l with the reaper's own credentials. An
	// error wrapping volume.ErrNoVolume or objstore.ErrNoBucket says no
	// volume is there (the volume is skipped quietly). S3Opener is the one
	// s3gfs reaper uses.
	Open func(ctx context.Context, l volumeid.Loc) (*volume.Volume, error)
	// Kept, when set, lists the volumes of a bucket that the CSI
	// controller deleted but keeps for their snapshots or clones (S3.Kept),
	// skipping the prefixes known reports. It is asked about every bucket
	// a found volume lives in, so that such a volume is collected even when
	// no VolumeSnapshotContent names it (a clone's pin, a content deleted
	// with deletionPolicy Retain).
	Kept func(ctx context.Context, bucket volumeid.Loc, known func(prefix string) bool) ([]volumeid.Loc, error)
	// Config is the configuration of each volume's pass.
	Config reaper.Config
	// VolumeLease, when set, is the lease held around each volume's pass
	// (the volume's bucket lease): a volume whose lease another reaper
	// holds is skipped this time. When nil, the caller holds one lease
	// for the whole pass (the Kubernetes Lease) and passes its context to
	// Pass.
	VolumeLease func(vol *volume.Volume) reaper.Lease
	// Metrics and Discovery may be nil.
	Metrics   *reaper.Metrics
	Discovery *Metrics
	Logger    *slog.Logger

	mu       sync.Mutex
	lastDone map[string]time.Time // volume id -> when this collector last finished a pass on it
	known    map[string]bool      // volume ids with metric series
}

// Result is the outcome for one volume.
type Result struct {
	Volume string // the volume id
	Report *reaper.Report
	Err    error
	// Skip says why the volume was not collected (no error).
	Skip string
}

// MissingPin is a VolumeSnapshotContent whose snapshot pin is not in its
// volume: whatever the snapshot showed is no longer protected, and may be
// gone.
type MissingPin struct {
	Content string // the VolumeSnapshotContent
	Volume  string // the volume id
	Pin     string // the missing pin's name
}

// PassReport says what one Pass did.
type PassReport struct {
	Found       *Found
	Results     []Result // in the order the volumes were taken
	MissingPins []MissingPin
}

// Failed counts the volumes whose pass failed.
func (p *PassReport) Failed() int {
	n := 0
	for _, r := range p.Results {
		if r.Err != nil {
			n++
		}
	}
	return n
}

// Metrics are the discovery's Prometheus metrics.
type Metrics struct {
	volumes     prometheus.Gauge
	skipped     prometheus.Gauge
	missingPins prometheus.Gauge
	errors      *prometheus.CounterVec
}

// NewMetrics creates the discovery's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		volumes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_discovered_volumes",
			Help: "Volumes the last discovery found (PersistentVolumes of the driver, and volumes kept for their snapshots)."}),
		skipped: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_skipped_handles",
			Help: "PersistentVolumes and VolumeSnapshotContents of the driver whose handle names no s3gfs volume (last discovery)."}),
		missingPins: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_snapshot_pins_missing",
			Help: "VolumeSnapshotContents of the driver whose snapshot pin is missing from its volume (last pass)."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "s3gfs_reaper_discovery_errors_total",
			Help: "Failed discoveries, by what failed: persistentvolumes or volumesnapshotcontents."}, []string{"resource"}),
	}
	reg.MustRegister(m.volumes, m.skipped, m.missingPins, m.errors)
	return m
}

func (c *Collector) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Pass finds the volumes and runs a reaper pass on each in turn, volumes
// this collector has not finished a pass on for the longest first (so a
// pass cut short, by a lost lease, continues with the others next time).
// It stops, between two volumes or inside a volume's pass between delete
// batches, as soon as held ends, returning context.Cause(held). A volume
// that cannot be opened or whose pass fails is reported in its Result and
// the pass goes on with the next.
func (c *Collector) Pass(held context.Context) (*PassReport, error) {
	found, err := c.Finder.Find(held)
	if err != nil {
		if c.Discovery != nil {
			c.Discovery.errors.WithLabelValues("persistentvolumes").Inc()
		}
		return nil, err
	}
	c.addKept(held, found)
	pr := &PassReport{Found: found}
	if c.Discovery != nil {
		c.Discovery.volumes.Set(float64(len(found.Volumes)))
		c.Discovery.skipped.Set(float64(len(found.Skipped)))
		if found.SnapshotsErr != nil {
			c.Discovery.errors.WithLabelValues("volumesnapshotcontents").Inc()
		}
	}
	c.forgetGone(found)

	vols := append([]*Volume(nil), found.Volumes...)
	c.mu.Lock()
	last := func(v *Volume) time.Time { return c.lastDone[v.ID()] }
	sort.SliceStable(vols, func(i, j int) bool { return last(vols[i]).Before(last(vols[j])) })
	c.mu.Unlock()

	for _, v := range vols {
		if held.Err() != nil {
			return pr, context.Cause(held)
		}
		res := c.collect(held, v, pr)
		pr.Results = append(pr.Results, res)
		if res.Err == nil && res.Skip == "" {
			c.mu.Lock()
			if c.lastDone == nil {
				c.lastDone = map[string]time.Time{}
			}
			c.lastDone[v.ID()] = time.Now()
			c.mu.Unlock()
		}
	}
	if c.Discovery != nil {
		c.Discovery.missingPins.Set(float64(len(pr.MissingPins)))
	}
	if held.Err() != nil {
		return pr, context.Cause(held)
	}
	if c.Metrics != nil && pr.Failed() == 0 {
		c.Metrics.Succeeded()
	}
	return pr, nil
}

// addKept adds to found the volumes the controller's records say are
// deleted but kept, in the buckets of the volumes found.
func (c *Collector) addKept(ctx context.Context, found *Found) {
	if c.Kept == nil {
		return
	}
	type bucketKey struct{ bucket, endpoint, region string }
	known := map[bucketKey]map[string]bool{}
	for _, v := range found.Volumes {
		k := bucketKey{v.Loc.Bucket, v.Loc.Endpoint, v.Loc.Region}
		if known[k] == nil {
			known[k] = map[string]bool{}
		}
		known[k][v.Loc.Prefix] = true
	}
	byBucket := map[string]map[string]bool{} // bucket -> prefixes found, any endpoint
	for k, ps := range known {
		if byBucket[k.bucket] == nil {
			byBucket[k.bucket] = map[string]bool{}
		}
		for p := range ps {
			byBucket[k.bucket][p] = true
		}
	}
	// One bucket reached at two spellings of its endpoint yields its kept
	// volumes twice (at the endpoint each listing used): collect each once.
	type bucketPrefix struct{ bucket, prefix string }
	added := map[bucketPrefix]bool{}
	for k := range known {
		locs, err := c.Kept(ctx, volumeid.Loc{Bucket: k.bucket, Endpoint: k.endpoint, Region: k.region}, func(p string) bool { return byBucket[k.bucket][p] })
		if err != nil {
			c.log().Warn("cannot read the CSI controller's records: volumes deleted but kept for their snapshots or clones are not collected this pass",
				"bucket", k.bucket, "err", err)
			continue
		}
		for _, l := range locs {
			if bp := (bucketPrefix{l.Bucket, l.Prefix}); !added[bp] && !byBucket[l.Bucket][l.Prefix] {
				added[bp] = true
				found.Volumes = append(found.Volumes, &Volume{Loc: l, Deleted: true})
			}
		}
	}
	sort.Slice(found.Volumes, func(i, j int) bool { return found.Volumes[i].ID() < found.Volumes[j].ID() })
}

// forgetGone drops the metric series of volumes no longer found.
func (c *Collector) forgetGone(found *Found) {
	now := map[string]bool{}
	for _, v := range found.Volumes {
		now[v.ID()] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.known {
		if !now[id] {
			if c.Metrics != nil {
				c.Metrics.ForgetVolume(id)
			}
			delete(c.lastDone, id)
		}
	}
	c.known = now
}

func (c *Collector) collect(held context.Context, v *Volume, pr *PassReport) Result {
	id := v.ID()
	res := Result{Volume: id}
	log := c.log().With("volume", id)
	vol, err := c.Open(held, v.Loc)
	if errors.Is(err, volume.ErrNoVolume) || errors.Is(err, objstore.ErrNoBucket) {
		// A read-only view of a snapshot has no objects of its own (its
		// source's pin keeps what it shows); a volume being deleted may
		// be gone already.
		res.Skip = "no s3gfs volume at this location (a read-only view of a snapshot, or a volume already deleted)"
		log.Info("skipping volume", "reason", res.Skip, "pvs", v.PVs)
		return res
	}
	if err != nil {
		res.Err = fmt.Errorf("open volume %s: %w", id, err)
		if held.Err() == nil {
			log.Error("cannot open volume", "err", err, "pvs", v.PVs)
			if c.Metrics != nil {
				c.Metrics.ObserveVolume(id, nil, err)
			}
		}
		return res
	}
	pr.MissingPins = append(pr.MissingPins, c.checkPins(held, v, vol, log)...)

	run := held
	if c.VolumeLease != nil {
		lease := c.VolumeLease(vol)
		h, err := lease.Acquire(held)
		if errors.Is(err, reaper.ErrLeaseHeld) {
			res.Skip = "another reaper holds the volume's lease"
			log.Info("skipping volume", "reason", res.Skip, "detail", err)
			if c.Metrics != nil {
				c.Metrics.ObserveVolume(id, nil, err)
			}
			return res
		}
		if err != nil {
			res.Err = fmt.Errorf("take the lease of volume %s: %w", id, err)
			log.Error("cannot take the volume's lease", "err", err)
			return res
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(held), 30*time.Second)
			defer cancel()
			if err := lease.Release(rctx); err != nil {
				log.Warn("releasing the volume's lease failed; it expires by itself", "err", err)
			}
		}()
		run = h
	}
	cfg := c.Config
	cfg.Logger = log
	r, err := reaper.Run(run, vol, cfg)
	res.Report, res.Err = r, err
	if c.Metrics != nil && (err == nil || held.Err() == nil) {
		c.Metrics.ObserveVolume(id, r, err)
	}
	switch {
	case err != nil && held.Err() != nil:
		log.Warn("reaper pass stopped: the lease is lost", "cause", context.Cause(held))
	case err != nil:
		log.Error("reaper pass failed", "err", err)
	default:
		log.Info("reaper pass", "horizon", r.Horizon, "deleted", r.Deleted, "kept", r.Kept, "snapshots", r.Snapshots,
			"orphans", len(r.Orphans), "problems", len(r.Problems), "took", r.Duration.Round(time.Millisecond))
		for _, p := range r.Problems {
			log.Warn("reaper problem", "detail", p)
		}
	}
	return res
}

// checkPins reports the VolumeSnapshotContents of v whose pin is not in
// the volume. A content found missing is read again first: one deleted
// meanwhile (its pin with it) is not reported.
func (c *Collector) checkPins(ctx context.Context, v *Volume, vol *volume.Volume, log *slog.Logger) []MissingPin {
	var out []MissingPin
	for _, s := range v.Snapshots {
		if s.Deleting {
			continue
		}
		_, err := snapshot.Get(ctx, vol.Store, vol.Keys, s.Pin)
		if err == nil || errors.Is(err, snapshot.ErrCorrupt) {
			continue // there (a corrupt pin is the pass's problem to report)
		}
		if !errors.Is(err, snapshot.ErrNotFound) {
			log.Warn("cannot check a snapshot pin", "content", s.Content, "pin", s.Pin, "err", err)
			continue
		}
		if c.Finder.Snapshots != nil {
			cur, gerr := c.Finder.Snapshots.SnapshotV1().VolumeSnapshotContents().Get(ctx, s.Content, metav1.GetOptions{})
			if apierrors.IsNotFound(gerr) || (gerr == nil && (cur.DeletionTimestamp != nil || snapshotHandle(cur) != v.Loc.SnapshotID(s.Pin))) {
				continue
			}
		}
		m := MissingPin{Content: s.Content, Volume: v.ID(), Pin: s.Pin}
		out = append(out, m)
		log.Error("a VolumeSnapshotContent's snapshot pin is missing from its volume: what the snapshot shows is no longer kept",
			"content", s.Content, "pin", "s/"+s.Pin)
	}
	return out
}
