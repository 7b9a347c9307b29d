package torture

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"
)

// worker performs random operations on one host's mount and records them.
type worker struct {
	h     *host
	rec   *recorder
	rng   *rand.Rand
	gate  *gate
	avoid map[string]bool // S3GFS_TORTURE_AVOID
}

// gate lets the test pause a worker between two operations.
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	idle   bool // the worker is waiting at the gate, or has stopped
}

func newGate() *gate {
	g := &gate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// pass is called by the worker before each operation.
func (g *gate) pass() {
	g.mu.Lock()
	for g.paused {
		g.idle = true
		g.cond.Broadcast()
		g.cond.Wait()
	}
	g.idle = false
	g.mu.Unlock()
}

// pause returns once the worker is idle at the gate.
func (g *gate) pause() {
	g.mu.Lock()
	g.paused = true
	for !g.idle {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

func (g *gate) resume() {
	g.mu.Lock()
	g.paused = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// stopped marks the worker gone, so pause does not wait for it.
func (g *gate) stopped() {
	g.mu.Lock()
	g.idle = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (w *worker) run(stop <-chan struct{}) {
	defer w.gate.stopped()
	for {
		select {
		case <-stop:
			return
		default:
		}
		w.gate.pass()
		select {
		case <-stop:
			return
		default:
		}
		if w.step() == Indet {
			// Like an application retrying after EIO, and so that a host
			// fenced for a moment does not fill the history with
			// operations that fail at once.
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (w *worker) dir() string { return dirNames[w.rng.IntN(len(dirNames))] }

func (w *worker) leaf() string { return w.dir() + "/" + leafNames[w.rng.IntN(len(leafNames))] }

// weights of the operations.
var weights = []struct {
	k Kind
	w int
}{
	{OpWrite, 10}, {OpCreate, 8}, {OpExcl, 8}, {OpOverwrite, 14}, {OpRead, 16}, {OpUnlink, 10},
	{OpRename, 14}, {OpMkdir, 6}, {OpRmdir, 6}, {OpRenameDir, 3},
}

// step performs one random operation and returns its status.
func (w *worker) step() Status {
	total := 0
	for _, x := range weights {
		total += x.w
	}
	r := w.rng.IntN(total)
	k := OpWrite
	for _, x := range weights {
		if r < x.w {
			k = x.k
			break
		}
		r -= x.w
	}
	if w.avoid[k.String()] {
		k = OpRead
	}
	switch k {
	case OpMkdir:
		d := w.dir()
		return w.simple(k, d, "", func() error { return syscall.Mkdir(w.h.path(d), 0o755) })
	case OpRmdir:
		d := w.dir()
		return w.simple(k, d, "", func() error { return syscall.Rmdir(w.h.path(d)) })
	case OpRenameDir:
		a, b := w.dir(), w.dir()
		for b == a {
			b = w.dir()
		}
		return w.simple(k, a, b, func() error { return syscall.Rename(w.h.path(a), w.h.path(b)) })
	case OpUnlink:
		p := w.leaf()
		return w.simple(k, p, "", func() error { return syscall.Unlink(w.h.path(p)) })
	case OpRename:
		a := w.leaf()
		b := a
		for b == a {
			if w.rng.IntN(2) == 0 || w.avoid["xdir-rename"] {
				b = parentOf(a) + "/" + leafNames[w.rng.IntN(len(leafNames))]
			} else {
				b = w.leaf()
			}
		}
		return w.simple(k, a, b, func() error { return syscall.Rename(w.h.path(a), w.h.path(b)) })
	case OpWrite, OpCreate, OpExcl:
		return w.whole(k, w.leaf())
	case OpOverwrite:
		return w.overwrite(w.leaf())
	}
	return w.read(w.leaf())
}

// clean reports whether err promises that the call had no effect.
func clean(err error) bool {
	for _, e := range []error{syscall.ENOENT, syscall.EEXIST, syscall.ENOTEMPTY, syscall.ENOTDIR, syscall.EISDIR, syscall.EBUSY} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// fail records op as failed by err at its first system call.
func (w *worker) fail(op *Op, err error) Status {
	op.Err = errText(err)
	op.Status = Indet
	if clean(err) {
		op.Status = Failed
	}
	w.rec.finish(op)
	return op.Status
}

// broken records op as indeterminate: it failed after its file was opened.
func (w *worker) broken(op *Op, f *os.File, err error) Status {
	if f != nil {
		f.Close()
	}
	op.Err = errText(err)
	op.Status = Indet
	w.rec.finish(op)
	return Indet
}

func (w *worker) ok(op *Op) Status {
	op.Status = OK
	w.rec.finish(op)
	return OK
}

func (w *worker) simple(k Kind, a, b string, call func() error) Status {
	op := w.rec.begin(w.h.idx, k, a, b)
	if err := call(); err != nil {
		return w.fail(op, err)
	}
	return w.ok(op)
}

func inoOf(f *os.File) (uint64, int64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	return st.Ino, st.Size, nil
}

// chunks draws a write length: mostly tiny (inline), some around the
// inline limit, a few spanning several extents.
func (w *worker) chunks(small, medium, large int) int {
	switch r := w.rng.Float64(); {
	case r < 0.65:
		return w.rng.IntN(small + 1)
	case r < 0.92:
		return medium/2 + w.rng.IntN(medium)
	default:
		return large/3 + w.rng.IntN(large)
	}
}

// whole writes a whole file: open (creating it; exclusively for OpExcl),
// fstat, truncate to zero (OpWrite), write, close. OpWrite truncates on
// the descriptor rather than with O_TRUNC, so that a failed open cannot
// have truncated a file the record cannot name; OpCreate opens with
// O_TRUNC, as programs do (a deferred create when its host does not see
// the name).
func (w *worker) whole(k Kind, p string) Status {
	op := w.rec.begin(w.h.idx, k, p, "")
	op.N = w.chunks(8, 300, 9000)
	flags := os.O_WRONLY | os.O_CREATE
	switch k {
	case OpExcl:
		flags |= os.O_EXCL
	case OpCreate:
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(w.h.path(p), flags, 0o644)
	if err != nil {
		return w.fail(op, err)
	}
	ino, _, err := inoOf(f)
	if err != nil {
		return w.broken(op, f, err)
	}
	op.Ino = ino
	if k == OpWrite {
		if err := f.Truncate(0); err != nil {
			return w.broken(op, f, err)
		}
	}
	if op.N > 0 {
		if _, err := f.Write(content(op)); err != nil {
			return w.broken(op, f, err)
		}
	}
	if err := f.Close(); err != nil {
		return w.broken(op, nil, err)
	}
	return w.ok(op)
}

// overwrite writes a run of chunks somewhere in an existing file, at most
// at its end.
func (w *worker) overwrite(p string) Status {
	op := w.rec.begin(w.h.idx, OpOverwrite, p, "")
	f, err := os.OpenFile(w.h.path(p), os.O_WRONLY, 0)
	if err != nil {
		return w.fail(op, err)
	}
	ino, size, err := inoOf(f)
	if err != nil {
		return w.broken(op, f, err)
	}
	op.Ino = ino
	op.Off = w.rng.IntN(int(size/chunkSize) + 1)
	op.N = 1 + w.chunks(7, 300, 6000)
	if _, err := f.WriteAt(content(op), int64(op.Off*chunkSize)); err != nil {
		return w.broken(op, f, err)
	}
	if err := f.Close(); err != nil {
		return w.broken(op, nil, err)
	}
	return w.ok(op)
}

func (w *worker) read(p string) Status {
	op := w.rec.begin(w.h.idx, OpRead, p, "")
	f, err := os.Open(w.h.path(p))
	if err != nil {
		op.Err, op.Status = errText(err), Failed
		w.rec.finish(op)
		if !clean(err) {
			return Indet // for the back-off only: a read changes nothing
		}
		return Failed
	}
	defer f.Close()
	ino, size, err := inoOf(f)
	if err == nil {
		op.Ino, op.Size = ino, size
		var data []byte
		data, err = io.ReadAll(f)
		op.Data = encode(data)
	}
	if err != nil {
		op.Err, op.Status = errText(err), Failed
		w.rec.finish(op)
		return Indet // for the back-off only
	}
	return w.ok(op)
}
