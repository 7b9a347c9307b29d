package multihost

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// loseCreateRace opens a new name with O_CREAT|O_TRUNC on both hosts at
// once, round after round, until one host's deferred create loses the
// name to the other's (its descriptor's inode is not the name's once both
// are decided). It returns the name, both descriptors, and the winner's
// and loser's index; it skips the test when no round lost.
func loseCreateRace(t *testing.T, hosts []*host) (name string, fds [2]*os.File, w, l int) {
	t.Helper()
	for r := 0; r < 40; r++ {
		name = fmt.Sprintf("r%02d", r)
		var wg sync.WaitGroup
		var errs [2]error
		for i, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fds[i], errs[i] = os.OpenFile(h.path(name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
			}()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: open: %v", r, errs)
		}
		for _, f := range fds {
			if err := f.Sync(); err != nil { // waits for the decision
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond) // (the entry invalidation is sent in the background)
		loser := -1
		for i, h := range hosts {
			var st1, st2 syscall.Stat_t
			if err := syscall.Fstat(int(fds[i].Fd()), &st1); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Stat(h.path(name), &st2); err != nil {
				t.Fatal(err)
			}
			if st1.Ino != st2.Ino {
				loser = i
			}
		}
		if loser >= 0 {
			t.Logf("round %d: host %d lost the create race", r, loser)
			return name, fds, 1 - loser, loser
		}
		for _, f := range fds {
			f.Close()
		}
	}
	t.Skip("no round lost a race")
	return
}

// The host whose deferred create lost reads the name (caching the
// winner's 17 bytes), then writes 4 bytes and closes (applied to the
// winner's file). Its next read of the name shows them: the kernel's
// cached pages of that file were dropped.
func TestLostCreateReadsItsOwnClose(t *testing.T) {
	requireFUSE(t)
	v := newVolume(t, volume.FormatOptions{})
	hosts := []*host{v.mount(t), v.mount(t)}
	name, fds, w, l := loseCreateRace(t, hosts)
	if _, err := fds[w].Write(bytes.Repeat([]byte{'W'}, 17)); err != nil {
		t.Fatal(err)
	}
	if err := fds[w].Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "winner's content on the loser", func() error {
		got, err := os.ReadFile(hosts[l].path(name))
		if err != nil || len(got) != 17 {
			return fmt.Errorf("%d bytes, %v", len(got), err)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // (invalidations of the winner's version drained)
	if _, err := fds[l].Write([]byte("LLLL")); err != nil {
		t.Fatal(err)
	}
	if err := fds[l].Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(hosts[l].path(name))
	if err != nil {
		t.Fatal(err)
	}
	// The loser's open was an O_TRUNC open of the winner's file at the
	// decision, before the winner's 17 bytes: its 4 bytes at 0 land on them.
	if want := "LLLL" + string(bytes.Repeat([]byte{'W'}, 13)); string(got) != want {
		other, _ := os.ReadFile(hosts[w].path(name))
		t.Fatalf("loser reads %q right after its close, want %q (winner host reads %q)", got, want, other)
	}
}

// Through FUSE: the winner writes 17 bytes and closes (acknowledged)
// after the loser's open returned; the loser then writes 1 byte at 0 and
// closes. An O_TRUNC open followed by those writes gives "x"+16 W's, on
// both hosts.
func TestLostCreateKeepsWinnersAcknowledgedBytes(t *testing.T) {
	requireFUSE(t)
	v := newVolume(t, volume.FormatOptions{})
	hosts := []*host{v.mount(t), v.mount(t)}
	name, fds, w, l := loseCreateRace(t, hosts)
	if _, err := fds[w].Write(bytes.Repeat([]byte{'W'}, 17)); err != nil {
		t.Fatal(err)
	}
	if err := fds[w].Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fds[l].Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := fds[l].Close(); err != nil {
		t.Fatal(err)
	}
	want := "x" + string(bytes.Repeat([]byte{'W'}, 16))
	for _, h := range hosts {
		eventually(t, visible, "both writes on "+h.dir, func() error {
			got, err := os.ReadFile(h.path(name))
			if err != nil {
				return err
			}
			if string(got) != want {
				return fmt.Errorf("read %q, want %q", got, want)
			}
			return nil
		})
	}
}
