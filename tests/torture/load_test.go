package torture

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLoad (S3GFS_LOAD=1, `make load`): loadHosts mount processes on one
// volume run the torture workers (random namespace and data operations in
// a small shared namespace, so hosts constantly race on the same
// directories and files) for S3GFS_LOAD_DURATION (default 10m), without
// injected faults or partitions. Then every host must show the same tree,
// a fresh mount must show it too, and the history checker must explain
// it. The output gives the checker's verdict and the figures: operations
// done (by kind and outcome, and per second), errors, and the store
// requests seen, with the conditional writes that lost a race (412/409:
// conflicts that the hosts retried).
func TestLoad(t *testing.T) {
	if os.Getenv("S3GFS_LOAD") != "1" {
		t.Skip("load test: S3GFS_LOAD=1 (make load)")
	}
	const loadHosts = 8
	seed := seedFromEnv(t)
	dur := 10 * time.Minute
	if s := os.Getenv("S3GFS_LOAD_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			t.Fatalf("S3GFS_LOAD_DURATION=%q: want a duration such as 30s or 10m", s)
		}
		dur = v
	}
	if dl, ok := t.Deadline(); ok {
		if room := time.Until(dl) - 5*time.Minute; dur > room {
			t.Logf("S3GFS_LOAD_DURATION %v does not fit before the test deadline: running %v", dur, max(room, 10*time.Second))
			dur = max(room, 10*time.Second)
		}
	}
	t.Logf("seed %d, %d hosts, duration %v", seed, loadHosts, dur)
	c := newCluster(t, seed)
	// Every host's proxy forwards to a counter of the store's answers.
	counter := newCountingProxy(t, c.srv.Endpoint)
	srv := *c.srv
	srv.Endpoint = counter.srv.URL
	c.srv = &srv
	for i := 0; i < loadHosts; i++ {
		c.mount(i)
	}
	r := &tortureRun{t: t, c: c, rec: newRecorder(), seed: seed}
	r.setup()
	counter.reset()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, h := range c.hosts {
		g := newGate()
		r.gates = append(r.gates, g)
		w := &worker{h: h, rec: r.rec, rng: rand.New(rand.NewPCG(seed, uint64(i)+1)), gate: g, avoid: map[string]bool{}}
		wg.Add(1)
		go func() { defer wg.Done(); w.run(stop) }()
	}
	watchdogDone := make(chan struct{})
	go r.watchdog(watchdogDone)
	start := time.Now()
	for left := dur; left > 0; left = dur - time.Since(start) {
		time.Sleep(min(left, time.Minute))
		if time.Since(start) < dur {
			t.Logf("%v: %d operations so far", time.Since(start).Round(time.Second), len(r.rec.history()))
		}
	}
	close(stop)
	wg.Wait()
	close(watchdogDone)
	ran := time.Since(start)
	hist := r.rec.history()
	reqs := counter.snapshot()

	final, convErr := r.converge(60 * time.Second)
	var problems []Problem
	var stats checkStats
	if convErr == nil {
		r.attributeLostCreates(hist)
		problems, stats = check(hist, final, staleWindow, probeDir)
	}
	var failures []string
	if convErr != nil {
		failures = append(failures, convErr.Error())
	}
	for _, h := range c.hosts {
		if err := h.unmount(); err != nil {
			failures = append(failures, fmt.Sprintf("host %d: unmount: %v", h.idx, err))
		}
	}
	if convErr == nil {
		fresh := c.mount(loadHosts)
		ft, err := walk(fresh.dir)
		if err != nil {
			failures = append(failures, "fresh mount: "+err.Error())
		} else {
			for _, d := range diffTrees(final, ft) {
				failures = append(failures, "fresh mount differs from the hosts' agreed tree: "+d)
			}
		}
		if err := fresh.unmount(); err != nil {
			failures = append(failures, "fresh mount: unmount: "+err.Error())
		}
	}
	failures = append(failures, r.failed...)
	for _, p := range problems {
		failures = append(failures, p.String())
	}

	// The figures.
	okOps, errOps := 0, 0
	errs := map[string]int{}
	for _, op := range hist {
		if op.Status == OK {
			okOps++
		} else {
			errOps++
			errs[op.Kind.String()+" "+op.Status.String()+" "+op.Err]++
		}
	}
	t.Logf("LOAD: %d hosts, %v: %d operations (%.1f/s), %d succeeded, %d failed or were refused (POSIX errors such as ENOENT, EEXIST, ENOTEMPTY are expected of racing hosts)",
		loadHosts, ran.Round(time.Second), len(hist), float64(len(hist))/ran.Seconds(), okOps, errOps)
	t.Logf("operations by kind and outcome:\n%s", opTable(hist))
	t.Logf("store requests during the run: %s", reqs)
	t.Logf("checker: %v", stats)
	for _, h := range c.hosts {
		t.Logf("host %d: log %s", h.idx, h.log.summary())
	}
	if len(failures) == 0 {
		t.Logf("VERDICT: the checker explains the history of %d operations on %d hosts; every host and a fresh mount agree", len(hist), loadHosts)
		return
	}
	report := writeReport(t, seed, func(w io.Writer) {
		fmt.Fprintf(w, "s3gfs load run, seed %d, %d hosts, %v\n\nFAILURES\n", seed, loadHosts, dur)
		for _, f := range failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
		fmt.Fprintf(w, "\nFINAL TREE\n%s\nHISTORY\n", formatTree(final))
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
	t.Errorf("VERDICT: seed %d: %d failures (history, tree and logs in %s):\n%s", seed, len(failures), report, strings.Join(shown, "\n"))
}

// countingProxy forwards to the S3 server (Host header, and so the
// signature, unchanged) and counts requests by method and answer.
type countingProxy struct {
	srv    *httptest.Server
	mu     sync.Mutex
	counts map[string]int
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		kind := r.Method
		if r.Method == http.MethodGet && r.URL.Query().Has("list-type") {
			kind = "LIST"
		}
		p.mu.Lock()
		p.counts[kind]++
		if resp.StatusCode >= 300 {
			p.counts[fmt.Sprintf("%s %d", kind, resp.StatusCode)]++
		}
		p.mu.Unlock()
		return nil
	}
	p.srv = httptest.NewServer(rp)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *countingProxy) reset() {
	p.mu.Lock()
	p.counts = map[string]int{}
	p.mu.Unlock()
}

// snapshot describes the counts; PUT 412 and PUT 409 are conditional
// writes that lost a race (conflicts, retried by the hosts).
func (p *countingProxy) snapshot() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]string, 0, len(p.counts))
	for k := range p.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, p.counts[k]))
	}
	conflicts := p.counts["PUT 412"] + p.counts["PUT 409"]
	return fmt.Sprintf("%s; conflicts (conditional writes that lost a race, then retried): %d", strings.Join(parts, ", "), conflicts)
}
