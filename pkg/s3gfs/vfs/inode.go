package vfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// inode is this host's state of one inode.
type inode struct {
	id uint64

	// commitMu serialises commits of this inode (taken before ioMu and mu).
	commitMu sync.Mutex
	// ioMu is held shared by writers and truncation of file data and
	// exclusively by a file commit, so a commit sees a stable file.
	ioMu sync.RWMutex

	mu sync.Mutex // guards every field below
	// cur is the newest committed version this host knows; nil before load.
	cur     *format.Inode
	curTime time.Time // the store's time of cur; zero for a version of a clone's source
	checked time.Time // local time at which cur was last known to be newest
	// nextVersion is the version number the next commit claims (cur.Version+1
	// unless corrupt newer versions had to be skipped).
	nextVersion uint64
	// level is the level of a clone's chain cur was read from (0: this
	// volume's own; FORMAT.md §16.2).
	level int

	// Directories: the committed entries at cur, and their number of
	// subdirs; the pending entries (name -> pending put or remove) and
	// cur's pending delete, if any (FORMAT.md §5.5).
	entries map[string]format.Entry
	subdirs int
	pending map[string]format.Entry
	pdelete *format.Entry
	// pendSince: for the txid of each pending entry (and pending delete)
	// at cur, the store time of the first version this host saw holding
	// it; another host's rename may be aborted that long after (§5.5),
	// which later versions carrying the entry on must not put off.
	pendSince map[uint64]time.Time
	// Group commit: queued changes and whether a leader is committing.
	queue   []*dirChange
	leading bool
	// creates: this host's undecided deferred creates of names in this
	// directory (create.go).
	creates map[string]*pendingCreate

	// create: the deferred create of this file, until it named this file
	// (nil when it was not deferred; see create.go).
	create *pendingCreate

	// Files: local changes not yet committed (see file.go).
	file fileState

	// changed is set when a version written by another host is installed,
	// so the next open tells the kernel to drop its cached pages.
	changed bool
	// uploaded is signalled (with mu) when an extent upload finishes.
	uploaded *sync.Cond

	// stale: another host announced a newer version (see sync.go).
	stale bool
	// last is the final live version of a tombstoned inode, so an open
	// descriptor of a removed directory can still be fstat'ed.
	last *format.Inode

	open    int // open handles on this host
	handles map[*Handle]struct{}
	// prefetching: a listing's children are being loaded (prefetchChildren).
	prefetching atomic.Bool
	// hint: the newest version key of a not yet loaded inode, from a
	// listing of many inodes at once (see hintNewest), and when it was
	// listed; its first load reads that version without listing again.
	hint     *objstore.ObjectInfo
	hintedAt time.Time
	// mixed: the open handles do not all read one version (an open found
	// a newer version while older handles were open). New handles then
	// bypass the kernel's page cache, which holds the older handles'
	// pages, until the last handle closes.
	mixed bool
	// localGen counts local content changes (writes, truncation): a
	// handle pinned to an older version follows cur once this host
	// changes the file, as descriptors of one host share its content.
	localGen uint64
	unlinked bool // nlink reached 0 while open: tombstone at last release
	// birth: the version 1 that the directory entry naming this file
	// carries (a born put, FORMAT.md §5.4), read when the store holds no
	// version of it (visible to this view); bornOnly: cur is that version
	// 1, which has no object of its own.
	birth    *format.Birth
	bornOnly bool
	// birthAt is the store time of a directory version holding the entry
	// birth came from: version 1 is visible then (no version of the file
	// was, when it was read), so it is the time a handle reading version
	// 1 holds in this host's ping. Holding nothing would let the reaper
	// delete versions other hosts write meanwhile, and this host's next
	// commit would then create a version key again (PROTOCOL 1, 3).
	birthAt time.Time
	// stored: cur is a version object in the store (of this volume or a
	// clone's source), not a birth: a full version of a directory naming
	// this file may leave out its birth (see dropStoredBirths). Read
	// without mu.
	stored     atomic.Bool
	dirtySince time.Time // when uncommitted changes first appeared
}

func newInode(id uint64) *inode {
	ino := &inode{id: id}
	ino.uploaded = sync.NewCond(&ino.mu)
	return ino
}

func (ino *inode) isDirty() bool {
	ino.mu.Lock()
	defer ino.mu.Unlock()
	return ino.dirtyLocked()
}

// dirtyLocked reports uncommitted changes: content or attributes.
func (ino *inode) dirtyLocked() bool { return ino.file.dirty() || ino.file.attrs != nil }

// inode returns the loaded inode id, loading it from the store if needed.
// A tombstoned or missing inode yields ErrNotExist.
func (fs *FS) inode(ctx context.Context, id uint64) (*inode, error) {
	return fs.inodeBorn(ctx, id, nil, time.Time{})
}

// child returns the inode that entry e of directory dir names. An inode
// first loaded from an entry must be loaded through it: a born put's file
// has no version in the store until it is written (FORMAT.md §5.4).
func (fs *FS) child(ctx context.Context, dir *inode, e format.Entry) (*inode, error) {
	var at time.Time
	if e.Born != nil {
		dir.mu.Lock()
		at = dir.curTime
		dir.mu.Unlock()
	}
	return fs.inodeBorn(ctx, e.Child, e.Born, at)
}

// inodeBorn is inode, for a file whose version 1 may be birth, read from
// a directory version of store time at (see inode.birthAt).
func (fs *FS) inodeBorn(ctx context.Context, id uint64, birth *format.Birth, at time.Time) (*inode, error) {
	fs.mu.Lock()
	ino := fs.inodes[id]
	if ino == nil {
		ino = newInode(id)
		fs.inodes[id] = ino
		if birth == nil {
			birth, at = fs.forgotten.take(id)
		}
	}
	fs.mu.Unlock()
	if birth != nil {
		ino.mu.Lock()
		if ino.birth == nil {
			ino.birth, ino.birthAt = birth, at
		}
		ino.mu.Unlock()
	}
	if err := fs.checkFenced(); err != nil {
		return nil, err
	}
	ino.mu.Lock()
	loaded := ino.cur != nil
	// A version another host announced is fetched at the next use, unless
	// open handles here still read the version they opened.
	stale := loaded && ino.stale && ino.open == 0 && !ino.dirtyLocked()
	ino.mu.Unlock()
	if !loaded || stale {
		ino.commitMu.Lock()
		ino.mu.Lock()
		done := ino.cur != nil && !ino.stale // loaded by whoever held commitMu
		ino.mu.Unlock()
		var err error
		if !done {
			err = fs.refresh(ctx, ino)
		}
		if err == nil {
			ino.mu.Lock()
			ino.stale = false
			ino.mu.Unlock()
		}
		ino.commitMu.Unlock()
		if err != nil {
			if errors.Is(err, ErrNotExist) {
				fs.mu.Lock()
				if fs.inodes[id] == ino {
					delete(fs.inodes, id)
				}
				fs.mu.Unlock()
			}
			return nil, err
		}
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.cur.Kind == format.KindTombstone {
		return ino, fmt.Errorf("inode %016x: %w (deleted)", id, ErrNotExist)
	}
	return ino, nil
}

// forgottenBirths keeps the births of the last never-written born files
// whose inode Forget dropped (FS.forgotten, guarded by FS.mu). The kernel
// may still name such a file by its node id: a lookup racing the sweep
// of its forgotten nodes (fusefs) can hand it the id again right before
// the inode is dropped. Loaded again by id alone, it would have no
// version and no birth: ENOENT for a file that exists.
type forgottenBirths struct {
	m     map[uint64]birthRef
	order []uint64 // oldest first
}

type birthRef struct {
	b  *format.Birth
	at time.Time
}

// maxForgottenBirths bounds forgottenBirths (a few hundred KiB).
const maxForgottenBirths = 4096

func (f *forgottenBirths) put(id uint64, b *format.Birth, at time.Time) {
	if f.m == nil {
		f.m = map[uint64]birthRef{}
	}
	if _, ok := f.m[id]; !ok {
		f.order = append(f.order, id)
	}
	f.m[id] = birthRef{b, at}
	for len(f.order) > maxForgottenBirths {
		delete(f.m, f.order[0])
		f.order = f.order[1:]
	}
}

// take returns and forgets the birth kept for id, if any.
func (f *forgottenBirths) take(id uint64) (*format.Birth, time.Time) {
	r, ok := f.m[id]
	if !ok {
		return nil, time.Time{}
	}
	delete(f.m, id) // (its id stays in order until it is pushed out)
	return r.b, r.at
}

// install registers a freshly created inode version as the current state.
func (fs *FS) install(n *format.Inode, at time.Time) *inode {
	ino := newInode(n.ID)
	ino.setCurLocked(n, at, nil)
	fs.mu.Lock()
	fs.inodes[n.ID] = ino
	fs.mu.Unlock()
	return ino
}

// setCurLocked installs n as the current version. For directories, st is
// the entry state at n (nil for a full version n: built from it).
func (ino *inode) setCurLocked(n *format.Inode, at time.Time, st *format.DirState) {
	if n.Kind == format.KindTombstone && ino.cur != nil && ino.cur.Kind != format.KindTombstone {
		ino.last = ino.cur
	}
	ino.cur = n
	ino.curTime = at
	ino.level = 0
	ino.bornOnly = false
	ino.stored.Store(true)
	ino.checked = time.Now()
	if n.Version >= ino.nextVersion {
		ino.nextVersion = n.Version + 1
	}
	if n.Kind == format.KindDir {
		if st == nil {
			st = format.NewDirState()
			st.Apply(n.Entries) // a full version, validated when decoded or encoded
		}
		ino.entries, ino.pending, ino.pdelete = st.Committed, st.Pending, st.Delete
		ino.pendSince = pendingSince(ino.pendSince, st, at)
		ino.subdirs = 0
		for _, e := range st.Committed {
			if e.ChildKind == format.KindDir {
				ino.subdirs++
			}
		}
	} else {
		ino.entries, ino.pending, ino.pdelete, ino.pendSince = nil, nil, nil, nil
	}
	if n.Kind == format.KindFile && !ino.file.dirty() {
		ino.file.size = n.Size
	}
}

// pendingSince is pendSince for a directory state st of a version of time
// at, following old (the pendSince of the version before).
func pendingSince(old map[uint64]time.Time, st *format.DirState, at time.Time) map[uint64]time.Time {
	if len(st.Pending) == 0 && st.Delete == nil {
		return nil
	}
	m := make(map[uint64]time.Time, len(st.Pending)+1)
	note := func(tx uint64) {
		if t, ok := old[tx]; ok && t.Before(at) {
			m[tx] = t
		} else {
			m[tx] = at
		}
	}
	for _, p := range st.Pending {
		note(p.Tx)
	}
	if st.Delete != nil {
		note(st.Delete.Tx)
	}
	return m
}

// refresh brings ino.cur up to the newest version in the store and queues
// the invalidation of what the kernel may have cached of what changed
// (invalidate.go). The caller holds ino.commitMu.
func (fs *FS) refresh(ctx context.Context, ino *inode) error {
	ino.mu.Lock()
	before := ino.viewLocked()
	ino.mu.Unlock()
	err := fs.fetchNewest(ctx, ino)
	fs.invalidateChanged(ino, before)
	return err
}

// refreshForOpen is refresh for an open of ino, which answers the kernel
// itself: a file's open tells it to drop the attributes and pages it has
// cached (Open's keepCache, from ino.changed) before the open returns, and
// a create's reply carries the attributes. Queued as well, the same
// invalidation would reach the kernel after the open, while the program
// fstats or reads the file, and make it drop the fresh attributes it is
// fetching (see revalidate).
//
// A file found deleted fails the open, which then tells the kernel
// nothing: that change is queued as refresh queues it.
func (fs *FS) refreshForOpen(ctx context.Context, ino *inode) error {
	ino.mu.Lock()
	file := ino.cur != nil && ino.cur.Kind == format.KindFile
	before := ino.viewLocked()
	ino.mu.Unlock()
	if !file {
		return fs.refresh(ctx, ino)
	}
	err := fs.fetchNewest(ctx, ino)
	ino.mu.Lock()
	file = ino.cur.Kind == format.KindFile
	ino.mu.Unlock()
	if !file {
		fs.invalidateChanged(ino, before)
	}
	return err
}

// fetchNewest brings ino.cur up to the newest version in the store. The
// caller holds ino.commitMu. Versions whose objects fail their checks are
// logged and skipped (never served); the next commit numbers past them.
func (fs *FS) fetchNewest(ctx context.Context, ino *inode) error {
	dir := fs.keys.InodeDir(ino.id)
	asOf := fs.opts.AsOf
	if !asOf.IsZero() {
		ino.mu.Lock()
		loaded := ino.cur != nil
		ino.mu.Unlock()
		if loaded {
			return nil // a point-in-time view never changes
		}
	}
	page, err := fs.firstPage(ctx, ino, dir)
	if err != nil {
		return fmt.Errorf("list versions of inode %016x: %w", ino.id, err)
	}
	if len(page.Objects) == 0 {
		if len(fs.levels) > 1 {
			return fs.fallThrough(ctx, ino)
		}
		if fs.installBirth(ino) {
			return nil
		}
		return fmt.Errorf("inode %016x: %w", ino.id, ErrNotExist)
	}
	ino.mu.Lock()
	cur := ino.cur
	curOwn := cur != nil && ino.level == 0
	ino.mu.Unlock()
	// A key that is not a version key (a stray object sorting first) must
	// not make the inode unreadable: the walk below logs and skips it.
	_, newest, err := fs.keys.ParseInode(page.Objects[0].Key)
	if err == nil && curOwn && cur.Version == newest {
		ino.mu.Lock()
		ino.checked = time.Now()
		ino.mu.Unlock()
		return nil
	}
	// Walk back from the newest version past any corrupt ones, starting
	// with the page already read (in the common case the newest version is
	// readable, and one LIST was enough).
	startAfter := ""
	skipped := uint64(0)
	for first := true; ; first = false {
		if !first {
			if page, err = fs.store.List(ctx, dir, startAfter, 100); err != nil {
				return fmt.Errorf("list versions of inode %016x: %w", ino.id, err)
			}
		}
		for _, obj := range page.Objects {
			_, v, err := fs.keys.ParseInode(obj.Key)
			if err != nil {
				if _, seen := fs.strays.LoadOrStore(obj.Key, true); !seen {
					fs.log.Error("ignoring object with a malformed inode key", "key", obj.Key)
				}
				continue
			}
			if !asOf.IsZero() && obj.LastModified.After(asOf) {
				continue // committed after the point in time this view shows
			}
			if curOwn && v <= cur.Version {
				// Every version newer than ours is corrupt: keep ours and
				// number the next commit past them.
				ino.mu.Lock()
				ino.checked = time.Now()
				if skipped >= ino.nextVersion {
					ino.nextVersion = skipped + 1
				}
				ino.mu.Unlock()
				return nil
			}
			var base *format.Inode // a delta may build on cur when cur is this level's
			if curOwn {
				base = cur
			}
			n, entries, err := fs.loadVersion(ctx, ino, 0, v, base)
			if err != nil {
				if errors.Is(err, ErrCorrupt) {
					fs.log.Error("skipping corrupt inode version", "key", obj.Key, "err", err)
					if v > skipped {
						skipped = v
					}
					continue
				}
				return err
			}
			ino.mu.Lock()
			// What the kernel may have cached of the file is of another
			// version: another host's, or any, when this is the first load
			// of a version of its own (this host forgot the inode while the
			// kernel still held it, or answered a lookup of it just before
			// forgetting it). The next open drops those caches (Open's
			// keepCache). (A first load from a clone's source level, or of
			// a born put's version 1, does not: neither ever changes.)
			if cur == nil || n.Writer != fs.opts.HostID {
				ino.changed = true
			}
			if fs.log.Enabled(ctx, slog.LevelDebug) {
				from := uint64(0)
				if cur != nil {
					from = cur.Version
				}
				fs.log.Debug("refreshed inode", "inode", fmt.Sprintf("%016x", ino.id), "from", from, "version", n.Version,
					"writer", fmt.Sprintf("%016x", n.Writer), "size", n.Size, "changed", ino.changed)
			}
			ino.setCurLocked(n, obj.LastModified, entries)
			if skipped >= ino.nextVersion {
				ino.nextVersion = skipped + 1
			}
			ino.mu.Unlock()
			return nil
		}
		if !page.Truncated || len(page.Objects) == 0 {
			// No version read and none corrupt: every version is newer
			// than the view's time, or there is none, only keys that are
			// not version keys (not s3gfs objects, §2.2).
			if skipped == 0 {
				if len(fs.levels) > 1 {
					return fs.fallThrough(ctx, ino)
				}
				if fs.installBirth(ino) {
					return nil
				}
				if asOf.IsZero() {
					return fmt.Errorf("inode %016x: %w", ino.id, ErrNotExist)
				}
				return fmt.Errorf("inode %016x did not exist at %s: %w", ino.id, asOf.Format(time.RFC3339), ErrNotExist)
			}
			return fmt.Errorf("inode %016x: no readable version: %w", ino.id, ErrCorrupt)
		}
		startAfter = page.Objects[len(page.Objects)-1].Key
	}
}

// fallThrough loads an inode that has no version of its own visible in a
// clone from the first level of the chain that has one (FORMAT.md §16.2).
// The caller holds ino.commitMu.
func (fs *FS) fallThrough(ctx context.Context, ino *inode) error {
	ino.mu.Lock()
	known := ino.cur != nil && ino.level > 0
	if known {
		ino.checked = time.Now() // the levels below never change
	}
	ino.mu.Unlock()
	if known {
		return nil
	}
	for k := 1; k < len(fs.levels); k++ {
		n, entries, err := fs.loadAt(ctx, ino, k)
		if errors.Is(err, errNoneVisible) {
			continue
		}
		if err != nil {
			return err
		}
		ino.mu.Lock()
		// No time of this volume: a handle reading it holds nothing of
		// the clone in this host's ping (its objects are the source's,
		// kept there by the pin, FORMAT.md §16.5); holding the clone's
		// creation kept the clone's reaper from collecting anything
		// while such a file was open.
		ino.setCurLocked(n, time.Time{}, entries)
		ino.level = k
		ino.mu.Unlock()
		return nil
	}
	if fs.installBirth(ino) {
		return nil
	}
	return fmt.Errorf("inode %016x: %w", ino.id, ErrNotExist)
}

// installBirth makes the version 1 its directory entry carries (a born
// put, FORMAT.md §5.4) the current version of ino, which has no version
// in the store visible to this view, and reports whether it had one. A
// file known to have had a version of its own has none then because it
// was deleted and reaped: that is not undone. The caller holds
// ino.commitMu.
func (fs *FS) installBirth(ino *inode) bool {
	ino.mu.Lock()
	defer ino.mu.Unlock()
	switch {
	case ino.birth == nil:
		return false
	case ino.bornOnly:
		ino.checked = time.Now()
		return true
	case ino.cur != nil:
		return false
	}
	ino.setCurLocked(ino.birth.Version1(ino.id), ino.birthAt, nil)
	ino.bornOnly = true
	ino.stored.Store(false)
	return true
}

// errNoneVisible: a level has no version of an inode at its time.
var errNoneVisible = errors.New("no version visible at this level")

// loadAt reads the version of ino visible at level k's time: the newest
// readable one at or before it.
func (fs *FS) loadAt(ctx context.Context, ino *inode, k int) (*format.Inode, *format.DirState, error) {
	lv := &fs.levels[k]
	dir := lv.keys.InodeDir(ino.id)
	after, skipped := "", false
	for {
		page, err := lv.store.List(ctx, dir, after, 100)
		if err != nil {
			return nil, nil, fmt.Errorf("list versions of inode %016x in source level %d: %w", ino.id, k, err)
		}
		for _, obj := range page.Objects {
			after = obj.Key
			_, v, err := lv.keys.ParseInode(obj.Key)
			if err != nil || obj.LastModified.After(lv.at) {
				continue
			}
			n, entries, err := fs.loadVersion(ctx, ino, k, v, nil)
			if errors.Is(err, ErrCorrupt) {
				fs.log.Error("skipping corrupt inode version of a clone's source", "bucket", lv.bucket, "key", obj.Key, "err", err)
				skipped = true
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			return n, entries, nil
		}
		if !page.Truncated || len(page.Objects) == 0 {
			break
		}
	}
	if skipped {
		// Not passed through: that would show an older state of it.
		return nil, nil, fmt.Errorf("inode %016x: no readable version in source level %d: %w", ino.id, k, ErrCorrupt)
	}
	return nil, nil, errNoneVisible
}

// firstPage lists the newest version of ino (LIST max-keys=1), or takes
// it from a hint listed shortly before for a first load, unless another
// host announced a change of the inode since: a loaded inode is always
// listed afresh (open's close-to-open check, revalidation).
func (fs *FS) firstPage(ctx context.Context, ino *inode, dir string) (objstore.ListPage, error) {
	ino.mu.Lock()
	h, at := ino.hint, ino.hintedAt
	ino.hint = nil
	// A change another host announced since (sync marks the inode stale)
	// makes the hint useless.
	fresh := h != nil && ino.cur == nil && !ino.stale && time.Since(at) < hintLife
	ino.mu.Unlock()
	if fresh {
		// Truncated: a walk past a corrupt newest version lists on.
		return objstore.ListPage{Objects: []objstore.ObjectInfo{*h}, Truncated: true}, nil
	}
	return fs.store.List(ctx, dir, "", 1)
}

// getVersion reads and decodes version v of inode id at level k, with its
// extent origins made relative to this volume.
func (fs *FS) getVersion(ctx context.Context, k int, id, v uint64) (*format.Inode, time.Time, error) {
	lv := &fs.levels[k]
	key := lv.keys.Inode(id, v)
	obj, info, err := lv.store.Get(ctx, key)
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return nil, time.Time{}, fmt.Errorf("inode %016x v%d: %w", id, v, ErrNotExist)
		}
		return nil, time.Time{}, fmt.Errorf("read inode %016x v%d: %w", id, v, err)
	}
	n, err := format.DecodeInode(obj, fs.vol.Header.ExtentSize)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
	}
	if n.ID != id || n.Version != v {
		return nil, time.Time{}, fmt.Errorf("%s: %w: object holds inode %016x v%d", key, ErrCorrupt, n.ID, n.Version)
	}
	if err := n.CheckOrigins(lv.depth); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
	}
	for i := range n.Extents {
		n.Extents[i].Origin += uint8(k)
	}
	return n, info.LastModified, nil
}

// loadVersion reads version v at level k and, for a directory delta,
// rebuilds its full entry list from its base (or from cur, a version of
// the same level, when cur is in the same chain).
func (fs *FS) loadVersion(ctx context.Context, ino *inode, k int, v uint64, cur *format.Inode) (*format.Inode, *format.DirState, error) {
	n, _, err := fs.getVersion(ctx, k, ino.id, v)
	if err != nil {
		return nil, nil, err
	}
	if n.Kind != format.KindDir || n.IsFull() {
		return n, nil, nil
	}
	var st *format.DirState
	from := n.Base
	if cur != nil && cur.Kind == format.KindDir && cur.Version >= n.Base && cur.Version < v {
		ino.mu.Lock()
		st = (&format.DirState{Committed: ino.entries, Pending: ino.pending}).Clone()
		ino.mu.Unlock()
		from = cur.Version + 1
	}
	chain := make([]*format.Inode, v-from)
	var wg sync.WaitGroup
	errs := make([]error, len(chain))
	for i := range chain {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			chain[i], _, errs[i] = fs.getVersion(ctx, k, ino.id, from+uint64(i))
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, ErrNotExist) {
			return nil, nil, fmt.Errorf("directory %016x v%d: a version of its delta chain is missing: %w: %v", ino.id, v, ErrCorrupt, err)
		}
		return nil, nil, err
	}
	chain = append(chain, n)
	for _, x := range chain {
		if x.Kind != format.KindDir || (x.Version != n.Base && x.Base != n.Base) {
			return nil, nil, fmt.Errorf("directory %016x: v%d does not belong to the delta chain of v%d: %w", ino.id, x.Version, v, ErrCorrupt)
		}
		if x.IsFull() {
			st = format.NewDirState()
		}
		if err := st.Apply(x.Entries); err != nil {
			return nil, nil, fmt.Errorf("directory %016x v%d: %w: %v", ino.id, x.Version, ErrCorrupt, err)
		}
	}
	return n, st, nil
}

// singleflight merges concurrent fetches of one key.
type singleflight struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	val  []byte
	err  error
}

// join waits for the fetch of key in flight, if there is one, and
// returns its result; ok reports whether there was one.
func (s *singleflight) join(key string) (val []byte, ok bool, err error) {
	s.mu.Lock()
	f, ok := s.calls[key]
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	<-f.done
	return f.val, true, f.err
}

func (s *singleflight) do(key string, fn func() ([]byte, error)) ([]byte, error) {
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*flight{}
	}
	if f, ok := s.calls[key]; ok {
		s.mu.Unlock()
		<-f.done
		return f.val, f.err
	}
	f := &flight{done: make(chan struct{})}
	s.calls[key] = f
	s.mu.Unlock()
	f.val, f.err = fn()
	s.mu.Lock()
	delete(s.calls, key)
	s.mu.Unlock()
	close(f.done)
	return f.val, f.err
}
