package torture

import (
	"os"
	"testing"
	"time"
)

// TestOpenSeesOtherHostsWriteWhileHeld: close-to-open consistency
// (protocol invariant 5) promises that an open() on host B after host A
// closed a file sees A's data. It must not matter whether some other
// process on B happens to hold the file open: only that descriptor keeps
// reading the version it opened.
//
// Found by the torture test's partition phase (which held the probe file
// open across the partition). Deterministic; no faults needed.
func TestOpenSeesOtherHostsWriteWhileHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-host FUSE test")
	}
	c := newCluster(t, 1)
	a, b := c.mount(0), c.mount(1)
	if err := os.WriteFile(a.path("f"), []byte("version one"), 0o644); err != nil {
		t.Fatal(err)
	}
	var held *os.File
	eventually(t, 10*time.Second, "f visible on b", func() (err error) {
		held, err = os.Open(b.path("f"))
		return err
	})
	defer held.Close()
	buf := make([]byte, 64)
	n, _ := held.ReadAt(buf, 0)
	if string(buf[:n]) != "version one" {
		t.Fatalf("b read %q", buf[:n])
	}
	if err := os.WriteFile(a.path("f"), []byte("version two"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * syncInterval) // not needed by close-to-open; lets b's sync see it too
	got, err := os.ReadFile(b.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ = held.ReadAt(buf, 0)
	if string(buf[:n]) != "version one" {
		t.Errorf("the descriptor held open on b across host a's write and a new open on b read %q, want the version it opened", buf[:n])
	}
	held.Close()
	after, _ := os.ReadFile(b.path("f"))
	if string(got) != "version two" {
		t.Fatalf("a new open() on host b, after host a closed \"version two\", read %q while another descriptor on b held the file open "+
			"(after that descriptor was closed, an open reads %q)", got, after)
	}
}
