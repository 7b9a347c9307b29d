package outage

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestFencedFsyncFailsAtOnce: a host cut off from its store (connections
// refused) fences itself after the host expiry; from then on fsync (and
// close) of data written before the cut must fail with EIO at once, like
// every other operation. Until 5b01e01 the commit did not check the fence
// and each dirty extent's upload spent the store client's retry budget,
// so the EIO came after a time proportional to the unwritten data (13 s
// for 1 MiB, 48 s for 4 MiB in 64 KiB extents; found by
// TestLongStoreOutage).
func TestFencedFsyncFailsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("real mounts")
	}
	v := newVolume(t)
	a := v.mount(true, outageSync, outageExpiry)
	f, err := os.OpenFile(a.Path("pending"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(pattern("pending", 4<<20), 0); err != nil { // 64 extents of 64 KiB
		t.Fatal(err)
	}
	a.proxy.Partition(true)
	defer a.proxy.Partition(false)
	time.Sleep(outageExpiry + 2*time.Second) // fenced by now
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f.Sync() }()
	const bound = 15 * time.Second
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("fsync on a fenced host returned %v after %v, want EIO", err, time.Since(start).Round(time.Millisecond))
		}
		t.Logf("fsync on the fenced host: EIO after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(bound):
		// Still cut off: how long does it take?
		select {
		case err = <-done:
		case <-time.After(3 * time.Minute):
			err = errors.New("still blocked")
		}
		t.Fatalf("fsync on a host fenced %v ago was still blocked after %v; it returned %v after %v, the store still unreachable",
			2*time.Second, bound, err, time.Since(start).Round(time.Millisecond))
	}
}

// TestStalledStoreFailsInFlightOperations: when the network to the store
// stalls (packets dropped, connections kept: faultproxy Pause), an
// operation already waiting on the store (here a read of a file not
// cached) must fail with EIO within a bounded time: at the latest when the
// host fences. Until 5b01e01 it waited as long as the stall lasted (no
// request had a timeout, and the fence only stopped operations that
// started after it; found by TestLongStoreOutage).
func TestStalledStoreFailsInFlightOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("real mounts")
	}
	v := newVolume(t)
	a := v.mount(true, outageSync, outageExpiry)
	b := v.mount(false, outageSync, outageExpiry)
	if err := os.WriteFile(b.Path("cold"), pattern("cold", 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "cold visible on a", func() error { _, err := os.Stat(a.Path("cold")); return err })
	time.Sleep(1500 * time.Millisecond) // past the kernel's attribute and entry caches
	a.proxy.Pause(true)
	defer a.proxy.Pause(false)
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := os.ReadFile(a.Path("cold")); done <- err }()
	bound := outageExpiry + 10*time.Second
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("read during a stall returned %v after %v, want EIO", err, time.Since(start).Round(time.Millisecond))
		}
	case <-time.After(bound):
		a.proxy.Pause(false)
		err := <-done
		t.Fatalf("a read of a file not cached, started as the store stalled, was still blocked after %v (host expiry %v); it returned %v only once the store came back",
			bound, outageExpiry, err)
	}
}
