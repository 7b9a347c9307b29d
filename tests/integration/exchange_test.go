package integration

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRenameExchangeAcrossDirectories: renameat2(RENAME_EXCHANGE) of
// names in two directories swaps them through the kernel (it answered
// EINVAL before such an exchange became a rename transaction), a file
// with a directory as well as two files, and a fresh mount finds them
// swapped in the store.
func TestRenameExchangeAcrossDirectories(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	p := m.path
	must(t, "mkdir a", os.Mkdir(p("a"), 0o755))
	must(t, "mkdir b", os.Mkdir(p("b"), 0o755))
	must(t, "write a/f", os.WriteFile(p("a", "f"), []byte("file f"), 0o644))
	must(t, "write b/g", os.WriteFile(p("b", "g"), []byte("file g"), 0o644))
	must(t, "mkdir b/d", os.Mkdir(p("b", "d"), 0o700))
	must(t, "write b/d/in", os.WriteFile(p("b", "d", "in"), []byte("in d"), 0o644))
	fIno, dIno := statT(t, p("a", "f")).Ino, statT(t, p("b", "d")).Ino
	xchg := func(what, from, to string) {
		t.Helper()
		must(t, what, unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_EXCHANGE))
	}
	xchg("exchange a/f and b/g", p("a", "f"), p("b", "g"))
	xchg("exchange a/f (now g) and b/d", p("a", "f"), p("b", "d"))
	check := func(when string) {
		t.Helper()
		wantFile(t, p("b", "g"), []byte("file f"))
		wantFile(t, p("b", "d"), []byte("file g"))
		wantMode(t, p("a", "f"), syscall.S_IFDIR, 0o700)
		wantFile(t, p("a", "f", "in"), []byte("in d"))
		if st := statT(t, p("b", "g")); st.Ino != fIno {
			t.Errorf("%s: b/g is inode %d, want a/f's %d", when, st.Ino, fIno)
		}
		if st := statT(t, p("a", "f")); st.Ino != dIno {
			t.Errorf("%s: a/f is inode %d, want b/d's %d", when, st.Ino, dIno)
		}
		wantNlink(t, p("a"), 3) // a gained a subdirectory
		wantNlink(t, p("b"), 2) // b lost its
	}
	check("after the exchanges")
	m.remount()
	check("after a remount")
}
