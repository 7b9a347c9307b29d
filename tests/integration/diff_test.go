package integration

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// diffOp is one operation of the differential test, applied to a root.
type diffOp struct {
	desc string
	run  func(root string) error
}

// sameErrnoClass reports whether two outcomes of one operation agree: both
// succeeded, or both failed with the same errno, or with errnos POSIX lets
// an implementation choose between.
func sameErrnoClass(a, b error) bool {
	ea, eb := errnoOf(a), errnoOf(b)
	if ea == eb {
		return true
	}
	class := func(e syscall.Errno) syscall.Errno {
		if e == syscall.ENOTEMPTY { // rename/rmdir of a non-empty directory: EEXIST or ENOTEMPTY
			return syscall.EEXIST
		}
		return e
	}
	return ea != 0 && eb != 0 && class(ea) == class(eb)
}

// diffGen generates random operations over a small namespace, so that names
// collide often and every error path is taken. It looks at the reference
// tree before each operation, so that most operations name things that
// exist.
type diffGen struct {
	rng     *rand.Rand
	parents []string
	leaves  []string
	// The reference tree before the operation: its directories (with ""
	// for the root), its other names, and all names.
	dirs, files, all []string
}

func newDiffGen(seed uint64) *diffGen {
	return &diffGen{
		rng: rand.New(rand.NewPCG(seed, 0xd1ff)),
		// Some parents may be files or missing: ENOTDIR and ENOENT paths.
		parents: []string{"", "d1", "d2", "d1/d3", "d2/d4", "a", "x/y"},
		// Names are bytes: not UTF-8, control characters, a full 255.
		leaves: []string{"a", "b", "c", "e", "f", "d1", "d2", "d3", "d4", "d5", "l", "\xff\xfe\n\t x", strings.Repeat("L", 255)},
	}
}

// scan records the names in the reference tree at root.
func (g *diffGen) scan(t testing.TB, root string) {
	g.dirs, g.files, g.all = []string{""}, nil, nil
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		g.all = append(g.all, rel)
		if d.IsDir() {
			if strings.Count(rel, "/") < 3 {
				g.dirs = append(g.dirs, rel)
			}
		} else {
			g.files = append(g.files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
}

func (g *diffGen) oneOf(xs []string) string { return xs[g.rng.IntN(len(xs))] }

// newPath is a name in an existing directory, mostly.
func (g *diffGen) newPath() string {
	parent := g.oneOf(g.dirs)
	if g.rng.IntN(5) == 0 {
		parent = g.oneOf(g.parents)
	}
	return filepath.Join(parent, g.oneOf(g.leaves))
}

// path is an existing name half of the time.
func (g *diffGen) path() string {
	if len(g.all) > 0 && g.rng.IntN(2) == 0 {
		return g.oneOf(g.all)
	}
	return g.newPath()
}

// filePath is an existing non-directory most of the time.
func (g *diffGen) filePath() string {
	if len(g.files) > 0 && g.rng.IntN(10) < 7 {
		return g.oneOf(g.files)
	}
	return g.path()
}

func (g *diffGen) pick(xs ...uint32) uint32 { return xs[g.rng.IntN(len(xs))] }

func (g *diffGen) next() diffOp {
	rng := g.rng
	switch k := rng.IntN(100); {
	case k < 16:
		p := g.newPath()
		mode := g.pick(0o644, 0o600, 0o755, 0o444, 0o4755, 0o2750, 0o000)
		return diffOp{fmt.Sprintf("create %s %o", p, mode), func(root string) error {
			fd, err := syscall.Open(filepath.Join(root, p), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, mode)
			if err != nil {
				return err
			}
			return syscall.Close(fd)
		}}
	case k < 36:
		p := g.filePath()
		var off, n int
		switch rng.IntN(4) {
		case 0:
			off, n = rng.IntN(4096), 1+rng.IntN(4096)
		case 1:
			off, n = rng.IntN(3*testExtentSize), 1+rng.IntN(testExtentSize*3/2)
		case 2: // across an extent boundary
			b := (1 + rng.IntN(3)) * testExtentSize
			off = b - 1 - rng.IntN(500)
			n = b - off + 1 + rng.IntN(500)
		default:
			off, n = rng.IntN(64), 1+rng.IntN(64)
		}
		data := randBytes(rng, n)
		flags := syscall.O_WRONLY
		if rng.IntN(4) == 0 {
			flags |= syscall.O_CREAT
		}
		if rng.IntN(6) == 0 {
			flags |= syscall.O_TRUNC
		}
		return diffOp{fmt.Sprintf("write %s flags %#x %d bytes at %d", p, flags, n, off), func(root string) error {
			fd, err := syscall.Open(filepath.Join(root, p), flags, 0o640)
			if err != nil {
				return err
			}
			_, werr := syscall.Pwrite(fd, data, int64(off))
			cerr := syscall.Close(fd)
			if werr != nil {
				return werr
			}
			return cerr
		}}
	case k < 43:
		p := g.filePath()
		var size int64
		switch rng.IntN(3) {
		case 0:
			size = int64(rng.IntN(100))
		case 1:
			size = int64(rng.IntN(3 * testExtentSize))
		default:
			size = int64((1+rng.IntN(2))*testExtentSize + rng.IntN(3) - 1)
		}
		return diffOp{fmt.Sprintf("truncate %s %d", p, size), func(root string) error {
			return syscall.Truncate(filepath.Join(root, p), size)
		}}
	case k < 56:
		p := g.newPath()
		mode := g.pick(0o755, 0o700, 0o711, 0o777, 0o1777, 0o2755)
		return diffOp{fmt.Sprintf("mkdir %s %o", p, mode), func(root string) error {
			return syscall.Mkdir(filepath.Join(root, p), mode)
		}}
	case k < 60:
		p := g.path()
		if len(g.dirs) > 1 && rng.IntN(2) == 0 {
			p = g.oneOf(g.dirs[1:])
		}
		return diffOp{"rmdir " + p, func(root string) error { return syscall.Rmdir(filepath.Join(root, p)) }}
	case k < 66:
		p := g.path()
		return diffOp{"unlink " + p, func(root string) error { return syscall.Unlink(filepath.Join(root, p)) }}
	case k < 78:
		p, q := g.path(), g.path()
		return diffOp{fmt.Sprintf("rename %s %s", p, q), func(root string) error {
			return syscall.Rename(filepath.Join(root, p), filepath.Join(root, q))
		}}
	case k < 86:
		p, q := g.filePath(), g.newPath()
		return diffOp{fmt.Sprintf("link %s %s", p, q), func(root string) error {
			return syscall.Link(filepath.Join(root, p), filepath.Join(root, q))
		}}
	case k < 93:
		// Targets are relative names without "..", or a missing absolute
		// path, so resolving them never leaves the root.
		var target string
		switch rng.IntN(4) {
		case 0:
			target = "/nonexistent-s3gfs-target/" + g.leaves[rng.IntN(len(g.leaves))]
		case 1:
			target = strings.Repeat("z", 1+rng.IntN(300))
		default:
			target = g.path()
		}
		p := g.newPath()
		return diffOp{fmt.Sprintf("symlink %q %s", target, p), func(root string) error {
			return syscall.Symlink(target, filepath.Join(root, p))
		}}
	default:
		p := g.path()
		mode := g.pick(0o644, 0o600, 0o755, 0o700, 0o4755, 0o2755, 0o1777, 0o444, 0o000)
		return diffOp{fmt.Sprintf("chmod %s %o", p, mode), func(root string) error {
			return syscall.Chmod(filepath.Join(root, p), mode)
		}}
	}
}

// TestDifferential applies random sequences of operations to the mount
// and to a local directory: every operation must succeed or fail alike, and
// the trees must be identical along the way, at the end and after a
// remount. Each sequence runs on its own volume.
func TestDifferential(t *testing.T) {
	t.Parallel()
	seed := testSeed(t)
	for i := uint64(0); i < 4; i++ {
		// Half the sequences run with the kernel caching nothing, so that
		// every lookup and stat reaches the engine.
		timeout := time.Duration(0)
		if i%2 == 1 {
			timeout = time.Nanosecond
		}
		t.Run(fmt.Sprintf("seq%d", i), func(t *testing.T) {
			t.Parallel()
			t.Logf("sequence seed %d, kernel cache timeout %v", seed+i, timeout)
			differential(t, seed+i, 500, timeout)
		})
	}
}

func differential(t *testing.T, seed uint64, ops int, timeout time.Duration) {
	m := mountVolume(t, mountOpts{Timeout: timeout})
	local := t.TempDir()
	g := newDiffGen(seed)
	mismatches, failed := 0, 0
	var history []string
	dumpHistory := func() { t.Logf("history:\n%s", strings.Join(history, "\n")) }
	for i := 0; i < ops; i++ {
		g.scan(t, local)
		op := g.next()
		errM := op.run(m.Dir)
		errL := op.run(local)
		history = append(history, fmt.Sprintf("#%d %s: local %v, mount %v", i, op.desc, errL, errM))
		if errL != nil {
			failed++
		}
		if !sameErrnoClass(errM, errL) {
			mismatches++
			t.Errorf("op #%d %s: mount gave %v, local gave %v", i, op.desc, errM, errL)
			if mismatches >= 5 {
				dumpHistory()
				t.FailNow()
			}
		}
		if (i+1)%100 == 0 {
			compareTrees(t, fmt.Sprintf("after op #%d", i), readTree(t, m.Dir, false), readTree(t, local, false))
			if t.Failed() {
				dumpHistory()
				t.FailNow()
			}
		}
	}
	want := readTree(t, local, false)
	if len(want) < 5 {
		t.Errorf("the random sequence left only %d names; the comparison proves little", len(want))
	}
	t.Logf("%d operations, %d failed alike; %d names in the final tree", ops, failed, len(want))
	compareTrees(t, "at the end", readTree(t, m.Dir, false), want)
	m.remount()
	compareTrees(t, "after remount", readTree(t, m.Dir, false), want)
	checkBucket(t, m)
	if t.Failed() {
		dumpHistory()
	}
}
