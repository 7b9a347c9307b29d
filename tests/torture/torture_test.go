// Package torture runs randomized multi-host torture tests: three real
// `s3gfs mount` processes share one volume on the test S3 server, each
// reaching it through its own fault-injecting proxy (internal/faultproxy:
// latency, 503 SlowDown, 500 InternalError, dropped connections), while a
// worker per host performs random namespace and data operations in a small
// shared namespace. Every operation is recorded with its host, outcome and
// start and end times; after the run, every host must show the same tree,
// a fresh mount must show it too, and the history checker (checker_test.go)
// must explain it. In the middle of the run one host is partitioned from
// the store for longer than the host expiry: it must fence itself (fail
// with EIO rather than serve stale data), then recover on its own.
//
// Environment:
//
//	S3GFS_TORTURE_SEED      the seed (default: from the clock; logged)
//	S3GFS_TORTURE_DURATION  how long the workers run (default 20s);
//	                        `make torture` runs it for 10 minutes
//	S3GFS_TORTURE_AVOID     operations to leave out, comma-separated: op
//	                        kinds (rename-dir, rmdir, ...; replaced by reads)
//	                        or xdir-rename (file renames stay in their
//	                        directory); to look past a known bug
//
// A seed fixes every worker's sequence of choices and every proxy's fault
// draws; timing still varies from run to run, so replaying a seed repeats
// the workload, not necessarily the interleaving.
package torture

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
	"github.com/s3gfs/s3gfs/internal/testenv"
)

const (
	defaultDuration = 20 * time.Second
	numHosts        = 3
	// probeDir is a top-level directory outside the workers' namespace,
	// used by the partition phase (not judged by the checker).
	probeDir = "probe"
)

// faults are the proxies' faults during the run: a few ms of latency,
// about 2% 503 SlowDown, 1% 500 InternalError and 0.5% dropped
// connections (before the request reaches the server, after it was
// handled, and in the middle of the response body).
var faults = faultproxy.Faults{
	Latency: 2 * time.Millisecond, Jitter: 4 * time.Millisecond,
	SlowDown: 0.02, InternalError: 0.01,
	DropBefore: 0.002, DropAfter: 0.002, DropMidBody: 0.001,
}

func seedFromEnv(t *testing.T) uint64 {
	if s := os.Getenv("S3GFS_TORTURE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("S3GFS_TORTURE_SEED=%q: %v", s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano() % 1e9)
}

func durationFromEnv(t *testing.T) time.Duration {
	d := defaultDuration
	if s := os.Getenv("S3GFS_TORTURE_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			t.Fatalf("S3GFS_TORTURE_DURATION=%q: want a duration such as 30s or 10m", s)
		}
		d = v
	}
	if dl, ok := t.Deadline(); ok {
		// Leave time for settling, checking and unmounting.
		if room := time.Until(dl) - 3*time.Minute; d > room {
			t.Logf("S3GFS_TORTURE_DURATION %v does not fit before the test deadline: running %v (raise go test -timeout)", d, max(room, 10*time.Second))
			d = max(room, 10*time.Second)
		}
	}
	return d
}

// run is one torture run.
type tortureRun struct {
	t      *testing.T
	c      *cluster
	rec    *recorder
	seed   uint64
	gates  []*gate
	mu     sync.Mutex
	notes  []string // partition phase observations (logged)
	failed []string // partition phase failures
	probeN int
}

// attributeLostCreates points each create op whose descriptor's inode a
// host logged as lost to another host's file (lostCreate) at that file:
// its bytes, and its truncation, are that file's. Called once the hosts
// have settled, so that every such line has been read.
func (r *tortureRun) attributeLostCreates(hist []*Op) {
	lost := map[uint64]uint64{}
	for _, h := range r.c.hosts {
		h.log.mu.Lock()
		for k, v := range h.log.lost {
			lost[k] = v
		}
		h.log.mu.Unlock()
	}
	n := attributeLost(hist, lost)
	r.t.Logf("%d creates lost their name to another host's file (of %d the hosts logged)", n, len(lost))
}

// attributeLost points each create op whose descriptor's inode is a key
// of lost at the file lost names, and returns how many it changed.
func attributeLost(hist []*Op, lost map[uint64]uint64) int {
	n := 0
	for _, op := range hist {
		if into, ok := lost[op.Ino]; ok && op.Kind == OpCreate && op.Local == 0 {
			op.Local, op.Ino = op.Ino, into
			n++
		}
	}
	return n
}

func (r *tortureRun) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.notes = append(r.notes, s)
	r.mu.Unlock()
	r.t.Log(s)
}

func (r *tortureRun) fail(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.failed = append(r.failed, s)
	r.mu.Unlock()
	r.t.Log("FAIL: " + s)
}

func TestTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("torture test: multi-host, tens of seconds")
	}
	seed := seedFromEnv(t)
	dur := durationFromEnv(t)
	avoid := map[string]bool{}
	if s := os.Getenv("S3GFS_TORTURE_AVOID"); s != "" {
		for _, a := range strings.Split(s, ",") {
			avoid[strings.TrimSpace(a)] = true
		}
		t.Logf("leaving out: %s", s)
	}
	t.Logf("seed %d, duration %v (replay the workload with S3GFS_TORTURE_SEED=%d S3GFS_TORTURE_DURATION=%v)", seed, dur, seed, dur)
	c := newCluster(t, seed)
	for i := 0; i < numHosts; i++ {
		c.mount(i)
	}
	r := &tortureRun{t: t, c: c, rec: newRecorder(), seed: seed}
	r.setup()

	for _, h := range c.hosts {
		h.proxy.SetFaults(faults)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, h := range c.hosts {
		g := newGate()
		r.gates = append(r.gates, g)
		w := &worker{h: h, rec: r.rec, rng: rand.New(rand.NewPCG(seed, uint64(i)+1)), gate: g, avoid: avoid}
		wg.Add(1)
		go func() { defer wg.Done(); w.run(stop) }()
	}
	watchdogDone := make(chan struct{})
	go r.watchdog(watchdogDone)

	// Partitions: one a third of the way into a short run; in a long run
	// one a minute, each host in turn. They alternate between refused
	// connections and a stalled network, starting with the seed's parity.
	start := time.Now()
	next, victim := dur/3, numHosts-1
	stall := seed%2 == 1
	for {
		left := dur - time.Since(start)
		if left <= 0 {
			break
		}
		if time.Since(start) >= next && left > 12*time.Second {
			r.partition(c.hosts[victim], r.gates[victim], stall)
			stall = !stall
			next += time.Minute
			victim = (victim + 1) % numHosts
			continue
		}
		time.Sleep(min(left, 200*time.Millisecond))
	}
	close(stop)
	wg.Wait()
	close(watchdogDone)
	hist := r.rec.history()
	t.Logf("workers stopped after %v: %d operations", time.Since(start).Round(time.Millisecond), len(hist))

	for _, h := range c.hosts {
		h.proxy.SetFaults(faultproxy.Faults{})
	}
	final, convErr := r.converge(30 * time.Second)
	var problems []Problem
	var stats checkStats
	var missed []string
	if convErr == nil {
		r.attributeLostCreates(hist)
		problems, stats = check(hist, final, staleWindow, probeDir)
		var tried []string
		tried, missed = mutations(hist, final, staleWindow, probeDir)
		t.Logf("checker sensitivity on this history: %d of %d planted faults caught (%s)", len(tried)-len(missed), len(tried), strings.Join(tried, "; "))
	}
	// Every host must unmount cleanly (writing back everything), and a
	// fresh mount must show the same tree: it reads only the store.
	var unmountErrs []string
	for _, h := range c.hosts {
		if err := h.unmount(); err != nil {
			unmountErrs = append(unmountErrs, fmt.Sprintf("host %d: %v", h.idx, err))
		}
	}
	var freshDiff []string
	if convErr == nil {
		fresh := c.mount(numHosts)
		ft, err := walk(fresh.dir)
		if err != nil {
			freshDiff = []string{err.Error()}
		} else {
			freshDiff = diffTrees(final, ft)
		}
		if err := fresh.unmount(); err != nil {
			unmountErrs = append(unmountErrs, fmt.Sprintf("fresh host: %v", err))
		}
	}

	t.Logf("checker: %v", stats)
	t.Logf("operations:\n%s", opTable(hist))
	for _, h := range c.hosts {
		t.Logf("host %d: proxy %v; log %s", h.idx, h.proxy.Stats(), h.log.summary())
	}

	var failures []string
	if convErr != nil {
		failures = append(failures, convErr.Error())
	}
	for _, d := range freshDiff {
		failures = append(failures, "fresh mount differs from the hosts' agreed tree: "+d)
	}
	failures = append(failures, unmountErrs...)
	for _, m := range missed {
		failures = append(failures, "checker bug: a planted fault went unnoticed: "+m)
	}
	failures = append(failures, r.failed...)
	for _, p := range problems {
		failures = append(failures, p.String())
	}
	if len(failures) == 0 {
		return
	}
	report := writeReport(t, seed, func(w io.Writer) {
		fmt.Fprintf(w, "s3gfs torture run, seed %d, duration %v\n\nFAILURES\n", seed, dur)
		for _, f := range failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
		fmt.Fprintf(w, "\nchecker: %v\n\nNOTES\n%s\n\nFINAL TREE\n%s\nHISTORY\n", stats, strings.Join(r.notes, "\n"), formatTree(final))
		for _, op := range hist {
			fmt.Fprintf(w, "%v\n", op)
		}
		for _, h := range c.hosts {
			fmt.Fprintf(w, "\nLOG OF HOST %d\n%s\n", h.idx, h.log)
		}
	})
	shown := failures
	if len(shown) > 25 {
		shown = append(shown[:25:25], fmt.Sprintf("… and %d more", len(failures)-25))
	}
	t.Errorf("seed %d: %d failures (replay with S3GFS_TORTURE_SEED=%d; history, tree and logs in %s):\n%s",
		seed, len(failures), seed, report, strings.Join(shown, "\n"))
}

// setup creates the first directories (recorded as host 0's operations)
// and the probe directory, and waits until every host sees them.
func (r *tortureRun) setup() {
	t, h0 := r.t, r.c.hosts[0]
	for _, d := range dirNames[:3] {
		op := r.rec.begin(0, OpMkdir, d, "")
		if err := syscall.Mkdir(h0.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
		op.Status = OK
		r.rec.finish(op)
	}
	if err := os.Mkdir(h0.path(probeDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h0.path(probeDir+"/f"), []byte("probe before"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, h := range r.c.hosts {
		eventually(t, 10*time.Second, fmt.Sprintf("host %d sees the setup", h.idx), func() error {
			for _, d := range append(dirNames[:3:3], probeDir+"/f") {
				if _, err := os.Stat(h.path(d)); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	testenv.Eventually(t, within, what, cond)
}

// watchdog fails the run when an operation hangs, after asking the mount
// for a goroutine dump (which ends it).
func (r *tortureRun) watchdog(done <-chan struct{}) {
	const limit = 3 * time.Minute
	for {
		select {
		case <-done:
			return
		case <-time.After(time.Second):
		}
		if op := r.rec.oldestLive(); op != nil && r.rec.now()-op.Start > limit {
			r.fail("operation %v has not returned after %v: host %d hangs (goroutine dump in its log)", op, limit, op.Host)
			r.c.hosts[op.Host].dumpGoroutines()
			return
		}
	}
}

// converge waits until every host shows the same tree and returns it.
func (r *tortureRun) converge(within time.Duration) (tree, error) {
	deadline := time.Now().Add(within)
	start := time.Now()
	for {
		trees := make([]tree, len(r.c.hosts))
		var diffs []string
		var err error
		for i, h := range r.c.hosts {
			if trees[i], err = walk(h.dir); err != nil {
				diffs = append(diffs, fmt.Sprintf("host %d: %v", i, err))
			}
		}
		if len(diffs) == 0 {
			for i := 1; i < len(trees); i++ {
				for _, d := range diffTrees(trees[0], trees[i]) {
					diffs = append(diffs, fmt.Sprintf("host 0 vs host %d: %s", i, d))
				}
			}
		}
		if len(diffs) == 0 {
			r.t.Logf("hosts agree on a tree of %d entries after %v", len(trees[0]), time.Since(start).Round(time.Millisecond))
			return trees[0], nil
		}
		if time.Now().After(deadline) {
			if len(diffs) > 20 {
				diffs = append(diffs[:20], fmt.Sprintf("… %d more", len(diffs)-20))
			}
			return trees[0], fmt.Errorf("hosts do not converge within %v:\n  %s", within, strings.Join(diffs, "\n  "))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func opTable(hist []*Op) string {
	counts := map[Kind]map[string]int{}
	for _, op := range hist {
		if counts[op.Kind] == nil {
			counts[op.Kind] = map[string]int{}
		}
		key := op.Status.String()
		if op.Status != OK {
			key += " " + op.Err
		}
		counts[op.Kind][key]++
	}
	var b strings.Builder
	for k := OpMkdir; k <= OpRename; k++ {
		m := counts[k]
		var parts []string
		for _, key := range sortedKeys(m) {
			parts = append(parts, fmt.Sprintf("%s %d", key, m[key]))
		}
		fmt.Fprintf(&b, "  %-10s %s\n", k, strings.Join(parts, ", "))
	}
	return b.String()
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// errnoOf returns the errno of a failed call, or 0.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
