package reaper

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of a reaper that runs passes
// continuously (s3gfs reaper).
type Metrics struct {
	passes      *prometheus.CounterVec
	deleted     *prometheus.CounterVec
	kept        *prometheus.GaugeVec
	duration    prometheus.Histogram
	errors      prometheus.Counter
	lastSuccess prometheus.Gauge
	horizon     prometheus.Gauge
	orphans     prometheus.Gauge
	problems    prometheus.Gauge
	leaseHeld   prometheus.Gauge
	liveHosts   prometheus.Gauge

	// Per volume, for a reaper that collects many (s3gfs reaper
	// --volumes-from kubernetes); labelled by volume id.
	volLastSuccess *prometheus.GaugeVec
	volHorizon     *prometheus.GaugeVec
	volKept        *prometheus.GaugeVec
	volOrphans     *prometheus.GaugeVec
	volProblems    *prometheus.GaugeVec
	volErrors      *prometheus.CounterVec
}

// NewMetrics creates the reaper's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "s3gfs_reaper_passes_total",
			Help: "Reaper passes, by result: ok, error, or skipped (another reaper holds the lease)."}, []string{"result"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "s3gfs_reaper_deleted_objects_total",
			Help: "Objects the reaper deleted, by kind (version, tombstone, orphan, extent, ping, probe)."}, []string{"kind"}),
		kept: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s3gfs_reaper_kept_objects",
			Help: "Objects the last pass kept, by kind (version, extent)."}, []string{"kind"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "s3gfs_reaper_pass_duration_seconds",
			Help: "How long reaper passes took.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 16)}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "s3gfs_reaper_errors_total",
			Help: "Reaper passes that failed."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_last_success_timestamp_seconds",
			Help: "When the last successful pass ended (Unix time, this host's clock)."}),
		horizon: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_horizon_timestamp_seconds",
			Help: "The last pass's horizon (Unix time, the store's clock): versions visible at or after it are kept."}),
		orphans: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_orphans",
			Help: "Inodes no path reaches, found by the last pass."}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_problems",
			Help: "Unreadable or foreign objects the last pass found (and kept)."}),
		leaseHeld: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_lease_held",
			Help: "1 while this reaper holds the volume's lease."}),
		liveHosts: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s3gfs_reaper_live_hosts",
			Help: "Live hosts the last pass found."}),
		volLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s3gfs_reaper_volume_last_success_timestamp_seconds",
			Help: "When the last successful pass over the volume ended (Unix time, this host's clock)."}, []string{"volume"}),
		volHorizon: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s3gfs_reaper_volume_horizon_timestamp_seconds",
			Help: "The horizon of the volume's last pass (Unix time, the store's clock)."}, []string{"volume"}),
		volKept: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s3gfs_reaper_volume_kept_objects",
			Help: "Objects the volume's last pass kept, by kind (version, extent)."}, []string{"volume", "kind"}),
		volOrphans: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s3gfs_reaper_volume_orphans",
			Help: "Inodes no path reaches, found by the volume's last pass."}, []string{"volume"}),
		volProblems: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s3gfs_reaper_volume_problems",
			Help: "Unreadable or foreign objects the volume's last pass found (and kept)."}, []string{"volume"}),
		volErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "s3gfs_reaper_volume_errors_total",
			Help: "Passes over the volume that failed (or could not open it)."}, []string{"volume"}),
	}
	reg.MustRegister(m.passes, m.deleted, m.kept, m.duration, m.errors, m.lastSuccess, m.horizon, m.orphans, m.problems, m.leaseHeld, m.liveHosts,
		m.volLastSuccess, m.volHorizon, m.volKept, m.volOrphans, m.volProblems, m.volErrors)
	return m
}

// LeaseHeld records whether this reaper holds the lease.
func (m *Metrics) LeaseHeld(held bool) {
	if held {
		m.leaseHeld.Set(1)
	} else {
		m.leaseHeld.Set(0)
	}
}

// Observe records the outcome of one pass (r may be partial or nil).
func (m *Metrics) Observe(r *Report, err error) {
	switch {
	case errors.Is(err, ErrLeaseHeld):
		m.passes.WithLabelValues("skipped").Inc()
		return
	case err != nil:
		m.passes.WithLabelValues("error").Inc()
		m.errors.Inc()
	default:
		m.passes.WithLabelValues("ok").Inc()
		m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	}
	if r == nil {
		return
	}
	for kind, n := range r.Deleted {
		m.deleted.WithLabelValues(kind).Add(float64(n))
	}
	if err == nil {
		for _, kind := range []string{KindVersion, KindExtent} {
			m.kept.WithLabelValues(kind).Set(float64(r.Kept[kind]))
		}
		if !r.Horizon.IsZero() {
			m.horizon.Set(float64(r.Horizon.UnixNano()) / 1e9)
		}
		m.orphans.Set(float64(len(r.Orphans)))
		m.problems.Set(float64(len(r.Problems)))
		m.liveHosts.Set(float64(r.LiveHosts))
	}
	m.duration.Observe(r.Duration.Seconds())
}

// ObserveVolume records the outcome of one pass over the volume with id
// volume, when one reaper collects many volumes: the pass counters and
// histogram as Observe, and the per-volume gauges (the unlabelled gauges,
// which describe a single volume, are left alone).
func (m *Metrics) ObserveVolume(volume string, r *Report, err error) {
	switch {
	case errors.Is(err, ErrLeaseHeld):
		m.passes.WithLabelValues("skipped").Inc()
		return
	case err != nil:
		m.passes.WithLabelValues("error").Inc()
		m.errors.Inc()
		m.volErrors.WithLabelValues(volume).Inc()
	default:
		m.passes.WithLabelValues("ok").Inc()
		m.volLastSuccess.WithLabelValues(volume).Set(float64(time.Now().UnixNano()) / 1e9)
	}
	if r == nil {
		return
	}
	for kind, n := range r.Deleted {
		m.deleted.WithLabelValues(kind).Add(float64(n))
	}
	if err == nil {
		for _, kind := range []string{KindVersion, KindExtent} {
			m.volKept.WithLabelValues(volume, kind).Set(float64(r.Kept[kind]))
		}
		if !r.Horizon.IsZero() {
			m.volHorizon.WithLabelValues(volume).Set(float64(r.Horizon.UnixNano()) / 1e9)
		}
		m.volOrphans.WithLabelValues(volume).Set(float64(len(r.Orphans)))
		m.volProblems.WithLabelValues(volume).Set(float64(len(r.Problems)))
	}
	m.duration.Observe(r.Duration.Seconds())
}

// Succeeded records that a whole pass (over every volume, for a reaper
// that collects many) ended without an error.
func (m *Metrics) Succeeded() { m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9) }

// ForgetVolume drops the per-volume series of a volume no longer
// collected.
func (m *Metrics) ForgetVolume(volume string) {
	for _, v := range []*prometheus.GaugeVec{m.volLastSuccess, m.volHorizon, m.volKept, m.volOrphans, m.volProblems} {
		v.DeletePartialMatch(prometheus.Labels{"volume": volume})
	}
	m.volErrors.DeletePartialMatch(prometheus.Labels{"volume": volume})
}
