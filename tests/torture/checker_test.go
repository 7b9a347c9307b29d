package torture

import (
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The history checker.
//
// It judges a run from its history (every operation with its start and end
// times, host and outcome) and the final tree, and it is meant to be
// sound: it only reports what no order of the operations consistent with
// their times could explain. Operations that overlap in time may take
// effect in either order; an indeterminate one (EIO...) may take effect at
// any time after it started, or never.
//
// Two layers of state are followed, each with the same rule: the state of
// a thing at time t is determined when the operations that may change it
// and started before t have all ended before t, and the last of them to
// end overlaps none of the others; it is then that operation's effect
// (which may depend on the state just before it, found the same way).
// Otherwise it is unknown, and nothing is checked against it.
//
//   - Bindings: what each path names (absent, a directory, or a file with a
//     given inode number). Changed by mkdir, rmdir, rename, unlink and by
//     the creating opens of write and excl.
//   - Contents: per inode number (fstat of the descriptor each write and
//     read used, the same on every host), what the file holds. Changed by
//     write, excl and overwrite. Because contents are followed by inode, a
//     write that went through a stale name (see below) is still charged to
//     the file it really changed.
//
// Stale names. A host may resolve a path with a directory entry it cached
// up to staleWindow ago (the kernel's one-second entry cache on top of the
// engine's one-second directory revalidation), so an open() of an existing
// name on one host may reach the file another host has just renamed away
// or unlinked. Namespace operations themselves are decided by the store
// (they commit before returning), but their path components are resolved
// the same way, so an operation inside a directory another host renamed
// within the window may have happened in the renamed directory. The
// checker allows exactly that: such operations are given an unknown effect
// on every path the directory could have had, and a write that reused a
// binding another host changed within the window is not taken as binding
// its path.
//
// What it reports (each a reason to fail the run):
//   - the final tree has a name no operation could create, a dangling
//     entry, an inode under two names, a file with link count other than 1;
//   - a determined binding is not the final one (lost mkdir/create/rename,
//     resurrected unlinked file, lost rmdir);
//   - a determined content is not the final one (lost acknowledged write,
//     a write re-applied wrongly after a lost race);
//   - any byte of a file or of a read not written by a write of that inode
//     at that position (torn, misplaced or invented data);
//   - a read whose content was determined (close-to-open: every write of
//     that inode that finished before the read started is visible) and
//     differs;
//   - a namespace operation that succeeded although its outcome was
//     already decided against it (O_EXCL create or mkdir of a name that
//     determinedly existed, unlink/rename/rmdir of one that determinedly
//     did not, rmdir of a directory that determinedly held a file...).

// staleWindow bounds how old a host's cached view of a directory entry may
// be when it resolves a path: kernel entry timeout (1s, fusefs) plus the
// engine's directory revalidation interval (1s, vfs.Options.Revalidate),
// plus slack.
const staleWindow = 2500 * time.Millisecond

// indetSlack is how long after an indeterminate call returned its
// namespace change may still land (a request the proxy was still
// forwarding when the client gave up).
const indetSlack = time.Second

// span is when an operation may have had one kind of effect.
type span struct {
	op         *Op
	start, end time.Duration
}

// bindSpan is when op may have changed bindings.
func bindSpan(op *Op) span {
	sp := span{op, op.Start, op.End}
	if op.Status == Indet {
		sp.end += indetSlack
	}
	return sp
}

// dataSpan is when op may have changed file contents.
func dataSpan(op *Op) span {
	sp := span{op, op.Start, op.End}
	if op.Status == Indet {
		sp.end = never
	}
	return sp
}

// node is one entry of a tree as a host shows it.
type node struct {
	Kind  byte // 'd' directory, 'f' regular file, '?' anything else, '!' listed but lstat failed
	Ino   uint64
	Size  int64
	Nlink uint64
	Data  []byte
	Err   string
}

// tree maps paths relative to the mountpoint ("a", "a/0") to nodes.
type tree map[string]node

func (n node) String() string {
	switch n.Kind {
	case 'f':
		return fmt.Sprintf("file ino=%016x nlink=%d %s", n.Ino, n.Nlink, summarize(n.Data))
	case 'd':
		return fmt.Sprintf("dir ino=%016x nlink=%d", n.Ino, n.Nlink)
	case '!':
		return "dangling entry (" + n.Err + ")"
	}
	return fmt.Sprintf("kind %c ino=%016x %s", n.Kind, n.Ino, n.Err)
}

type effKind uint8

const (
	effAbsent  effKind = iota
	effDir             // a directory
	effFile            // the file the op's descriptor had (op.Ino)
	effCopy            // the state src had (rename)
	effUnknown         // may have changed it in any way
)

// mod is one operation's possible change of one path's binding.
type mod struct {
	span
	eff     effKind
	src     string // effCopy
	removal bool   // it removes or replaces the binding the path had
}

// bstate is a determined binding, or unknown.
type bstate struct {
	k   byte // 'u' unknown, 'a' absent, 'd' directory, 'f' file
	ino uint64
}

func (s bstate) String() string {
	switch s.k {
	case 'a':
		return "absent"
	case 'd':
		return "a directory"
	case 'f':
		if s.ino == 0 {
			return "a file"
		}
		return fmt.Sprintf("file ino=%016x", s.ino)
	}
	return "unknown"
}

// cstate is a determined content: exact, or partial (runs in which op
// unknownOp marks chunks not determined, the file possibly longer), or
// unknown.
type cstate struct {
	k    byte // 'u', 'e' exact, 'p' partial
	data runs
	by   *Op // the op that determined it
}

// unknownOp marks undetermined chunks in a partial content.
const unknownOp = -2

type bkey struct {
	path string
	t    time.Duration
}

type ckey struct {
	ino uint64
	t   time.Duration
}

// Problem is one thing the checker found wrong.
type Problem struct {
	Category string
	Msg      string
}

func (p Problem) String() string { return p.Category + ": " + p.Msg }

// checkStats count what was actually determined, so that a pass can be
// told from a vacuous one.
type checkStats struct {
	ops, ok, indet                    int
	pathsDetermined, pathsTotal       int
	contentDetermined, contentTotal   int
	readsDetermined, readsOK          int
	preconditionsDetermined           int
	staleParents                      int
	chunksTraced, holeChunks, maxFile int
}

func (s checkStats) String() string {
	return fmt.Sprintf("ops=%d (ok %d, indeterminate %d); final bindings determined %d/%d; final contents determined %d/%d; reads checked against a determined content %d/%d; namespace preconditions decided %d; ops in a directory renamed within the stale window %d; chunks traced %d (hole chunks %d); largest file %dB",
		s.ops, s.ok, s.indet, s.pathsDetermined, s.pathsTotal, s.contentDetermined, s.contentTotal, s.readsDetermined, s.readsOK, s.preconditionsDetermined, s.staleParents, s.chunksTraced, s.holeChunks, s.maxFile)
}

type checker struct {
	window     time.Duration
	exclude    string // a top-level name outside the workers' namespace (not checked)
	ops        []*Op
	byID       map[int]*Op
	mods       map[string][]*mod
	content    map[uint64][]span
	uncertain  map[*Op]bool // ops whose directory may have been renamed under them
	dirRenames []*Op
	renames    []*Op            // file renames
	seen       map[uint64][]*Op // ops that had a descriptor of each inode
	memoB      map[bkey]bstate
	memoC      map[ckey]cstate
	problems   []Problem
	stats      checkStats
}

// check judges history against final, the tree every host agreed on.
// exclude names a top-level directory the checker ignores ("" for none).
func check(history []*Op, final tree, window time.Duration, exclude string) ([]Problem, checkStats) {
	c := newChecker(history, window, exclude)
	c.checkTree(final)
	c.checkFinal(final)
	c.checkOps()
	return c.problems, c.stats
}

func newChecker(history []*Op, window time.Duration, exclude string) *checker {
	c := &checker{
		window: window, exclude: exclude,
		byID:      map[int]*Op{},
		mods:      map[string][]*mod{},
		content:   map[uint64][]span{},
		uncertain: map[*Op]bool{},
		seen:      map[uint64][]*Op{},
		memoB:     map[bkey]bstate{},
		memoC:     map[ckey]cstate{},
	}
	for _, op := range history {
		if createdThenLost(op, history) {
			cp := *op
			cp.Status = Indet
			op = &cp
		}
		c.byID[op.ID] = op
		c.stats.ops++
		switch op.Status {
		case OK:
			c.stats.ok++
		case Indet:
			c.stats.indet++
		}
		if op.Status != Failed {
			c.ops = append(c.ops, op)
			if op.Kind == OpRenameDir {
				c.dirRenames = append(c.dirRenames, op)
			}
			if op.Kind == OpRename {
				c.renames = append(c.renames, op)
			}
		}
		if op.Ino != 0 {
			c.seen[op.Ino] = append(c.seen[op.Ino], op)
		}
	}
	sort.SliceStable(c.ops, func(i, j int) bool { return c.ops[i].Start < c.ops[j].Start })
	c.buildMods()
	return c
}

// createdThenLost reports whether op, an open(O_CREAT) that failed with
// ENOENT, may have created its file all the same: vfs.Create creates and
// links the file, then opens it, and the open fails with ENOENT when
// another host unlinked or renamed the new name in between.
func createdThenLost(op *Op, history []*Op) bool {
	if (!op.Kind.whole() && op.Kind != OpExcl) || op.Status != Failed || op.Err != syscall.ENOENT.Error() {
		return false
	}
	for _, m := range history {
		if (m.Kind == OpUnlink || m.Kind == OpRename) && m.Path == op.Path && m.Host != op.Host && m.Status != Failed &&
			m.Start < op.End && bindSpan(m).end >= op.Start {
			return true
		}
	}
	return false
}

// endTime is a time after every operation.
func (c *checker) endTime() time.Duration {
	end := time.Duration(0)
	for _, op := range c.ops {
		end = max(end, bindSpan(op).end)
	}
	return end + 1
}

func (c *checker) report(cat, format string, args ...any) {
	c.problems = append(c.problems, Problem{cat, fmt.Sprintf(format, args...)})
}

func (c *checker) add(path string, m *mod) { c.mods[path] = append(c.mods[path], m) }

// renamedDirs returns the directories dir's inode may have become, through
// directory renames by hosts other than host in [from, to), transitively,
// and whether there was any.
func (c *checker) renamedDirs(dir string, host int, from, to time.Duration) ([]string, bool) {
	seen := map[string]bool{dir: true}
	queue := []string{dir}
	any := false
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, m := range c.dirRenames {
			if sp := bindSpan(m); m.Path == d && m.Host != host && sp.end >= from && sp.start < to {
				any = true
				if !seen[m.Path2] {
					seen[m.Path2] = true
					queue = append(queue, m.Path2)
				}
			}
		}
	}
	var out []string
	for d := range seen {
		if d != dir {
			out = append(out, d)
		}
	}
	return out, any
}

// kernelNoop reports whether rename X may have been a no-op of the
// kernel's: another host renamed X's source within the stale window, or
// moved X's target to X's source, and if X's host still had the old entry
// cached while it had already looked up the new one, both names led to
// one inode, and rename(2) then returns success without asking the
// filesystem. (make load, seed 765800623: h7 moved d/1 to c/1; h6, with
// d/1 still cached, renamed c/1 to d/1 "successfully", and c/1 stayed.)
func (c *checker) kernelNoop(X *Op, among []*Op) bool {
	for _, m := range among {
		related := m.Path == X.Path || (m.Path == X.Path2 && m.Path2 == X.Path)
		if sp := bindSpan(m); m != X && m.Host != X.Host && related && sp.end >= X.Start-c.window && sp.start < X.End {
			return true
		}
	}
	return false
}

func (c *checker) buildMods() {
	for _, op := range c.ops {
		switch op.Kind {
		case OpMkdir, OpRmdir:
			eff := effDir
			if op.Kind == OpRmdir {
				eff = effAbsent
			}
			c.add(op.Path, &mod{span: bindSpan(op), eff: eff, removal: op.Kind == OpRmdir})
			for _, n := range leafNames {
				c.add(op.Path+"/"+n, &mod{span: bindSpan(op), eff: effAbsent, removal: op.Kind == OpRmdir})
			}
		case OpRenameDir:
			if c.kernelNoop(op, c.dirRenames) {
				c.uncertain[op] = true
				c.stats.staleParents++
				for _, d := range []string{op.Path, op.Path2} {
					c.add(d, &mod{span: bindSpan(op), eff: effUnknown, removal: true})
					for _, n := range leafNames {
						c.add(d+"/"+n, &mod{span: bindSpan(op), eff: effUnknown, removal: true})
					}
				}
				break
			}
			c.add(op.Path, &mod{span: bindSpan(op), eff: effAbsent, removal: true})
			c.add(op.Path2, &mod{span: bindSpan(op), eff: effCopy, src: op.Path, removal: true})
			for _, n := range leafNames {
				c.add(op.Path+"/"+n, &mod{span: bindSpan(op), eff: effAbsent, removal: true})
				c.add(op.Path2+"/"+n, &mod{span: bindSpan(op), eff: effCopy, src: op.Path + "/" + n, removal: true})
			}
		case OpWrite, OpCreate, OpExcl, OpUnlink, OpRename:
			bs := bindSpan(op)
			paths := []string{op.Path}
			if op.Kind == OpRename {
				paths = append(paths, op.Path2)
			}
			var elsewhere []string
			if op.Kind == OpRename && c.kernelNoop(op, c.renames) {
				c.uncertain[op] = true
			}
			for _, p := range paths {
				if dirs, any := c.renamedDirs(parentOf(p), op.Host, bs.start-c.window, bs.end); any {
					c.uncertain[op] = true
					for _, d := range dirs {
						elsewhere = append(elsewhere, d+"/"+baseOf(p))
					}
				}
			}
			if c.uncertain[op] {
				c.stats.staleParents++
				for _, p := range append(paths, elsewhere...) {
					c.add(p, &mod{span: bs, eff: effUnknown, removal: true})
				}
				break
			}
			switch op.Kind {
			case OpWrite, OpCreate, OpExcl:
				c.add(op.Path, &mod{span: bindSpan(op), eff: effFile})
			case OpUnlink:
				c.add(op.Path, &mod{span: bindSpan(op), eff: effAbsent, removal: true})
			case OpRename:
				c.add(op.Path, &mod{span: bindSpan(op), eff: effAbsent, removal: true})
				c.add(op.Path2, &mod{span: bindSpan(op), eff: effCopy, src: op.Path, removal: true})
			}
		}
		if op.Kind.writes() && op.Ino != 0 {
			c.content[op.Ino] = append(c.content[op.Ino], dataSpan(op))
		}
		if op.Kind == OpCreate && op.Ino == 0 && op.Status == Indet {
			// Its open may have truncated the file at its path (O_TRUNC)
			// before a later call failed, leaving no inode on record: the
			// content of every file seen at that path near then is
			// unknown from then on.
			sp := dataSpan(op)
			for _, ino := range c.inodesAt(op.Path, op.Start-c.window, bindSpan(op).end+c.window) {
				c.content[ino] = append(c.content[ino], sp)
			}
		}
	}
}

// inodesAt returns the inodes ops reached through path in [from, to).
func (c *checker) inodesAt(path string, from, to time.Duration) []uint64 {
	seen := map[uint64]bool{}
	var out []uint64
	for _, op := range c.ops {
		if op.Path == path && op.Ino != 0 && !seen[op.Ino] && op.Start < to && bindSpan(op).end >= from {
			seen[op.Ino] = true
			out = append(out, op.Ino)
		}
	}
	return out
}

// last finds, among the spans that started before t, the one that
// decides the state at t: every one of them ended before t, and the last
// to end overlaps none of the others. ok is false when the state is
// unknown; none is true when nothing started before t. items are sorted by
// start.
func last[T any](items []T, spanOf func(T) span, t time.Duration) (x T, ok, none bool) {
	n := sort.Search(len(items), func(i int) bool { return spanOf(items[i]).start >= t })
	before := items[:n]
	if len(before) == 0 {
		return x, false, true
	}
	best := -1
	for i, it := range before {
		sp := spanOf(it)
		if sp.end >= t {
			return x, false, false
		}
		if best < 0 || sp.end > spanOf(before[best]).end {
			best = i
		}
	}
	X := spanOf(before[best])
	for i, it := range before {
		if sp := spanOf(it); i != best && sp.op != X.op && sp.end >= X.start {
			return x, false, false
		}
	}
	return before[best], true, false
}

// stateAt is the binding of path at time t.
func (c *checker) stateAt(path string, t time.Duration) bstate {
	k := bkey{path, t}
	if s, ok := c.memoB[k]; ok {
		return s
	}
	s := c.computeState(path, t)
	c.memoB[k] = s
	return s
}

func (c *checker) computeState(path string, t time.Duration) bstate {
	ms := c.mods[path]
	X, ok, none := last(ms, func(m *mod) span { return m.span }, t)
	if none {
		return bstate{k: 'a'} // every path starts absent
	}
	if !ok || X.op.Status != OK {
		return bstate{k: 'u'} // unknown, or an indeterminate op may or may not have happened
	}
	switch X.eff {
	case effAbsent:
		return bstate{k: 'a'}
	case effDir:
		return bstate{k: 'd'}
	case effFile:
		if X.op.Kind.whole() {
			// A write opens an existing name through the host's cached
			// view: if another host changed the binding within the stale
			// window, it may have written the old file and left the path
			// as it was.
			for _, m := range ms {
				if m != X && m.removal && m.op.Host != X.op.Host && m.end >= X.start-c.window {
					return bstate{k: 'u'}
				}
			}
		}
		return bstate{k: 'f', ino: X.op.Ino}
	case effCopy:
		for _, m := range c.mods[X.src] {
			if m.op != X.op && m.start < X.end && m.end >= X.start {
				return bstate{k: 'u'} // the source changed during the rename
			}
		}
		s := c.stateAt(X.src, X.start)
		if s.k == 'a' {
			return bstate{k: 'u'} // the rename should have failed: reported by checkOps
		}
		return s
	}
	return bstate{k: 'u'}
}

// stableState is the binding of path throughout [from, to) if it was
// determined at from and no op (other than except) may have changed it in
// between.
func (c *checker) stableState(path string, from, to time.Duration, except *Op) bstate {
	from = max(from, 0)
	for _, m := range c.mods[path] {
		if m.op != except && m.start < to && m.end >= from {
			return bstate{k: 'u'}
		}
	}
	return c.stateAt(path, from)
}

// contentAt is the content of inode ino at time t.
func (c *checker) contentAt(ino uint64, t time.Duration) cstate {
	k := ckey{ino, t}
	if s, ok := c.memoC[k]; ok {
		return s
	}
	s := c.computeContent(ino, t)
	c.memoC[k] = s
	return s
}

func (c *checker) computeContent(ino uint64, t time.Duration) cstate {
	sp, ok, _ := last(c.content[ino], func(sp span) span { return sp }, t)
	if !ok {
		return cstate{k: 'u'}
	}
	X := sp.op
	if X.Kind != OpOverwrite {
		return cstate{k: 'e', data: runs{}.add(run{op: X.ID, pos: 0, n: X.N}), by: X}
	}
	pre := c.contentAt(ino, X.Start)
	switch pre.k {
	case 'e':
		return cstate{k: 'e', data: pre.data.overlay(X.ID, X.Off, X.N, 0), by: X}
	case 'p':
		return cstate{k: 'p', data: pre.data.overlay(X.ID, X.Off, X.N, unknownOp), by: X}
	}
	return cstate{k: 'p', data: runs{}.overlay(X.ID, X.Off, X.N, unknownOp), by: X}
}

// matches reports whether data satisfies s, and if not, how it differs.
func (s cstate) matches(data runs) (bool, string) {
	switch s.k {
	case 'e':
		if data.equal(s.data) {
			return true, ""
		}
		return false, "want exactly " + s.data.String()
	case 'p':
		if data.chunks() < s.data.chunks() {
			return false, fmt.Sprintf("want at least %d chunks: %v", s.data.chunks(), s.data)
		}
		i := 0
		for _, r := range s.data {
			if r.op > 0 {
				for k := 0; k < r.n; k++ {
					if got, gk, _ := data.at(i + k); got.op != r.op || got.pos+gk != r.pos+k {
						return false, fmt.Sprintf("want chunk %d = %q, got %v", i+k, chunk(r.op, r.pos+k), runs{got})
					}
				}
			}
			i += r.n
		}
	}
	return true, ""
}

// describe lists the ops that may change path's binding, latest last.
func (c *checker) describe(path string) string { return c.describeAt(path, never) }

// describeAt lists the ops that may change path's binding around time t:
// the last few that started before it and the first few after.
func (c *checker) describeAt(path string, t time.Duration) string {
	ms := c.mods[path]
	n := sort.Search(len(ms), func(i int) bool { return ms[i].start >= t })
	from, to := max(0, n-5), min(len(ms), n+2)
	var b strings.Builder
	if from > 0 {
		fmt.Fprintf(&b, "\n      … %d earlier", from)
	}
	for _, m := range ms[from:to] {
		fmt.Fprintf(&b, "\n      %v", m.op)
	}
	if to < len(ms) {
		fmt.Fprintf(&b, "\n      … %d later", len(ms)-to)
	}
	return b.String()
}

func (c *checker) describeContent(ino uint64) string {
	ops := c.content[ino]
	var b strings.Builder
	from := max(0, len(ops)-6)
	if from > 0 {
		fmt.Fprintf(&b, "\n      … %d earlier", from)
	}
	for _, o := range ops[from:] {
		fmt.Fprintf(&b, "\n      %v", o.op)
	}
	return b.String()
}

func (c *checker) excluded(path string) bool {
	return c.exclude != "" && (path == c.exclude || strings.HasPrefix(path, c.exclude+"/"))
}

// checkTree checks the final tree on its own, and traces every byte.
func (c *checker) checkTree(final tree) {
	inos := map[uint64]string{}
	dirs, leaves := universe()
	known := map[string]byte{}
	for _, d := range dirs {
		known[d] = 'd'
	}
	for _, l := range leaves {
		known[l] = 'f'
	}
	paths := make([]string, 0, len(final))
	for p := range final {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		n := final[p]
		if c.excluded(p) {
			continue
		}
		if n.Kind == '!' {
			c.report("structure", "%s: %s", p, n)
			continue
		}
		if want, ok := known[p]; !ok || want != n.Kind {
			c.report("phantom", "%s: %s: no operation creates that", p, n)
			continue
		}
		if other, dup := inos[n.Ino]; dup {
			c.report("structure", "%s and %s are the same inode %016x (no hard links are ever made)", other, p, n.Ino)
		}
		inos[n.Ino] = p
		if n.Kind == 'd' {
			continue
		}
		if n.Nlink != 1 {
			c.report("structure", "%s: link count %d, want 1", p, n.Nlink)
		}
		if n.Size != int64(len(n.Data)) {
			c.report("structure", "%s: size %d but %d bytes read", p, n.Size, len(n.Data))
		}
		c.stats.maxFile = max(c.stats.maxFile, len(n.Data))
		c.trace(p, n.Ino, encode(n.Data), never)
	}
}

// trace checks that every chunk of data (a file's, or a read's if before
// is its end) was written at that position of inode ino by a write that
// started before before.
func (c *checker) trace(what string, ino uint64, data runs, before time.Duration) {
	bad := 0
	i := 0
	for _, r := range data {
		if bad >= 3 {
			return
		}
		at := i
		i += r.n
		switch r.op {
		case -1:
			bad++
			c.report("provenance", "%s (ino %016x): chunk %d is %q, which no write produced: %v", what, ino, at, r.lit[:min(len(r.lit), 48)], data)
			continue
		case 0:
			if c.holePossible(ino, at+r.n-1) {
				c.stats.holeChunks += r.n
				continue
			}
			bad++
			c.report("provenance", "%s (ino %016x): chunks %d..%d are zeros, and no write could have left a hole there: %v", what, ino, at, at+r.n-1, data)
			continue
		}
		w := c.byID[r.op]
		switch {
		case w == nil || !w.Kind.writes():
			c.report("provenance", "%s: chunk %d names op #%d, which wrote nothing", what, at, r.op)
		case w.Status == Failed:
			c.report("provenance", "%s: chunk %d was written by %v, which failed without effect", what, at, w)
		case r.pos != at || r.pos < w.Off || r.pos+r.n > w.Off+w.N:
			c.report("provenance", "%s: chunks %d..%d hold %v's chunks %d..%d: misplaced", what, at, at+r.n-1, w, r.pos, r.pos+r.n-1)
		case w.Ino != 0 && w.Ino != ino:
			c.report("provenance", "%s (ino %016x): chunk %d was written by %v into another inode", what, ino, at, w)
		case w.Start >= before:
			c.report("provenance", "%s: chunk %d comes from %v, which started after the read ended", what, at, w)
		default:
			c.stats.chunksTraced += r.n
			continue
		}
		bad++
	}
}

// holePossible: a zero chunk at index i of ino can only come from a write
// that started past the end of the file (an overwrite beyond a size that
// shrank meanwhile).
func (c *checker) holePossible(ino uint64, i int) bool {
	for _, sp := range c.content[ino] {
		if o := sp.op; o.Kind == OpOverwrite && o.Off > i {
			return true
		}
	}
	return false
}

// checkFinal compares every determined binding and content with the tree.
func (c *checker) checkFinal(final tree) {
	dirs, leaves := universe()
	end := c.endTime()
	for _, p := range append(dirs, leaves...) {
		c.stats.pathsTotal++
		s := c.stateAt(p, end)
		if s.k == 'u' {
			continue
		}
		c.stats.pathsDetermined++
		n, present := final[p]
		switch {
		case s.k == 'a' && present:
			c.report("resurrected", "%s is %s, but the history leaves it absent:%s", p, n, c.describe(p))
		case s.k == 'd' && (!present || n.Kind != 'd'):
			c.report("lost-namespace", "%s should be a directory, final tree has %s:%s", p, orAbsent(n, present), c.describe(p))
		case s.k == 'f' && (!present || n.Kind != 'f'):
			c.report("lost-namespace", "%s should be %s, final tree has %s:%s", p, s, orAbsent(n, present), c.describe(p))
		case s.k == 'f' && s.ino != 0 && n.Ino != s.ino:
			c.report("lost-namespace", "%s should be %s, final tree has %s:%s", p, s, n, c.describe(p))
		}
	}
	for p, n := range final {
		if n.Kind != 'f' || c.excluded(p) {
			continue
		}
		c.stats.contentTotal++
		c.checkChunks(p, n)
		s := c.contentAt(n.Ino, end)
		if s.k == 'u' {
			continue
		}
		c.stats.contentDetermined++
		if ok, why := s.matches(encode(n.Data)); !ok {
			c.report("lost-write", "%s (ino %016x) holds %s; after %v it must hold what that write left (%s):%s", p, n.Ino, summarize(n.Data), s.by, why, c.describeContent(n.Ino))
		}
	}
}

// checkChunks checks each position of a final file against the writes of
// its inode that may have been the last to set it. Whatever order
// overlapping writes took, the last write of position i is one that no
// successful write setting or truncating i followed strictly (started
// after it ended). When every such candidate sets i (overwrites covering
// i, successful whole writes at least that long), the file must have
// chunk i from one of them. This keeps disjoint concurrent writes from
// two hosts honest: neither may be lost in the merge.
func (c *checker) checkChunks(path string, n node) {
	ops := c.content[n.Ino]
	if len(ops) == 0 {
		return
	}
	size := 0
	for _, sp := range ops {
		size = max(size, sp.op.Off+sp.op.N)
	}
	data := encode(n.Data)
	reported := 0
	for i := 0; i < size && reported < 2; i++ {
		var cands []*Op
		var affect []span
		maxStart := time.Duration(-1)
		for _, sp := range ops {
			o := sp.op
			if o.Kind == OpOverwrite && (i < o.Off || i >= o.Off+o.N) {
				continue // does not touch position i
			}
			affect = append(affect, sp)
			if o.Status == OK {
				maxStart = max(maxStart, o.Start)
			}
		}
		all := true
		for _, sp := range affect {
			o := sp.op
			if sp.end < maxStart {
				continue // strictly followed by a successful write of i
			}
			cands = append(cands, o)
			if o.Status != OK && o.Kind != OpOverwrite || i >= o.Off+o.N {
				all = false // it may have truncated i away
			}
		}
		if !all || len(cands) == 0 {
			continue
		}
		var got string
		if r, k, ok := data.at(i); ok && r.op > 0 {
			got = chunk(r.op, r.pos+k)
		} else if ok {
			got = runs{r}.String()
		}
		ok := false
		for _, o := range cands {
			if got == chunk(o.ID, i) {
				ok = true
				break
			}
		}
		if !ok {
			reported++
			var b strings.Builder
			for _, o := range cands {
				fmt.Fprintf(&b, "\n      %v", o)
			}
			if got == "" {
				got = "nothing (file too short)"
			}
			c.report("lost-write", "%s (ino %016x) chunk %d is %q; the last write of it must be one of:%s\n    file: %s", path, n.Ino, i, got, b.String(), summarize(n.Data))
		}
	}
}

func orAbsent(n node, present bool) string {
	if !present {
		return "nothing"
	}
	return n.String()
}

// fresh reports whether no op that ended before t had a descriptor of
// inode ino.
func (c *checker) fresh(ino uint64, t time.Duration, except *Op) bool {
	for _, o := range c.seen[ino] {
		if o != except && o.End < t {
			return false
		}
	}
	return true
}

// checkOps checks each successful op against the states it saw.
func (c *checker) checkOps() {
	for _, X := range c.ops {
		if X.Status != OK {
			continue
		}
		// What X found: only a state no other op may have changed while X
		// ran is a decided precondition (an op that started after X did
		// may still have taken effect before it).
		pre := func(p string) bstate { return c.stableState(p, X.Start, X.End, X) }
		decided := func(s bstate) bstate {
			if s.k != 'u' {
				c.stats.preconditionsDetermined++
			}
			return s
		}
		if c.uncertain[X] && (X.Kind == OpRenameDir) {
			continue
		}
		switch X.Kind {
		case OpMkdir:
			if s := decided(pre(X.Path)); s.k == 'd' {
				c.report("precondition", "%v succeeded, but %s already existed:%s", X, X.Path, c.describeAt(X.Path, X.End))
			}
		case OpRmdir:
			if s := decided(pre(X.Path)); s.k == 'a' {
				c.report("precondition", "%v succeeded, but %s had already been removed:%s", X, X.Path, c.describeAt(X.Path, X.End))
			}
			for _, n := range leafNames {
				p := X.Path + "/" + n
				if s := pre(p); s.k == 'f' {
					c.report("precondition", "%v succeeded, but %s was in it (%s):%s", X, p, s, c.describeAt(p, X.End))
				}
			}
		case OpRenameDir:
			if s := decided(pre(X.Path)); s.k == 'a' {
				c.report("precondition", "%v succeeded, but %s did not exist:%s", X, X.Path, c.describeAt(X.Path, X.End))
			}
			if pre(X.Path2).k == 'd' {
				for _, n := range leafNames {
					p := X.Path2 + "/" + n
					if s := pre(p); s.k == 'f' {
						c.report("precondition", "%v replaced %s, but %s was in it (%s):%s", X, X.Path2, p, s, c.describeAt(p, X.End))
					}
				}
			}
		}
		if c.uncertain[X] {
			continue // its paths may have been resolved in a renamed directory
		}
		switch X.Kind {
		case OpExcl:
			if s := decided(pre(X.Path)); s.k == 'f' {
				c.report("precondition", "%v succeeded, but %s already existed (%s):%s", X, X.Path, s, c.describeAt(X.Path, X.End))
			}
			if s := pre(parentOf(X.Path)); s.k == 'a' {
				c.report("precondition", "%v succeeded, but directory %s did not exist:%s", X, parentOf(X.Path), c.describeAt(parentOf(X.Path), X.End))
			}
			if X.Ino != 0 && !c.fresh(X.Ino, X.Start, X) {
				c.report("precondition", "%v returned inode %016x, which existed before", X, X.Ino)
			}
		case OpUnlink:
			if s := decided(pre(X.Path)); s.k == 'a' {
				c.report("precondition", "%v succeeded, but %s did not exist:%s", X, X.Path, c.describeAt(X.Path, X.End))
			}
		case OpRename:
			if s := decided(pre(X.Path)); s.k == 'a' {
				c.report("precondition", "%v succeeded, but %s did not exist:%s", X, X.Path, c.describeAt(X.Path, X.End))
			}
			if s := pre(parentOf(X.Path2)); s.k == 'a' {
				c.report("precondition", "%v succeeded, but directory %s did not exist:%s", X, parentOf(X.Path2), c.describeAt(parentOf(X.Path2), X.End))
			}
		case OpWrite, OpCreate, OpOverwrite, OpRead:
			// The path may have been resolved with a binding up to the
			// stale window old: only a binding stable over all of that
			// is a decided precondition.
			s := decided(c.stableState(X.Path, X.Start-c.window, X.End, X))
			switch {
			case s.k == 'a' && !X.Kind.whole():
				c.report("precondition", "%v succeeded, but %s did not exist throughout:%s", X, X.Path, c.describeAt(X.Path, X.End))
			case s.k == 'a' && X.Ino != 0 && !c.fresh(X.Ino, X.Start, X):
				c.report("precondition", "%v created %s, but its descriptor had inode %016x, which existed before:%s", X, X.Path, X.Ino, c.describeAt(X.Path, X.End))
			case s.k == 'f' && s.ino != 0 && X.Ino != 0 && s.ino != X.Ino:
				c.report("precondition", "%v reached inode %016x, but %s was %s throughout:%s", X, X.Ino, X.Path, s, c.describeAt(X.Path, X.End))
			}
		}
		if X.Kind == OpRead {
			c.checkRead(X)
		}
	}
}

// checkRead traces a read's bytes and, when the inode's content was
// determined when the read started and nothing wrote it while it ran,
// compares them (close-to-open consistency).
func (c *checker) checkRead(X *Op) {
	c.stats.readsOK++
	if X.Ino == 0 {
		return
	}
	c.trace(X.String(), X.Ino, X.Data, X.End)
	for _, sp := range c.content[X.Ino] {
		if sp.start < X.End && sp.end >= X.Start {
			return // a write overlapped the read
		}
	}
	s := c.contentAt(X.Ino, X.Start)
	if s.k == 'u' {
		return
	}
	c.stats.readsDetermined++
	if ok, why := s.matches(X.Data); !ok {
		c.report("stale-read", "%v read %v, but every write of that inode had finished before it started, the last being %v (%s):%s", X, X.Data, s.by, why, c.describeContent(X.Ino))
	}
}

// mutations checks that the checker would catch a lost file, a lost write
// and a resurrected file in this very history: each is made by changing
// the final tree where the history determines it. It returns what it
// tried, and what went unnoticed (a checker bug).
func mutations(history []*Op, final tree, window time.Duration, exclude string) (tried, missed []string) {
	c := newChecker(history, window, exclude)
	end := c.endTime()
	dirs, leaves := universe()
	clone := func() tree {
		t := make(tree, len(final))
		for k, v := range final {
			t[k] = v
		}
		return t
	}
	try := func(what, category string, mutated tree) {
		tried = append(tried, what)
		ps, _ := check(history, mutated, window, exclude)
		for _, p := range ps {
			if p.Category == category {
				return
			}
		}
		missed = append(missed, what)
	}
	// A file the history says must exist, lost.
	for _, p := range leaves {
		if n, ok := final[p]; ok && c.stateAt(p, end).k == 'f' {
			m := clone()
			delete(m, p)
			try("lose file "+p+" ("+n.String()+")", "lost-namespace", m)
			break
		}
	}
	// A determined content, its last chunk lost.
	for _, p := range leaves {
		n, ok := final[p]
		if !ok || n.Kind != 'f' || len(n.Data) < chunkSize {
			continue
		}
		if s := c.contentAt(n.Ino, end); s.k == 'e' {
			m := clone()
			n.Data = n.Data[:len(n.Data)-chunkSize]
			n.Size = int64(len(n.Data))
			m[p] = n
			try("drop the last chunk of "+p, "lost-write", m)
			break
		}
	}
	// A name the history says is gone, back.
	for _, d := range dirs {
		if _, ok := final[d]; !ok || c.stateAt(d, end).k != 'd' {
			continue
		}
		for _, n := range leafNames {
			p := d + "/" + n
			if _, ok := final[p]; !ok && c.stateAt(p, end).k == 'a' {
				m := clone()
				m[p] = node{Kind: 'f', Ino: 0xdead, Nlink: 1}
				try("resurrect "+p, "resurrected", m)
				return tried, missed
			}
		}
	}
	return tried, missed
}
