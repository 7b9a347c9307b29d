package reaper

import (
	"context"

	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/reaper"
)

// TestTwoReapers: while the lease is held, gc does nothing and says so;
// two gc at once never both act at once; two continuous reapers: one acts,
// and when it is killed the other takes over and finishes (metrics show
// its passes), leaving a healthy volume.
func TestTwoReapers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.mount()
	churn := func(tag string) {
		for i := range 4 {
			write(t, a.path(fmt.Sprintf("d/f%d", i)), content(tag, 70<<10+i))
		}
		must(t, os.Remove(a.path("d/f3")))
	}
	churn("one")

	// A lease held elsewhere: gc reports it and deletes nothing.
	l := &reaper.BucketLease{Store: f.store, Keys: f.vol.Keys, Owner: "test-holder", Duration: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if _, err := l.Acquire(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	before := f.objects()
	out, err := f.run("gc", "--grace", "0s", "--retention", "0s", f.url.String())
	if err == nil || !strings.Contains(out, "lease is held") || !strings.Contains(out, "test-holder") {
		t.Fatalf("gc while the lease is held: %v\n%s", err, out)
	}
	if f.objects() != before {
		t.Fatal("gc deleted objects without the lease")
	}
	must(t, l.Release(ctxT(t)))

	// Two at once: each either acts or reports the lease held.
	churn("two")
	time.Sleep(4500 * time.Millisecond) // past the grace period
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = f.run("gc", "--grace", "2s", "--retention", "0s", f.url.String())
		}()
	}
	wg.Wait()
	acted := 0
	for i := range 2 {
		switch {
		case errs[i] == nil:
			acted++
		case !strings.Contains(outs[i], "lease is held"):
			t.Fatalf("gc %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	if acted == 0 {
		t.Fatalf("neither gc acted:\n%s\n%s", outs[0], outs[1])
	}
	f.mustRun("fsck", f.url.String())

	// Two continuous reapers.
	start := func() (*exec.Cmd, *testenv.LogBuffer) {
		log := &testenv.LogBuffer{}
		cmd := f.command("reaper", "--interval", "1s", "--lease-duration", "3s", "--grace", "2s", "--retention", "0s",
			"--metrics-addr", "127.0.0.1:0", f.url.String())
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, log
	}
	waitLog := func(log *testenv.LogBuffer, what string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !strings.Contains(log.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q within %s:\n%s", what, within, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	r1, log1 := start()
	waitLog(log1, "reaper lease acquired", 10*time.Second)
	r2, log2 := start()
	waitLog(log2, "another reaper holds the lease", 10*time.Second)
	churn("three")
	time.Sleep(1500 * time.Millisecond)
	// Kill the holder (no release): the other takes over once the lease
	// expires by the store's clock, and runs passes.
	r1.Process.Kill()
	r1.Wait()
	waitLog(log2, "reaper lease acquired", 15*time.Second)
	waitLog(log2, "reaper pass", 10*time.Second)
	m := metricsAddrRE.FindStringSubmatch(log2.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", log2)
	}
	var ok float64
	deadline := time.Now().Add(10 * time.Second)
	for ok < 1 {
		body := scrape(t, "http://"+m[1]+"/metrics")
		ok = metric(body, `s3gfs_reaper_passes_total{result="ok"}`)
		if metric(body, "s3gfs_reaper_lease_held") != 1 && time.Now().After(deadline) {
			t.Fatalf("metrics after takeover:\n%s", body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful pass in the metrics:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	body := scrape(t, "http://"+m[1]+"/metrics")
	for _, name := range []string{"s3gfs_reaper_pass_duration_seconds_count", "s3gfs_reaper_last_success_timestamp_seconds", "s3gfs_reaper_horizon_timestamp_seconds", `s3gfs_reaper_kept_objects{kind="version"}`} {
		if metric(body, name) <= 0 {
			t.Errorf("metric %s missing or zero", name)
		}
	}
	// Its health endpoints: live, and ready once it holds the lease.
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "ok") {
			t.Errorf("GET %s: %s %q", path, resp.Status, b)
		}
	}
	// Stop it cleanly: it releases the lease.
	r2.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- r2.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reaper exit: %v\n%s", err, log2)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("reaper did not stop on SIGINT\n%s", log2)
	}
	if _, err := l.Acquire(ctxT(t)); err != nil {
		t.Fatalf("lease not released by a stopped reaper: %v", err)
	}
	l.Release(context.Background())
	out = f.mustRun("fsck", f.url.String())
	if !strings.Contains(out, "healthy") {
		t.Fatalf("fsck:\n%s", out)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metric returns the value of the sample named exactly name (with labels).
func metric(body, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}
