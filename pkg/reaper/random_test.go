package reaper_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// TestRandomizedSafety runs random namespace and data operations through
// the vfs engine with the store's clock advancing, open handles held on
// two pinging hosts, snapshots made and deleted, and gc passes between.
// After every pass: the present state, every pin, and every recorded
// instant the volume says is still mountable read back exactly as
// recorded; instants before the recorded horizon are refused; every held
// handle still reads what it opened; fsck is clean.
// S3GFS_REAPER_SEED replays a seed; S3GFS_REAPER_STEPS sets the length.
func TestRandomizedSafety(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("S3GFS_REAPER_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	steps := 300
	if s := os.Getenv("S3GFS_REAPER_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		steps = 60
	}
	t.Logf("seed %d (S3GFS_REAPER_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	e := newTEnv(t)
	w := e.host()
	// Holders ping (announcing what their open handles read) only when the
	// test says so; an hour's sync interval gives a 3h expiry, so the
	// clock may jump between their pings.
	holders := []*vfs.FS{}
	for range 2 {
		holders = append(holders, e.host(func(o *vfs.Options) {
			o.SyncInterval, o.HostExpiry, o.CacheSize, o.Readahead = time.Hour, 3*time.Hour, -1, 1
		}))
	}
	pingAll := func() {
		for _, h := range holders {
			if err := h.Sync(ctx); err != nil {
				t.Fatalf("holder ping: %v", err)
			}
		}
	}

	type handle struct {
		fs   *vfs.FS
		h    *vfs.Handle
		path string
		want string
		// alt: another acceptable content, that of an earlier handle on
		// the same inode and host (vfs has kept one version per inode per
		// host while any handle is open; a newer engine pins per handle).
		// The first read settles which; after it the handle must not change.
		alt    string
		hasAlt bool
		step   int
	}
	settle := func(o *handle, got string) bool {
		if got == o.want {
			o.hasAlt = false
			return true
		}
		if o.hasAlt && got == o.alt {
			o.want, o.hasAlt = o.alt, false
			return true
		}
		return false
	}
	model := map[string]string{}
	var history []instant
	pins := map[string]instant{}
	var open []handle
	dirs := []string{"/a", "/b", "/a/c"}
	record := func() {
		// The memstore stamps an operation's commits at the clock's time
		// plus a nanosecond each: the instant after them is a millisecond on.
		history = append(history, instant{e.clock().Add(time.Millisecond), maps.Clone(model)})
	}
	randomFile := func() string {
		return fmt.Sprintf("%s/f%d", dirs[rng.IntN(len(dirs))], rng.IntN(4))
	}
	existing := func(prefix string) []string {
		var out []string
		for p, v := range model {
			if v != "<dir>" && strings.HasPrefix(p, prefix) {
				out = append(out, p)
			}
		}
		return out
	}
	pick := func(list []string) string {
		if len(list) == 0 {
			return ""
		}
		// Map iteration order is random; sort for a replayable seed.
		slices.Sort(list)
		return list[rng.IntN(len(list))]
	}
	mkdirAll := func(path string) {
		parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
		for i := range parts {
			model["/"+strings.Join(parts[:i+1], "/")] = "<dir>"
		}
		mkdirs(t, w, path)
	}
	gcs := 0
	check := func() {
		// Present state, from a fresh host.
		got, err := tree(e.host())
		if err != nil {
			t.Fatalf("read the present tree: %v", err)
		}
		if d := diffTrees(got, model); d != "" {
			t.Fatalf("present tree after gc:\n%s", d)
		}
		rec, err := snapshot.ReadRecord(ctx, e.store, e.vol.Keys)
		if err != nil {
			t.Fatal(err)
		}
		var views []instant
		for _, p := range pins {
			views = append(views, p)
		}
		for range 4 {
			views = append(views, history[rng.IntN(len(history))])
		}
		for _, v := range views {
			err := snapshot.CheckAsOf(ctx, e.vol, v.t, false)
			if _, pinned := pinAt(pins, v.t); rec != nil && v.t.Before(rec.Horizon) && !pinned {
				if !errors.Is(err, snapshot.ErrTooOld) {
					t.Fatalf("as-of %s before the horizon %s: %v", v.t, rec.Horizon, err)
				}
				continue
			}
			fs, err := e.asOf(v.t)
			if err != nil {
				t.Fatalf("as-of %s (horizon %v): %v", v.t, rec, err)
			}
			got, err := tree(fs)
			fs.Close(ctx)
			if err != nil {
				t.Fatalf("as-of %s: %v", v.t, err)
			}
			if d := diffTrees(got, v.tree); d != "" {
				t.Fatalf("as-of %s after gc %d:\n%s", v.t, gcs, d)
			}
		}
		for i := range open {
			o := &open[i]
			got, err := readAll(o.fs, o.h)
			if err != nil || !settle(o, string(got)) {
				vs, _ := reaper.Versions(ctx, e.vol, o.h.ID())
				var desc []string
				for _, v := range vs {
					desc = append(desc, fmt.Sprintf("v%d %s %s size %d", v.Version, v.Time.Format(time.RFC3339Nano), v.Kind, v.Size))
				}
				t.Fatalf("held handle on %s (inode %016x, opened at step %d): %v, got %d bytes %q..., want %d bytes %q...\nversions:\n%s",
					o.path, o.h.ID(), o.step, err, len(got), clip(string(got)), len(o.want), clip(o.want), strings.Join(desc, "\n"))
			}
		}
		e.fsck()
	}

	mkdirAll("/a/c")
	mkdirAll("/b")
	record()
	for step := range steps {
		e.advance(time.Duration(1+rng.IntN(90)) * time.Minute)
		pingAll()
		switch op := rng.IntN(20); {
		case op < 7: // write a whole file
			p := randomFile()
			n := rng.IntN(3*extSize + 10)
			if rng.IntN(3) == 0 {
				n = rng.IntN(100)
			}
			content := strings.Repeat(string(rune('a'+rng.IntN(26))), n)
			put(t, w, p[1:], []byte(content))
			model[p] = content
		case op < 9: // unlink
			if p := pick(existing("/")); p != "" {
				dir, name := splitPath(p[1:])
				if err := w.Unlink(ctx, mustLookup(t, w, dir), name); err != nil {
					t.Fatalf("unlink %s: %v", p, err)
				}
				delete(model, p)
			}
		case op < 11: // rename a file, maybe across directories, maybe over another
			if p := pick(existing("/")); p != "" {
				q := randomFile()
				if q != p {
					od, on := splitPath(p[1:])
					nd, nn := splitPath(q[1:])
					if err := w.Rename(ctx, mustLookup(t, w, od), on, mustLookup(t, w, nd), nn, 0); err != nil {
						t.Fatalf("rename %s %s: %v", p, q, err)
					}
					model[q] = model[p]
					delete(model, p)
				}
			}
		case op < 12: // a new directory, or removing an empty one
			d := fmt.Sprintf("/b/d%d", rng.IntN(3))
			if _, ok := model[d]; !ok {
				mkdirAll(d)
				dirs = append(dirs, d)
			} else if len(existing(d+"/")) == 0 {
				if err := w.Rmdir(ctx, mustLookup(t, w, "b"), d[3:]); err != nil {
					t.Fatalf("rmdir %s: %v", d, err)
				}
				delete(model, d)
				dirs = slicesDelete(dirs, d)
			}
		case op < 13: // snapshot
			name := fmt.Sprintf("s%d", step)
			p, err := snapshot.Create(ctx, e.store, e.vol.Keys, name)
			if err != nil {
				t.Fatal(err)
			}
			pins[name] = instant{p.Time, maps.Clone(model)}
		case op < 14: // delete a snapshot
			for name := range pins {
				snapshot.Delete(ctx, e.store, e.vol.Keys, name)
				delete(pins, name)
				break
			}
		case op < 15: // open a handle on a holder host, announce it
			if p := pick(existing("/")); p != "" {
				h := holders[rng.IntN(len(holders))]
				id, err := lookup(h, p)
				if err != nil {
					t.Fatalf("holder lookup %s: %v", p, err)
				}
				hd, _, err := h.Open(ctx, id, false)
				if err != nil {
					t.Fatalf("holder open %s: %v", p, err)
				}
				nh := handle{fs: h, h: hd, path: p, want: model[p], step: step}
				for _, o := range open {
					if o.fs == h && o.h.ID() == id {
						nh.alt, nh.hasAlt = o.want, true
					}
				}
				open = append(open, nh)
				if os.Getenv("S3GFS_REAPER_TRACE") != "" {
					t.Logf("step %d: holder opens %s: inode %016x", step, p, id)
				}
				pingAll()
			}
		case op < 17: // close a handle, after reading it through
			if len(open) > 0 {
				i := rng.IntN(len(open))
				o := &open[i]
				got, err := readAll(o.fs, o.h)
				if err != nil || !settle(o, string(got)) {
					t.Fatalf("handle on %s: %v, got %q..., want %q...", o.path, err, clip(string(got)), clip(o.want))
				}
				o.fs.Release(ctx, o.h)
				open = append(open[:i], open[i+1:]...)
				pingAll()
			}
		default: // gc
			retention := []time.Duration{0, time.Hour, 5 * time.Hour}[rng.IntN(3)]
			r := e.gc(reaper.Config{Retention: retention, Grace: 30 * time.Minute})
			gcs++
			t.Logf("step %d: gc: horizon %s deleted %v kept %v orphans %d", step, r.Horizon.Format(time.RFC3339), r.Deleted, r.Kept, len(r.Orphans))
			check()
		}
		record()
		if os.Getenv("S3GFS_REAPER_TRACE") != "" {
			t.Logf("step %d at %s: %v", step, e.clock().Format(time.RFC3339), model)
		}
	}
	e.advance(24 * time.Hour)
	pingAll()
	e.gc(reaper.Config{Retention: 0, Grace: 30 * time.Minute})
	check()
	// With every handle closed and no snapshot, a pass leaves the newest
	// versions only (and their delta chains).
	for _, o := range open {
		o.fs.Release(ctx, o.h)
	}
	open = nil
	for name := range pins {
		snapshot.Delete(ctx, e.store, e.vol.Keys, name)
		delete(pins, name)
	}
	e.advance(24 * time.Hour)
	pingAll()
	r := e.gc(reaper.Config{Retention: 0, Grace: 30 * time.Minute})
	check()
	if r.Deleted[reaper.KindVersion]+r.Deleted[reaper.KindTombstone] == 0 && gcs > 3 {
		t.Logf("note: the last pass deleted nothing: %v", r.Deleted)
	}
	files := 0
	for _, v := range model {
		if v != "<dir>" && len(v) > 0 {
			files++
		}
	}
	if got := e.count("d/"); got > files*4 {
		t.Fatalf("%d extents left for %d files of at most 4 extents", got, files)
	}
	if gcs == 0 {
		t.Fatal("no gc pass ran")
	}
}

// instant is the tree as it was at a store time.
type instant struct {
	t    time.Time
	tree map[string]string
}

func pinAt(pins map[string]instant, t time.Time) (string, bool) {
	for name, p := range pins {
		if p.t.Equal(t) {
			return name, true
		}
	}
	return "", false
}

func slicesDelete(s []string, v string) []string {
	out := s[:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
