package reaper

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// TestReaperEndToEnd: many overwrites and deletes on one host while a
// second host holds a file open; snapshots and point-in-time mounts
// before and after gc passes; fsck on the healthy and on a damaged volume.
func TestReaperEndToEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.mount()
	b := f.mount()
	const ext = 64 << 10

	// Phase 0: files, churn, and one file b opens and keeps open (without
	// reading it, so its reads after gc come from the store).
	write(t, a.path("keep/a"), content("keep-a", 3*ext+17))
	write(t, a.path("keep/b"), []byte("small b"))
	for i := range 3 {
		write(t, a.path("churn/c"), content("churn-0-"+string(rune('a'+i)), 2*ext+i))
	}
	write(t, a.path("gone/d"), content("gone-d", 2*ext+5))
	if err := os.Mkdir(a.path("gone/e"), 0o755); err != nil {
		t.Fatal(err)
	}
	held0 := content("held-0", 2*ext+3)
	write(t, a.path("held"), held0)
	var fd *os.File
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if fd, err = os.Open(b.path("held")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open held on b: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer fd.Close()

	// Phase 1: an instant, and a snapshot of it.
	t1 := f.instant()
	tree1 := readTree(t, a.dir)
	out := f.mustRun("snapshot", "create", f.url.String(), "snap1")
	if !strings.Contains(out, "snapshot snap1 pins") {
		t.Fatalf("snapshot create: %s", out)
	}
	if _, err := f.run("snapshot", "create", f.url.String(), "snap1"); err == nil {
		t.Fatal("creating snap1 twice succeeded")
	}
	if out, err := f.run("snapshot", "create", f.url.String(), "bad/name"); err == nil || !strings.Contains(out, "invalid snapshot name") {
		t.Fatalf("bad snapshot name: %v %s", err, out)
	}
	time.Sleep(1100 * time.Millisecond)

	// Phase 2: overwrites and deletes.
	for i := range 2 {
		write(t, a.path("churn/c"), content("churn-1-"+string(rune('a'+i)), ext+i))
		write(t, a.path("held"), content("held-1-"+string(rune('a'+i)), 3*ext+i))
	}
	must(t, os.Remove(a.path("gone/d")))
	must(t, os.Remove(a.path("gone/e")))
	write(t, a.path("keep/new"), content("new", ext/2))
	t2 := f.instant()
	tree2 := readTree(t, a.dir)

	// Phase 3: more.
	write(t, a.path("churn/c"), content("churn-2", 2*ext))
	held3 := content("held-3", ext+1)
	write(t, a.path("held"), held3)
	must(t, os.Remove(a.path("keep/b")))
	tree3 := readTree(t, a.dir)

	// Point-in-time mounts before any gc.
	asOf := func(when string, want map[string]string) {
		t.Helper()
		m := f.mount("--as-of", when)
		wantTree(t, "as of "+when, m.dir, want)
		m.stop()
	}
	asOf(t1.Format(time.RFC3339), tree1)
	asOf(t2.Format(time.RFC3339), tree2)
	asOf("snap1", tree1)

	// The versions command shows held's history.
	out = f.mustRun("versions", f.url.String(), "/held")
	if !strings.Contains(out, "file") || strings.Count(out, "\n") < 6 {
		t.Fatalf("versions of /held:\n%s", out)
	}

	// gc 1, while b holds held's first version open: nothing b reads goes.
	time.Sleep(5 * time.Second) // past the grace period (twice the 2s host expiry)
	before := f.objects()
	out = f.mustRun("gc", "--grace", "2s", "--retention", "0s", f.url.String())
	t.Logf("gc 1:\n%s", out)
	got, err := io.ReadAll(fd)
	if err != nil || !bytes.Equal(got, held0) {
		t.Fatalf("b's open handle after gc: %d bytes, %v; want the %d bytes it opened", len(got), err, len(held0))
	}
	must(t, fd.Close())
	time.Sleep(1500 * time.Millisecond) // b's next ping holds nothing

	// gc 2: retention reaching back just past t2.
	// The horizon lands in [t2-1s, t2]: after t1 (3s and more before t2).
	retention := f.now().Sub(t2) + time.Second
	out = f.mustRun("gc", "--grace", "2s", "--retention", retention.String(), f.url.String())
	t.Logf("gc 2:\n%s", out)
	after := f.objects()
	if after >= before {
		t.Fatalf("gc did not shrink the volume: %d objects before, %d after", before, after)
	}
	wantTree(t, "a after gc", a.dir, tree3)
	c := f.mount()
	wantTree(t, "a new host after gc", c.dir, tree3)
	if !strings.Contains(out, "volume holds: ") {
		t.Fatalf("gc 2 does not say what the volume holds:\n%s", out)
	}
	// statfs on a new mount reports the usage gc recorded (FORMAT §15.9).
	var st syscall.Statfs_t
	must(t, syscall.Statfs(c.dir, &st))
	if st.Blocks == st.Bfree || st.Files-st.Ffree < 5 {
		t.Fatalf("statfs after gc: %d of %d blocks free, %d of %d files free; want the recorded usage", st.Bfree, st.Blocks, st.Ffree, st.Files)
	}
	c.stop()
	asOf(t2.Format(time.RFC3339), tree2)
	asOf("snap1", tree1)
	_, err = f.tryMount("--as-of", t1.Format(time.RFC3339))
	if err == nil || !strings.Contains(err.Error(), "older than the reaper keeps") || !strings.Contains(err.Error(), "can go back to") {
		t.Fatalf("mount --as-of before the horizon: %v", err)
	}
	out = f.mustRun("fsck", f.url.String())
	if !strings.Contains(out, "healthy") {
		t.Fatalf("fsck:\n%s", out)
	}

	// Deleting the snapshot lets the next pass free what only it kept.
	f.mustRun("snapshot", "delete", f.url.String(), "snap1")
	if out := f.mustRun("snapshot", "list", f.url.String()); strings.Contains(out, "snap1") {
		t.Fatalf("snapshot list after delete:\n%s", out)
	}
	// The point-in-time mounts above announced their times until their
	// pings lapsed (a mount's last ping keeps its oldest): wait that out.
	time.Sleep(2500 * time.Millisecond)
	before = f.objects()
	out = f.mustRun("gc", "--dry-run", "-v", "--grace", "2s", "--retention", "0s", f.url.String())
	if !strings.Contains(out, "would delete version "+f.url.Prefix+"/i/") || f.objects() != before {
		t.Fatalf("gc --dry-run -v:\n%s", out)
	}
	out = f.mustRun("gc", "--grace", "2s", "--retention", "0s", f.url.String())
	t.Logf("gc 3:\n%s", out)
	if after := f.objects(); after >= before {
		t.Fatalf("gc after the snapshot's deletion freed nothing: %d -> %d objects", before, after)
	}
	if _, err := f.tryMount("--as-of", "snap1"); err == nil || !strings.Contains(err.Error(), "no such snapshot") {
		t.Fatalf("mount of a deleted snapshot: %v", err)
	}
	wantTree(t, "a after gc 3", a.dir, tree3)
	if got, err := os.ReadFile(a.path("held")); err != nil || !bytes.Equal(got, held3) {
		t.Fatalf("held after gc: %v", err)
	}
	f.mustRun("fsck", f.url.String())

	// Retention is changeable; the next pass uses it.
	if out := f.mustRun("retention", f.url.String()); !strings.Contains(out, "retention 0s") {
		t.Fatalf("retention: %s", out)
	}
	if out := f.mustRun("retention", "set", f.url.String(), "2d"); !strings.Contains(out, "retention 48h0m0s") {
		t.Fatalf("retention set: %s", out)
	}
	if out := f.mustRun("gc", "--dry-run", f.url.String()); !strings.Contains(out, "retention 48h0m0s") {
		t.Fatalf("gc after retention set:\n%s", out)
	}

	// Planted damage: one flipped byte in an extent.
	page, err := f.store.List(ctxT(t), f.vol.Keys.ExtentsPrefix(), "", 1)
	if err != nil || len(page.Objects) == 0 {
		t.Fatalf("no extent to damage: %v", err)
	}
	key := page.Objects[0].Key
	obj, _, err := f.store.Get(ctxT(t), key)
	if err != nil {
		t.Fatal(err)
	}
	obj[format.EnvelopeOverhead] ^= 0x20
	if _, err := f.store.Put(ctxT(t), key, obj); err != nil {
		t.Fatal(err)
	}
	out, err = f.run("fsck", f.url.String())
	if err == nil || !strings.Contains(out, "DAMAGE") || !strings.Contains(out, key) {
		t.Fatalf("fsck of a damaged volume: %v\n%s", err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var metricsAddrRE = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)
