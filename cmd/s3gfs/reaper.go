package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/s3gfs/s3gfs/pkg/reaper"
)

func runReaper(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("reaper", "[flags] s3://BUCKET/PREFIX",
		`Runs reaper passes over the volume every --interval until SIGINT or
SIGTERM, holding the volume's reaper lease while it runs (any number of
reapers may be started; one acts, the others wait for the lease). The
lease is an object in the bucket, or with --lease kubernetes a
coordination.k8s.io Lease (leader election; in a pod it uses the pod's
service account, elsewhere --kubeconfig). With --metrics-addr it serves
Prometheus metrics at /metrics.`, stderr)
	var f reaperFlags
	f.register(fs)
	interval := durationFlag(5 * time.Minute)
	fs.Var(&interval, "interval", "time between the start of two passes")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics on this address, e.g. :9090")
	var k k8sLeaseFlags
	k.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if k.kind != "bucket" && k.kind != "kubernetes" {
		return fmt.Errorf("%w: --lease %q: want bucket or kubernetes", errUsage, k.kind)
	}
	if interval < durationFlag(time.Second) {
		return fmt.Errorf("%w: --interval %s is too short", errUsage, time.Duration(interval))
	}
	log, err := f.log.logger(stderr)
	if err != nil {
		return err
	}
	vol, err := f.open(ctx, fs, pos, true)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := reaper.NewMetrics(reg)
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}

	lease, owner, err := k.lease(vol, &f, log)
	if err != nil {
		return err
	}
	var held context.Context
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		lease.Release(rctx)
	}()
	log.Info("reaper started", "volume", vol.URL.String(), "interval", time.Duration(interval))
	for {
		start := time.Now()
		if held == nil || held.Err() != nil {
			if held != nil {
				log.Warn("reaper lease lost", "cause", context.Cause(held))
				lease.Release(ctx)
			}
			held, err = lease.Acquire(ctx)
			if err != nil {
				held = nil
				metrics.LeaseHeld(false)
				if errors.Is(err, reaper.ErrLeaseHeld) {
					log.Info("another reaper holds the lease; waiting", "detail", err)
					metrics.Observe(nil, err)
				} else if ctx.Err() == nil {
					log.Error("taking the reaper lease failed", "err", err)
					metrics.Observe(nil, err)
				}
			}
		}
		if held != nil {
			metrics.LeaseHeld(true)
			cfg := f.config(log)
			cfg.Owner = owner
			r, err := reaper.Run(held, vol, cfg)
			metrics.Observe(r, err)
			if err != nil {
				if ctx.Err() == nil {
					log.Error("reaper pass failed", "err", err)
				}
			} else {
				log.Info("reaper pass", "horizon", r.Horizon, "deleted", r.Deleted, "kept", r.Kept,
					"orphans", len(r.Orphans), "problems", len(r.Problems), "took", r.Duration.Round(time.Millisecond))
				for _, p := range r.Problems {
					log.Warn("reaper problem", "detail", p)
				}
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
