package torture

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of the checker itself on hand-made histories: it must accept every
// outcome some order of overlapping operations explains, and catch lost
// writes, lost namespace changes and resurrections.

type hist struct {
	ops []*Op
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func (h *hist) op(host int, k Kind, path, path2 string, start, end int, st Status, ino uint64, n int) *Op {
	o := &Op{ID: len(h.ops) + 1, Host: host, Kind: k, Path: path, Path2: path2, Start: ms(start), End: ms(end), Status: st, Ino: ino, N: n}
	h.ops = append(h.ops, o)
	return o
}

func dirNode(ino uint64) node { return node{Kind: 'd', Ino: ino, Nlink: 2} }

func fileNode(ino uint64, data []byte) node {
	return node{Kind: 'f', Ino: ino, Nlink: 1, Size: int64(len(data)), Data: data}
}

func categories(ps []Problem) string {
	var cs []string
	for _, p := range ps {
		cs = append(cs, p.Category)
	}
	return strings.Join(cs, ",")
}

func expect(t *testing.T, name string, h *hist, final tree, want string) {
	t.Helper()
	ps, st := check(h.ops, final, staleWindow, "")
	got := categories(ps)
	if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
		t.Errorf("%s: problems %q, want %q", name, got, want)
		for _, p := range ps {
			t.Logf("  %v", p)
		}
		t.Logf("  %v", st)
	}
}

func TestCheckerLostWrite(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	w1 := h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 2)
	w2 := h.op(2, OpWrite, "a/0", "", 5000, 5010, OK, 100, 3)
	expect(t, "last write kept", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w2))}, "")
	expect(t, "last write lost", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w1))}, "lost-write")
	expect(t, "file lost", h, tree{"a": dirNode(1)}, "lost-namespace")
	expect(t, "dir lost", h, tree{}, "lost-namespace")
}

func TestCheckerOverlapEitherOrder(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	w1 := h.op(1, OpWrite, "a/0", "", 5000, 5030, OK, 100, 2)
	w2 := h.op(2, OpWrite, "a/0", "", 5010, 5040, OK, 100, 3)
	expect(t, "first wins", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w1))}, "")
	expect(t, "second wins", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w2))}, "")
	// A mix is possible (one host's ftruncate, then the other's write,
	// then the first's write re-applied on top), but every chunk is at its
	// own position.
	mix := append(content(w2)[:32:32], content(w2)[32:]...)
	copy(mix, content(w1)[:16])
	expect(t, "mix", h, tree{"a": dirNode(1), "a/0": fileNode(100, mix)}, "")
	swapped := append(append([]byte(nil), content(w2)[16:32]...), content(w2)[:16]...)
	expect(t, "misplaced", h, tree{"a": dirNode(1), "a/0": fileNode(100, swapped)}, "provenance")
	expect(t, "both lost", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(h.ops[1]))}, "lost-write")
}

func TestCheckerOverwriteMerge(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	base := h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 4)
	o1 := h.op(1, OpOverwrite, "a/0", "", 5000, 5030, OK, 100, 1)
	o1.Off = 0
	o2 := h.op(2, OpOverwrite, "a/0", "", 5010, 5040, OK, 100, 1)
	o2.Off = 3
	// Disjoint ranges written at once on two hosts: both must survive.
	both := append([]byte(nil), content(base)...)
	copy(both[0:], content(o1))
	copy(both[48:], content(o2))
	expect(t, "both kept", h, tree{"a": dirNode(1), "a/0": fileNode(100, both)}, "")
	onlyOne := append([]byte(nil), content(base)...)
	copy(onlyOne[0:], content(o1))
	expect(t, "one range lost", h, tree{"a": dirNode(1), "a/0": fileNode(100, onlyOne)}, "lost-write")
}

func TestCheckerResurrection(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	w := h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	h.op(2, OpUnlink, "a/0", "", 3000, 3010, OK, 0, 0)
	expect(t, "unlinked", h, tree{"a": dirNode(1)}, "")
	expect(t, "resurrected", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w))}, "resurrected")
}

func TestCheckerIndeterminate(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	w := h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	h.op(2, OpUnlink, "a/0", "", 3000, 3010, Indet, 0, 0)
	expect(t, "unlink happened", h, tree{"a": dirNode(1)}, "")
	expect(t, "unlink did not happen", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w))}, "")
}

func TestCheckerRenames(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(0, OpMkdir, "b", "", 6, 9, OK, 0, 0)
	w := h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	h.op(2, OpRename, "a/0", "b/3", 3000, 3010, OK, 0, 0)
	h.op(1, OpRenameDir, "b", "c", 6000, 6010, OK, 0, 0)
	good := tree{"a": dirNode(1), "c": dirNode(2), "c/3": fileNode(100, content(w))}
	expect(t, "moved twice", h, good, "")
	expect(t, "rename lost", h, tree{"a": dirNode(1), "c": dirNode(2), "a/0": fileNode(100, content(w))}, "resurrected")
	if ps, _ := check(h.ops, tree{"a": dirNode(1), "c": dirNode(2), "a/0": fileNode(100, content(w))}, staleWindow, ""); len(ps) < 2 {
		t.Errorf("a lost rename should be reported for both names, got %v", ps)
	}
	expect(t, "dir rename lost", h, tree{"a": dirNode(1), "b": dirNode(2), "b/3": fileNode(100, content(w))}, "lost-namespace")
}

// A host may write through a name another host renamed away moments ago
// (its cached directory entry): the data lands in the renamed file.
func TestCheckerStaleName(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	h.op(2, OpRename, "a/0", "a/1", 3000, 3010, OK, 0, 0)
	w := h.op(1, OpWrite, "a/0", "", 3500, 3510, OK, 100, 2)
	expect(t, "stale write", h, tree{"a": dirNode(1), "a/1": fileNode(100, content(w))}, "")
	// The same long after the rename is a bug: a/0 must have been created.
	h.ops[3].Start, h.ops[3].End = ms(9000), ms(9010)
	expect(t, "write through a name renamed long ago", h, tree{"a": dirNode(1), "a/1": fileNode(100, content(w))}, "lost-namespace")
}

func TestCheckerExclusive(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	w := h.op(2, OpExcl, "a/0", "", 30, 40, OK, 200, 1)
	expect(t, "two O_EXCL creates succeed", h, tree{"a": dirNode(1), "a/0": fileNode(200, content(w))}, "precondition")
	h.ops[2].Start = ms(15) // overlapping: one should still have failed, but either order could be claimed; only the final state is checked
	expect(t, "overlapping O_EXCL creates", h, tree{"a": dirNode(1), "a/0": fileNode(200, content(w))}, "")
}

func TestCheckerCloseToOpen(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	w1 := h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	w2 := h.op(1, OpWrite, "a/0", "", 100, 120, OK, 100, 2)
	r := h.op(2, OpRead, "a/0", "", 200, 210, OK, 100, 0)
	final := tree{"a": dirNode(1), "a/0": fileNode(100, content(w2))}
	r.Data = encode(content(w2))
	expect(t, "fresh read", h, final, "")
	r.Data = encode(content(w1))
	expect(t, "stale read", h, final, "stale-read")
	r.Data = encode([]byte("garbage garbage!"))
	expect(t, "garbage read", h, final, "provenance")
}

func TestCheckerRmdir(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	h.op(2, OpRmdir, "a", "", 30, 40, OK, 0, 0)
	expect(t, "rmdir of a non-empty directory", h, tree{}, "precondition")
}

// An indeterminate write may still be committed after it returned (the
// engine retries dirty data): its data is possible at any later time.
func TestCheckerIndeterminateWriteLands(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	w := h.op(1, OpWrite, "a/0", "", 1000, 1010, Indet, 100, 2)
	w2 := h.op(2, OpWrite, "a/0", "", 5000, 5010, OK, 100, 3)
	expect(t, "late write-back", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w))}, "")
	expect(t, "last write", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w2))}, "")
	// But an indeterminate unlink can no longer happen after it returned.
	h.op(2, OpUnlink, "a/0", "", 6000, 6010, Indet, 0, 0)
	h.op(1, OpExcl, "a/0", "", 9000, 9010, OK, 200, 1)
	expect(t, "indeterminate unlink long before", h, tree{"a": dirNode(1)}, "lost-namespace")
}

// Runs must describe exactly the bytes they stand for.
func TestRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 300; iter++ {
		var want []byte
		var rs runs
		for k := 0; k < 6; k++ {
			op := &Op{ID: 1 + rng.IntN(5), Off: rng.IntN(40), N: rng.IntN(30)}
			data := content(op)
			off := op.Off * chunkSize
			if len(want) < off+len(data) {
				want = append(want, make([]byte, off+len(data)-len(want))...)
			}
			copy(want[off:], data)
			rs = rs.overlay(op.ID, op.Off, op.N, 0)
		}
		if got := rs.bytes(); !bytes.Equal(got, want) {
			t.Fatalf("overlay: %v is not %v", rs, encode(want))
		}
		if !encode(want).equal(rs) {
			t.Fatalf("encode: %v, overlay: %v", encode(want), rs)
		}
		garbage := append(append([]byte(nil), want...), "tail"...)
		if !bytes.Equal(encode(garbage).bytes(), garbage) {
			t.Fatalf("garbage round trip")
		}
	}
}

// An op that started while X ran may have taken effect before X did.
func TestCheckerPreconditionOverlap(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
	h.op(1, OpUnlink, "a/0", "", 100, 110, OK, 0, 0)
	h.op(0, OpUnlink, "a/0", "", 112, 500, OK, 0, 0)
	h.op(1, OpWrite, "a/0", "", 200, 230, OK, 200, 2)
	expect(t, "unlink of a name created while it ran", h, tree{"a": dirNode(1)}, "")
	h.ops[4].Start, h.ops[4].End = ms(600), ms(630)
	expect(t, "unlink of a name gone throughout", h, tree{"a": dirNode(1), "a/0": fileNode(200, content(h.ops[4]))}, "precondition")
}

// rename(2) of two names the kernel resolves (one through a stale cached
// entry) to one inode succeeds without reaching the filesystem.
func TestCheckerKernelNoopRename(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	w := h.op(1, OpExcl, "a/3", "", 10, 20, OK, 100, 1)
	h.op(1, OpRename, "a/3", "a/0", 1000, 1005, OK, 0, 0)
	h.op(2, OpRename, "a/3", "a/0", 1260, 1260, OK, 0, 0)
	expect(t, "stale rename", h, tree{"a": dirNode(1), "a/0": fileNode(100, content(w))}, "")

	// The mirror case (make load, seed 765800623): host 1 moves a/1 to
	// b/1; host 2, with a/1 still cached, renames b/1 back to a/1 and the
	// kernel says yes without asking; b/1 stays, and host 2 renames it on.
	h = &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(0, OpMkdir, "b", "", 6, 8, OK, 0, 0)
	w = h.op(1, OpExcl, "a/1", "", 10, 20, OK, 100, 1)
	h.op(1, OpRename, "a/1", "b/1", 1000, 1700, OK, 0, 0)
	h.op(2, OpRename, "b/1", "a/1", 1701, 1730, OK, 0, 0)
	h.op(2, OpRename, "b/1", "b/2", 2400, 2500, OK, 0, 0)
	expect(t, "stale rename back", h, tree{"a": dirNode(1), "b": dirNode(2), "b/2": fileNode(100, content(w))}, "")
	// Without the first move, nothing explains it.
	h.ops = append(h.ops[:3:3], h.ops[4:]...)
	expect(t, "rename back without a move", h, tree{"a": dirNode(1), "b": dirNode(2), "b/2": fileNode(100, content(w))}, "precondition")
}

// A cross-directory rename that fails with ENOENT (its source moved away
// by another host meanwhile) never showed its new name (FORMAT §5.5: a
// rename is atomic to every host): a host that renamed that name anyway,
// leaving the file with two names, is a precondition failure and a
// structure failure, with or without the failed rename.
func TestCheckerTransientRenameName(t *testing.T) {
	build := func(withFailed bool) (*hist, tree) {
		h := &hist{}
		for i, d := range []string{"a", "b", "c"} {
			h.op(0, OpMkdir, d, "", i, i+1, OK, 0, 0)
		}
		w := h.op(0, OpExcl, "a/0", "", 10, 20, OK, 100, 1)
		h.op(1, OpRename, "a/0", "c/0", 5000, 5010, OK, 0, 0)
		if withFailed {
			f := h.op(0, OpRename, "a/0", "b/1", 4990, 5300, Failed, 0, 0)
			f.Err = syscall.ENOENT.Error()
		}
		h.op(2, OpRename, "b/1", "b/2", 5100, 5110, OK, 0, 0)
		two := fileNode(100, content(w))
		two.Nlink = 2
		return h, tree{"a": dirNode(1), "b": dirNode(2), "c": dirNode(3), "c/0": two, "b/2": two}
	}
	h, final := build(true)
	expect(t, "transient name renamed", h, final, "structure")
	h, final = build(false)
	expect(t, "no failed rename to explain it", h, final, "precondition")
	expect(t, "no failed rename to explain it", h, final, "structure")
}

// A create that lost its name to another host's create (its host did
// not see the name yet) wrote into that host's file: explained once the
// op is attributed to that file (the host logs it), a provenance problem
// without it; and the file then holds the lost create's bytes exactly.
func TestCheckerLostCreate(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpCreate, "a/0", "", 10, 20, OK, 100, 4)
	lost := h.op(0, OpCreate, "a/0", "", 25, 40, OK, 555, 2)
	final := tree{"a": dirNode(1), "a/0": fileNode(100, content(lost))}
	expect(t, "unattributed", h, final, "provenance")
	if n := attributeLost(h.ops, map[uint64]uint64{555: 100}); n != 1 || lost.Ino != 100 || lost.Local != 555 {
		t.Fatalf("attributed %d ops; the lost create has ino %016x, local %016x", n, lost.Ino, lost.Local)
	}
	expect(t, "attributed", h, final, "")
	h.op(2, OpRead, "a/0", "", 100, 110, OK, 100, 0).Data = runs{}.add(run{op: 2, pos: 0, n: 4})
	expect(t, "the winner's bytes read after the lost create's close", h, final, "stale-read")
}

// A create whose open truncated the file (O_TRUNC) and whose next call
// failed records no inode: the file's content is unknown from then on,
// not a lost write.
func TestCheckerCreateTruncatedWithoutInode(t *testing.T) {
	h := &hist{}
	h.op(0, OpMkdir, "a", "", 0, 5, OK, 0, 0)
	h.op(1, OpWrite, "a/0", "", 10, 20, OK, 100, 4)
	h.op(2, OpCreate, "a/0", "", 30, 40, Indet, 0, 3)
	h.op(1, OpRead, "a/0", "", 100, 110, OK, 100, 0).Data = runs{}
	expect(t, "truncated by a create that recorded no inode", h, tree{"a": dirNode(1), "a/0": fileNode(100, nil)}, "")
}
