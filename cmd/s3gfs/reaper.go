package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/reaper/k8svolumes"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func runReaper(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("reaper", "[flags] s3://BUCKET/PREFIX\n       s3gfs reaper --volumes-from kubernetes [flags]",
		`Runs reaper passes over the volume every --interval until SIGINT or
SIGTERM, holding the volume's reaper lease while it runs (any number of
reapers may be started; one acts, the others wait for the lease). The
lease is an object in the bucket, or with --lease kubernetes a
coordination.k8s.io Lease (leader election; in a pod it uses the pod's
service account, elsewhere --kubeconfig).

With --volumes-from kubernetes it takes no volume URL: each pass it finds
the volumes to collect in the cluster, from the PersistentVolumes of the
CSI driver --driver-name (their volume handles), from its
VolumeSnapshotContents, and from the driver's records in those buckets
(a volume deleted while snapshots or clones of it remain keeps its
objects until the last goes), then collects each in turn.
Handles that name no s3gfs volume are logged and skipped. Each
VolumeSnapshotContent's snapshot pin is checked: a missing one is logged
and counted (s3gfs_reaper_snapshot_pins_missing). With --lease kubernetes
one Lease covers all the volumes, and losing it stops the pass at once
(the next holder starts a pass of its own; an s3gfs gc of one of the
volumes is not excluded, which is safe but does the work twice); with
--lease bucket each volume's own lease is taken around its pass. It reaches the buckets with
its own AWS credentials (the SDK's chain), at the endpoint and region the
volume id names, else --endpoint and --region; it reads no Secret. It
needs list on persistentvolumes, get and list on volumesnapshotcontents.

With --metrics-addr it serves Prometheus metrics at /metrics, and /healthz
(200 while the process runs its loop) and /readyz (200 once it has taken
or seen the lease held, and its last lease attempt and discovery worked).`, stderr)
	var f reaperFlags
	f.register(fs)
	interval := durationFlag(5 * time.Minute)
	fs.Var(&interval, "interval", "time between the start of two passes")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics, /healthz and /readyz on this address, e.g. :9090")
	volumesFrom := fs.String("volumes-from", "", `find the volumes to collect instead of taking one URL: "kubernetes" (the CSI driver's PersistentVolumes and VolumeSnapshotContents)`)
	driverName := fs.String("driver-name", k8svolumes.DefaultDriver, "with --volumes-from kubernetes: the CSI driver whose volumes are collected")
	var k k8sLeaseFlags
	k.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := k.check(); err != nil {
		return err
	}
	if interval < durationFlag(time.Second) {
		return fmt.Errorf("%w: --interval %s is too short", errUsage, time.Duration(interval))
	}
	switch *volumesFrom {
	case "":
	case "kubernetes":
		if len(pos) != 0 {
			fs.Usage()
			return fmt.Errorf("%w: --volumes-from kubernetes takes no volume URL", errUsage)
		}
		if *driverName == "" {
			return fmt.Errorf("%w: --driver-name is empty", errUsage)
		}
	default:
		return fmt.Errorf("%w: --volumes-from %q: want kubernetes", errUsage, *volumesFrom)
	}
	log, err := f.log.logger(stderr)
	if err != nil {
		return err
	}

	// Set up everything that can fail before serving anything.
	var (
		lease reaper.Lease
		owner string
		pass  func(held context.Context) error
		what  []any
	)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := reaper.NewMetrics(reg)
	if *volumesFrom == "" {
		vol, err := f.open(ctx, fs, pos, true)
		if err != nil {
			return err
		}
		if k.kind == "kubernetes" {
			client, _, err := k.clients(log)
			if err != nil {
				return fmt.Errorf("--lease kubernetes: %w", err)
			}
			lease, owner = k.kubeLease(client, vol.URL.String(), &f, log)
		} else {
			bl := bucketLease(vol, &f, log)
			lease, owner = bl, bl.Owner
		}
		pass = func(held context.Context) error { return singlePass(held, vol, &f, owner, metrics, log) }
		what = []any{"volume", vol.URL.String()}
	} else {
		client, snaps, err := k.clients(log)
		if err != nil {
			return fmt.Errorf("--volumes-from kubernetes: %w", err)
		}
		s3 := &k8svolumes.S3{Endpoint: f.store.endpoint, Region: f.store.region}
		c := &k8svolumes.Collector{
			Finder:    &k8svolumes.Finder{Client: client, Snapshots: snaps, Driver: *driverName, Logger: log},
			Open:      s3.Open,
			Kept:      s3.Kept,
			Metrics:   metrics,
			Discovery: k8svolumes.NewMetrics(reg),
			Logger:    log,
		}
		if k.kind == "kubernetes" {
			lease, owner = k.kubeLease(client, "kubernetes/"+*driverName, &f, log)
		} else {
			lease = noLease{}
			owner = f.owner
			if owner == "" {
				owner = reaper.NewOwnerID()
			}
			c.VolumeLease = func(vol *volume.Volume) reaper.Lease {
				bl := bucketLease(vol, &f, log)
				bl.Owner = owner
				return bl
			}
		}
		c.Config = f.config(log)
		c.Config.Owner = owner
		pass = func(held context.Context) error { return clusterPass(held, c, log) }
		what = []any{"volumes-from", "kubernetes", "driver", *driverName}
	}

	ctx, stop := signalContext(ctx)
	defer stop()
	health := &healthState{}
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		health.register(mux)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}

	var held context.Context
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		lease.Release(rctx)
	}()
	log.Info("reaper started", append(what, "interval", time.Duration(interval), "lease", k.kind)...)
	for {
		start := time.Now()
		if held == nil || held.Err() != nil {
			if held != nil {
				log.Warn("reaper lease lost", "cause", context.Cause(held))
				lease.Release(ctx)
			}
			held, err = lease.Acquire(ctx)
			if err == nil {
				health.set(true, "holding the lease")
			} else {
				held = nil
				metrics.LeaseHeld(false)
				if errors.Is(err, reaper.ErrLeaseHeld) {
					log.Info("another reaper holds the lease; waiting", "detail", err)
					metrics.Observe(nil, err)
					health.set(true, "standing by: "+err.Error())
				} else if ctx.Err() == nil {
					log.Error("taking the reaper lease failed", "err", err)
					metrics.Observe(nil, err)
					health.set(false, "taking the lease failed: "+err.Error())
				}
			}
		}
		if held != nil {
			metrics.LeaseHeld(true)
			err := pass(held)
			switch {
			case held.Err() != nil: // lease lost, or stopping: the next attempt tells
			case err != nil:
				health.set(false, err.Error())
			default:
				health.set(true, "holding the lease")
			}
		}
		wait := time.Duration(interval) - time.Since(start)
		select {
		case <-ctx.Done():
			log.Info("reaper stopping")
			return nil
		case <-time.After(max(wait, 0)):
		}
	}
}

// singlePass is one pass over the one volume. Its error (returned for
// readiness) is the pass's.
func singlePass(held context.Context, vol *volume.Volume, f *reaperFlags, owner string, metrics *reaper.Metrics, log *slog.Logger) error {
	cfg := f.config(log)
	cfg.Owner = owner
	r, err := reaper.Run(held, vol, cfg)
	metrics.Observe(r, err)
	if err != nil {
		if held.Err() == nil {
			log.Error("reaper pass failed", "err", err)
		}
		return err
	}
	log.Info("reaper pass", "horizon", r.Horizon, "deleted", r.Deleted, "kept", r.Kept,
		"orphans", len(r.Orphans), "problems", len(r.Problems), "took", r.Duration.Round(time.Millisecond))
	for _, p := range r.Problems {
		log.Warn("reaper problem", "detail", p)
	}
	return nil
}

// clusterPass is one pass over every volume found in the cluster. Only a
// failed discovery is an error (for readiness): a volume whose pass failed
// is logged and counted, and the next pass tries it again.
func clusterPass(held context.Context, c *k8svolumes.Collector, log *slog.Logger) error {
	start := time.Now()
	pr, err := c.Pass(held)
	if pr == nil {
		if held.Err() == nil {
			log.Error("finding the volumes failed", "err", err)
		}
		return err
	}
	done, skipped := 0, 0
	for _, r := range pr.Results {
		switch {
		case r.Skip != "":
			skipped++
		case r.Err == nil:
			done++
		}
	}
	log.Info("reaper pass over the cluster's volumes", "volumes", len(pr.Found.Volumes), "collected", done, "failed", pr.Failed(),
		"skipped", skipped, "badHandles", len(pr.Found.Skipped), "missingPins", len(pr.MissingPins),
		"stopped", err != nil, "took", time.Since(start).Round(time.Millisecond))
	if held.Err() != nil {
		return err
	}
	return nil
}

// noLease is the lease of a reaper that takes each volume's own lease.
type noLease struct{}

func (noLease) Acquire(ctx context.Context) (context.Context, error) { return ctx, nil }
func (noLease) Release(context.Context) error                        { return nil }

// healthState answers /healthz and /readyz.
type healthState struct {
	mu     sync.Mutex
	known  bool
	ready  bool
	reason string
}

func (h *healthState) set(ready bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.known, h.ready, h.reason = true, ready, reason
}

func (h *healthState) register(mux *http.ServeMux) {
	// Liveness: the process is up and its loop runs (a pass has no bound
	// on its duration, so a long one is not a failure).
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		known, ready, reason := h.known, h.ready, h.reason
		h.mu.Unlock()
		switch {
		case !known:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting: no lease attempt yet")
		case !ready:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", reason)
		default:
			fmt.Fprintln(w, "ok:", reason)
		}
	})
}
