package crash

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// dirs are the directories every worker creates its files in (made at
// setup, never removed): renames move files within and across them.
var dirs = []string{"a", "b", "c", "a/x"}

// worker drives one share of the workload through the mount and keeps
// the model of the files it owns. Workers own disjoint files, so the
// model of each file is exact up to the one operation in flight when the
// mount dies.
type worker struct {
	idx    int
	rng    *rand.Rand
	files  []*file
	next   int
	root   string       // the mountpoint of the current host
	killed *atomic.Bool // set just before the mount is killed

	subdirs []*subdir       // directories this worker made (empty; files never go in them)
	ghosts  map[string]bool // names an interrupted rmdir left listed (FORMAT W5)

	mu         sync.Mutex
	unexpected []string       // errors before the kill
	acked      map[string]int // acknowledged operations by kind
	lost       map[string]int // operations in flight at the kill, by kind
}

func newWorker(idx int, seed uint64, killed *atomic.Bool) *worker {
	return &worker{idx: idx, rng: rand.New(rand.NewPCG(seed, uint64(idx)+1)), killed: killed, acked: map[string]int{}, lost: map[string]int{}, ghosts: map[string]bool{}}
}

func (w *worker) abs(p string) string { return filepath.Join(w.root, p) }

// run performs operations until one fails (the mount died) or stop.
func (w *worker) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if !w.step() {
			return
		}
	}
}

// fail records that op on f did not return success: its outcome is
// unknown. Before the kill that is itself a finding.
func (w *worker) fail(f *file, op string, err error) bool {
	f.inflight = fmt.Sprintf("%s: %v", op, err)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.killed.Load() {
		w.lost[op]++
	} else {
		w.unexpected = append(w.unexpected, fmt.Sprintf("worker %d: %s on %v failed before the kill: %v", w.idx, op, f, err))
	}
	return false
}

func (w *worker) ack(op string) {
	w.mu.Lock()
	w.acked[op]++
	w.mu.Unlock()
}

// step does one operation; false means it failed.
func (w *worker) step() bool {
	if len(w.files) < 4 || w.rng.IntN(6) == 0 {
		return w.create()
	}
	if w.rng.IntN(12) == 0 {
		if len(w.subdirs) < 2 || w.rng.IntN(2) == 0 {
			return w.mkdir()
		}
		return w.rmdir(w.subdirs[w.rng.IntN(len(w.subdirs))])
	}
	f := w.files[w.rng.IntN(len(w.files))]
	if f.fd != nil {
		switch w.rng.IntN(3) {
		case 0:
			return w.writeGen(f)
		case 1:
			return w.fsync(f)
		default:
			return w.close(f)
		}
	}
	switch x := w.rng.IntN(10); {
	case x < 4:
		return w.rewrite(f)
	case x < 6:
		return w.rename(f, false)
	case x < 8:
		return w.rename(f, true)
	default:
		return w.unlink(f)
	}
}

func (w *worker) create() bool {
	w.next++
	p := path.Join(dirs[w.rng.IntN(len(dirs))], fmt.Sprintf("w%d-%d", w.idx, w.next))
	f := &file{fid: w.idx*1_000_000 + w.next, paths: []string{p}, mayBeGone: true}
	w.files = append(w.files, f)
	if w.rng.IntN(2) == 0 {
		// How programs write a whole file: s3gfs defers the create to the
		// first fsync or close, which acknowledge it.
		fd, err := os.OpenFile(w.abs(p), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
		if err != nil {
			return w.fail(f, "create-trunc", err)
		}
		f.fd, f.deferred = fd, true
	} else {
		fd, err := os.OpenFile(w.abs(p), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if err != nil {
			return w.fail(f, "create", err)
		}
		// The name is committed before open returns (PROTOCOL I4).
		f.mayBeGone, f.fd = false, fd
		w.ack("create")
	}
	fd := f.fd
	var st syscall.Stat_t
	if err := syscall.Fstat(int(fd.Fd()), &st); err != nil {
		return w.fail(f, "fstat", err)
	}
	f.ino = st.Ino
	return w.writeGen(f)
}

// rewrite opens f with O_TRUNC and writes a new generation.
func (w *worker) rewrite(f *file) bool {
	f.gen++
	f.pending = append(f.pending, f.gen) // the truncation alone is one possible outcome
	fd, err := os.OpenFile(w.abs(f.paths[0]), os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		return w.fail(f, "open-trunc", err)
	}
	f.fd = fd
	return w.write(f, f.gen)
}

// writeGen writes a new generation through f's open descriptor
// (truncate, then one write from offset 0).
func (w *worker) writeGen(f *file) bool {
	f.gen++
	f.pending = append(f.pending, f.gen)
	if err := f.fd.Truncate(0); err != nil {
		return w.fail(f, "ftruncate", err)
	}
	return w.write(f, f.gen)
}

// write writes generation g at offset 0, then acknowledges it by fsync,
// by close, or not yet (the descriptor stays open, the data pending).
func (w *worker) write(f *file, g int) bool {
	if _, err := f.fd.WriteAt(content(f.fid, g), 0); err != nil {
		return w.fail(f, "write", err)
	}
	switch w.rng.IntN(3) {
	case 0:
		return w.fsync(f)
	case 1:
		return w.close(f)
	}
	return true
}

func (w *worker) settle(f *file) {
	if len(f.pending) > 0 {
		f.want = content(f.fid, f.pending[len(f.pending)-1])
		f.pending = nil
	}
}

func (w *worker) fsync(f *file) bool {
	if err := f.fd.Sync(); err != nil {
		return w.fail(f, "fsync", err)
	}
	w.settle(f)
	w.createDone(f)
	w.ack("fsync")
	return true
}

func (w *worker) close(f *file) bool {
	fd := f.fd
	f.fd = nil
	if err := fd.Close(); err != nil {
		return w.fail(f, "close", err)
	}
	w.settle(f)
	w.createDone(f)
	w.ack("close")
	return true
}

// rename moves f to a new name in its directory or in another one;
// sometimes over another file of this worker's (which it replaces).
func (w *worker) rename(f *file, cross bool) bool {
	old := f.paths[0]
	dir := path.Dir(old)
	if cross {
		for dir == path.Dir(old) {
			dir = dirs[w.rng.IntN(len(dirs))]
		}
	}
	var victim *file
	var to string
	if w.rng.IntN(4) == 0 {
		for _, v := range w.files {
			if v != f && v.fd == nil && path.Dir(v.paths[0]) == dir {
				victim, to = v, v.paths[0]
				break
			}
		}
	}
	if victim == nil {
		w.next++
		to = path.Join(dir, fmt.Sprintf("w%d-%d", w.idx, w.next))
	}
	f.paths = []string{old, to}
	f.bothOK = false // every rename is atomic, across directories too (FORMAT.md §5.5)
	if victim != nil {
		victim.mayBeGone = true
	}
	op := "rename"
	if cross {
		op = "rename-xdir"
	}
	if err := os.Rename(w.abs(old), w.abs(to)); err != nil {
		if victim != nil {
			victim.inflight = op + "-victim: replaced by an unfinished " + op
		}
		return w.fail(f, op, err)
	}
	f.paths, f.bothOK = []string{to}, false
	w.createDone(f) // (a rename waits for the name's create to be decided)
	if victim != nil {
		w.drop(victim)
		op += "-replace"
	}
	w.ack(op)
	return true
}

// createDone marks a deferred create of f acknowledged.
func (w *worker) createDone(f *file) {
	if f.deferred {
		f.deferred, f.mayBeGone = false, false
		w.ack("create-trunc")
	}
}

func (w *worker) unlink(f *file) bool {
	f.mayBeGone = true
	if err := os.Remove(w.abs(f.paths[0])); err != nil {
		return w.fail(f, "unlink", err)
	}
	w.drop(f)
	w.ack("unlink")
	return true
}

func (w *worker) drop(f *file) {
	for i, g := range w.files {
		if g == f {
			w.files = append(w.files[:i], w.files[i+1:]...)
			return
		}
	}
}

// subdir is the model of one directory a worker made.
type subdir struct {
	path        string
	mayBeAbsent bool   // its mkdir is in flight
	mayBeGone   bool   // its rmdir is in flight
	inflight    string // the operation in flight when the mount died
}

func (w *worker) failDir(d *subdir, op string, err error) bool {
	d.inflight = op
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.killed.Load() {
		w.lost[op]++
	} else {
		w.unexpected = append(w.unexpected, fmt.Sprintf("worker %d: %s %s failed before the kill: %v", w.idx, op, d.path, err))
	}
	return false
}

func (w *worker) mkdir() bool {
	w.next++
	d := &subdir{path: path.Join(dirs[w.rng.IntN(3)], fmt.Sprintf("w%d-d%d", w.idx, w.next)), mayBeAbsent: true}
	w.subdirs = append(w.subdirs, d)
	if err := os.Mkdir(w.abs(d.path), 0o755); err != nil {
		return w.failDir(d, "mkdir", err)
	}
	d.mayBeAbsent = false
	w.ack("mkdir")
	return true
}

func (w *worker) rmdir(d *subdir) bool {
	d.mayBeGone = true
	if err := syscall.Rmdir(w.abs(d.path)); err != nil {
		return w.failDir(d, "rmdir", err)
	}
	for i, x := range w.subdirs {
		if x == d {
			w.subdirs = append(w.subdirs[:i], w.subdirs[i+1:]...)
			break
		}
	}
	w.ack("rmdir")
	return true
}

// abandon closes every descriptor left open on the dead mount.
func (w *worker) abandon() {
	for _, f := range w.files {
		if f.fd != nil {
			f.fd.Close()
			f.fd = nil
		}
	}
}

// since is a helper for logs.
func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
