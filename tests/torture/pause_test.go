package torture

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPausedNetwork: a network that silently stops delivering (packets
// dropped, TCP connections surviving), as opposed to the refused
// connections of the torture test's partition. Host b sends a commit (a
// rename: one conditional PUT of the directory's next version) just as
// its network stalls; the stall outlasts the host expiry.
//
// Protocol invariant 8: a host whose ping lapsed must assume the reaper
// has moved past it and stop committing. New operations on b must fail
// with EIO once it is fenced, and the commit already sent must not report
// success: its request carries a deadline at the instant b fences itself,
// so it either lands in time or fails with EIO.
//
// A request the client gave up on can still reach the store when the
// network comes back (this proxy, like a real network, delivers what it
// holds): the commit is therefore a presigned conditional PUT that expires
// at the fence instant, and the store refuses it when it arrives late.
func TestPausedNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-host FUSE test")
	}
	c := newCluster(t, 1)
	a, b := c.mount(0), c.mount(1)
	if err := os.Mkdir(a.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.path("d/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "d/x visible on b", func() error { _, err := os.Stat(b.path("d/x")); return err })

	type result struct {
		err  error
		took time.Duration
	}
	b.proxy.Pause(true)
	paused := time.Now()
	inflight := make(chan result, 1)
	go func() {
		start := time.Now()
		err := syscall.Rename(b.path("d/x"), b.path("d/y"))
		inflight <- result{err, time.Since(start)}
	}()
	time.Sleep(hostExpiry + 1200*time.Millisecond) // past the expiry and the kernel's caches
	probe := make(chan result, 1)
	go func() {
		start := time.Now()
		_, err := os.Stat(b.path("d"))
		probe <- result{err, time.Since(start)}
	}()
	var problems []string
	probed := false
	select {
	case r := <-probe:
		probed = true
		if !errors.Is(r.err, syscall.EIO) {
			problems = append(problems, fmt.Sprintf("stat on the fenced host: %v, want EIO", r.err))
		}
	case <-time.After(3 * time.Second):
		problems = append(problems, "stat on the fenced host hung for 3s instead of failing with EIO")
	}
	stall := time.Since(paused)
	b.proxy.Pause(false)
	r := <-inflight
	if !probed {
		<-probe
	}
	t.Logf("network stalled for %v; the rename sent as it stalled returned after %v: %v", stall.Round(100*time.Millisecond), r.took.Round(time.Millisecond), r.err)
	time.Sleep(1500 * time.Millisecond)
	_, err := os.Stat(a.path("d/y"))
	if r.err == nil {
		problems = append(problems, fmt.Sprintf("host b's rename d/x -> d/y, sent as the network stalled, returned success %v after it was sent, although b's ping lapsed %v into the stall",
			r.took.Round(time.Millisecond), hostExpiry))
	}
	if err == nil {
		problems = append(problems, fmt.Sprintf("host b's rename d/x -> d/y, sent as the network stalled, reached the store when it came back, %v after b's ping had lapsed "+
			"(the rename returned %v after %v; d/y on host a: %v)", (stall-hostExpiry).Round(100*time.Millisecond), r.err, r.took.Round(time.Millisecond), err))
	}
	if len(problems) > 0 {
		t.Fatalf("network stalled on host b for %v (host expiry %v):\n  %s", stall.Round(100*time.Millisecond), hostExpiry, strings.Join(problems, "\n  "))
	}
}
