package reaper_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Rename decisions (FORMAT §5.5) and the reaper (§15.5 D7) and fsck.

// plantTx writes the next version of directory dir holding entries (a
// delta), as a rename host would, and the decision of tx (outcome 0: none).
func (e *tenv) plantTx(dir uint64, entries []format.Entry, tx uint64, outcome format.Outcome) {
	e.t.Helper()
	cur := e.newestOf(dir)
	next := *cur
	next.Version = cur.Version + 1
	next.Entries = entries
	obj, err := format.EncodeInode(&next)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.PutIfAbsent(ctx, e.vol.Keys.Inode(dir, next.Version), obj); err != nil {
		e.t.Fatal(err)
	}
	if outcome == 0 {
		return
	}
	obj, err = format.EncodeDecision(&format.Decision{Outcome: outcome, Host: 7, Writer: 7, Dirs: []uint64{dir}})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.PutIfAbsent(ctx, e.vol.Keys.Decision(tx), obj); err != nil {
		e.t.Fatal(err)
	}
}

// TestDecisionsKeptWhileNamed: a commit decision stays while a kept
// directory version holds a pending entry of it, and goes once none does;
// an abort goes once older than the grace period.
func TestDecisionsKeptWhileNamed(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "/d/f", []byte("moved"))
	f, err := lookup(fs, "/d/f")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := lookup(fs, "/d")
	fs.Close(ctx)
	const committed, aborted = 0x1111, 0x2222
	e.advance(time.Second)
	e.plantTx(d, []format.Entry{{Op: format.EntryPendingPut, Name: "g", Child: f, ChildKind: format.KindFile, Tx: committed, Host: 7}}, committed, format.Commit)
	e.advance(time.Second)
	e.plantTx(d, []format.Entry{{Op: format.EntryPendingRemove, Name: "f", Tx: committed + 1, Host: 7}}, aborted, format.Abort)

	// The commit applies: g names the file, f still does (its own
	// transaction, never decided, is not applied).
	r := e.host()
	if got, err := lookup(r, "/d/g"); err != nil || got != f {
		t.Fatalf("/d/g -> %x, %v; want %x", got, err, f)
	}
	if got, err := lookup(r, "/d/f"); err != nil || got != f {
		t.Fatalf("/d/f -> %x, %v; want %x (its pending remove is undecided)", got, err, f)
	}
	ck := e.fsck()
	if !strings.Contains(strings.Join(ck.Warnings, "\n"), "undecided") {
		t.Fatalf("fsck does not report the undecided pending entry: %q", ck.Warnings)
	}
	e.advance(time.Hour)
	rep := e.gc(reaper.Config{Retention: 0, Grace: time.Minute, Owner: "test"})
	if rep.Planned[reaper.KindDecision] != 1 || e.count("t/") != 1 {
		t.Fatalf("planned %d decisions, %d left; want the abort gone and the commit kept", rep.Planned[reaper.KindDecision], e.count("t/"))
	}
	if _, _, err := e.store.Get(ctx, e.vol.Keys.Decision(committed)); err != nil {
		t.Fatalf("the commit decision a kept version names is gone: %v", err)
	}
	// A host writes the directory: it folds the decided entry; once a
	// full version follows (delta chains are at most 64 long), the
	// versions holding it become superseded.
	w := e.host()
	put(t, w, "/d/other", []byte("o"))
	for i := 0; i < format.MaxDeltaChain; i++ {
		put(t, w, fmt.Sprintf("/d/o%d", i), []byte("o"))
	}
	w.Close(ctx)

	for _, x := range e.newestOf(d).Entries {
		if x.Tx == committed {
			t.Fatalf("the writer did not fold %+v", x)
		}
	}
	if got, err := lookup(e.host(), "/d/g"); err != nil || got != f {
		t.Fatalf("after folding /d/g -> %x, %v", got, err)
	}
	e.advance(time.Hour)
	e.gc(reaper.Config{Retention: 0, Grace: time.Minute, Owner: "test"})
	if n := e.count("t/"); n != 0 {
		t.Fatalf("%d decisions left after no kept version names them\n%s", n, e.debugDir(d))
	}
	if got, err := lookup(e.host(), "/d/g"); err != nil || got != f {
		t.Fatalf("after the pass /d/g -> %x, %v", got, err)
	}
	e.fsck()
}

// TestDecisionsYoungKept: a decision younger than the grace period stays
// whatever names it; a corrupt one stays and is reported (fsck: damage).
func TestDecisionsYoungKept(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	put(t, fs, "/d/f", []byte("x"))
	fs.Close(ctx)
	obj, _ := format.EncodeDecision(&format.Decision{Outcome: format.Abort, Host: 1, Writer: 1})
	e.store.PutIfAbsent(ctx, e.vol.Keys.Decision(0x33), obj)
	e.store.PutIfAbsent(ctx, e.vol.Keys.Decision(0x44), []byte("not a decision"))
	rep := e.gc(reaper.Config{Retention: 0, Grace: time.Minute, Owner: "test"})
	if rep.Planned[reaper.KindDecision] != 0 || e.count("t/") != 2 {
		t.Fatalf("young decisions deleted: planned %d", rep.Planned[reaper.KindDecision])
	}
	e.advance(time.Hour)
	rep = e.gc(reaper.Config{Retention: 0, Grace: time.Minute, Owner: "test"})
	if rep.Planned[reaper.KindDecision] != 1 || e.count("t/") != 1 {
		t.Fatalf("planned %d, left %d: want the old abort gone and the corrupt one kept", rep.Planned[reaper.KindDecision], e.count("t/"))
	}
	ck, err := reaper.Check(ctx, e.vol, reaper.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ck.Healthy() || !strings.Contains(strings.Join(ck.Damage, "\n"), "t/0000000000000044") {
		t.Fatalf("fsck damage %q: want the corrupt decision", ck.Damage)
	}
}

func (e *tenv) debugDir(id uint64) string {
	var b strings.Builder
	for _, k := range e.keysUnder(e.vol.Keys.InodeDir(id)) {
		obj, _, _ := e.store.Get(ctx, k)
		n, _ := format.DecodeInode(obj, e.vol.Header.ExtentSize)
		fmt.Fprintf(&b, "v%d base %d txids %v\n", n.Version, n.Base, format.Txids(n.Entries))
	}
	return b.String()
}
