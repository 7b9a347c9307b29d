package vfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// maxCommitAttempts bounds how often one commit re-applies its change after
// losing the race for the next version.
const maxCommitAttempts = 64

// createVersion creates an inode version object with a conditional
// create, within this host's lease (see withinLease). It settles what a
// failed request leaves uncertain: it reports success when the key holds
// exactly obj (a create that landed although its response was lost, or a
// retry that met its own first attempt; no other host writes these bytes:
// they carry this host's id and clock), ErrExists when it holds another
// host's object, and an error only while the store cannot say which.
// Reporting a create that landed as failed would make the caller apply
// its change twice, or give up on a change that was made.
func (fs *FS) createVersion(ctx context.Context, key string, obj []byte) (objstore.ObjectInfo, error) {
	return fs.createObject(ctx, key, obj, time.Time{})
}

// createObject is createVersion for any object this host creates
// conditionally, sent so that the store refuses it after limit as well as
// after this host's fence instant (zero limit: the fence instant only).
func (fs *FS) createObject(ctx context.Context, key string, obj []byte, limit time.Time) (objstore.ObjectInfo, error) {
	const attempts = 4
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			time.Sleep(time.Duration(50<<i) * time.Millisecond)
		}
		if ferr := fs.checkFenced(); ferr != nil {
			return objstore.ObjectInfo{}, ferr
		}
		lctx, cancel := fs.withinLease(ctx)
		if !limit.IsZero() {
			lctx, cancel = withLimit(lctx, cancel, limit)
		}
		var info objstore.ObjectInfo
		info, err = fs.putWithinLease(lctx, key, obj, limit)
		err = leaseErr(lctx, err)
		if err == nil {
			cancel()
			return info, nil
		}
		if errors.Is(err, ErrFenced) || errors.Is(err, objstore.ErrAccessDenied) || errors.Is(err, objstore.ErrNoBucket) {
			cancel()
			return objstore.ObjectInfo{}, err
		}
		got, ginfo, gerr := fs.store.Get(lctx, key)
		gerr = leaseErr(lctx, gerr)
		cancel()
		switch {
		case gerr == nil && bytes.Equal(got, obj):
			fs.log.Debug("conditional create reported a failure but holds our object", "key", key, "err", err)
			return ginfo, nil
		case gerr == nil:
			return objstore.ObjectInfo{}, fmt.Errorf("%s: %w", key, objstore.ErrExists)
		case errors.Is(gerr, objstore.ErrNotFound) && errors.Is(err, objstore.ErrExists):
			// "Exists" yet nothing to read: try again.
		case errors.Is(gerr, objstore.ErrNotFound):
			// The create did not land: it is safe to send it again.
		case errors.Is(gerr, ErrFenced):
			return objstore.ObjectInfo{}, gerr
		}
	}
	if errors.Is(err, objstore.ErrExists) {
		// The key exists, but whose it is could not be read: it may be
		// this host's own create. Reporting a lost race would make the
		// caller re-apply its change on top of itself.
		return objstore.ObjectInfo{}, fmt.Errorf("%s exists, but reading it back to tell whose it is failed: %w", key, objstore.ErrUnavailable)
	}
	return objstore.ObjectInfo{}, err
}

// putWithinLease sends the conditional create of an inode version. Where
// the store can enforce a deadline by its own clock (objstore.Deadliner),
// the request expires at this host's fence instant: a request the network
// delivers after this host may have lapsed is refused by the store, not
// applied (protocol invariant 8).
func (fs *FS) putWithinLease(ctx context.Context, key string, obj []byte, limit time.Time) (objstore.ObjectInfo, error) {
	d, ok := fs.store.(objstore.Deadliner)
	at, pinging := fs.fenceAt()
	if pinging && !limit.IsZero() && limit.Before(at) {
		at = limit
	}
	if !ok || !pinging {
		return fs.store.PutIfAbsent(ctx, key, obj)
	}
	info, err := d.PutIfAbsentWithin(ctx, key, obj, time.Until(at))
	if errors.Is(err, objstore.ErrExpired) {
		return info, fmt.Errorf("%w (the store refused a commit that reached it after the ping lapsed): %v", ErrFenced, err)
	}
	return info, err
}

// withLimit bounds ctx (with its cancel) by limit as well.
func withLimit(ctx context.Context, cancel context.CancelFunc, limit time.Time) (context.Context, context.CancelFunc) {
	c2, cancel2 := context.WithDeadline(ctx, limit)
	return c2, func() { cancel2(); cancel() }
}

// casLoop runs the compare-and-swap protocol for one inode: build the next
// version from the current one, create it conditionally, and on losing the
// race refresh and build again. build runs with ino.mu held and returns nil
// when there is nothing to write; installed runs with ino.mu held after the
// version was created. The caller holds ino.commitMu.
//
// A version key must never be created twice (PROTOCOL 1, 3): were the
// reaper to delete version cur+1 (superseded by a newer one this host has
// not seen), a create of it would succeed and bury this host's change
// under the newer one. The reaper deletes a version only once its
// successor is older than its grace (at least twice the longest host
// expiry: FORMAT §15.1), and cur+1 did not exist when this host last
// listed the inode (ino.checked); so a view checked less than a host
// expiry ago is safe to build on, and an older one is listed again first,
// whatever this host's ping held. So is a version of a clone's source
// (level > 0): a handle reading it holds no time of the clone's own
// versions in the ping (FORMAT §16.5), so the clone's reaper may delete
// those another host writes meanwhile; the first commit of such an inode
// (its copy-up) lists the clone's own versions first.
func (fs *FS) casLoop(ctx context.Context, ino *inode, build func() (*format.Inode, error), installed func(n *format.Inode, at time.Time)) error {
	ctx = context.WithoutCancel(ctx) // a commit is never abandoned halfway by an interrupt
	limit := fs.opts.HostExpiry
	if limit == 0 {
		limit = time.Minute // no pings (SyncInterval 0): below any grace a reaper uses
	}
	ino.mu.Lock()
	old := time.Since(ino.checked) > limit || ino.level > 0
	ino.mu.Unlock()
	if old {
		if err := fs.refresh(ctx, ino); err != nil {
			return fmt.Errorf("commit inode %016x: re-read a view older than the host expiry: %w", ino.id, err)
		}
	}
	for attempt := 0; ; attempt++ {
		ino.mu.Lock()
		if ino.cur.Kind == format.KindTombstone {
			ino.mu.Unlock()
			return fmt.Errorf("inode %016x: %w (deleted)", ino.id, ErrNotExist)
		}
		next, err := build()
		if err != nil || next == nil {
			ino.mu.Unlock()
			return err
		}
		next.ID = ino.id
		next.Version = ino.nextVersion
		next.Writer = fs.opts.HostID
		ino.mu.Unlock()

		obj, err := format.EncodeInode(next)
		if err != nil {
			return fmt.Errorf("encode inode %016x: %w", ino.id, err)
		}
		if err := fs.checkFenced(); err != nil {
			return err // a fenced host commits nothing (protocol invariant 8)
		}
		key := fs.keys.Inode(ino.id, next.Version)
		info, err := fs.createVersion(ctx, key, obj)
		if err == nil {
			ino.mu.Lock()
			installed(next, info.LastModified)
			ino.mu.Unlock()
			fs.noteCommitted(ino.id, next.Version)
			return nil
		}
		if !errors.Is(err, objstore.ErrExists) {
			return fmt.Errorf("commit inode %016x v%d: %w", ino.id, next.Version, err)
		}
		if attempt >= maxCommitAttempts {
			return fmt.Errorf("commit inode %016x: %w", ino.id, ErrConflict)
		}
		// Lost the race: read the winner, then re-apply on top of it.
		if attempt > 2 {
			time.Sleep(time.Duration(rand.IntN(1<<min(attempt, 10))) * time.Millisecond)
		}
		if err := fs.refresh(ctx, ino); err != nil {
			return err
		}
	}
}

// baseVersion copies the attributes of cur into a new version (no kind
// specific body).
func baseVersion(cur *format.Inode) *format.Inode {
	n := *cur
	n.Xattrs = append([]format.Xattr(nil), cur.Xattrs...)
	n.Data, n.Extents, n.Entries, n.Inline = nil, nil, nil, false
	return &n
}

// dirOp is one entry change within a dirChange.
type dirOp struct {
	name      string
	remove    bool             // remove name; otherwise put name -> child
	child     uint64           // put: the child; remove: the child name must refer to (0 = any)
	kind      format.InodeKind // put: the child's kind
	noReplace bool             // put: fail with ErrExist when name exists
	// replaceDir is the id of an existing directory entry a put may replace
	// (the caller tombstoned it after checking it was empty, or a rename
	// transaction deletes it with its decision).
	replaceDir uint64
	// wantDir: remove only a directory (rmdir) when +1, only a non-directory
	// (unlink) when -1.
	wantDir int8
	// exchange: this put is one half of a RENAME_EXCHANGE. name must still
	// refer to replaceDir; it is swapped whatever the kinds of the two
	// children (renameat2 exchanges a file with a directory, and neither
	// is removed, so the type and emptiness checks of a replacing put do
	// not apply).
	exchange bool
	// notSame: a rename's put, which fails with errSameInode when name
	// already refers to child (POSIX: renaming one name of an inode onto
	// another does nothing; across directories, another host's move of
	// the same inode has put this name, and it is that move's, not ours).
	notSame bool
	// tx: write this put or remove as a pending entry of rename
	// transaction tx (FORMAT.md §5.5).
	tx uint64
	// born: a committed put of a file whose version 1 this is (a born
	// put, FORMAT.md §5.4): its create, or a rename within the directory
	// of a name that carried it.
	born *format.Birth
}

// errSameInode: a rename's new name already refers to the inode it moves.
var errSameInode = errors.New("the new name already refers to the inode")

// dirChange is a set of entry changes applied to one directory atomically,
// possibly group-committed in one version with other changes.
type dirChange struct {
	ops       []dirOp
	mutate    func(n *format.Inode) error // attribute change, may be nil
	tombstone bool                        // delete the directory itself if empty
	// pdelete: a pending delete of the (empty) directory for rename
	// transaction pdelete (FORMAT.md §5.5 X3).
	pdelete uint64
	// fold: write a version if decided pending entries can be ended.
	fold bool

	replaced []format.Entry // out: entries this change removed or replaced
	at       time.Time      // out: the store time of the version holding it
	err      error
	done     chan struct{}
	// wait: with err errWaitDecision, the undecided renames this change
	// must wait for (outside the directory's commit, see applyDir);
	// busy: those whose wait gave up, which fail it.
	wait map[uint64]pendingRef
	busy map[uint64]error
}

// errWaitDecision: a change that touches a name with an undecided pending
// entry; it was left out of the version written, and its caller waits
// for the decision before trying it again (so other changes of the
// directory never wait behind it).
var errWaitDecision = errors.New("waits for a rename decision")

// errDeferred: a change that cannot share a version with one accepted
// before it in the batch (a pending delete must be its version's last
// entry); it goes into the next version.
var errDeferred = errors.New("deferred to the next version")

// applyDir commits ch to directory dir, group-committing it with changes
// queued concurrently by other goroutines of this host. A change that
// meets another rename's undecided pending entry waits for its decision
// here, outside the directory's commit, and is then tried again.
func (fs *FS) applyDir(ctx context.Context, dir *inode, ch *dirChange) error {
	if ch.tombstone || ch.pdelete != 0 {
		fs.waitCreated(dir, "") // empty also of this host's deferred creates
	}
	for {
		ch.done = make(chan struct{})
		dir.mu.Lock()
		dir.queue = append(dir.queue, ch)
		if dir.leading {
			dir.mu.Unlock()
		} else {
			dir.leading = true
			dir.mu.Unlock()
			fs.leadDir(ctx, dir, ch)
		}
		<-ch.done
		if ch.err != errWaitDecision {
			return ch.err
		}
		for tx, ref := range ch.wait {
			if err := fs.resolve(ctx, ref); err != nil {
				if ch.busy == nil {
					ch.busy = map[uint64]error{}
				}
				ch.busy[tx] = err
			}
		}
	}
}

// leadDir commits the queued changes of dir, batch after batch, until the
// queue is empty or own (the leader's own change) is done: then it hands
// the rest to a new leader, so that a caller never waits for changes of
// others (which may wait for a decision the caller is about to make).
func (fs *FS) leadDir(ctx context.Context, dir *inode, own *dirChange) {
	dir.mu.Lock()
	for len(dir.queue) > 0 {
		batch := dir.queue
		dir.queue = nil
		dir.mu.Unlock()
		fs.materializeBeforeFull(ctx, dir)
		dir.commitMu.Lock()
		fs.commitDirBatch(ctx, dir, batch)
		dir.commitMu.Unlock()
		var again []*dirChange
		ownDone := false
		for _, c := range batch {
			if c.err == errDeferred {
				again = append(again, c)
			} else {
				if c == own {
					ownDone = true
				}
				close(c.done)
			}
		}
		dir.mu.Lock()
		dir.queue = append(again, dir.queue...)
		if ownDone && len(dir.queue) > 0 {
			dir.mu.Unlock()
			go fs.leadDir(context.WithoutCancel(ctx), dir, nil)
			return
		}
	}
	dir.leading = false
	dir.mu.Unlock()
}

// commitDirBatch writes one directory version holding every acceptable
// change of batch; each change's err says whether it was accepted. A
// change that touches another rename's undecided pending entry is left
// out (errWaitDecision: its caller waits, see applyDir); what the batch as
// a whole needs (the decision of the directory's own pending delete, the
// outcomes of pending entries to fold) is resolved here first, outside
// the directory's mu, waiting for it.
func (fs *FS) commitDirBatch(ctx context.Context, dir *inode, batch []*dirChange) {
	busy := map[uint64]error{}
	looked := map[uint64]bool{}
	for {
		err := fs.commitDirOnce(ctx, dir, batch, busy, looked)
		var need *errNeedDecision
		if !errors.As(err, &need) {
			if err != nil {
				for _, c := range batch {
					if c.err == nil {
						c.err = err
					}
				}
			}
			return
		}
		for tx, ref := range need.refs {
			if err := fs.resolve(ctx, ref); err != nil {
				busy[tx] = err
			}
		}
		for tx := range need.lookups {
			looked[tx] = true
			if _, err := fs.lookupDecision(ctx, dir.level, tx); err != nil {
				fs.log.Debug("read a rename decision to fold it", "txid", fmt.Sprintf("%016x", tx), "err", err)
			}
		}
	}
}

func (fs *FS) commitDirOnce(ctx context.Context, dir *inode, batch []*dirChange, busy map[uint64]error, looked map[uint64]bool) error {
	var st *format.DirState // the state the version written leads to (deltas)
	return fs.casLoop(ctx, dir, func() (*format.Inode, error) {
		if dir.cur.Kind != format.KindDir {
			return nil, fmt.Errorf("inode %016x: %w", dir.id, ErrNotDir)
		}
		b := &dirBuild{fs: fs, dir: dir, busy: busy, looked: looked, need: map[uint64]pendingRef{}, lookups: map[uint64]bool{}, overlay: map[string]*format.Entry{}, pend: map[string]*format.Entry{}}
		next, err := b.build(batch)
		if err != nil || next == nil {
			return nil, err
		}
		st = nil
		return next, nil
	}, func(n *format.Inode, at time.Time) {
		if n.Kind == format.KindDir && !n.IsFull() {
			st = &format.DirState{Committed: dir.entries, Pending: dir.pending}
			if err := st.Apply(n.Entries); err != nil {
				fs.log.Error("directory version written does not apply", "dir", fmt.Sprintf("%016x", dir.id), "err", err)
			}
		}
		dir.setCurLocked(n, at, st)
		for _, c := range batch {
			c.at = at // (read only by the changes the version holds)
		}
	})
}

// dirBuild builds the next version of a directory from a batch of changes
// (with dir.mu held).
type dirBuild struct {
	fs   *FS
	dir  *inode
	busy map[uint64]error
	need map[uint64]pendingRef
	// looked: decisions read during this batch; lookups: decisions to
	// read (without waiting) so that the version can fold them.
	looked  map[uint64]bool
	lookups map[uint64]bool
	// overlay: name -> new committed entry (nil: removed), including the
	// pending entries of decided transactions ended (folded) here.
	overlay map[string]*format.Entry
	// pend: name -> new pending entry.
	pend map[string]*format.Entry
	// cur: the change being evaluated (nil: the batch as a whole).
	cur *dirChange
}

// undecided returns the pending entry of name still standing after the
// folds of this version (one this host must not change the name under).
func (b *dirBuild) undecided(name string) (format.Entry, bool) {
	if _, folded := b.overlay[name]; folded {
		return format.Entry{}, false
	}
	p, ok := b.dir.pending[name]
	return p, ok
}

// blocked reports (as an error) that a change (b.cur, or the batch as a
// whole) must wait for p's decision, or fails it when that wait already
// gave up.
func (b *dirBuild) blocked(p format.Entry) error {
	if err := b.busy[p.Tx]; err != nil {
		return err
	}
	if b.cur != nil {
		if err := b.cur.busy[p.Tx]; err != nil {
			return err
		}
	}
	seen, ok := b.dir.pendSince[p.Tx]
	if !ok {
		seen = b.dir.curTime
	}
	ref := pendingRef{tx: p.Tx, host: p.Host, level: b.dir.level, dir: b.dir.id, seen: seen}
	if b.cur != nil {
		if b.cur.wait == nil {
			b.cur.wait = map[uint64]pendingRef{}
		}
		b.cur.wait[p.Tx] = ref
	} else {
		b.need[p.Tx] = ref
	}
	return errNeedDecisionMarker
}

var errNeedDecisionMarker = errors.New("waits for a decision")

func (b *dirBuild) build(batch []*dirChange) (*format.Inode, error) {
	dir, fs := b.dir, b.fs
	// The current version's pending delete: its decision first.
	deleted := false
	if pd := dir.pdelete; pd != nil {
		o, ok := fs.knownOutcome(dir.level, pd.Tx)
		if !ok {
			if err := b.blocked(*pd); err != errNeedDecisionMarker {
				for _, c := range batch {
					c.err = err
				}
				return nil, nil
			}
			return nil, &errNeedDecision{refs: b.need}
		}
		deleted = o == format.Commit
	}
	if deleted {
		// Replaced by a rename: only its tombstone may follow.
		tomb := false
		for _, c := range batch {
			c.err, c.replaced = nil, nil
			if c.tombstone || c.fold {
				tomb = true
			} else {
				c.err = fmt.Errorf("directory %016x: %w (replaced by a rename)", dir.id, ErrNotExist)
			}
		}
		if !tomb {
			return nil, nil
		}
		return tombstoneDir(dir.cur), nil
	}
	// End the pending entries whose decisions are known.
	for name, p := range dir.pending {
		o, ok := fs.knownOutcome(dir.level, p.Tx)
		if !ok {
			switch {
			case dir.level > 0:
				b.blocked(p) // a clone's own first version restates no other level's txid
			case !b.looked[p.Tx] && fs.decisionStale(p.Tx):
				b.lookups[p.Tx] = true
			}
			continue
		}
		committed, had := dir.entries[name]
		switch {
		case o == format.Commit && p.Op == format.EntryPendingPut:
			b.overlay[name] = &format.Entry{Op: format.EntryPut, Name: name, Child: p.Child, ChildKind: p.ChildKind}
		case o == format.Commit || !had:
			b.overlay[name] = nil
		default:
			b.overlay[name] = &committed
		}
	}
	if len(b.need) > 0 || len(b.lookups) > 0 {
		return nil, &errNeedDecision{refs: b.need, lookups: b.lookups}
	}
	folds := len(b.overlay)
	var mutates []func(*format.Inode) error
	tomb, any, wantFold := false, false, false
	var pdelete *format.Entry
	for _, c := range batch {
		c.err, c.replaced, c.wait = nil, nil, nil
		switch {
		case tomb:
			c.err = fmt.Errorf("directory %016x: %w (removed)", dir.id, ErrNotExist)
			continue
		case pdelete != nil:
			c.err = errDeferred
			continue
		case c.fold && len(c.ops) == 0 && c.mutate == nil && !c.tombstone && c.pdelete == 0:
			wantFold = true
			continue
		}
		b.cur = c
		c.err = b.evalChange(c)
		b.cur = nil
		if c.err == errNeedDecisionMarker {
			c.err = errWaitDecision // left out: its caller waits, then tries again
			continue
		}
		if c.err != nil {
			continue
		}
		any = true
		if c.mutate != nil {
			mutates = append(mutates, c.mutate)
		}
		if c.tombstone {
			tomb = true
		}
		if c.pdelete != 0 {
			pdelete = &format.Entry{Op: format.EntryPendingDelete, Tx: c.pdelete, Host: fs.opts.HostID}
		}
	}
	if len(b.need) > 0 {
		return nil, &errNeedDecision{refs: b.need}
	}
	if !any && !(wantFold && folds > 0) {
		return nil, nil
	}
	if tomb {
		return tombstoneDir(dir.cur), nil
	}
	next := baseVersion(dir.cur)
	for _, m := range mutates {
		if err := m(next); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(b.overlay)+len(b.pend))
	for name := range b.overlay {
		names = append(names, name)
	}
	for name := range b.pend {
		if _, dup := b.overlay[name]; !dup {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) > folds || pdelete != nil {
		next.Mtime = now()
		next.Ctime = next.Mtime
	}
	// A delta never builds on a version of another level of a
	// clone's chain (FORMAT.md §16.4): the first own version is full.
	if dir.level == 0 && dir.nextVersion == dir.cur.Version+1 && dir.nextVersion-dir.cur.Base <= format.MaxDeltaChain {
		next.Base = dir.cur.Base
		for _, name := range names {
			if e, ok := b.overlay[name]; ok {
				_, existed := dir.entries[name]
				_, pending := dir.pending[name]
				if e != nil {
					next.Entries = append(next.Entries, *e)
				} else if existed || pending {
					next.Entries = append(next.Entries, format.Entry{Op: format.EntryRemove, Name: name})
				}
			}
			if p := b.pend[name]; p != nil {
				next.Entries = append(next.Entries, *p)
			}
		}
	} else {
		next.Base = dir.nextVersion
		next.Entries = make([]format.Entry, 0, len(dir.entries)+len(b.overlay)+len(dir.pending))
		for name, e := range dir.entries {
			if _, changed := b.overlay[name]; !changed {
				next.Entries = append(next.Entries, e)
			}
		}
		for name, p := range dir.pending {
			if _, ended := b.overlay[name]; !ended {
				next.Entries = append(next.Entries, p)
			}
		}
		for _, name := range names {
			if e := b.overlay[name]; e != nil {
				next.Entries = append(next.Entries, *e)
			}
			if p := b.pend[name]; p != nil {
				next.Entries = append(next.Entries, *p)
			}
		}
		format.SortEntries(next.Entries)
		b.fs.dropStoredBirths(next.Entries)
	}
	if pdelete != nil {
		next.Entries = append(next.Entries, *pdelete)
	}
	return next, nil
}

// materializeBeforeFull gives every file a born put of dir names a
// version object of its own when this host may not write born puts (a
// live host cannot read them, FORMAT.md §12.1) and dir's next version
// will be full, which would copy the born puts forward (a delta repeats
// no entry it does not change): dropStoredBirths then leaves their births
// out. Outside dir.commitMu (it commits the files). A file it cannot
// materialize (the store failing) keeps its birth: logged.
func (fs *FS) materializeBeforeFull(ctx context.Context, dir *inode) {
	if fs.bornPuts() {
		return
	}
	dir.mu.Lock()
	full := dir.cur != nil && dir.cur.Kind == format.KindDir &&
		!(dir.level == 0 && dir.nextVersion == dir.cur.Version+1 && dir.nextVersion-dir.cur.Base <= format.MaxDeltaChain)
	var born []format.Entry
	if full {
		for _, e := range dir.entries {
			if e.Born != nil {
				born = append(born, e)
			}
		}
	}
	dir.mu.Unlock()
	for _, e := range born {
		if err := fs.materialize(ctx, dir, e); err != nil && !errors.Is(err, ErrNotExist) {
			fs.log.Warn("could not give a new file a version of its own before a full directory version", "dir", fmt.Sprintf("%016x", dir.id), "name", e.Name, "err", err)
		}
	}
}

// dropStoredBirths leaves out of a full directory version's entries the
// births of files this host knows to have a version object of their own
// (FORMAT.md §5.4): a reader of this version or a later one finds that
// version (it was created before this one, and the reaper keeps a live
// inode's newest version), so the birth would only cost bytes in every
// full version to come, and it would hide the loss of every version
// object of the file from readers and fsck (a file that lost them would
// read as the empty file of its birth). Files this host has not loaded,
// or knows only by their birth, keep it. Only full versions: a delta
// repeats no entry it does not change.
func (fs *FS) dropStoredBirths(es []format.Entry) {
	for i := range es {
		if es[i].Born == nil {
			continue
		}
		fs.mu.Lock()
		c := fs.inodes[es[i].Child]
		fs.mu.Unlock()
		if c != nil && c.stored.Load() {
			es[i].Born = nil
		}
	}
}

// tombstoneDir is the tombstone following directory version cur.
func tombstoneDir(cur *format.Inode) *format.Inode {
	next := baseVersion(cur)
	next.Kind = format.KindTombstone
	next.Base, next.Mode, next.Xattrs = 0, 0, nil
	next.Ctime = now()
	return next
}

// evalChange checks c against the directory's entries as modified by the
// batch so far and, when every op is acceptable, records its effect.
func (b *dirBuild) evalChange(c *dirChange) error {
	dir := b.dir
	local := map[string]*format.Entry{}
	localPend := map[string]*format.Entry{}
	get := func(name string) (format.Entry, bool) {
		if e, ok := local[name]; ok {
			if e == nil {
				return format.Entry{}, false
			}
			return *e, true
		}
		if e, ok := b.overlay[name]; ok {
			if e == nil {
				return format.Entry{}, false
			}
			return *e, true
		}
		e, ok := dir.entries[name]
		return e, ok
	}
	var replaced []format.Entry
	for _, op := range c.ops {
		if p, ok := b.undecided(op.name); ok {
			return b.blocked(p)
		}
		if _, ok := b.pend[op.name]; ok {
			return errDeferred // a pending entry this version adds: wait for it in the next
		}
		if _, ok := localPend[op.name]; ok {
			return fmt.Errorf("%q: %w", op.name, ErrInvalid)
		}
		old, exists := get(op.name)
		if op.remove {
			if !exists || (op.child != 0 && old.Child != op.child) {
				return fmt.Errorf("%q: %w", op.name, ErrNotExist)
			}
			if op.wantDir > 0 && old.ChildKind != format.KindDir {
				return fmt.Errorf("%q: %w", op.name, ErrNotDir)
			}
			if op.wantDir < 0 && old.ChildKind == format.KindDir {
				return fmt.Errorf("%q: %w", op.name, ErrIsDir)
			}
			replaced = append(replaced, old)
			if op.tx != 0 {
				localPend[op.name] = &format.Entry{Op: format.EntryPendingRemove, Name: op.name, Tx: op.tx, Host: b.fs.opts.HostID}
			} else {
				local[op.name] = nil
			}
			continue
		}
		if op.exchange {
			if !exists || old.Child != op.replaceDir {
				return fmt.Errorf("%q changed during an exchange: %w", op.name, ErrNotExist)
			}
			replaced = append(replaced, old)
			if op.tx != 0 {
				localPend[op.name] = &format.Entry{Op: format.EntryPendingPut, Name: op.name, Child: op.child, ChildKind: op.kind, Tx: op.tx, Host: b.fs.opts.HostID}
			} else {
				local[op.name] = &format.Entry{Op: format.EntryPut, Name: op.name, Child: op.child, ChildKind: op.kind, Born: op.born}
			}
			continue
		}
		if exists {
			switch {
			case op.noReplace:
				return fmt.Errorf("%q: %w", op.name, ErrExist)
			case old.Child == op.child && op.notSame:
				return fmt.Errorf("%q: %w", op.name, errSameInode)
			case old.Child == op.child:
				continue // already there
			case old.ChildKind == format.KindDir && op.kind != format.KindDir:
				return fmt.Errorf("%q: %w", op.name, ErrIsDir)
			case old.ChildKind != format.KindDir && op.kind == format.KindDir:
				return fmt.Errorf("%q: %w", op.name, ErrNotDir)
			case old.ChildKind == format.KindDir && old.Child != op.replaceDir:
				return fmt.Errorf("%q: %w", op.name, ErrNotEmpty)
			}
			replaced = append(replaced, old)
		}
		if op.tx != 0 {
			if op.born != nil {
				// A pending put cannot carry a birth: the renamer gives the
				// file a version of its own first (materialize).
				return fmt.Errorf("%q: a birth on a pending put: %w", op.name, ErrInvalid)
			}
			localPend[op.name] = &format.Entry{Op: format.EntryPendingPut, Name: op.name, Child: op.child, ChildKind: op.kind, Tx: op.tx, Host: b.fs.opts.HostID}
		} else {
			local[op.name] = &format.Entry{Op: format.EntryPut, Name: op.name, Child: op.child, ChildKind: op.kind, Born: op.born}
		}
	}
	if c.tombstone || c.pdelete != 0 {
		// Empty: no entry, and no pending one (whose decision may yet add
		// a name) once this version's folds are done.
		for name, p := range dir.pending {
			if _, ended := b.overlay[name]; !ended {
				return b.blocked(p)
			}
		}
		if len(b.pend) > 0 {
			return fmt.Errorf("directory %016x: %w", dir.id, ErrNotEmpty)
		}
		live := len(dir.entries)
		for name, e := range b.overlay {
			_, inBase := dir.entries[name]
			if e == nil && inBase {
				live--
			} else if e != nil && !inBase {
				live++
			}
		}
		if live > 0 {
			return fmt.Errorf("directory %016x: %w", dir.id, ErrNotEmpty)
		}
	}
	for name, e := range local {
		b.overlay[name] = e
	}
	for name, e := range localPend {
		b.pend[name] = e
	}
	c.replaced = replaced
	return nil
}
