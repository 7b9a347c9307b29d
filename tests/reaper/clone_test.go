package reaper

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// TestCloneOnRealMounts: a clone (FORMAT.md §16) of a volume with files,
// made without copying, mounted read-write by two hosts while the source
// is mounted read-write too. Both sides change; each sees only its own
// changes; the clone holds objects only for what it changed; gc on both
// keeps everything either needs; fsck finds both healthy.
func TestCloneOnRealMounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.mount()
	const ext = 64 << 10
	big := content("big", 3*ext+11)
	write(t, a.path("d/f"), big)
	write(t, a.path("d/g"), []byte("gee"))
	write(t, a.path("keep"), []byte("kept"))
	write(t, a.path("d/sub/deep"), content("deep", ext+1))
	before := readTree(t, a.dir)
	inoOf := func(p string) uint64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	gID, deepID, subID := inoOf(a.path("d/g")), inoOf(a.path("d/sub/deep")), inoOf(a.path("d/sub"))

	// The clone: a pin in the source, then the clone's header, nothing else.
	ctx := t.Context()
	time.Sleep(1100 * time.Millisecond) // the writes above lie in an earlier second
	pin, err := snapshot.Create(ctx, f.store, f.vol.Keys, "csi-clone-c")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the pin's second is over
	cu := volume.URL{Bucket: f.url.Bucket, Prefix: "clone"}
	cvol, err := volume.FormatClone(ctx, f.store, cu, f.vol, pin.Name, pin.Time, 0)
	if err != nil {
		t.Fatal(err)
	}
	cf := &fixture{t: t, srv: f.srv, store: f.store, url: cu, vol: cvol}
	c1, c2 := cf.mount(), cf.mount()
	wantTree(t, "the clone as made", c1.dir, before)

	// Both sides change.
	srcLater := append([]byte(nil), big...)
	copy(srcLater[ext:], "SOURCE")
	write(t, a.path("d/f"), srcLater)
	if err := os.Remove(a.path("d/g")); err != nil {
		t.Fatal(err)
	}
	write(t, a.path("src-only"), []byte("s"))

	fd, err := os.OpenFile(c1.path("d/f"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte("CLONE"), 2*ext+3); err != nil {
		t.Fatal(err)
	}
	if err := fd.Close(); err != nil {
		t.Fatal(err)
	}
	cloneF := append([]byte(nil), big...)
	copy(cloneF[2*ext+3:], "CLONE")
	if err := os.Remove(c1.path("keep")); err != nil {
		t.Fatal(err)
	}
	write(t, c1.path("clone-only/x"), []byte("c"))

	srcTree := map[string]string{}
	cloneTree := map[string]string{}
	for k, v := range before {
		srcTree[k], cloneTree[k] = v, v
	}
	srcTree["d/f"], srcTree["src-only"] = string(srcLater), "s"
	delete(srcTree, "d/g")
	cloneTree["d/f"], cloneTree["clone-only"], cloneTree["clone-only/x"] = string(cloneF), "<dir>", "c"
	delete(cloneTree, "keep")

	// The other clone host sees the clone's changes (within a sync).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, errKeep := os.Stat(c2.path("keep"))
		x, errX := os.ReadFile(c2.path("clone-only/x"))
		df, errF := os.ReadFile(c2.path("d/f"))
		if os.IsNotExist(errKeep) && errX == nil && string(x) == "c" && errF == nil && bytes.Equal(df, cloneF) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantTree(t, "clone, second host", c2.dir, cloneTree)
	wantTree(t, "clone, first host", c1.dir, cloneTree)
	wantTree(t, "source", a.dir, srcTree)

	// Nothing of what the clone did not change is in its prefix.
	for _, id := range []uint64{gID, deepID, subID} {
		page, err := f.store.List(ctx, cvol.Keys.InodeDir(id), "", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Objects) > 0 {
			t.Errorf("the clone holds %s for an inode it never changed", page.Objects[0].Key)
		}
	}
	page, err := f.store.List(ctx, cvol.Keys.ExtentsPrefix(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 1 {
		t.Errorf("the clone holds %d extents, want 1 (the one it rewrote)", len(page.Objects))
	}

	// gc on both (retention 0): each keeps what it and the other need.
	for _, h := range []*host{a, c1, c2} {
		h.stop()
	}
	time.Sleep(3 * time.Second) // past the grace of 2 s
	for _, u := range []string{f.url.String(), cu.String()} {
		f.mustRun("gc", "--grace", "2s", "--retention", "0s", u)
	}
	for _, u := range []string{f.url.String(), cu.String()} {
		if out := f.mustRun("fsck", u); strings.Contains(out, "damage") && !strings.Contains(out, "no damage") {
			t.Errorf("fsck %s: %s", u, out)
		}
	}
	wantTree(t, "source after gc", f.mount().dir, srcTree)
	wantTree(t, "clone after gc", cf.mount().dir, cloneTree)
	// A read that needs the source's extents at the pin, uncached.
	got, err := os.ReadFile(filepath.Join(cf.mount().dir, "d/sub/deep"))
	if err != nil || !bytes.Equal(got, content("deep", ext+1)) {
		t.Errorf("the clone's unchanged d/sub/deep after gc: %v", err)
	}
}

// TestCloneCommand: s3gfs clone, from now and from a snapshot, on real
// mounts.
func TestCloneCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.mount()
	write(t, a.path("f"), []byte("one"))
	time.Sleep(1100 * time.Millisecond)
	f.mustRun("snapshot", "create", f.url.String(), "s1")
	time.Sleep(1100 * time.Millisecond)
	write(t, a.path("f"), []byte("two"))
	a.stop()
	now := volume.URL{Bucket: f.url.Bucket, Prefix: "now"}
	then := volume.URL{Bucket: f.url.Bucket, Prefix: "then"}
	if out := f.mustRun("clone", f.url.String(), now.String()); !strings.Contains(out, "cloned") {
		t.Fatalf("clone: %s", out)
	}
	f.mustRun("clone", "--snapshot", "s1", f.url.String(), then.String())
	if _, err := f.run("clone", f.url.String(), then.String()); err == nil {
		t.Error("a clone over an existing volume was made")
	}
	for u, want := range map[volume.URL]string{now: "two", then: "one"} {
		h := (&fixture{t: t, srv: f.srv, store: f.store, url: u}).mount()
		got, err := os.ReadFile(h.path("f"))
		if err != nil || string(got) != want {
			t.Errorf("clone %s: f = %q, %v; want %q", u, got, err, want)
		}
		write(t, h.path("f"), []byte("mine"))
	}
	b := f.mount()
	if got, err := os.ReadFile(b.path("f")); err != nil || string(got) != "two" {
		t.Errorf("the source after its clones wrote: %q, %v", got, err)
	}
	// The pin of the clone made "now" is not deleted by mistake.
	var pin string
	for _, line := range strings.Split(f.mustRun("snapshot", "list", f.url.String()), "\n") {
		if strings.HasPrefix(line, "clone-") {
			pin = strings.Fields(line)[0]
		}
	}
	if pin == "" {
		t.Fatal("snapshot list shows no clone- pin")
	}
	if out, err := f.run("snapshot", "delete", f.url.String(), pin); err == nil || !strings.Contains(out, "--force") {
		t.Errorf("deleting a clone's pin without --force: %v\n%s", err, out)
	}
}
