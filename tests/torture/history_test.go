package torture

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The namespace the workers share: top-level directories (dirNames) each
// holding leaf files named leafNames. Top-level names are only ever
// directories and second-level names only ever files, so a path's kind
// follows from its depth.
var (
	dirNames  = []string{"a", "b", "c", "d", "e"}
	leafNames = []string{"0", "1", "2", "3", "4"}
)

// universe lists every path a worker may create.
func universe() (dirs, leaves []string) {
	for _, d := range dirNames {
		dirs = append(dirs, d)
		for _, n := range leafNames {
			leaves = append(leaves, d+"/"+n)
		}
	}
	return dirs, leaves
}

func parentOf(p string) string {
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func baseOf(p string) string {
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Kind is an operation a worker performs.
type Kind uint8

const (
	OpMkdir     Kind = iota // mkdir Path (a top-level directory)
	OpRmdir                 // rmdir Path
	OpRenameDir             // rename directory Path to Path2
	OpWrite                 // open(O_CREAT) + ftruncate(0) + write N chunks + close: the whole file
	OpExcl                  // open(O_CREAT|O_EXCL) + write N chunks + close
	OpOverwrite             // open (no O_CREAT) + write N chunks at chunk Off + close
	OpRead                  // open + read everything + close
	OpUnlink                // unlink Path
	OpRename                // rename file Path to Path2
	// open(O_CREAT|O_TRUNC) + write N chunks + close: the whole file, as
	// programs write one. Of a name its host does not see, it is a deferred
	// create (docs/guarantees.md): if another host's create wins the name,
	// the descriptor's inode is never named and its bytes land in the
	// winner's file, which the host logs (see lostCreates).
	OpCreate
)

var kindNames = [...]string{"mkdir", "rmdir", "rename-dir", "write", "excl", "overwrite", "read", "unlink", "rename", "create"}

func (k Kind) String() string { return kindNames[k] }

// writes reports whether the op writes file data.
func (k Kind) writes() bool { return k == OpWrite || k == OpExcl || k == OpOverwrite || k == OpCreate }

// whole reports whether the op writes a whole file, creating it if absent
// (and opening it as it finds it if present, through its host's view).
func (k Kind) whole() bool { return k == OpWrite || k == OpCreate }

// Status is how an operation ended.
type Status uint8

const (
	// OK: every system call succeeded.
	OK Status = iota
	// Failed: it failed with an error that promises no effect (ENOENT,
	// EEXIST, ENOTEMPTY, ENOTDIR, EISDIR at its first system call), or it
	// was a read.
	Failed
	// Indet: it failed in a way that leaves its effect open (EIO, or an
	// error after the file was opened). Its namespace change may or may
	// not have happened while it ran; its file data may even be committed
	// after it returned (the engine keeps dirty data and retries).
	Indet
)

func (s Status) String() string { return [...]string{"ok", "failed", "indeterminate"}[s] }

// never is a time after every other.
const never = time.Duration(math.MaxInt64)

// Op is one recorded operation. Times are since the start of the run, on
// the test process's monotonic clock.
type Op struct {
	ID     int
	Host   int
	Kind   Kind
	Path   string
	Path2  string // rename target
	Off, N int    // chunks: writes and overwrites (Off is 0 for whole writes)
	Start  time.Duration
	End    time.Duration // when its last system call returned
	Status Status
	Err    string
	Ino    uint64 // inode the open file descriptor had (fstat), 0 if unknown
	Local  uint64 // for a create that lost its name: the descriptor's own inode (Ino is the file written)
	Size   int64  // a read's file size by fstat after the open (the kernel's view)
	Data   runs   // what a read returned
}

func (o *Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d h%d %s %s", o.ID, o.Host, o.Kind, o.Path)
	if o.Path2 != "" {
		fmt.Fprintf(&b, " -> %s", o.Path2)
	}
	if o.Kind.writes() {
		fmt.Fprintf(&b, " [chunks %d+%d]", o.Off, o.N)
	}
	fmt.Fprintf(&b, " @%s..%s %s", fmtDur(o.Start), fmtDur(o.End), o.Status)
	if o.Ino != 0 {
		fmt.Fprintf(&b, " ino=%016x", o.Ino)
	}
	if o.Local != 0 {
		fmt.Fprintf(&b, " local=%016x", o.Local)
	}
	if o.Err != "" {
		fmt.Fprintf(&b, " (%s)", o.Err)
	}
	if o.Kind == OpRead && o.Status == OK {
		fmt.Fprintf(&b, " fstat=%d read=%s", o.Size, o.Data)
	}
	return b.String()
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.6fs", d.Seconds()) }

// File contents are made of 16-byte chunks naming the operation that wrote
// them and their position in the file, so any byte of any file can be
// traced to the write that produced it.
const chunkSize = 16

func chunk(op, pos int) string { return fmt.Sprintf("%07x:%07x\n", op, pos) }

// content is what op writes: chunks Off..Off+N-1.
func content(op *Op) []byte {
	var b bytes.Buffer
	b.Grow(op.N * chunkSize)
	for i := 0; i < op.N; i++ {
		b.WriteString(chunk(op.ID, op.Off+i))
	}
	return b.Bytes()
}

// parseChunk decodes one chunk; ok is false for anything else (zeros are
// reported separately by the caller).
func parseChunk(c []byte) (op, pos int, ok bool) {
	if len(c) != chunkSize || c[7] != ':' || c[15] != '\n' {
		return 0, 0, false
	}
	var a, b int
	if _, err := fmt.Sscanf(string(c), "%07x:%07x\n", &a, &b); err != nil {
		return 0, 0, false
	}
	if chunk(a, b) != string(c) {
		return 0, 0, false
	}
	return a, b, true
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// summarize describes file content compactly: which op wrote which run of
// chunks.
func summarize(data []byte) string { return encode(data).String() }

// run is a stretch of file content: n chunks written by op (at positions
// pos..pos+n-1, which are also their positions in the file when the
// content is right), n chunks of zeros (op 0), or bytes that are neither
// (op -1, lit).
type run struct {
	op, pos, n int
	lit        []byte
}

// runs is file content in a compact form: a file of 100,000 chunks written
// by one op is one run.
type runs []run

// encode turns bytes into runs.
func encode(data []byte) runs {
	var rs runs
	for i := 0; i*chunkSize < len(data); i++ {
		c := data[i*chunkSize : min((i+1)*chunkSize, len(data))]
		if op, pos, ok := parseChunk(c); ok {
			rs = rs.add(run{op: op, pos: pos, n: 1})
		} else if len(c) == chunkSize && isZero(c) {
			rs = rs.add(run{op: 0, pos: i, n: 1})
		} else {
			rs = rs.add(run{op: -1, pos: i, n: 1, lit: append([]byte(nil), c...)})
		}
	}
	return rs
}

// add appends r, merging it with the last run when it continues it.
func (rs runs) add(r run) runs {
	if r.n == 0 {
		return rs
	}
	if k := len(rs) - 1; k >= 0 {
		l := &rs[k]
		if l.op == r.op && l.pos+l.n == r.pos && (r.op != -1 || len(l.lit) == l.n*chunkSize) {
			l.n += r.n
			l.lit = append(l.lit, r.lit...)
			return rs
		}
	}
	return append(rs, r)
}

// chunks is the length in chunks (a trailing partial chunk counts).
func (rs runs) chunks() int {
	n := 0
	for _, r := range rs {
		n += r.n
	}
	return n
}

// bytes materializes the content.
func (rs runs) bytes() []byte {
	var b bytes.Buffer
	for _, r := range rs {
		switch {
		case r.op > 0:
			for k := 0; k < r.n; k++ {
				b.WriteString(chunk(r.op, r.pos+k))
			}
		case r.op == 0:
			b.Write(make([]byte, r.n*chunkSize))
		default:
			b.Write(r.lit)
		}
	}
	return b.Bytes()
}

// equal reports whether two contents are the same (runs are kept merged,
// so equal contents have equal runs).
func (rs runs) equal(o runs) bool {
	if len(rs) != len(o) {
		return false
	}
	for i := range rs {
		if rs[i].op != o[i].op || rs[i].pos != o[i].pos || rs[i].n != o[i].n || !bytes.Equal(rs[i].lit, o[i].lit) {
			return false
		}
	}
	return true
}

// at returns the run holding chunk i and i's offset in it.
func (rs runs) at(i int) (run, int, bool) {
	for _, r := range rs {
		if i < r.n {
			return r, i, true
		}
		i -= r.n
	}
	return run{}, 0, false
}

// overlay returns rs with chunks off..off+n-1 replaced by op's; chunks of
// op fill (0 for zeros, unknownOp) fill any gap past the end.
func (rs runs) overlay(op, off, n, fill int) runs {
	var out runs
	i := 0
	for _, r := range rs {
		if i < off {
			keep := min(r.n, off-i)
			head := r
			head.n = keep
			if r.op == -1 {
				head.lit = r.lit[:min(len(r.lit), keep*chunkSize)]
			}
			out = out.add(head)
		}
		i += r.n
	}
	if i < off {
		out = out.add(run{op: fill, pos: i, n: off - i})
	}
	out = out.add(run{op: op, pos: off, n: n})
	i = 0
	for _, r := range rs {
		if end := i + r.n; end > off+n {
			skip := max(0, off+n-i)
			tail := r
			tail.n -= skip
			if r.op >= 0 {
				tail.pos += skip
			} else {
				tail.pos += skip
				tail.lit = r.lit[min(len(r.lit), skip*chunkSize):]
			}
			out = out.add(tail)
		}
		i += r.n
	}
	return out
}

func (rs runs) String() string {
	if len(rs) == 0 {
		return "empty"
	}
	var parts []string
	size, at := 0, 0
	for _, r := range rs {
		switch {
		case r.op > 0:
			parts = append(parts, fmt.Sprintf("#%d@%d×%d", r.op, r.pos, r.n))
			size += r.n * chunkSize
		case r.op == 0:
			parts = append(parts, fmt.Sprintf("zeros@%d×%d", at, r.n))
			size += r.n * chunkSize
		default:
			parts = append(parts, fmt.Sprintf("garbage@%d:%q", at, r.lit[:min(len(r.lit), 32)]))
			size += len(r.lit)
		}
		at += r.n
	}
	if len(parts) > 12 {
		parts = append(parts[:12], fmt.Sprintf("… %d more runs", len(parts)-12))
	}
	return fmt.Sprintf("%dB[%s]", size, strings.Join(parts, " "))
}

// recorder collects the history of a run.
type recorder struct {
	t0     time.Time
	nextID atomic.Int64
	mu     sync.Mutex
	ops    []*Op
	live   map[*Op]struct{} // started, not yet recorded (for the watchdog)
}

func newRecorder() *recorder {
	return &recorder{t0: time.Now(), live: map[*Op]struct{}{}}
}

func (r *recorder) now() time.Duration { return time.Since(r.t0) }

// begin assigns an op its id and start time.
func (r *recorder) begin(host int, k Kind, path, path2 string) *Op {
	op := &Op{ID: int(r.nextID.Add(1)), Host: host, Kind: k, Path: path, Path2: path2}
	r.mu.Lock()
	r.live[op] = struct{}{}
	r.mu.Unlock()
	op.Start = r.now()
	return op
}

// finish records op with its end time.
func (r *recorder) finish(op *Op) {
	op.End = r.now()
	r.mu.Lock()
	delete(r.live, op)
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// oldestLive returns the op in flight for the longest time, if any.
func (r *recorder) oldestLive() *Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	var old *Op
	for op := range r.live {
		if old == nil || op.Start < old.Start {
			old = op
		}
	}
	return old
}

func (r *recorder) history() []*Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]*Op(nil), r.ops...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
