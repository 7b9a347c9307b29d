package vfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// ErrFenced: this host could not renew its ping within the host expiry, so
// the reaper may have passed it; it serves and commits nothing until it
// has renewed the ping and revalidated its caches.
var ErrFenced = errors.New("host fenced: its ping lapsed while the object store was unreachable")

// Invalidator is told what changed other than through the kernel, so the
// kernel's caches of it can be dropped (fusefs implements it with go-fuse's
// notify calls; see invalidate.go). It is called from one goroutine, never
// with an engine lock held.
type Invalidator interface {
	// InvalidateInode drops cached attributes and pages of inode id.
	InvalidateInode(id uint64)
	// InvalidateEntry drops the cached lookup of name in directory parent.
	InvalidateEntry(parent uint64, name string)
	// InvalidateAll drops every cached lookup, attribute and page.
	InvalidateAll()
}

// syncer keeps this host's ping and follows the other hosts' change feeds.
//
// Every committed version is queued in pending. Each sync writes the ping,
// announcing the queued changes under the ping's Seq and keeping them
// listed for one host expiry (the feed window); then it lists the pings,
// reads those whose ETag changed since the last sync, and revalidates
// exactly the inodes they announce that this host has cached. A sync costs
// one PUT, one LIST and one GET per host with news, however many inodes
// are cached.
type syncer struct {
	pinging   sync.Mutex // held while writing a ping
	following sync.Mutex // held while following the other hosts
	mu        sync.Mutex
	seq       uint64          // Seq of the last ping written
	feed      []format.Change // announced changes still in the window
	feedAt    []time.Time     // local time each feed entry was first announced
	feedFrom  uint64          // lowest Seq whose changes are all still listed
	pending   []format.Change // committed, not yet announced (Seq unset)
	lastOK    time.Time       // local send time of the last ping the store accepted
	fenced    bool
	noPing    bool              // read-only host whose credentials cannot write a ping
	peers     map[uint64]uint64 // host id -> last ping Seq processed
	etags     map[string]string // ping key -> ETag processed
	// expiries: host id -> the expiry its last ping read carries;
	// caps: host id -> its capabilities (0: it has no capabilities
	// object, an older build), read once per host (§12.1).
	expiries map[uint64]time.Duration
	caps     map[uint64]uint64
	start    time.Time
	kick     chan struct{}
	lastPing time.Time
	// lease lives while this host is live: it ends when the host fences
	// itself (at lastOK + expiry, by fenceTimer, whether or not a request
	// is looking), so requests bound by it (FS.Bound) stop waiting on a
	// stalled store at that instant. unfence starts a new one.
	lease      context.Context
	endLease   context.CancelFunc
	fenceTimer *time.Timer
}

func (fs *FS) startSync() {
	s := &fs.sync
	s.peers = map[uint64]uint64{}
	s.etags = map[string]string{}
	s.expiries = map[uint64]time.Duration{}
	s.caps = map[uint64]uint64{}
	s.feedFrom = 1
	s.start = time.Now()
	s.lastOK = time.Now()
	s.kick = make(chan struct{}, 1)
	s.lease, s.endLease = context.WithCancel(context.Background())
	s.fenceTimer = time.AfterFunc(fs.opts.HostExpiry, fs.fenceIfLapsed)
	fs.pingDone.Add(1)
	go fs.syncLoop()
	if fs.opts.AsOf.IsZero() {
		fs.loopDone.Add(1)
		go fs.followLoop()
	}
}

// renewedLocked records a ping the store accepted, sent at sent. s.mu is
// held.
func (fs *FS) renewedLocked(sent time.Time) {
	s := &fs.sync
	s.lastOK = sent
	s.fenceTimer.Reset(time.Until(sent.Add(fs.opts.HostExpiry)))
}

// fenceIfLapsed fences this host once its last accepted ping is a host
// expiry old (fenceTimer).
func (fs *FS) fenceIfLapsed() {
	fs.checkFenced()
}

// Bound returns ctx without the kernel's interrupt (see fusefs) but bound
// by this host's lease: it is done once the host fences itself, so a
// request waiting on a stalled store fails then with an error, instead of
// waiting for the store to come back. (Without pings, ctx without its
// cancellation.)
func (fs *FS) Bound(ctx context.Context) context.Context {
	ctx = context.WithoutCancel(ctx)
	s := &fs.sync
	if s.kick == nil {
		return ctx
	}
	s.mu.Lock()
	lease := s.lease
	s.mu.Unlock()
	return leaseBound{ctx, lease}
}

// leaseBound carries the values of a request's context and the lifetime
// of a lease. It reports context.DeadlineExceeded once the lease ended: the
// host's deadline passed.
type leaseBound struct {
	context.Context // values only (no cancellation)
	lease           context.Context
}

func (c leaseBound) Done() <-chan struct{} { return c.lease.Done() }

func (c leaseBound) Err() error {
	if c.lease.Err() != nil {
		return context.DeadlineExceeded
	}
	return nil
}

// noteCommitted queues a version this host committed for the next ping.
func (fs *FS) noteCommitted(id, version uint64) {
	s := &fs.sync
	if s.kick == nil {
		return
	}
	s.mu.Lock()
	s.pending = append(s.pending, format.Change{Inode: id, Version: version})
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// checkFenced returns ErrFenced while this host is fenced.
func (fs *FS) checkFenced() error {
	s := &fs.sync
	if s.kick == nil {
		return nil
	}
	s.mu.Lock()
	fencing := !s.fenced && time.Since(s.lastOK) >= fs.opts.HostExpiry
	if fencing {
		s.fenced = true
		s.endLease()
		fs.log.Error("ping not renewed within the host expiry: fencing this host until the store is reachable", "expiry", fs.opts.HostExpiry)
	}
	fenced := s.fenced
	s.mu.Unlock()
	if fencing {
		// What the kernel cached must not outlive the fence: from now on
		// every request reaches this host and fails.
		fs.invalidate(invalOp{all: true})
	}
	if fenced {
		return ErrFenced
	}
	return nil
}

// withinLease bounds ctx by the instant this host fences itself: its last
// accepted ping's send time plus the host expiry (P3). Every inode version
// is created under it, so a commit either reaches the store while this
// host is live, or is abandoned and fails with ErrFenced; it can never
// land after the ping lapsed, when the reaper may have moved past this
// host (protocol invariant 8). A cancelled request can still be delivered
// late by the network; stores that implement objstore.Deadliner refuse it
// by their own clock (see createVersion).
func (fs *FS) withinLease(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := fs.fenceAt()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline)
}

// fenceAt is the instant this host fences itself unless a ping is accepted
// before (its last accepted ping's send time plus the host expiry); ok is
// false for an engine without pings (tests).
func (fs *FS) fenceAt() (t time.Time, ok bool) {
	s := &fs.sync
	if s.kick == nil {
		return time.Time{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastOK.Add(fs.opts.HostExpiry), true
}

// leaseErr turns a commit request cut off by withinLease into ErrFenced.
func leaseErr(ctx context.Context, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (the request could not complete before the ping lapsed): %v", ErrFenced, err)
	}
	return err
}

// syncLoop writes the ping every SyncInterval and soon after local
// commits. Following the other hosts runs on a loop of its own
// (followLoop): a slow LIST or GET of their pings (a store answering 503s)
// must never delay the renewal of this host's ping into a lapse.
//
// It runs until Close has written everything back (stopPing): a host whose
// lease lapsed under its last write-back would lose that data.
func (fs *FS) syncLoop() {
	defer fs.pingDone.Done()
	s := &fs.sync
	tick := time.NewTicker(fs.opts.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-fs.stopPing:
			return
		case <-tick.C:
		case <-s.kick:
			// Debounce bursts of commits into one ping.
			s.mu.Lock()
			last := s.lastPing // written by writePing, maybe in another goroutine's Sync
			s.mu.Unlock()
			if d := fs.opts.SyncInterval/8 - time.Since(last); d > 0 {
				select {
				case <-fs.stopPing:
					return
				case <-time.After(d):
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), fs.opts.SyncInterval*4+10*time.Second)
		if err := fs.ping(ctx); err != nil {
			fs.log.Warn("ping failed", "err", err)
		}
		cancel()
	}
}

// followLoop applies the other hosts' announced changes every
// SyncInterval. Close ends its requests (fs.loops): a LIST the store's
// client is retrying must not hold up the unmount.
func (fs *FS) followLoop() {
	defer fs.loopDone.Done()
	tick := time.NewTicker(fs.opts.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-fs.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(fs.loops, fs.opts.SyncInterval*4+10*time.Second)
		if err := fs.follow(ctx); err != nil && fs.loops.Err() == nil {
			fs.log.Warn("following other hosts failed", "err", err)
		}
		cancel()
	}
}

// Sync writes this host's ping and applies the changes other hosts have
// announced since the last sync.
func (fs *FS) Sync(ctx context.Context) error {
	if err := fs.ping(ctx); err != nil {
		return err
	}
	return fs.follow(ctx)
}

// ping writes this host's ping, announcing its commits; a host that was
// fenced unfences once a ping is accepted.
func (fs *FS) ping(ctx context.Context) error {
	// One ping at a time: two concurrent pings could carry one Seq with
	// different changes, and a peer would miss the second's.
	fs.sync.pinging.Lock()
	defer fs.sync.pinging.Unlock()
	wasFenced := fs.checkFenced() != nil
	if wasFenced {
		// The reaper may have deleted this host's capabilities with its
		// lapsed ping: again before the ping (FORMAT §12.1 A1).
		if err := fs.writeCaps(ctx); err != nil {
			return err
		}
	}
	if err := fs.writePing(ctx); err != nil {
		if fs.opts.ReadOnly && errors.Is(err, objstore.ErrAccessDenied) {
			// Read-only credentials may not write: serve without a ping (the
			// reaper cannot see this host; see docs) rather than fence.
			s := &fs.sync
			s.mu.Lock()
			if !s.noPing {
				fs.log.Warn("cannot write a ping with these credentials; the reaper will not know this read-only host", "err", err)
			}
			s.noPing = true
			fs.renewedLocked(time.Now())
			s.mu.Unlock()
			return nil
		}
		return err
	}
	if wasFenced {
		fs.unfence()
	}
	return nil
}

// follow applies the changes other hosts announced since the last time.
func (fs *FS) follow(ctx context.Context) error {
	if !fs.opts.AsOf.IsZero() {
		return nil // a point-in-time view does not follow changes
	}
	fs.sync.following.Lock()
	defer fs.sync.following.Unlock()
	return fs.followPeers(ctx)
}

// learnCaps sets what this host may write (FS.allowed) from the other
// hosts' pings listed (host id -> the ping's time) and the store's clock
// now (FORMAT.md §12.1): the capabilities every live host has. A host
// whose ping is younger than its expiry is live; so is one whose ping
// could not be read (expiry unknown). Each host's capabilities object is
// read once; a host without one is an older build, which has none.
func (fs *FS) learnCaps(ctx context.Context, listed map[uint64]time.Time, now time.Time) error {
	s := &fs.sync
	bits := format.KnownCaps
	for id, at := range listed {
		s.mu.Lock()
		exp, expKnown := s.expiries[id]
		c, capsKnown := s.caps[id]
		s.mu.Unlock()
		if expKnown && !now.IsZero() && now.Sub(at) >= exp {
			continue // lapsed: fenced or gone
		}
		if !capsKnown {
			obj, _, err := fs.store.Get(ctx, fs.keys.Caps(id))
			switch {
			case errors.Is(err, objstore.ErrNotFound):
				c = 0
			case err != nil:
				return fmt.Errorf("read the capabilities of host %016x: %w", id, err)
			default:
				caps, derr := format.DecodeCaps(obj)
				if derr != nil || caps.HostID != id {
					fs.log.Error("ignoring an unreadable capabilities object", "key", fs.keys.Caps(id), "err", derr)
				} else {
					c = caps.Bits
				}
			}
			s.mu.Lock()
			s.caps[id] = c
			s.mu.Unlock()
		}
		bits &= c
	}
	s.mu.Lock()
	for id := range s.caps {
		if _, ok := listed[id]; !ok {
			delete(s.caps, id) // its ping is gone
		}
	}
	for id := range s.expiries {
		if _, ok := listed[id]; !ok {
			delete(s.expiries, id)
		}
	}
	s.mu.Unlock()
	fs.allowedAt.Store(time.Now().UnixNano())
	if prev := fs.allowed.Swap(bits); prev != bits {
		fs.log.Info("format additions this host may write changed (FORMAT.md §12.1)",
			"block_checksums", bits&format.CapBlockSums != 0, "born_puts", bits&format.CapBornPuts != 0)
	}
	return nil
}

// oldestHeld is the store time of the oldest version an open handle reads.
func (fs *FS) oldestHeld() time.Time {
	fs.mu.Lock()
	open := make([]*inode, 0, len(fs.openSet))
	for ino := range fs.openSet {
		open = append(open, ino)
	}
	fs.mu.Unlock()
	var oldest time.Time
	hold := func(t time.Time) {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	for _, ino := range open {
		ino.mu.Lock()
		hold(ino.curTime)
		for h := range ino.handles {
			if h.pinnedLocked() != nil {
				hold(h.verTime)
			}
		}
		ino.mu.Unlock()
	}
	return oldest
}

func (fs *FS) writePing(ctx context.Context) error {
	s := &fs.sync
	oldest := fs.oldestHeld()
	if !fs.opts.AsOf.IsZero() {
		oldest = fs.opts.AsOf // a point-in-time view reads versions visible at AsOf
	}
	fs.mu.Lock()
	if fs.closed {
		oldest = time.Time{} // the last ping of a clean unmount holds nothing (P4)
	}
	fs.mu.Unlock()
	s.mu.Lock()
	seq := s.seq + 1
	now := time.Now()
	for _, c := range s.pending {
		c.Seq = seq
		s.feed = append(s.feed, c)
		s.feedAt = append(s.feedAt, now)
	}
	s.pending = nil
	// Drop changes announced more than a host expiry ago, or beyond the cap.
	drop := 0
	for drop < len(s.feed) && (now.Sub(s.feedAt[drop]) > fs.opts.HostExpiry || len(s.feed)-drop > format.MaxPingChanges) {
		drop++
	}
	if drop > 0 {
		s.feedFrom = s.feed[drop-1].Seq + 1
		s.feed = append([]format.Change(nil), s.feed[drop:]...)
		s.feedAt = append([]time.Time(nil), s.feedAt[drop:]...)
	}
	for len(s.feed) > 0 && s.feed[0].Seq < s.feedFrom {
		// A partially dropped Seq: drop the rest of it too.
		s.feed, s.feedAt = s.feed[1:], s.feedAt[1:]
	}
	p := &format.Ping{
		HostID: fs.opts.HostID, Node: fs.opts.NodeName, Start: s.start, Seq: seq,
		Expiry: fs.opts.HostExpiry, Oldest: oldest, ReadOnly: fs.opts.ReadOnly,
		FeedFrom: min(s.feedFrom, seq), Changes: s.feed,
	}
	obj, err := format.EncodePing(p)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode ping: %w", err)
	}
	sent := time.Now()
	s.mu.Lock()
	s.lastPing = sent // read by syncLoop: guarded by s.mu (a data race under -race otherwise)
	s.mu.Unlock()
	if _, err := fs.store.Put(ctx, fs.keys.Ping(fs.opts.HostID), obj); err != nil {
		return fmt.Errorf("write ping: %w", err)
	}
	s.mu.Lock()
	s.seq = seq
	fs.renewedLocked(sent)
	s.mu.Unlock()
	return nil
}

// unfence revalidates everything after a lapse: every cached inode is
// marked stale and the kernel's caches are dropped.
func (fs *FS) unfence() {
	// Hosts of older builds may have come while this host was fenced:
	// no format addition until the next following learns (FORMAT §12.1).
	fs.allowed.Store(0)
	for _, ino := range fs.snapshotInodes() {
		ino.mu.Lock()
		ino.checked = time.Time{}
		ino.stale = true
		ino.mu.Unlock()
	}
	// Again (the fence did it once): the kernel may have cached replies
	// built while the host was recovering.
	fs.invalidate(invalOp{all: true})
	s := &fs.sync
	s.mu.Lock()
	s.fenced = false
	s.lease, s.endLease = context.WithCancel(context.Background())
	s.peers = map[uint64]uint64{}
	s.etags = map[string]string{}
	s.mu.Unlock()
	fs.log.Info("ping renewed: host unfenced, caches revalidated")
}

// followPeers reads the pings that changed and revalidates what they name.
func (fs *FS) followPeers(ctx context.Context) error {
	s := &fs.sync
	own := fs.keys.Ping(fs.opts.HostID)
	changed := map[uint64]uint64{} // inode: the newest version announced, or unknownVersion
	all := false
	after := ""
	listed := map[uint64]time.Time{} // every other host's ping, and its time
	var now time.Time                // the store's clock: this host's own ping's time
	for {
		page, err := fs.store.List(ctx, fs.keys.PingsPrefix(), after, 0)
		if err != nil {
			return fmt.Errorf("list pings: %w", err)
		}
		for _, o := range page.Objects {
			if o.Key == own {
				now = o.LastModified
			} else if id, err := fs.keys.ParsePing(o.Key); err == nil {
				listed[id] = o.LastModified
			}
			s.mu.Lock()
			seen := s.etags[o.Key] == o.ETag
			s.mu.Unlock()
			if o.Key == own || seen {
				continue
			}
			if _, err := fs.keys.ParsePing(o.Key); err != nil {
				// Not a ping (FORMAT §15.4 G9; also a store's temporary
				// file of a ping being written, which versitygw lists).
				fs.log.Debug("ignoring an object under the pings that is not an s3gfs key", "key", o.Key)
				s.mu.Lock()
				s.etags[o.Key] = o.ETag
				s.mu.Unlock()
				continue
			}
			obj, info, err := fs.store.Get(ctx, o.Key)
			if errors.Is(err, objstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read ping: %w", err)
			}
			p, err := format.DecodePing(obj)
			if err != nil {
				// Logged once per change of the object, not at every sync.
				fs.log.Error("ignoring unreadable ping", "key", o.Key, "err", err)
				s.mu.Lock()
				s.etags[o.Key] = info.ETag
				s.mu.Unlock()
				continue
			}
			s.mu.Lock()
			last := s.peers[p.HostID]
			if last != 0 && p.FeedFrom > last+1 {
				all = true // its feed moved past what we saw: we missed changes
			}
			for _, c := range p.Changes {
				v := c.Version
				if v == 0 {
					v = unknownVersion // (no version 0 is ever committed)
				}
				if c.Seq > last {
					changed[c.Inode] = max(changed[c.Inode], v)
				}
			}
			s.peers[p.HostID] = p.Seq
			s.expiries[p.HostID] = p.Expiry
			s.etags[o.Key] = info.ETag
			s.mu.Unlock()
		}
		if !page.Truncated || len(page.Objects) == 0 {
			break
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
	if err := fs.learnCaps(ctx, listed, now); err != nil {
		// Write no addition until a later following learns them; the
		// changes announced go on being followed meanwhile.
		fs.allowed.Store(0)
		fs.log.Warn("could not learn what the other hosts read; writing no format addition meanwhile", "err", err)
	}
	if all {
		fs.log.Warn("missed part of another host's change feed; revalidating every cached inode")
		for _, ino := range fs.snapshotInodes() {
			changed[ino.id] = unknownVersion
		}
	}
	for id, v := range changed {
		fs.revalidate(ctx, id, v)
	}
	return nil
}

// unknownVersion: an inode to revalidate whatever version this host has.
const unknownVersion = ^uint64(0)

// revalidate brings a cached inode another host changed to version
// (unknownVersion: to whatever is newest) up to date; refresh drops the
// kernel's caches of what changed (invalidate.go). Inodes open on this
// host keep the version they opened until their last close.
//
// An inode this host already has at that version or a newer one (an open
// or a lookup fetched it before the announcement came) is left alone, and
// so are the kernel's caches of it: an invalidation is not free. The
// kernel drops the reply to every attribute request of the inode it sent
// before the invalidation reached it, keeping the size it had cached; the
// read path, which asked for the size because the cached one was too
// small, then reads to that size. Sent as a program opens, fstats and
// reads a file another host just wrote, a needless invalidation made the
// read end at the size this host had cached before the open (empty).
func (fs *FS) revalidate(ctx context.Context, id, version uint64) {
	fs.mu.Lock()
	ino := fs.inodes[id]
	fs.mu.Unlock()
	if ino == nil {
		// Not in this host's view; the kernel may still hold the inode
		// (it forgets at its own pace, and a lookup may race its forget).
		fs.invalidate(invalOp{id: id})
		return
	}
	// commitMu keeps this host's own commits out of the refresh: only what
	// it brings in is invalidated, never a name this host is creating at
	// this moment (the kernel would see its own fresh entry vanish and an
	// O_EXCL open retry fail with EEXIST).
	ino.commitMu.Lock()
	ino.mu.Lock()
	if version != unknownVersion && ino.cur != nil && ino.level == 0 && ino.cur.Version >= version {
		ino.mu.Unlock()
		ino.commitMu.Unlock()
		return
	}
	busy := ino.open > 0 || ino.dirtyLocked() || ino.cur == nil
	if busy {
		ino.stale = true // refreshed at its next idle open or lookup
		ino.mu.Unlock()
		ino.commitMu.Unlock()
		fs.invalidate(invalOp{id: id})
		return
	}
	ino.mu.Unlock()
	err := fs.refresh(ctx, ino)
	if err != nil && !errors.Is(err, ErrNotExist) {
		ino.mu.Lock()
		ino.stale = true
		ino.mu.Unlock()
	}
	ino.commitMu.Unlock()
	if err != nil && !errors.Is(err, ErrNotExist) {
		fs.log.Warn("revalidate changed inode", "inode", fmt.Sprintf("%016x", id), "err", err)
	}
}

// Invalidates reports whether every change of another host that this
// engine may show reaches its Invalidator, so that the kernel may cache
// long: true when it follows the other hosts (SyncInterval > 0) or shows
// a point in time (AsOf), which never changes. An engine that does not
// follow (single-host tests) finds others' changes only when the kernel
// asks.
func (fs *FS) Invalidates() bool {
	return fs.opts.SyncInterval > 0 || !fs.opts.AsOf.IsZero()
}

// SetInvalidator installs the kernel-cache invalidator.
func (fs *FS) SetInvalidator(inv Invalidator) {
	fs.mu.Lock()
	fs.inv = inv
	fs.mu.Unlock()
}

func (fs *FS) invalidator() Invalidator {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.inv
}
