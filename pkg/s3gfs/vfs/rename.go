package vfs

// Rename transactions (FORMAT.md §5.5, rule W6).
//
// A rename that needs more than one directory version (across
// directories, or onto an empty directory; an exchange across
// directories) writes pending entries tagged
// with a random txid into every directory it changes, then one decision
// object t/<txid>. Readers apply a pending entry iff its decision exists
// and says commit, so the move is atomic to every host and to a crash.
// Decisions are cached once made; an undecided one is read again when it
// is older than Options.Revalidate. Only names that carry a pending entry
// ever cost a decision lookup: the common path (no renames, or renames
// within one directory) is untouched.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// pendingWait bounds how long a change waits for another host's rename to
// be decided before failing with ErrBusy.
const pendingWait = 10 * time.Second

// abortMargin: a transaction may be aborted by others once its owner's
// expiry and this much have passed since the directory version holding
// it (a commit lands at most 2 s after its owner's fence instant, §12 P3).
const abortMargin = 2 * time.Second

// unknownExpiry is assumed for an owner whose ping is missing or
// unreadable: the largest expiry a ping may carry.
const unknownExpiry = 24 * time.Hour

type decKey struct {
	level int
	tx    uint64
}

// decEntry is what this host knows of a decision: outcome 0 = undecided
// when last read (at checked).
type decEntry struct {
	outcome format.Outcome
	at      time.Time // the decision's store time
	checked time.Time
}

// pendingRef names an undecided transaction a change met.
type pendingRef struct {
	tx, host uint64
	level    int
	dir      uint64
	seen     time.Time // store time of the first directory version this host saw holding it
}

// errNeedDecision: a directory commit met pending entries whose decisions
// it must know first (resolved outside the directory's locks).
type errNeedDecision struct {
	refs    map[uint64]pendingRef // wait for these
	lookups map[uint64]bool       // only read these (to fold them if decided)
}

func (e *errNeedDecision) Error() string { return "pending rename entries to resolve" }

// viewTime is the instant pending entries of a directory read at level k
// are resolved at (zero: now).
func (fs *FS) viewTime(k int) time.Time {
	if k > 0 {
		return fs.levels[k].at
	}
	return fs.opts.AsOf
}

// lookupDecision reads t/<tx> at level k.
func (fs *FS) lookupDecision(ctx context.Context, k int, tx uint64) (decEntry, error) {
	lv := &fs.levels[k]
	key := lv.keys.Decision(tx)
	obj, info, err := lv.store.Get(ctx, key)
	var d decEntry
	switch {
	case errors.Is(err, objstore.ErrNotFound):
	case err != nil:
		return d, fmt.Errorf("read rename decision %016x: %w", tx, err)
	default:
		dec, derr := format.DecodeDecision(obj)
		if derr != nil {
			fs.log.Error("unreadable rename decision", "key", key, "err", derr)
			return d, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, derr)
		}
		d.outcome, d.at = dec.Outcome, info.LastModified
	}
	d.checked = time.Now()
	fs.cacheDecision(decKey{k, tx}, d)
	return d, nil
}

// decPruneMin is the least size of the decision cache at which it is
// pruned (FS.decPruneMin, which tests lower).
const decPruneMin = 4096

// cacheDecision records d, pruning the cache when it has grown past
// fs.decPrune: every cross-directory rename adds a decision, and a
// long-lived mount makes or meets without end.
func (fs *FS) cacheDecision(k decKey, d decEntry) {
	fs.decMu.Lock()
	fs.decisions[k] = d
	prune := len(fs.decisions) >= fs.decPrune
	if prune {
		fs.decPrune = math.MaxInt // one pruning at a time
	}
	fs.decMu.Unlock()
	if prune {
		fs.pruneDecisions()
	}
}

// pruneDecisions drops the cached decisions of transactions no cached
// directory holds a pending entry of: they are needed again only if a
// directory version holding one is read, and then read again from the
// store, which keeps them while a version that may be read holds one
// (FORMAT.md §15.5 D7). The next pruning is at twice the size left.
func (fs *FS) pruneDecisions() {
	fs.mu.Lock()
	inos := make([]*inode, 0, len(fs.inodes))
	for _, ino := range fs.inodes {
		inos = append(inos, ino)
	}
	fs.mu.Unlock()
	used := map[decKey]bool{}
	for _, ino := range inos {
		ino.mu.Lock()
		for _, p := range ino.pending {
			used[decKey{ino.level, p.Tx}] = true
		}
		if ino.pdelete != nil {
			used[decKey{ino.level, ino.pdelete.Tx}] = true
		}
		ino.mu.Unlock()
	}
	fs.decMu.Lock()
	for k := range fs.decisions {
		if !used[k] {
			delete(fs.decisions, k)
		}
	}
	fs.decPrune = max(fs.decPruneMin, 2*len(fs.decisions))
	fs.decMu.Unlock()
}

// applied reports whether pending entries of tx, in a directory read at
// level k, apply in this host's view.
func (fs *FS) applied(ctx context.Context, k int, tx uint64) (bool, error) {
	at := fs.viewTime(k)
	fs.decMu.Lock()
	d, ok := fs.decisions[decKey{k, tx}]
	fs.decMu.Unlock()
	if !ok || (d.outcome == 0 && k == 0 && time.Since(d.checked) > fs.opts.Revalidate) {
		var err error
		if d, err = fs.lookupDecision(ctx, k, tx); err != nil {
			return false, err
		}
	}
	return d.outcome == format.Commit && (at.IsZero() || !d.at.After(at)), nil
}

// knownOutcome is what this host knows for good of tx at level k, without
// asking the store: a decision made (at level 0), or whether it applies at
// the level's fixed time (levels below a clone: undecided then is abort).
func (fs *FS) knownOutcome(k int, tx uint64) (format.Outcome, bool) {
	fs.decMu.Lock()
	d, ok := fs.decisions[decKey{k, tx}]
	fs.decMu.Unlock()
	if !ok {
		return 0, false
	}
	if k > 0 {
		if d.outcome == format.Commit && !d.at.After(fs.levels[k].at) {
			return format.Commit, true
		}
		return format.Abort, true
	}
	return d.outcome, d.outcome != 0
}

// decisionStale reports whether this host should read tx's decision
// (level 0) again before relying on it: never read, or undecided when
// last read more than Options.Revalidate ago.
func (fs *FS) decisionStale(tx uint64) bool {
	fs.decMu.Lock()
	defer fs.decMu.Unlock()
	d, ok := fs.decisions[decKey{0, tx}]
	return !ok || (d.outcome == 0 && time.Since(d.checked) > fs.opts.Revalidate)
}

// resolve waits until tx is decided, aborting it once its owner can no
// longer commit it (FORMAT.md §5.5), for at most pendingWait.
func (fs *FS) resolve(ctx context.Context, ref pendingRef) error {
	if ref.level > 0 {
		_, err := fs.lookupDecision(ctx, ref.level, ref.tx)
		return err
	}
	give := time.Now().Add(pendingWait)
	for i := 0; ; i++ {
		d, err := fs.lookupDecision(ctx, 0, ref.tx)
		if err != nil || d.outcome != 0 {
			return err
		}
		ok, err := fs.mayAbort(ctx, ref)
		if err != nil {
			return err
		}
		if ok {
			fs.log.Info("aborting a rename its host can no longer commit", "txid", fmt.Sprintf("%016x", ref.tx), "owner", fmt.Sprintf("%016x", ref.host))
			if _, err := fs.decide(ctx, ref.tx, &format.Decision{Outcome: format.Abort, Host: ref.host, Writer: fs.opts.HostID, Dirs: []uint64{ref.dir}}, time.Time{}); err != nil {
				return err
			}
			continue
		}
		if time.Now().After(give) {
			return fmt.Errorf("rename %016x of host %016x undecided: %w", ref.tx, ref.host, ErrBusy)
		}
		time.Sleep(min(time.Duration(10<<min(i, 6))*time.Millisecond, 500*time.Millisecond))
	}
}

// mayAbort reports whether ref's owner can no longer commit it: the
// store's clock is past the time of the first version seen holding it
// plus the owner's expiry plus abortMargin.
func (fs *FS) mayAbort(ctx context.Context, ref pendingRef) (bool, error) {
	expiry := unknownExpiry
	obj, _, err := fs.store.Get(ctx, fs.keys.Ping(ref.host))
	switch {
	case err == nil:
		if p, perr := format.DecodePing(obj); perr == nil && p.HostID == ref.host {
			expiry = p.Expiry
		}
	case !errors.Is(err, objstore.ErrNotFound):
		return false, fmt.Errorf("read the ping of host %016x: %w", ref.host, err)
	}
	now, err := hosts.ServerNow(ctx, fs.store)
	if err != nil {
		fs.log.Debug("store clock unknown; judging a pending rename by the local clock", "err", err)
	}
	return !now.Before(ref.seen.Add(expiry + abortMargin)), nil
}

// decide creates t/<tx> holding d (first create wins) and returns the
// outcome that stands. A commit is sent so that the store refuses it
// after limit (the fence instant when the transaction began; zero: no
// limit but this host's lease).
func (fs *FS) decide(ctx context.Context, tx uint64, d *format.Decision, limit time.Time) (format.Outcome, error) {
	obj, err := format.EncodeDecision(d)
	if err != nil {
		return 0, err
	}
	key := fs.keys.Decision(tx)
	info, err := fs.createObject(ctx, key, obj, limit)
	if err == nil {
		fs.cacheDecision(decKey{0, tx}, decEntry{outcome: d.Outcome, at: info.LastModified, checked: time.Now()})
		return d.Outcome, nil
	}
	if !errors.Is(err, objstore.ErrExists) {
		return 0, fmt.Errorf("decide rename %016x: %w", tx, err)
	}
	got, err := fs.lookupDecision(ctx, 0, tx)
	if err != nil {
		return 0, err
	}
	if got.outcome == 0 {
		return 0, fmt.Errorf("decision %016x exists but could not be read: %w", tx, objstore.ErrUnavailable)
	}
	return got.outcome, nil
}

// renameTx moves entry se from oldName in src to newName in dst as one
// transaction (FORMAT.md §5.5 X1-X5). replaceDir is the empty directory
// newName names that the move replaces (0: none). With xe (the entry
// newName names; src != dst) it exchanges the two instead (X2x): each name
// gets a pending put of the other's inode, conditional on still naming
// its own, and nothing is replaced.
func (fs *FS) renameTx(ctx context.Context, src, dst *inode, se format.Entry, oldName, newName string, noReplace bool, replaceDir uint64, xe *format.Entry) error {
	ctx = context.WithoutCancel(ctx) // once begun, it is decided
	tx := randomID()
	limit, _ := fs.fenceAt() // zero without pings
	me := fs.opts.HostID
	remove := dirOp{name: oldName, remove: true, child: se.Child, tx: tx}
	put := dirOp{name: newName, child: se.Child, kind: se.ChildKind, noReplace: noReplace, replaceDir: replaceDir, tx: tx, notSame: true}
	if xe != nil {
		remove = dirOp{name: oldName, child: xe.Child, kind: xe.ChildKind, replaceDir: se.Child, exchange: true, tx: tx}
		put = dirOp{name: newName, child: se.Child, kind: se.ChildKind, replaceDir: xe.Child, exchange: true, tx: tx}
	}
	var dirs []uint64
	var touched []*inode
	wrote := false // a pending entry of tx may be in the store
	fail := func(err error) error {
		if wrote || !refused(err) {
			fs.finishTx(ctx, tx, dirs, touched) // no commit was sent: an abort stands
		}
		if errors.Is(err, errSameInode) {
			// Both names refer to one inode by now (hard links): POSIX
			// rename does nothing.
			return nil
		}
		return err
	}
	var replaced []format.Entry
	dirs, touched = append(dirs, src.id), append(touched, src)
	if src == dst {
		ch := &dirChange{ops: []dirOp{remove, put}}
		if err := fs.applyDir(ctx, src, ch); err != nil {
			return fail(err)
		}
		wrote = true
		replaced = ch.replaced[1:]
	} else {
		if err := fs.applyDir(ctx, src, &dirChange{ops: []dirOp{remove}}); err != nil {
			return fail(err)
		}
		wrote = true
		if !fs.step("src") {
			return errCrashed
		}
		dirs, touched = append(dirs, dst.id), append(touched, dst)
		ch := &dirChange{ops: []dirOp{put}}
		if err := fs.applyDir(ctx, dst, ch); err != nil {
			return fail(err)
		}
		replaced = ch.replaced
	}
	if xe != nil {
		replaced = nil // exchanged, not replaced
	}
	if !fs.step("dst") {
		return errCrashed
	}
	var target *inode // the replaced directory, deleted by the decision
	if len(replaced) > 0 && replaced[0].ChildKind == format.KindDir {
		d, err := fs.inode(ctx, replaced[0].Child)
		switch {
		case errors.Is(err, ErrNotExist):
			// Already removed (an rmdir whose entry removal waits for
			// this decision): nothing to delete.
		case err != nil:
			return fail(err)
		default:
			dirs, touched = append(dirs, d.id), append(touched, d)
			if err := fs.applyDir(ctx, d, &dirChange{pdelete: tx}); err != nil && !errors.Is(err, ErrNotExist) {
				return fail(err)
			}
			target = d
			if !fs.step("target") {
				return errCrashed
			}
		}
	}
	if !fs.step("decide") {
		return errCrashed
	}
	if !limit.IsZero() && !time.Now().Before(limit) {
		return fail(fmt.Errorf("rename could not be decided before this host's ping lapsed: %w", ErrFenced))
	}
	outcome, err := fs.decide(ctx, tx, &format.Decision{Outcome: format.Commit, Host: me, Writer: me, Dirs: dirs}, limit)
	if err != nil {
		// Undecided as far as this host can tell (the commit may have
		// landed): settle it when the store answers (an abort that
		// loses to this commit finds it) and, if the commit stands,
		// finish what a commit leaves to do (X5), as the caller was
		// told EIO and will not.
		// Close waits for it (FS.settleRenames) and cancels bctx for good
		// if it cannot; once Close has given up, a crash's recovery is
		// left to the other hosts.
		fs.mu.Lock()
		if fs.unsettle {
			fs.mu.Unlock()
			fs.log.Warn("rename: outcome unknown while unmounting; other hosts will settle it (FORMAT.md §5.5)", "txid", fmt.Sprintf("%016x", tx))
			return err
		}
		settled := make(chan struct{})
		fs.settling[tx] = settled
		fs.mu.Unlock()
		go func() {
			defer func() {
				fs.mu.Lock()
				delete(fs.settling, tx)
				fs.mu.Unlock()
				close(settled)
			}()
			bctx := fs.settleCtx
			for i := 0; i < 60 && bctx.Err() == nil; i++ {
				if i > 0 {
					select {
					case <-time.After(time.Second):
					case <-bctx.Done():
						return
					}
				}
				outcome, err := fs.finishTx(bctx, tx, dirs, touched)
				if err == nil {
					if outcome == format.Commit {
						fs.log.Info("rename: a commit whose outcome was unknown stands; finishing it", "txid", fmt.Sprintf("%016x", tx))
						if err := fs.afterCommit(bctx, target, dst, replaced); err != nil {
							fs.log.Warn("rename: could not lower the link count of what it replaced", "txid", fmt.Sprintf("%016x", tx), "err", err)
						}
					}
					return
				}
			}
		}()
		return err
	}
	if !fs.step("decided") {
		return errCrashed
	}
	fs.foldAll(ctx, touched)
	if outcome != format.Commit {
		return fmt.Errorf("rename %016x was aborted by another host: %w", tx, ErrConflict)
	}
	return fs.afterCommit(ctx, target, dst, replaced)
}

// afterCommit does what a committed rename leaves to do (X5, after the
// fold): tombstone the directory it replaced (target, nil: none) and lower
// the link count of a non-directory it replaced in directory dir.
func (fs *FS) afterCommit(ctx context.Context, target, dir *inode, replaced []format.Entry) error {
	if target != nil {
		err := fs.persist(ctx, func(ctx context.Context) error {
			return fs.applyDir(ctx, target, &dirChange{tombstone: true})
		})
		if err != nil && !errors.Is(err, ErrNotExist) {
			fs.log.Warn("rename: could not tombstone the directory it replaced", "inode", fmt.Sprintf("%016x", target.id), "err", err)
		}
	}
	return fs.dropReplaced(ctx, dir, replaced)
}

// refused reports whether a directory change failed without writing
// anything (a definite refusal, not a store failure that leaves it open).
func refused(err error) bool {
	return decided(err) || errors.Is(err, ErrBusy) || errors.Is(err, errSameInode) || errors.Is(err, ErrConflict)
}

// errCrashed: a test hook stopped a rename where a crash would.
var errCrashed = errors.New("rename stopped by a test hook (a simulated crash)")

// step calls the test hook between the steps of a rename; false means
// stop there, as a crash would.
func (fs *FS) step(name string) bool {
	if fs.testHook == nil {
		return true
	}
	return fs.testHook(name)
}

// finishTx makes sure tx is decided (an abort, unless a commit stands),
// folds the directories it touched, and returns the outcome that stands.
func (fs *FS) finishTx(ctx context.Context, tx uint64, dirs []uint64, touched []*inode) (format.Outcome, error) {
	outcome, err := fs.decide(ctx, tx, &format.Decision{Outcome: format.Abort, Host: fs.opts.HostID, Writer: fs.opts.HostID, Dirs: dirs}, time.Time{})
	if err != nil {
		fs.log.Warn("rename: could not decide an abandoned rename", "txid", fmt.Sprintf("%016x", tx), "err", err)
		return 0, err
	}
	fs.foldAll(ctx, touched)
	return outcome, nil
}

// foldAll ends the decided pending entries of dirs (best effort: any
// later writer does it too).
func (fs *FS) foldAll(ctx context.Context, dirs []*inode) {
	for _, d := range dirs {
		err := fs.persist(ctx, func(ctx context.Context) error {
			return fs.applyDir(ctx, d, &dirChange{fold: true})
		})
		if err != nil && !errors.Is(err, ErrNotExist) {
			fs.log.Debug("rename: fold pending entries", "dir", fmt.Sprintf("%016x", d.id), "err", err)
		}
	}
}

// lookupEntry returns what name in dir refers to in this host's view:
// its committed entry, or its pending entry where that applies, once a
// deferred create of name by this host is decided.
func (fs *FS) lookupEntry(ctx context.Context, dir *inode, name string) (format.Entry, bool, error) {
	fs.waitCreated(dir, name)
	return fs.lookupEntryNow(ctx, dir, name)
}

// lookupEntryNow is lookupEntry without waiting for a deferred create of
// name (which its decision itself needs).
func (fs *FS) lookupEntryNow(ctx context.Context, dir *inode, name string) (format.Entry, bool, error) {
	dir.mu.Lock()
	e, ok := dir.entries[name]
	p, pend := dir.pending[name]
	level := dir.level
	dir.mu.Unlock()
	if !pend {
		return e, ok, nil
	}
	app, err := fs.applied(ctx, level, p.Tx)
	if err != nil || !app {
		return e, ok, err
	}
	if p.Op == format.EntryPendingPut {
		return format.Entry{Op: format.EntryPut, Name: name, Child: p.Child, ChildKind: p.ChildKind}, true, nil
	}
	return format.Entry{}, false, nil
}

// effectiveEntries lists dir as this host shows it (pending entries
// applied per their decisions).
func (fs *FS) effectiveEntries(ctx context.Context, dir *inode) ([]format.Entry, error) {
	dir.mu.Lock()
	out := make([]format.Entry, 0, len(dir.entries))
	for name, e := range dir.entries {
		if _, pend := dir.pending[name]; !pend {
			out = append(out, e)
		}
	}
	type pe struct {
		p         format.Entry
		committed *format.Entry
	}
	var pends []pe
	for name, p := range dir.pending {
		x := pe{p: p}
		if e, ok := dir.entries[name]; ok {
			x.committed = &e
		}
		pends = append(pends, x)
	}
	level := dir.level
	dir.mu.Unlock()
	for _, x := range pends {
		app, err := fs.applied(ctx, level, x.p.Tx)
		if err != nil {
			return nil, err
		}
		switch {
		case app && x.p.Op == format.EntryPendingPut:
			out = append(out, format.Entry{Op: format.EntryPut, Name: x.p.Name, Child: x.p.Child, ChildKind: x.p.ChildKind})
		case !app && x.committed != nil:
			out = append(out, *x.committed)
		}
	}
	return out, nil
}

// deletedByDecision reports whether directory dir's current version holds
// a pending delete that applies (the directory was replaced by a rename).
func (fs *FS) deletedByDecision(ctx context.Context, dir *inode) (bool, error) {
	dir.mu.Lock()
	pd, level := dir.pdelete, dir.level
	dir.mu.Unlock()
	if pd == nil {
		return false, nil
	}
	return fs.applied(ctx, level, pd.Tx)
}
