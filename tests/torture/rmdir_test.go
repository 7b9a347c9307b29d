package torture

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
)

// TestRmdirOfRemovedDirectory: of two rmdirs of one directory, from two
// hosts, one must fail with ENOENT, as on a local filesystem (a script
// using rmdir to claim a directory must not see two winners); and once one
// has returned, any later one must fail. Found by the torture test (seed
// 1: "rmdir succeeded, but c had already been removed", the two rmdirs
// 11ms apart). Timing-dependent: host b must have learned of the
// directory's tombstone (host a's first commit) but not yet of its
// parent's change (the second): vfs.Rmdir then takes the missing
// directory for "removed meanwhile by someone else" and reports success.
func TestRmdirOfRemovedDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-host FUSE test")
	}
	c := newCluster(t, 1)
	a, b := c.mount(0), c.mount(1)
	// A slow store for host a widens the gap between its rmdir's two
	// commits (the directory's tombstone, then its parent's entry), which
	// its pings may announce separately.
	a.proxy.SetFaults(faultproxy.Faults{Latency: 150 * time.Millisecond})
	wins := 0
	for i := 0; i < 12; i++ {
		d := fmt.Sprintf("d%d", i)
		if err := os.Mkdir(a.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "directory visible on host b", func() error {
			_, err := os.Stat(b.path(d))
			return err
		})
		errc := make(chan error, 1)
		var aDone time.Time
		go func() { err := syscall.Rmdir(a.path(d)); aDone = time.Now(); errc <- err }()
		time.Sleep(450*time.Millisecond + time.Duration(i)*25*time.Millisecond)
		bStart := time.Now()
		errB := syscall.Rmdir(b.path(d))
		errA := <-errc
		when := "while host a's was running"
		if aDone.Before(bStart) {
			when = fmt.Sprintf("%v after host a's had returned", bStart.Sub(aDone).Round(time.Millisecond))
		}
		for _, err := range []error{errA, errB} {
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("rmdir: %v", err)
			}
		}
		if errA == nil && errB == nil {
			wins++
			t.Errorf("attempt %d: host a and host b both removed %s (b's rmdir started %s): one must fail with ENOENT", i, d, when)
		}
	}
	t.Logf("%d of 12 races had two winners", wins)
}
