package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// reaperFlags are the flags gc and reaper share.
type reaperFlags struct {
	store     storeFlags
	log       logFlags
	retention durationFlag
	grace     durationFlag
	leaseFor  durationFlag
	owner     string
	batch     int
	fs        *flag.FlagSet
}

func (f *reaperFlags) register(fs *flag.FlagSet) {
	f.fs = fs
	f.grace = durationFlag(reaper.DefaultGrace)
	f.leaseFor = durationFlag(reaper.DefaultLeaseDuration)
	f.store.register(fs)
	f.log.register(fs)
	fs.Var(&f.retention, "retention", "keep every instant this far back mountable (default: the volume's retention, see s3gfs retention)")
	fs.Var(&f.grace, "grace", "never delete anything superseded or unreferenced for less than this (at least twice the longest host expiry is used)")
	fs.Var(&f.leaseFor, "lease-duration", "how long the reaper's lease lasts between renewals")
	fs.StringVar(&f.owner, "owner", "", "this reaper's id in the lease (default: host-pid-random)")
	fs.IntVar(&f.batch, "batch", reaper.DefaultBatch, "keys per delete request (at most 1000)")
}

func (f *reaperFlags) config(log *slog.Logger) reaper.Config {
	retention := time.Duration(-1) // the volume's
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "retention" {
			retention = time.Duration(f.retention)
		}
	})
	return reaper.Config{Retention: retention, Grace: time.Duration(f.grace), Owner: f.owner, Batch: min(max(f.batch, 1), 1000), Logger: log}
}

// openForReaper parses the one volume argument and opens the volume.
func (f *reaperFlags) open(ctx context.Context, fs *flag.FlagSet, pos []string, writable bool) (*volume.Volume, error) {
	if len(pos) != 1 {
		fs.Usage()
		return nil, fmt.Errorf("%w: want exactly one volume URL", errUsage)
	}
	u, err := parseVolumeArg(pos[0])
	if err != nil {
		return nil, err
	}
	store, err := f.store.open(ctx, u)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vol, err := volume.Open(octx, store, u, false)
	if err != nil {
		return nil, err
	}
	if writable {
		// The lease relies on conditional writes.
		if err := volume.Probe(octx, store, vol.Keys); err != nil {
			return nil, err
		}
	}
	return vol, nil
}

func runGC(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("gc", "[flags] s3://BUCKET/PREFIX",
		`Runs one reaper pass: deletes the inode versions, extents, deleted and
orphaned inodes, stale pings and probe objects that no host, snapshot or
instant of the retention window can still need, and reports what it
deleted and kept. It takes the volume's reaper lease first: if another
reaper holds it, gc does nothing and says so (exit status 1). Safe to run
while hosts mount and write the volume, and to interrupt.`, stderr)
	var f reaperFlags
	var dryRun, verbose bool
	f.register(fs)
	fs.BoolVar(&dryRun, "dry-run", false, "plan and report, but delete nothing (takes no lease)")
	fs.BoolVar(&verbose, "v", false, "list every object deleted (or, with --dry-run, that would be), and every problem and orphan")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	log, err := f.log.logger(stderr)
	if err != nil {
		return err
	}
	vol, err := f.open(ctx, fs, pos, !dryRun)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	cfg := f.config(log)
	cfg.DryRun = dryRun
	held := ctx
	var lease *reaper.BucketLease
	if !dryRun {
		lease = &reaper.BucketLease{Store: vol.Store, Keys: vol.Keys, Owner: f.owner, Duration: time.Duration(f.leaseFor), Logger: log}
		held, err = lease.Acquire(ctx)
		if err != nil {
			return err
		}
		cfg.Owner = lease.Owner
		defer func() {
			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := lease.Release(rctx); err != nil {
				log.Warn("releasing the lease failed; it expires by itself", "err", err)
			}
		}()
	}
	prog := newProgress(stderr)
	cfg.Progress = prog.update
	if verbose {
		verb := "deleted"
		if dryRun {
			verb = "would delete"
		}
		cfg.Deleted = func(key, kind string) {
			prog.done()
			fmt.Fprintf(os.Stdout, "%s %s %s\n", verb, kind, key)
		}
	}
	r, err := reaper.Run(held, vol, cfg)
	prog.done()
	printReport(os.Stdout, vol, r, verbose)
	if err != nil {
		return fmt.Errorf("pass incomplete (run gc again to finish): %w", err)
	}
	return nil
}

// signalContext is ctx, cancelled by SIGINT or SIGTERM.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
}

func printReport(w io.Writer, vol *volume.Volume, r *reaper.Report, verbose bool) {
	if r == nil {
		return
	}
	verb := "deleted"
	counts := r.Deleted
	if r.DryRun {
		verb, counts = "would delete", r.Planned
	}
	fmt.Fprintf(w, "volume %s: %d inodes; store time %s\n", vol.URL, r.Inodes, r.Now.Format(time.RFC3339))
	if !r.Now.IsZero() {
		hz := "none (everything kept)"
		if !r.Horizon.IsZero() {
			hz = r.Horizon.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "horizon %s (retention %s, grace %s, %d live hosts, %d snapshots)\n", hz, r.Retention, r.Grace, r.LiveHosts, r.Snapshots)
	}
	if !r.Recorded.IsZero() {
		fmt.Fprintf(w, "mountable back to %s (and at every snapshot)\n", r.Recorded.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "%s: %s\n", verb, formatCounts(counts))
	if r.DryRun {
		fmt.Fprintf(w, "would free: %s\n", formatSize(r.Bytes))
	}
	fmt.Fprintf(w, "kept: %s\n", formatCounts(r.Kept))
	if r.Usage != nil {
		fmt.Fprintf(w, "volume holds: %s in %d objects, %d inodes reachable\n", formatSize(int64(min(r.Usage.Bytes, 1<<62))), r.Usage.Objects, r.Usage.Inodes)
	}
	if r.HoldAll {
		fmt.Fprintln(w, "an unreadable ping may hold any version: nothing but pings and probes was deleted")
	}
	if len(r.Orphans) > 0 {
		fmt.Fprintf(w, "orphans (no path reaches them): %d\n", len(r.Orphans))
		if verbose {
			for _, id := range r.Orphans {
				fmt.Fprintf(w, "  inode %016x\n", id)
			}
		}
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "problems (objects kept): %d\n", len(r.Problems))
		for i, p := range r.Problems {
			if i == 20 && !verbose {
				fmt.Fprintf(w, "  ... (-v lists all)\n")
				break
			}
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	fmt.Fprintf(w, "took %s\n", r.Duration.Round(time.Millisecond))
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "nothing"
	}
	kinds := make([]string, 0, len(m))
	for k := range m {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], plural(k, m[k])))
	}
	return strings.Join(parts, ", ")
}

func plural(kind string, n int) string {
	if n == 1 {
		return kind
	}
	return kind + "s"
}

// progress draws one updating line on a terminal; elsewhere it is silent.
type progress struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	last time.Time
	line bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(pr reaper.Progress) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && pr.Done != pr.Total {
		return
	}
	p.last = time.Now()
	line := pr.Phase + "..."
	if pr.Total > 0 {
		const width = 30
		n := width * pr.Done / pr.Total
		line = fmt.Sprintf("%-7s [%s%s] %d/%d", pr.Phase, strings.Repeat("#", n), strings.Repeat(".", width-n), pr.Done, pr.Total)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	p.line = true
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.line {
		fmt.Fprint(p.w, "\r\033[K")
		p.line = false
	}
}
