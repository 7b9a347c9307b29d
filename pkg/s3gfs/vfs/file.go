package vfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/cache"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// fileState is a file's local, uncommitted changes. Guarded by inode.mu.
//
// The working content of extent i is: dirty[i] if present, else pending[i]
// if present (an uploaded extent, or a hole when its ref is nil), else the
// committed version's extent (or its inline data for i == 0), else zeros.
// Bytes at or beyond size are never stored anywhere in the working state.
type fileState struct {
	size      uint64                    // working size
	sizeDirty bool                      // size changed since the last commit
	mtime     int64                     // last local write time, 0 if none
	dirtyExt  map[uint64]*dirtyExtent   // extents with changes not yet uploaded
	pending   map[uint64]*pendingExtent // uploaded (or dropped) since the last commit
	uploading int                       // uploads in flight
	uploadErr error                     // first failed upload, reported by the next commit

	// What a commit that lost the race to another host re-applies onto
	// the winner's content (W7, see rebase in merge.go):
	ranges    map[uint64][]span // bytes of extent idx written since the last commit
	base      map[uint64]source // committed content extent idx's local content was built on
	writeEnd  uint64            // end of the furthest write since the last commit
	truncated bool              // a truncation since the last commit...
	truncAt   uint64            // ...and the lowest size it set
	builtOn   *format.Inode     // the version the changes were made on (nil: no change yet)

	// attrs: attribute changes (chmod, chown, utimes) not committed yet;
	// not content (dirty does not count them).
	attrs *attrChange
}

// attrChange is a change of a non-directory's attributes that SetAttr
// left to the inode's next commit: its close, fsync, or the write-back
// timer within attrWriteback. Programs like tar set owner, mode and times
// one call after another right after closing a file; committed one by
// one they cost a version (a round trip to the store) each.
type attrChange struct {
	mode, uid, gid *uint32
	atime, mtime   *int64
	ctime          int64
	since          time.Time // when the first of them was made
}

// attrWriteback bounds how long an attribute change waits for its commit
// (other hosts see it about one sync interval after that), unless
// Options.WritebackDelay is shorter.
const attrWriteback = time.Second

// add merges s (without size) into c.
func (c *attrChange) add(s SetAttr, ctime int64) {
	if s.Mode != nil {
		m := *s.Mode
		c.mode = &m
	}
	if s.UID != nil {
		u := *s.UID
		c.uid = &u
	}
	if s.GID != nil {
		g := *s.GID
		c.gid = &g
	}
	if s.Atime != nil {
		t := *s.Atime
		c.atime = &t
	}
	if s.Mtime != nil {
		t := *s.Mtime
		c.mtime = &t
	}
	c.ctime = max(c.ctime, ctime)
}

// apply sets the changed attributes of n.
func (c *attrChange) apply(n *format.Inode) {
	if c.mode != nil {
		n.Mode = n.Mode&^0o7777 | *c.mode&0o7777
	}
	if c.uid != nil {
		n.UID = *c.uid
	}
	if c.gid != nil {
		n.GID = *c.gid
	}
	if c.atime != nil {
		n.Atime = *c.atime
	}
	if c.mtime != nil {
		n.Mtime = *c.mtime
	}
	n.Ctime = max(n.Ctime, c.ctime)
}

// applyAttr is apply for the attributes reported to the kernel.
func (c *attrChange) applyAttr(a *Attr) {
	if c.mode != nil {
		a.Mode = a.Mode&^0o7777 | *c.mode&0o7777
	}
	if c.uid != nil {
		a.UID = *c.uid
	}
	if c.gid != nil {
		a.GID = *c.gid
	}
	if c.atime != nil {
		a.Atime = *c.atime
	}
	if c.mtime != nil {
		a.Mtime = *c.mtime
	}
	a.Ctime = max(a.Ctime, c.ctime)
}

// noteWriteTimeLocked records a local change of content at time t: it is
// the file's mtime from now on, whatever mtime an attribute change set
// before. ino.mu is held.
func (ino *inode) noteWriteTimeLocked(t int64) {
	ino.file.mtime = t
	if a := ino.file.attrs; a != nil {
		a.mtime = nil
	}
}

// dirtyExtent is an extent-sized buffer holding the extent's whole working
// content: its first n bytes are content, the rest zeros.
type dirtyExtent struct {
	raw []byte // the pool's buffer: buf with room for an envelope around it
	buf []byte // contentOf(raw)
	n   int    // the content is buf[:n]
	// zeroFrom: buf is zero from max(n, zeroFrom) on; the bytes between n
	// and zeroFrom are left over from the buffer's previous use (the pool
	// does not clear what a writer may overwrite, bufferPool.getDirty), so
	// a write beyond n clears the gap it leaves (Write).
	zeroFrom  int
	uploading bool
	lastWrite uint64
}

// used is how far buf may hold non-zero bytes: what bufferPool.put needs.
func (d *dirtyExtent) used() int { return max(d.n, d.zeroFrom) }

// pendingExtent is an extent uploaded since the last commit; ref nil means
// the extent was dropped (truncated away).
type pendingExtent struct {
	ref  *format.ExtentRef
	sent time.Time // when its upload was sent (local clock): see renewStaleUploads
}

// dirty reports local changes. (An upload in flight is either of an extent
// still in dirtyExt, or of one a commit or truncation has already dropped,
// which changes nothing: uploading is not counted.)
func (f *fileState) dirty() bool {
	return len(f.dirtyExt) > 0 || len(f.pending) > 0 || f.sizeDirty || f.mtime != 0
}

// source is where the committed or pending content of one extent lives.
type source struct {
	ref    format.ExtentRef
	hasRef bool
	inline []byte // committed inline data (extent 0 only)
}

// sourceLocked returns where extent idx's content lives when no dirty
// buffer holds it.
func (ino *inode) sourceLocked(idx uint64) source {
	if p, ok := ino.file.pending[idx]; ok {
		if p.ref == nil {
			return source{}
		}
		return source{ref: *p.ref, hasRef: true}
	}
	return ino.committedSourceLocked(idx)
}

// committedSourceLocked returns where extent idx's content lives in the
// committed version cur.
func (ino *inode) committedSourceLocked(idx uint64) source {
	return versionSource(ino.cur, idx)
}

// versionSource returns where extent idx's content lives in file version v.
func versionSource(v *format.Inode, idx uint64) source {
	if v.Inline {
		if idx == 0 {
			return source{inline: v.Data}
		}
		return source{}
	}
	xs := v.Extents // sorted by Index (format rule)
	if i := sort.Search(len(xs), func(i int) bool { return xs[i].Index >= idx }); i < len(xs) && xs[i].Index == idx {
		return source{ref: xs[i], hasRef: true}
	}
	return source{}
}

func (s source) same(o source) bool {
	return s.hasRef == o.hasRef && s.ref == o.ref && len(s.inline) == len(o.inline) && (len(s.inline) == 0 || &s.inline[0] == &o.inline[0])
}

// Handle is an open file.
//
// A handle reads the version it opened (protocol invariant 5) while other
// hosts commit newer ones: ver is that version. An open on this host after
// another host's commit installs the newer version as cur for itself and
// later opens, while older handles keep reading ver, until this host
// changes the file's content (then every handle reads cur, with the local
// changes: descriptors of one host share what it writes). A commit of this
// host moves ver on to the committed version for every handle that read
// the working content, including those opened on uncommitted changes.
type Handle struct {
	ino      *inode
	writable bool
	direct   bool          // bypass the kernel's page cache (see inode.mixed)
	ver      *format.Inode // the version opened; guarded by ino.mu
	verTime  time.Time     // its store time
	gen      uint64        // ino.localGen at open
	mu       sync.Mutex
	seqEnd   int64 // end of the previous read, for readahead
	ahead    int64 // readahead issued up to here
	seq      bool  // counted in FS.seqReaders
	// streaming: the previous read was sequential (randomRead).
	streaming bool
}

// ID is the inode id the handle refers to.
func (h *Handle) ID() uint64 { return h.ino.id }

// Direct reports whether reads and writes of this handle must bypass the
// kernel's page cache: the cache holds pages of an older version that
// other handles on this host still read.
func (h *Handle) Direct() bool { return h.direct }

// pinnedLocked returns the older version h reads instead of cur, or nil.
// ino.mu is held.
func (h *Handle) pinnedLocked() *format.Inode {
	ino := h.ino
	if h.ver == nil || h.ver == ino.cur || h.ver.Kind != format.KindFile {
		return nil
	}
	if ino.cur.Kind == format.KindTombstone {
		return h.ver // deleted on another host: an open handle reads on
	}
	if h.gen != ino.localGen || ino.file.dirty() || ino.cur.Kind != format.KindFile {
		return nil
	}
	return h.ver
}

// Open opens inode id. Unless this host has uncommitted changes of it, it
// is revalidated against the store first (close-to-open consistency).
// keepCache reports whether the kernel may keep its cached pages of the
// file; Handle.Direct whether the handle must bypass them.
func (fs *FS) Open(ctx context.Context, id uint64, writable bool) (h *Handle, keepCache bool, err error) {
	return fs.open(ctx, id, writable, true)
}

// open opens inode id, revalidating it first when revalidate is set (it
// is not for a file this very call created: its version is the newest).
func (fs *FS) open(ctx context.Context, id uint64, writable, revalidate bool) (h *Handle, keepCache bool, err error) {
	if writable {
		if err := fs.writable(); err != nil {
			return nil, false, err
		}
	}
	ino, err := fs.inode(ctx, id)
	if err != nil {
		return nil, false, err
	}
	// Close-to-open: revalidate, unless this host has uncommitted changes
	// (they are committed, and so merged with others', at close or fsync).
	// Handles already open keep the version they opened (see Handle).
	ino.mu.Lock()
	clean := !ino.file.dirty() // (pending attribute changes apply to any version)
	before := ino.cur
	ino.mu.Unlock()
	if clean && revalidate {
		ino.commitMu.Lock()
		err := fs.refreshForOpen(ctx, ino)
		ino.commitMu.Unlock()
		if err != nil {
			return nil, false, err
		}
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	switch ino.cur.Kind {
	case format.KindTombstone:
		return nil, false, ErrNotExist
	case format.KindDir:
		if writable {
			return nil, false, ErrIsDir
		}
	}
	if ino.open > 0 && ino.cur != before && ino.cur.Kind == format.KindFile {
		ino.mixed = true
	}
	ino.open++
	h = &Handle{ino: ino, writable: writable, direct: ino.mixed, ver: ino.cur, verTime: ino.curTime, gen: ino.localGen}
	if ino.handles == nil {
		ino.handles = map[*Handle]struct{}{}
	}
	ino.handles[h] = struct{}{}
	fs.mu.Lock()
	fs.openSet[ino] = struct{}{}
	fs.mu.Unlock()
	keep := !ino.changed
	if fs.log.Enabled(ctx, slog.LevelDebug) {
		fs.log.Debug("open: revalidated", "inode", fmt.Sprintf("%016x", ino.id), "clean", clean, "revalidate", revalidate,
			"before", before.Version, "version", ino.cur.Version, "writer", fmt.Sprintf("%016x", ino.cur.Writer),
			"size", ino.file.size, "changed", ino.changed, "mixed", ino.mixed, "open", ino.open)
	}
	if !ino.mixed {
		// (While mixed, the older handles' pages must stay; new handles
		// bypass them and the flag waits for the last close.)
		ino.changed = false
	}
	return h, keep, nil
}

// Release closes a handle, committing the file if it was the last one.
func (fs *FS) Release(ctx context.Context, h *Handle) error {
	ino := h.ino
	h.mu.Lock()
	if h.seq {
		h.seq = false
		fs.seqReaders.Add(-1)
	}
	h.mu.Unlock()
	ino.mu.Lock()
	ino.open--
	delete(ino.handles, h)
	last := ino.open == 0
	if last {
		fs.mu.Lock() // lock order: inode.mu may be held while taking FS.mu
		delete(fs.openSet, ino)
		fs.mu.Unlock()
		if ino.mixed {
			// The kernel's pages may be of an older version: the next
			// open drops them.
			ino.mixed = false
			ino.changed = true
		}
	}
	unlinked := last && ino.unlinked
	ino.mu.Unlock()
	if !last || fs.opts.ReadOnly {
		return nil
	}
	if unlinked {
		return fs.tombstone(ctx, ino)
	}
	return fs.commitAndSettle(ctx, ino)
}

// Flush commits the file's changes (called on every close of a descriptor).
func (fs *FS) Flush(ctx context.Context, h *Handle) error {
	if !h.writable {
		return nil
	}
	return fs.commitAndSettle(ctx, h.ino)
}

// Fsync commits the file's changes.
func (fs *FS) Fsync(ctx context.Context, h *Handle) error {
	if fs.opts.ReadOnly {
		return nil
	}
	return fs.commitAndSettle(ctx, h.ino)
}

// commitAndSettle commits the file's changes, if any, and settles its
// deferred create, if any (create.go): the commit of a new file's content
// goes to the store while its name is being decided.
func (fs *FS) commitAndSettle(ctx context.Context, ino *inode) error {
	var err error
	if ino.isDirty() {
		err = fs.commitFile(ctx, ino, nil)
	}
	if err == nil {
		err = fs.settleCreate(ctx, ino)
	}
	return err
}

// Read reads into dest at off; it returns fewer bytes only at end of file.
func (fs *FS) Read(ctx context.Context, h *Handle, dest []byte, off int64) (int, error) {
	v, err := fs.ReadView(ctx, h, dest, off)
	if err != nil {
		return 0, err
	}
	defer v.Release()
	return v.CopyTo(dest), nil
}

// ReadView is the content of one read (FS.ReadView): slices that hold its
// bytes in order, each either a part of the caller's scratch buffer or a
// part of a cached extent. They stay valid and unchanged until Release.
//
// The view holds a reference to each cached extent it has a slice of
// (cache.Buf): the cache may evict the extent meanwhile, but its buffer
// goes back to the pool (extBufs), to be reused, only once Release drops
// the last reference. Cached extent bytes are never written to otherwise.
// A write or commit after the view was built changes the working content,
// not the bytes the view holds: the view is the content at the time of
// the read, as a read into a buffer would have been.
type ReadView struct {
	segs [][]byte
	n    int
	bufs []*cache.Buf // references held for segs
}

// Slices returns the view's bytes, in order.
func (v *ReadView) Slices() [][]byte { return v.segs }

// Len is the number of bytes read.
func (v *ReadView) Len() int { return v.n }

// CopyTo copies the view into dest (at least Len bytes), skipping the
// parts already there (those read into dest as scratch), and returns Len.
func (v *ReadView) CopyTo(dest []byte) int {
	pos := 0
	for _, s := range v.segs {
		if len(s) > 0 && &dest[pos] != &s[0] {
			copy(dest[pos:], s)
		}
		pos += len(s)
	}
	return pos
}

// Release ends the caller's use of the view's slices (once).
func (v *ReadView) Release() {
	v.segs = nil
	for _, b := range v.bufs {
		b.Release()
	}
	v.bufs = nil
}

// ReadView reads like Read, without copying cached extent bytes: it
// returns slices of them where it can, and uses scratch (as large as the
// read) for everything else: uncommitted changes (whose buffers writes
// change in place), inline data, holes, blocks read by range.
func (fs *FS) ReadView(ctx context.Context, h *Handle, scratch []byte, off int64) (*ReadView, error) {
	if off < 0 {
		return nil, ErrInvalid
	}
	if err := fs.checkFenced(); err != nil {
		return nil, err
	}
	h.ino.mu.Lock()
	pin := h.pinnedLocked()
	h.ino.mu.Unlock()
	ranged := fs.randomRead(h, off)
	if pin != nil {
		return fs.readVersion(ctx, h.ino.id, pin, scratch, uint64(off), ranged)
	}
	v, err := fs.readView(ctx, h.ino, scratch, uint64(off), ranged)
	if err == nil && v.n > 0 {
		fs.readahead(h, off, v.n)
	}
	return v, err
}

// randomRead reports whether a read at off is not part of a sequential
// read of h: such a read fetches only the blocks it needs of an extent
// that is not cached (readPart), while sequential readers fetch, and
// read ahead, whole extents. A read that starts where the previous one
// ended is sequential, and so is one near that end right after a
// sequential read: the kernel may send the reads of its own readahead out
// of order.
func (fs *FS) randomRead(h *Handle, off int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	near := off >= h.seqEnd-2*fs.extSize && off <= h.seqEnd+2*fs.extSize
	h.streaming = off == h.seqEnd || h.streaming && near
	return !h.streaming
}

// readVersion reads [off, off+len(scratch)) of committed file version v;
// ranged as in readAt.
func (fs *FS) readVersion(ctx context.Context, id uint64, v *format.Inode, scratch []byte, off uint64, ranged bool) (*ReadView, error) {
	if off >= v.Size {
		return &ReadView{}, nil
	}
	scratch = scratch[:min(uint64(len(scratch)), v.Size-off)]
	view := &ReadView{n: len(scratch)}
	E := uint64(fs.extSize)
	for pos := off; pos < off+uint64(len(scratch)); {
		idx := pos / E
		within := int(pos % E)
		n := int(min(E-uint64(within), off+uint64(len(scratch))-pos))
		out := scratch[pos-off : pos-off+uint64(n)]
		src := versionSource(v, idx)
		switch {
		case src.inline != nil:
			copyClip(out, src.inline, within)
		case src.hasRef:
			seg, b, err := fs.readExtent(ctx, id, src.ref, out, within, ranged)
			if err != nil {
				view.Release()
				return nil, err
			}
			out = seg
			if b != nil {
				view.bufs = append(view.bufs, b)
			}
		default:
			clear(out)
		}
		view.segs = append(view.segs, out)
		pos += uint64(n)
	}
	return view, nil
}

type fetchJob struct {
	src  source
	seg  int // the view's segment it fills: scratch, or the extent's bytes
	from int // offset within the extent
	buf  *cache.Buf
}

// readAt copies the working content of [off, off+len(dest)) into dest.
// With ranged (a random read), extents that are not cached are read by
// block where their references allow it (readExtent).
func (fs *FS) readAt(ctx context.Context, ino *inode, dest []byte, off uint64, ranged bool) (int, error) {
	v, err := fs.readView(ctx, ino, dest, off, ranged)
	if err != nil {
		return 0, err
	}
	defer v.Release()
	return v.CopyTo(dest), nil
}

// readView is readAt returning a view (FS.ReadView) with scratch as the
// buffer for what cannot be a slice of a cached extent.
func (fs *FS) readView(ctx context.Context, ino *inode, scratch []byte, off uint64, ranged bool) (*ReadView, error) {
	ino.mu.Lock()
	if ino.cur.Kind != format.KindFile {
		k := ino.cur.Kind
		ino.mu.Unlock()
		if k == format.KindDir {
			return nil, ErrIsDir
		}
		return nil, ErrInvalid
	}
	size := ino.file.size
	if off >= size {
		ino.mu.Unlock()
		return &ReadView{}, nil
	}
	end := min(off+uint64(len(scratch)), size)
	scratch = scratch[:end-off]
	view := &ReadView{n: len(scratch)}
	var jobs []fetchJob
	E := uint64(fs.extSize)
	for pos := off; pos < end; {
		idx := pos / E
		within := int(pos % E)
		n := int(min(E-uint64(within), end-pos))
		out := scratch[pos-off : pos-off+uint64(n)]
		view.segs = append(view.segs, out)
		if d := ino.file.dirtyExt[idx]; d != nil {
			copyClip(out, d.buf[:d.n], within)
		} else if src := ino.sourceLocked(idx); src.inline != nil {
			copyClip(out, src.inline, within)
		} else if src.hasRef {
			jobs = append(jobs, fetchJob{src: src, seg: len(view.segs) - 1, from: within})
		} else {
			clear(out)
		}
		pos += uint64(n)
	}
	ino.mu.Unlock()
	if len(jobs) == 0 {
		return view, nil
	}
	errs := make([]error, len(jobs))
	fetch := func(j *fetchJob, err *error) {
		seg := &view.segs[j.seg]
		*seg, j.buf, *err = fs.readExtent(ctx, ino.id, j.src.ref, *seg, j.from, ranged)
	}
	if len(jobs) == 1 {
		fetch(&jobs[0], &errs[0])
	} else {
		var wg sync.WaitGroup
		for i := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fetch(&jobs[i], &errs[i])
			}()
		}
		wg.Wait()
	}
	for _, j := range jobs {
		if j.buf != nil {
			view.bufs = append(view.bufs, j.buf)
		}
	}
	if err := errors.Join(errs...); err != nil {
		view.Release()
		return nil, err
	}
	return view, nil
}

// copyClip copies src[from:] into out, zero-filling past the end of src.
func copyClip(out, src []byte, from int) {
	n := 0
	if from < len(src) {
		n = copy(out, src[from:])
	}
	clear(out[n:])
}

// readahead fetches the extents after a sequential read in the background.
func (fs *FS) readahead(h *Handle, off int64, n int) {
	h.mu.Lock()
	seq := off == h.seqEnd
	h.seqEnd = off + int64(n)
	if seq && !h.seq {
		h.seq = true
		fs.seqReaders.Add(1)
	}
	from := max(h.seqEnd, h.ahead)
	to := h.seqEnd + int64(fs.readaheadDepth())*fs.extSize
	if !seq || from >= to {
		h.mu.Unlock()
		return
	}
	h.ahead = to
	h.mu.Unlock()
	ino := h.ino
	E := uint64(fs.extSize)
	ino.mu.Lock()
	var refs []format.ExtentRef
	for idx := uint64(from) / E; idx*E < uint64(to) && idx*E < ino.file.size; idx++ {
		if ino.file.dirtyExt[idx] != nil {
			continue
		}
		if src := ino.sourceLocked(idx); src.hasRef {
			refs = append(refs, src.ref)
		}
	}
	ino.mu.Unlock()
	for _, ref := range refs {
		go func() {
			// A fetch that starts late (a busy machine) after its reader
			// has passed the extent would fetch it again for nothing.
			h.mu.Lock()
			passed := h.seqEnd >= int64(ref.Index+1)*fs.extSize
			h.mu.Unlock()
			if !passed {
				if b, err := fs.fetchExtentBuf(context.Background(), ino.id, ref); err == nil {
					b.Release() // fetched into the cache, to be read from there
				}
			}
		}()
	}
}

// readaheadDepth is how many extents a sequential reader fetches ahead:
// Options.Readahead, but no more than keeps every sequential reader's
// extents (the one it reads and those ahead) within half the memory
// cache, since what readahead fetches waits there to be read: more
// readers than the cache holds would have it evict extents before their
// reader gets to them, and fetch them twice.
func (fs *FS) readaheadDepth() int {
	if fs.opts.CacheDir != "" {
		return fs.opts.Readahead // the disk tier keeps what the memory evicts
	}
	per := fs.opts.CacheSize / 2 / fs.extSize / max(fs.seqReaders.Load(), 1)
	return int(min(int64(fs.opts.Readahead), max(per-1, 0)))
}

// readExtent returns the bytes [from, from+len(out)) of the extent ref
// names, zeros past its length: a slice of the cached extent when it holds
// them all, with the reference to it the caller releases, else out,
// filled, and no reference. A ranged read of an extent that is not
// cached, through a reference with block checksums, fetches and checks
// only the blocks it needs (readPart); every other read fetches the whole
// extent (fetchExtentBuf).
func (fs *FS) readExtent(ctx context.Context, id uint64, ref format.ExtentRef, out []byte, from int, ranged bool) ([]byte, *cache.Buf, error) {
	if ranged && ref.BlockShift != 0 {
		return fs.readPart(ctx, id, ref, out, from)
	}
	b, err := fs.fetchExtentBuf(ctx, id, ref)
	if err != nil {
		return nil, nil, err
	}
	seg, b := sliceOrCopy(out, b, from)
	return seg, b, nil
}

// sliceOrCopy returns b's bytes [from:from+len(out)] and b when it holds
// them all, else out holding those bytes, zeros past its end, having
// released b.
func sliceOrCopy(out []byte, b *cache.Buf, from int) ([]byte, *cache.Buf) {
	data := b.Bytes()
	if end := from + len(out); end <= len(data) {
		return data[from:end:end], b
	}
	copyClip(out, data, from)
	b.Release()
	return out, nil
}

// readPart is readExtent of a reference with block checksums for a random
// reader (docs/FORMAT.md §6): a slice of the whole extent when it is
// cached (or being fetched), else out, filled from its cached blocks,
// fetching the blocks missing among those [from, from+len(out)) needs
// with one ranged GET.
func (fs *FS) readPart(ctx context.Context, id uint64, ref format.ExtentRef, out []byte, from int) ([]byte, *cache.Buf, error) {
	ck := cache.Key{Inode: id, EID: ref.EID, Origin: ref.Origin}
	if b, ok := fs.cache.GetBuf(ck, ref); ok {
		seg, b := sliceOrCopy(out, b, from)
		return seg, b, nil
	}
	end := min(from+len(out), int(ref.Length))
	if from >= end {
		clear(out) // past the extent's bytes: zeros
		return out, nil, nil
	}
	if int(ref.Origin) >= len(fs.levels) { // refused when the version was read
		return nil, nil, fmt.Errorf("extent %016x of inode %016x: %w: origin %d beyond the clone's chain", ref.EID, id, ErrCorrupt, ref.Origin)
	}
	lv := &fs.levels[ref.Origin]
	key := lv.keys.Extent(id, ref.EID)
	if b, ok, err := fs.extFetches.join(lv.bucket + "/" + key); ok {
		// A whole fetch of the extent (readahead, another reader) is on
		// its way: wait for it rather than fetch its blocks as well.
		if err != nil {
			return nil, nil, err
		}
		seg, b := sliceOrCopy(out, b, from)
		return seg, b, nil
	}
	first, last, _, _ := ref.BlockSpan(from, end)
	blocks := make([][]byte, last-first)
	miss0, miss1 := -1, -1
	for b := first; b < last; b++ {
		if d, ok := fs.cache.Get(ck.BlockKey(b, ref.BlockShift), ref); ok {
			blocks[b-first] = d
		} else {
			if miss0 < 0 {
				miss0 = b
			}
			miss1 = b + 1
		}
	}
	if miss0 >= 0 {
		span, err := fs.fetchBlocks(ctx, lv, key, ck, ref, miss0, miss1)
		if err != nil {
			return nil, nil, err
		}
		bs := ref.BlockSize()
		for b := miss0; b < miss1; b++ {
			if blocks[b-first] == nil {
				blocks[b-first] = span[(b-miss0)*bs : min((b-miss0+1)*bs, len(span))]
			}
		}
	}
	// The blocks hold payload bytes [first*bs, ...) back to back.
	bs := ref.BlockSize()
	for i, d := range blocks {
		start := (first + i) * bs
		lo := max(from, start)
		copy(out[lo-from:end-from], d[lo-start:])
	}
	clear(out[end-from:])
	return out, nil, nil
}

// fetchBlocks fetches blocks first..last-1 of an extent with one ranged
// GET, checks each against its block checksum and caches it; it returns
// their bytes, back to back.
func (fs *FS) fetchBlocks(ctx context.Context, lv *level, key string, ck cache.Key, ref format.ExtentRef, first, last int) ([]byte, error) {
	return fs.fetches.do(fmt.Sprintf("%s/%s#%d:%d-%d", lv.bucket, key, ref.BlockShift, first, last), func() ([]byte, error) {
		_, _, off, n := ref.BlockSpan(first<<ref.BlockShift, min(last<<ref.BlockShift, int(ref.Length)))
		span, err := lv.store.GetRange(ctx, key, off, n)
		if err != nil {
			if errors.Is(err, objstore.ErrNotFound) {
				fs.log.Error("extent named by an inode version is missing", "key", key)
				return nil, fmt.Errorf("%s: %w: missing extent", key, ErrCorrupt)
			}
			return nil, fmt.Errorf("read blocks %d-%d of extent %s: %w", first, last-1, key, err)
		}
		data, err := format.DecodeBlocks(span, ref, first, last)
		if err != nil {
			fs.log.Error("refusing corrupt extent blocks", "key", key, "blocks", fmt.Sprintf("%d-%d", first, last-1), "err", err)
			return nil, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
		}
		bs := ref.BlockSize()
		for b := first; b < last; b++ {
			fs.cache.Put(ck.BlockKey(b, ref.BlockShift), data[(b-first)*bs:min((b-first+1)*bs, len(data))])
		}
		return data, nil
	})
}

// Write writes data at off.
func (fs *FS) Write(ctx context.Context, h *Handle, data []byte, off int64) (int, error) {
	if err := fs.writable(); err != nil {
		return 0, err
	}
	if err := fs.checkFenced(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, ErrInvalid
	}
	if uint64(off)+uint64(len(data)) > 1<<50 {
		return 0, ErrTooBig
	}
	ino := h.ino
	ino.ioMu.RLock()
	defer ino.ioMu.RUnlock()
	E := uint64(fs.extSize)
	pos := uint64(off)
	written := 0
	for written < len(data) {
		idx := pos / E
		within := int(pos % E)
		n := min(len(data)-written, int(E)-within)
		d, err := fs.dirtyBuffer(ctx, ino, idx, within, within+n)
		if err != nil {
			return written, err
		}
		// ino.mu is held.
		if within > d.n && d.zeroFrom > d.n {
			clear(d.buf[d.n:min(within, d.zeroFrom)]) // the gap before the write reads as zeros
		}
		copy(d.buf[within:], data[written:written+n])
		if within+n > d.n {
			d.n = within + n
		}
		ino.noteWriteLocked(idx, within, within+n, pos+uint64(n))
		// One counter for the whole FS: evictOne compares extents of
		// different inodes, so a per-inode count would make a file with
		// few writes look older than everything else however recent.
		d.lastWrite = fs.writeSeq.Add(1)
		if end := pos + uint64(n); end > ino.file.size {
			ino.file.size = end
			ino.file.sizeDirty = true
		}
		ino.noteWriteTimeLocked(now())
		if ino.dirtySince.IsZero() {
			ino.dirtySince = time.Now()
		}
		if within+n == int(E) && d.n == int(E) {
			fs.startUploadLocked(ino, idx, d) // write-behind of a completed extent
		}
		ino.mu.Unlock()
		written += n
		pos += uint64(n)
	}
	return written, nil
}

// dirtyBuffer returns, with ino.mu held, the dirty buffer of extent idx,
// creating it (and loading the extent's current content unless the write
// [from, to) replaces all of it) when needed. The caller holds ino.ioMu.
func (fs *FS) dirtyBuffer(ctx context.Context, ino *inode, idx uint64, from, to int) (*dirtyExtent, error) {
	E := uint64(fs.extSize)
	for {
		ino.mu.Lock()
		if ino.cur.Kind != format.KindFile {
			ino.mu.Unlock()
			return nil, ErrNotExist
		}
		if ino.file.dirtyExt == nil {
			ino.file.dirtyExt = map[uint64]*dirtyExtent{}
		}
		if d := ino.file.dirtyExt[idx]; d != nil {
			if !d.uploading {
				return d, nil
			}
			ino.uploaded.Wait()
			ino.mu.Unlock()
			continue
		}
		src := ino.sourceLocked(idx)
		curLen := 0
		if ino.file.size > idx*E {
			curLen = int(min(E, ino.file.size-idx*E))
		}
		needBase := (src.hasRef || src.inline != nil) && !(from == 0 && to >= curLen)
		ino.mu.Unlock()

		// Not cleared: the write (and the base) overwrite what they use,
		// and Write clears a gap it leaves (see dirtyExtent.zeroFrom).
		raw, dirty, err := fs.bufs.getDirty(ctx, fs.evictOne)
		if err != nil {
			return nil, err
		}
		buf := contentOf(raw)
		n := 0
		if needBase {
			if src.inline != nil {
				n = copy(buf, src.inline[:min(len(src.inline), curLen)])
			} else {
				b, err := fs.fetchExtentBuf(ctx, ino.id, src.ref)
				if err != nil {
					fs.bufs.put(raw, dirty)
					return nil, err
				}
				base := b.Bytes()
				n = copy(buf, base[:min(len(base), curLen)])
				b.Release()
			}
		}
		ino.mu.Lock()
		if ino.file.dirtyExt[idx] != nil || !ino.sourceLocked(idx).same(src) {
			ino.mu.Unlock()
			fs.bufs.put(raw, max(n, dirty)) // raced with another writer or an upload: retry
			continue
		}
		d := &dirtyExtent{raw: raw, buf: buf, n: n, zeroFrom: dirty}
		ino.noteBaseLocked(idx)
		ino.file.dirtyExt[idx] = d
		fs.bufs.noteDirty(ino)
		return d, nil
	}
}

// startUploadLocked uploads a dirty extent in the background; when it
// completes the extent moves from dirtyExt to pending and its buffer is
// freed. ino.mu is held.
func (fs *FS) startUploadLocked(ino *inode, idx uint64, d *dirtyExtent) {
	d.uploading = true
	ino.file.uploading++
	E := uint64(fs.extSize)
	n := 0
	if ino.file.size > idx*E {
		n = int(min(uint64(d.n), ino.file.size-idx*E))
	}
	data := d.buf[:n]
	// Sealed in place (no copy of the extent) when the envelope's checksum
	// after the data falls where the buffer holds only zeros: past its
	// content, which no one reads or writes during the upload (writers
	// wait for it, readers read below n).
	inPlace := n == d.n
	go func() {
		var ref *format.ExtentRef
		var err error
		sent := time.Now()
		if len(data) > 0 {
			seal := func(ref format.ExtentRef) []byte { return format.SealExtent(data, ref) }
			if inPlace {
				seal = func(ref format.ExtentRef) []byte { return format.SealExtentInPlace(d.raw, n, ref) }
			}
			// Bound by the lease: once the host fences itself, an upload
			// stops retrying an unreachable store (nothing could commit it).
			ref, err = fs.putSealedExtent(fs.Bound(context.Background()), ino.id, idx, data, seal)
		}
		ino.mu.Lock()
		if inPlace {
			// The checksum written past the content: zeros again.
			clear(d.raw[format.EnvelopeHeader+n : min(format.EnvelopeOverhead+n, len(d.raw))])
		}
		ino.file.uploading--
		d.uploading = false
		free := false
		switch {
		case ino.file.dirtyExt[idx] != d:
			// Dropped while uploading (a commit stored the file inline, or
			// it was truncated away). Whoever dropped d left its buffer to
			// this upload, which was still reading it; the result is unused.
			free = true
		case err != nil:
			if ino.file.uploadErr == nil {
				ino.file.uploadErr = err
			}
		default:
			delete(ino.file.dirtyExt, idx)
			if ino.file.pending == nil {
				ino.file.pending = map[uint64]*pendingExtent{}
			}
			ino.file.pending[idx] = &pendingExtent{ref: ref, sent: sent}
			free = true
		}
		// Return the buffer before waking waiters on ino.uploaded, so that
		// once a commit has seen every upload finish, the pool has them
		// all back (lock order: inode.mu before bufferPool.mu).
		if free {
			fs.bufs.put(d.raw, d.used())
		} else {
			// The extent stays dirty and evictable again: a getter waiting
			// for this upload to free a buffer must retry.
			fs.bufs.wake()
		}
		ino.uploaded.Broadcast()
		ino.mu.Unlock()
	}()
}

// putExtent uploads one extent under a fresh random id.
func (fs *FS) putExtent(ctx context.Context, id, idx uint64, data []byte) (*format.ExtentRef, error) {
	return fs.putSealedExtent(ctx, id, idx, data, func(ref format.ExtentRef) []byte { return format.SealExtent(data, ref) })
}

// putSealedExtent uploads extent data as the object seal returns for the
// data's reference (called once an upload slot is free, so that at most
// Options.Uploads objects are built at a time). The reference's checksums
// are computed once, and seal takes the envelope's from them: one pass
// over the data, not two.
func (fs *FS) putSealedExtent(ctx context.Context, id, idx uint64, data []byte, seal func(format.ExtentRef) []byte) (*format.ExtentRef, error) {
	if err := fs.checkFenced(); err != nil {
		return nil, err // no use uploading what a fenced host cannot commit
	}
	fs.upSem <- struct{}{}
	defer func() { <-fs.upSem }()
	if err := fs.checkFenced(); err != nil {
		return nil, err // fenced while waiting for a turn
	}
	ref := format.NewExtentRef(idx, 0, data, fs.uploadBlockShift())
	obj := seal(ref)
	for {
		eid := randomID()
		_, err := fs.store.PutIfAbsent(ctx, fs.keys.Extent(id, eid), obj)
		if errors.Is(err, objstore.ErrExists) {
			continue // a 64-bit collision: draw again
		}
		if err != nil {
			return nil, fmt.Errorf("upload extent %d of inode %016x: %w", idx, id, err)
		}
		ref.EID = eid
		return &ref, nil
	}
}

// evictOne starts uploading the least recently written dirty extent of any
// inode to free write-back memory; it reports whether it started one.
func (fs *FS) evictOne() bool {
	var victim *inode
	var vidx uint64
	var vd *dirtyExtent
	for _, ino := range fs.bufs.dirtyInodes() {
		ino.mu.Lock()
		for idx, d := range ino.file.dirtyExt {
			if !d.uploading && (vd == nil || d.lastWrite < vd.lastWrite) {
				victim, vidx, vd = ino, idx, d
			}
		}
		ino.mu.Unlock()
	}
	if victim == nil {
		return false
	}
	victim.mu.Lock()
	defer victim.mu.Unlock()
	if victim.file.dirtyExt[vidx] != vd || vd.uploading {
		return true // changed meanwhile; the caller re-checks memory
	}
	fs.startUploadLocked(victim, vidx, vd)
	return true
}

// truncate sets the working size; the caller holds ino.ioMu exclusively.
func (fs *FS) truncate(ctx context.Context, ino *inode, size uint64) error {
	E := uint64(fs.extSize)
	ino.mu.Lock()
	old := ino.file.size
	for {
		for ino.file.uploading > 0 {
			ino.uploaded.Wait()
		}
		if size >= old || size%E == 0 || ino.file.dirtyExt[size/E] != nil {
			break
		}
		src := ino.sourceLocked(size / E)
		if !src.hasRef && src.inline == nil {
			break
		}
		// The extent holding the new end needs a dirty buffer with its
		// content. Getting one may evict (start uploads of) this inode's
		// extents, and waiting for those releases ino.mu, when the new
		// buffer itself may be evicted: wait, then check again, so the
		// changes below are made with no upload of ino in flight.
		ino.mu.Unlock()
		if _, err := fs.dirtyBuffer(ctx, ino, size/E, 0, 0); err != nil {
			return err
		}
	}
	if size < old && size%E != 0 {
		// The extent holding the new end keeps only bytes below it.
		idx := size / E
		if d := ino.file.dirtyExt[idx]; d != nil {
			keep := int(size % E)
			if d.n > keep {
				clear(d.buf[keep:d.n])
				d.n = keep
			}
		}
	}
	if size < old {
		// Extents wholly past the new end are dropped.
		first := (size + E - 1) / E
		for idx, d := range ino.file.dirtyExt {
			if idx >= first {
				delete(ino.file.dirtyExt, idx)
				fs.bufs.put(d.raw, d.used()) // not uploading: see the loop above
			}
		}
		if ino.file.pending == nil {
			ino.file.pending = map[uint64]*pendingExtent{}
		}
		for idx := range ino.file.pending {
			if idx >= first {
				ino.file.pending[idx] = &pendingExtent{}
			}
		}
		if ino.cur.Inline && first == 0 {
			ino.noteBaseLocked(0)
			ino.file.pending[0] = &pendingExtent{}
		}
		for _, x := range ino.cur.Extents {
			if x.Index >= first {
				ino.noteBaseLocked(x.Index)
				ino.file.pending[x.Index] = &pendingExtent{}
			}
		}
	}
	ino.noteTruncateLocked(size, E)
	ino.file.size = size
	ino.file.sizeDirty = true
	ino.noteWriteTimeLocked(now())
	if ino.dirtySince.IsZero() {
		ino.dirtySince = time.Now()
	}
	ino.mu.Unlock()
	return nil
}

// commitFile writes the next version of a non-directory inode: the file's
// local changes (extents uploaded first) plus mutate, an optional change
// applied to the version being built (called with ino.mu held; it may
// return an error to abort). It is a no-op when there is nothing to write.
func (fs *FS) commitFile(ctx context.Context, ino *inode, mutate func(n *format.Inode) error) error {
	if err := fs.writable(); err != nil {
		return err
	}
	ino.commitMu.Lock()
	defer ino.commitMu.Unlock()
	ino.ioMu.Lock()
	defer ino.ioMu.Unlock()
	ctx = context.WithoutCancel(ctx)

	for rebases := 0; ; rebases++ {
		err := fs.commitFileOnce(ctx, ino, mutate)
		if errors.Is(err, ErrNotExist) {
			fs.discardIfDeletedLocked(ino)
		}
		if !errors.Is(err, errRebase) {
			return err
		}
		// Another host committed a version first while this host has
		// uncommitted data: re-apply it onto the winner's content, then
		// prepare and commit again.
		if rebases >= maxCommitAttempts {
			return fmt.Errorf("commit inode %016x: %w", ino.id, ErrConflict)
		}
		if err := fs.rebase(ctx, ino); err != nil {
			return err
		}
	}
}

// discardIfDeletedLocked drops the uncommitted changes of a file whose
// current version is a tombstone (another host deleted it: W7, losing to a
// tombstone means the inode is gone). Kept, they would pin write-back
// memory and be retried by every write-back tick and sync, forever. The
// caller holds ino.commitMu and ino.ioMu exclusively.
func (fs *FS) discardIfDeletedLocked(ino *inode) {
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.cur.Kind != format.KindTombstone {
		return
	}
	dropDirtyLocked(fs, ino)
	ino.file = fileState{uploading: ino.file.uploading}
	ino.dirtySince = time.Time{}
}

// errRebase: the version a commit was prepared on is no longer current.
var errRebase = errors.New("rebase needed")

// commitFileOnce prepares the file's data (inline bytes, or every extent
// uploaded) on the current version and commits it; it returns errRebase
// when it lost the race to a version that changed under its dirty data.
// The caller holds ino.commitMu and ino.ioMu exclusively.
func (fs *FS) commitFileOnce(ctx context.Context, ino *inode, mutate func(n *format.Inode) error) error {
	ino.mu.Lock()
	isFile := ino.cur.Kind == format.KindFile
	size := ino.file.size
	dirty := ino.file.dirty()
	attrs := ino.file.attrs != nil
	ino.mu.Unlock()
	if !dirty && mutate == nil && !attrs {
		return nil
	}
	var inline []byte
	if isFile && dirty {
		if size <= uint64(fs.vol.Header.InlineLimit) {
			inline = make([]byte, size)
			if _, err := fs.readAt(ctx, ino, inline, 0, false); err != nil {
				return err
			}
		} else if err := fs.uploadAll(ctx, ino); err != nil {
			return err
		} else if err := fs.renewStaleUploads(ctx, ino); err != nil {
			return err
		}
	}
	return fs.casLoop(ctx, ino, func() (*format.Inode, error) {
		if isFile && dirty && ino.file.builtOn != nil && ino.file.builtOn != ino.cur {
			// Another host's version became current under the local
			// changes (this commit lost the race, or an earlier one did and
			// its rebase failed): see commitFile.
			return nil, errRebase
		}
		next := baseVersion(ino.cur)
		cur := ino.cur
		if cur.Kind == format.KindFile {
			next.Inline, next.Data, next.Extents = cur.Inline, cur.Data, cur.Extents
			if dirty {
				next.Size = ino.file.size
				if ino.file.mtime != 0 {
					next.Mtime, next.Ctime = ino.file.mtime, ino.file.mtime
				}
				if inline != nil {
					next.Inline, next.Data, next.Extents = true, inline, nil
				} else {
					next.Inline, next.Data = false, nil
					next.Extents = fs.mergeExtentsLocked(ino, next.Size)
				}
			}
		}
		if a := ino.file.attrs; a != nil {
			a.apply(next)
		}
		if mutate != nil {
			if err := mutate(next); err != nil {
				return nil, err
			}
		}
		return next, nil
	}, func(n *format.Inode, at time.Time) {
		// The handles that read the working content (every one while there
		// are local changes) read n from now on, which holds it. A handle
		// opened on uncommitted changes recorded the version they were
		// made on: left so, it would read that older version once they are
		// committed (pinnedLocked), losing this host's writes it had read.
		// A handle pinned to an older version of a clean file stays.
		for h := range ino.handles {
			if h.pinnedLocked() == nil {
				h.ver, h.verTime = n, at
			}
		}
		// Dirty buffers remain only when the file was stored inline; one of
		// them may be uploading, started by eviction while ino.mu was free.
		// Its upload returns its buffer (startUploadLocked) and still
		// counts in uploading, so both survive the reset.
		dropDirtyLocked(fs, ino)
		ino.file = fileState{uploading: ino.file.uploading}
		ino.dirtySince = time.Time{}
		ino.setCurLocked(n, at, nil)
		if fs.log.Enabled(ctx, slog.LevelDebug) {
			fs.log.Debug("committed file", "inode", fmt.Sprintf("%016x", ino.id), "version", n.Version, "size", n.Size)
		}
	})
}

// dropDirtyLocked forgets every dirty buffer of ino, returning to the pool
// those not being uploaded (an upload in flight returns its own buffer when
// it finds it dropped). ino.mu is held.
func dropDirtyLocked(fs *FS, ino *inode) {
	for idx, d := range ino.file.dirtyExt {
		delete(ino.file.dirtyExt, idx)
		if !d.uploading {
			fs.bufs.put(d.raw, d.used())
		}
	}
}

// uploadAll uploads every dirty extent of ino and waits for all uploads.
// The caller holds ino.ioMu exclusively, so no new writes arrive.
func (fs *FS) uploadAll(ctx context.Context, ino *inode) error {
	ino.mu.Lock()
	if ino.cur.Inline && len(ino.cur.Data) > 0 && ino.file.dirtyExt[0] == nil && ino.file.pending[0] == nil {
		// Data kept inline so far moves into extent 0.
		ino.mu.Unlock()
		if _, err := fs.dirtyBuffer(ctx, ino, 0, 0, 0); err != nil {
			return err
		}
	}
	for {
		for idx, d := range ino.file.dirtyExt {
			if !d.uploading {
				fs.startUploadLocked(ino, idx, d)
			}
		}
		for ino.file.uploading > 0 {
			ino.uploaded.Wait()
		}
		if err := ino.file.uploadErr; err != nil {
			ino.file.uploadErr = nil
			ino.mu.Unlock()
			return err
		}
		if len(ino.file.dirtyExt) == 0 {
			ino.mu.Unlock()
			return nil
		}
	}
}

// renewStaleUploads uploads again, under new extent ids, the extents this
// host uploaded for the file more than half a host expiry ago and has not
// committed yet (a commit that failed, or a host fenced meanwhile). No
// version may name an extent uploaded more than one host expiry before
// the version was sent (docs/FORMAT.md §15.7): the reaper deletes
// unreferenced extents once they are older than its grace period. The
// caller holds ino.commitMu and ino.ioMu exclusively.
func (fs *FS) renewStaleUploads(ctx context.Context, ino *inode) error {
	if fs.sync.kick == nil {
		return nil // no pings: no reaper can judge this host
	}
	limit := fs.opts.HostExpiry / 2
	type stale struct {
		idx uint64
		p   *pendingExtent
	}
	var old []stale
	ino.mu.Lock()
	for idx, p := range ino.file.pending {
		if p.ref != nil && time.Since(p.sent) > limit {
			old = append(old, stale{idx, p})
		}
	}
	ino.mu.Unlock()
	for _, s := range old {
		data, err := fs.fetchExtent(ctx, ino.id, *s.p.ref)
		if err != nil {
			return fmt.Errorf("upload again an extent uploaded %v ago: %w", time.Since(s.p.sent).Round(time.Second), err)
		}
		sent := time.Now()
		ref, err := fs.putExtent(ctx, ino.id, s.idx, data)
		if err != nil {
			return err
		}
		ino.mu.Lock()
		if ino.file.pending[s.idx] == s.p {
			ino.file.pending[s.idx] = &pendingExtent{ref: ref, sent: sent}
		}
		ino.mu.Unlock()
	}
	return nil
}

// mergeExtentsLocked overlays the pending extents on the committed ones and
// drops what lies at or beyond size.
func (fs *FS) mergeExtentsLocked(ino *inode, size uint64) []format.ExtentRef {
	E := uint64(fs.extSize)
	byIdx := map[uint64]format.ExtentRef{}
	if !ino.cur.Inline {
		for _, x := range ino.cur.Extents {
			byIdx[x.Index] = x
		}
	}
	for idx, p := range ino.file.pending {
		if p.ref == nil {
			delete(byIdx, idx)
		} else {
			byIdx[idx] = *p.ref
		}
	}
	out := make([]format.ExtentRef, 0, len(byIdx))
	for _, x := range byIdx {
		if x.Index*E >= size {
			continue
		}
		if end := x.Index*E + uint64(x.Length); end > size {
			// Cannot happen: truncation rewrites the straddling extent.
			fs.log.Error("extent extends past file size; dropping its tail is impossible, keeping size consistent", "inode", ino.id, "index", x.Index)
			continue
		}
		out = append(out, x)
	}
	sortExtents(out)
	return out
}

// tombstone writes the final version of an unlinked inode, discarding any
// uncommitted data.
func (fs *FS) tombstone(ctx context.Context, ino *inode) error {
	ino.commitMu.Lock()
	defer ino.commitMu.Unlock()
	ino.ioMu.Lock()
	defer ino.ioMu.Unlock()
	ino.mu.Lock()
	for ino.file.uploading > 0 {
		ino.uploaded.Wait()
	}
	dropDirtyLocked(fs, ino)
	ino.file = fileState{}
	ino.dirtySince = time.Time{}
	ino.mu.Unlock()
	err := fs.casLoop(ctx, ino, func() (*format.Inode, error) {
		if ino.cur.Nlink > 0 && !ino.unlinked {
			return nil, nil // linked again meanwhile
		}
		return tombstoneOf(ino.cur), nil
	}, func(n *format.Inode, at time.Time) { ino.setCurLocked(n, at, nil) })
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

func tombstoneOf(cur *format.Inode) *format.Inode {
	return &format.Inode{Kind: format.KindTombstone, UID: cur.UID, GID: cur.GID, Atime: cur.Atime, Mtime: cur.Mtime, Ctime: now()}
}
