package vfs_test

import (
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// RENAME_EXCHANGE across two directories is a rename transaction
// (FORMAT.md §5.5 X2x): both names swap at the decision, for every host
// and across a crash.

// xchCase is one pair of entries to exchange: s/x and d/y.
type xchCase struct {
	name       string
	xDir, yDir bool
}

var xchCases = []xchCase{
	{"file and file", false, false},
	{"file and directory", false, true},
	{"directory and directory", true, true},
}

// setup makes s/x and d/y on host a; directories hold a file naming
// their origin.
func (c xchCase) setup(t *testing.T, a *vfs.FS) (s, d, x, y uint64) {
	t.Helper()
	s, d = mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	mk := func(parent uint64, name string, dir bool) uint64 {
		if !dir {
			return writeFile(t, a, parent, name, []byte("file "+name))
		}
		id := mkdir(t, a, parent, name)
		writeFile(t, a, id, "in", []byte("in "+name))
		return id
	}
	return s, d, mk(s, "x", c.xDir), mk(d, "y", c.yDir)
}

// swapped reports whether fs sees s/x and d/y exchanged (true) or as they
// were (false), failing on anything else (a mix of the two).
func swapped(t *testing.T, fs *vfs.FS, s, d, x, y uint64, what string) bool {
	t.Helper()
	ax, ay := lookup(t, fs, s, "x"), lookup(t, fs, d, "y")
	switch {
	case ax.Ino == x && ay.Ino == y:
		return false
	case ax.Ino == y && ay.Ino == x:
		return true
	}
	t.Fatalf("%s: s/x -> %x, d/y -> %x: neither as before (%x, %x) nor exchanged", what, ax.Ino, ay.Ino, x, y)
	return false
}

// noPending fails when a directory's newest version keeps a pending entry.
func noPending(t *testing.T, e *env, dirs ...uint64) {
	t.Helper()
	for _, dir := range dirs {
		for _, x := range e.newest(dir).Entries {
			if x.Op.Pending() {
				t.Fatalf("directory %x keeps pending entry %+v", dir, x)
			}
		}
	}
}

func TestRenameExchangeAcrossDirectories(t *testing.T) {
	for _, c := range xchCases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.engine()
			s, d, x, y := c.setup(t, a)
			must(t, a.Rename(ctx, s, "x", d, "y", vfs.RenameExchange))
			for _, fs := range []*vfs.FS{a, e.engine()} {
				if !swapped(t, fs, s, d, x, y, "after the exchange") {
					t.Fatal("the exchange did nothing")
				}
			}
			noPending(t, e, s, d)
			if c.yDir {
				// The directory now at s/x keeps its content.
				if got := string(readFile(t, e.engine(), lookup(t, a, lookup(t, a, s, "x").Ino, "in").Ino)); got != "in y" {
					t.Fatalf("s/x/in holds %q", got)
				}
			}
			// And back again.
			must(t, a.Rename(ctx, d, "y", s, "x", vfs.RenameExchange))
			if swapped(t, e.engine(), s, d, x, y, "after exchanging back") {
				t.Fatal("the second exchange did nothing")
			}
		})
	}
}

// TestRenameExchangeCrashAtEachStep: an exchange stopped at any step
// leaves both names as they were (before the decision) or both
// exchanged (after), on every host, and the names stay writable.
func TestRenameExchangeCrashAtEachStep(t *testing.T) {
	for _, c := range xchCases {
		for _, stop := range []string{"src", "dst", "decide", "decided"} {
			t.Run(c.name+"/"+stop, func(t *testing.T) {
				e := newEnv(t)
				a := e.engine()
				s, d, x, y := c.setup(t, a)
				a.SetRenameHook(func(step string) bool { return step != stop })
				if err := a.Rename(ctx, s, "x", d, "y", vfs.RenameExchange); err == nil {
					t.Fatal("the stopped exchange reported success")
				}
				b := e.engine()
				if got := swapped(t, b, s, d, x, y, "after the crash"); got != (stop == "decided") {
					t.Fatalf("exchanged: %v after a crash at %q", got, stop)
				}
				writeFile(t, b, s, "other", []byte("o"))
				writeFile(t, b, d, "other", []byte("o"))
				if got := swapped(t, e.engine(), s, d, x, y, "after other writes"); got != (stop == "decided") {
					t.Fatal("other writes changed the outcome")
				}
				if stop == "decided" {
					noPending(t, e, s, d)
				}
			})
		}
	}
}

// TestRenameExchangeTargetChanged: another host removes d/y while the
// exchange is between its two directories; the exchange fails with ENOENT
// and is aborted: s/x keeps its inode, in every host's view.
func TestRenameExchangeTargetChanged(t *testing.T) {
	e := newEnv(t)
	a, b := e.engine(), e.engine()
	s, d, x, _ := xchCases[0].setup(t, a)
	a.SetRenameHook(func(step string) bool {
		if step == "src" {
			must(t, b.Unlink(ctx, d, "y"))
		}
		return true
	})
	wantErr(t, a.Rename(ctx, s, "x", d, "y", vfs.RenameExchange), vfs.ErrNotExist, "exchange with a name removed meanwhile")
	for _, fs := range []*vfs.FS{a, b, e.engine()} {
		if at := lookup(t, fs, s, "x"); at.Ino != x {
			t.Fatalf("s/x -> %x, want %x", at.Ino, x)
		}
		if _, err := fs.Lookup(ctx, d, "y"); err == nil {
			t.Fatal("d/y is back")
		}
	}
	noPending(t, e, s, d)
}

// TestRenameExchangeBornFiles: two empty files that have no version object
// of their own yet (born puts, FORMAT.md §5.4) are exchanged across
// directories: each gets its version first (a pending put cannot carry a
// birth), and both keep their identity and attributes on every host.
func TestRenameExchangeBornFiles(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	s, d := mkdir(t, a, root, "s"), mkdir(t, a, root, "d")
	x, hx := create(t, a, s, "x")
	closeH(t, a, hx)
	y, hy := create(t, a, d, "y")
	closeH(t, a, hy)
	must(t, a.Rename(ctx, s, "x", d, "y", vfs.RenameExchange))
	b := e.engine()
	if !swapped(t, b, s, d, x, y, "after the exchange") {
		t.Fatal("the exchange did nothing")
	}
	for _, id := range []uint64{x, y} {
		if at, err := b.GetAttr(ctx, id); err != nil || at.Size != 0 || at.Nlink != 1 {
			t.Fatalf("inode %x: %+v, %v", id, at, err)
		}
	}
	noPending(t, e, s, d)
}
