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

// The host whose deferred create lost reads the name (caching the
// winner's 17 bytes), then writes 4 bytes and closes (applied to the
// winner's file). Its next read of the name shows them: the kernel's
// cached pages of that file were dropped.
func TestLostCreateReadsItsOwnClose(t *testing.T) {
	requireFUSE(t)
	v := newVolume(t, volume.FormatOptions{})
	hosts := []*host{v.mount(t), v.mount(t)}
	for r := 0; r < 40; r++ {
		name := fmt.Sprintf("r%02d", r)
		var fds [2]*os.File
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.OpenFile(h.path(name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
				if err != nil {
					t.Error(err)
				}
				fds[i] = f
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
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
		if loser < 0 {
			for _, f := range fds {
				f.Close()
			}
			continue
		}
		w, l := 1-loser, loser
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
		if got, err := os.ReadFile(hosts[l].path(name)); err != nil || len(got) != 17 {
			t.Fatalf("loser reads %q, %v", got, err)
		}
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
		t.Logf("round %d: host %d lost; after its close it reads %q", r, l, got)
		// The loser's open was an O_TRUNC open of the winner's file at the
		// decision, before the winner's 17 bytes: its 4 bytes at 0 land on them.
		if want := "LLLL" + string(bytes.Repeat([]byte{'W'}, 13)); string(got) != want {
			time.Sleep(3 * time.Second)
			again, _ := os.ReadFile(hosts[l].path(name))
			other, _ := os.ReadFile(hosts[w].path(name))
			t.Fatalf("loser reads %q right after its close (%q 3 s later; winner host reads %q)", got, again, other)
		}
		return
	}
	t.Skip("no round lost a race")
}

// Through FUSE: the winner writes 17 bytes and closes (acknowledged)
// after the loser's open returned; the loser then writes 1 byte at 0 and
// closes. An O_TRUNC open followed by those writes gives "x"+16 W's.
func TestLostCreateKeepsWinnersAcknowledgedBytes(t *testing.T) {
	requireFUSE(t)
	v := newVolume(t, volume.FormatOptions{})
	hosts := []*host{v.mount(t), v.mount(t)}
	for r := 0; r < 40; r++ {
		name := fmt.Sprintf("r%02d", r)
		var fds [2]*os.File
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.OpenFile(h.path(name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
				if err != nil {
					t.Error(err)
				}
				fds[i] = f
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, f := range fds {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		loser := -1
		for i, h := range hosts {
			var st1, st2 syscall.Stat_t
			syscall.Fstat(int(fds[i].Fd()), &st1)
			if err := syscall.Stat(h.path(name), &st2); err != nil {
				t.Fatal(err)
			}
			if st1.Ino != st2.Ino {
				loser = i
			}
		}
		if loser < 0 {
			for _, f := range fds {
				f.Close()
			}
			continue
		}
		w, l := 1-loser, loser
		fds[w].Write(bytes.Repeat([]byte{'W'}, 17))
		if err := fds[w].Close(); err != nil {
			t.Fatal(err)
		}
		fds[l].Write([]byte("x"))
		if err := fds[l].Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		got, _ := os.ReadFile(hosts[w].path(name))
		t.Logf("round %d: winner host reads %q", r, got)
		if string(got) != "x"+string(bytes.Repeat([]byte{'W'}, 16)) {
			t.Fatalf("winner's acknowledged bytes lost: %q", got)
		}
		return
	}
	t.Skip("no round lost a race")
}
