// Package vfs is the s3gfs filesystem engine: POSIX operations on inodes
// addressed by id, implemented over immutable, versioned objects in an
// object store. It knows nothing of FUSE (package fusefs binds it to the
// kernel) and its only I/O is through objstore.Store.
//
// # Model
//
// Every inode is a chain of versions; version n+1 is created with a
// conditional create of its key, so two hosts racing for one version cannot
// both win. A host keeps, per inode it uses, the newest version it knows
// (inode.cur) plus its own uncommitted changes. Committing builds the next
// version from cur and the local changes; losing the race (objstore.ErrExists)
// means re-reading the winner and re-applying the local change on top of it
// (for file data: this host's written byte ranges and truncation, laid over
// the winner's content; see merge.go).
//
// Namespace operations (create, mkdir, link, symlink, unlink, rmdir, rename)
// commit before they return, in the order docs/FORMAT.md prescribes (child
// before parent, tombstone before removal), except a create that opens
// with O_TRUNC and without O_EXCL, which its file's first close or fsync
// waits for instead (a deferred create, create.go); a rename across directories
// or onto a directory, and an exchange across directories, is a
// transaction decided by one object (rename.go).
// File
// data is written back on flush (close), fsync, when the write-back buffer
// is full, and by a background timer; extents are always uploaded before
// the inode version that names them. A non-directory's owner, mode and
// times go with its next commit too (within a second at the latest: see
// attrChange).
//
// # Locking
//
// FS.mu guards the inode table and the open set; it may be taken while
// holding an inode's mu, never the other way round. inode.commitMu
// serialises the commits of one inode and is taken before inode.mu, which
// guards the inode's in-memory state. No goroutine holds two inodes' mu at
// once. FS.decMu (the decision cache) may be taken while holding an
// inode's mu and guards nothing else. I/O is never done while holding FS.mu;
// it may be done while holding an inode's commitMu (a directory commit
// waiting for the decision of a rename that deletes the directory holds
// it; a change waiting for the decision of a name it touches does not).
//
// # Hosts
//
// Every SyncInterval a host writes its ping (format.Ping): liveness for the
// reaper, and a feed of the versions it committed. It reads the pings that
// changed and revalidates exactly the cached inodes they announce (sync.go).
// A host that cannot renew its ping within HostExpiry fences itself: it
// returns ErrFenced instead of serving or committing, until a ping succeeds
// and its caches are revalidated.
package vfs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/cache"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Default memory bounds. With the Go runtime's own, they keep a mount
// under 300 MiB resident (issue 7's target): enough write-back buffer to
// keep 8 uploads of 4 MiB extents in flight several times over.
const (
	DefaultBufferSize = 128 << 20
	DefaultCacheSize  = 64 << 20
)

// Options tune an FS.
type Options struct {
	HostID   uint64 // this mount's host id; random when 0
	ReadOnly bool
	// BufferSize bounds the bytes of dirty file data held in memory
	// (default DefaultBufferSize).
	BufferSize int64
	// CacheSize bounds the extent read cache in memory (default
	// DefaultCacheSize); CacheDir adds a disk tier.
	CacheSize int64
	CacheDir  string
	// Revalidate is how old this host's view of a directory may grow before
	// a lookup checks the store for a newer version.
	Revalidate time.Duration
	// WritebackDelay is how long dirty file data may wait before it is
	// committed without a close or fsync.
	WritebackDelay time.Duration
	// Readahead is the number of extents fetched ahead of a sequential reader.
	Readahead int
	// WholeExtentChecksums makes the extents this host uploads carry one
	// CRC-32C of the whole extent instead of 64 KiB block checksums
	// (docs/FORMAT.md §5.3), so that hosts still running a build from
	// before block checksums, which refuse those, can read what this one
	// writes. Random reads of such extents fetch them whole.
	WholeExtentChecksums bool
	// Version1Objects makes every file this host creates get its version 1
	// as an object of its own, as before born puts (FORMAT.md §5.4), so
	// that hosts still running a build from before them can read the
	// directories this one writes. It costs one more write per new file.
	Version1Objects bool
	// Uploads bounds the extent uploads in flight.
	Uploads int
	// SyncInterval is how often the host writes its ping and follows the
	// other hosts' changes. Zero disables syncing (single-host unit tests).
	SyncInterval time.Duration
	// HostExpiry is how long the host may go without renewing its ping
	// before it fences itself; at least three sync intervals.
	HostExpiry time.Duration
	// NodeName names the machine in the ping (for people).
	NodeName string
	// AsOf, when set, makes a read-only view of the volume as it was at
	// that store time: every inode at its newest version whose
	// LastModified is at or before AsOf. The view never changes.
	AsOf   time.Time
	Logger *slog.Logger
}

// Validate checks options that have no safe default.
func (o *Options) Validate() error {
	if o.SyncInterval < 0 || o.HostExpiry < 0 {
		return fmt.Errorf("negative sync interval or host expiry")
	}
	if o.SyncInterval > 0 && o.HostExpiry < 3*o.SyncInterval {
		return fmt.Errorf("host expiry %s must be at least three sync intervals (%s)", o.HostExpiry, 3*o.SyncInterval)
	}
	if o.HostExpiry > 24*time.Hour {
		return fmt.Errorf("host expiry %s exceeds 24h", o.HostExpiry)
	}
	return nil
}

func (o *Options) defaults() {
	if !o.AsOf.IsZero() {
		o.ReadOnly = true
	}
	if o.HostID == 0 {
		o.HostID = randomID()
	}
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.CacheSize < 0 {
		o.CacheSize = 0
	} else if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Revalidate <= 0 {
		o.Revalidate = time.Second
	}
	if o.WritebackDelay <= 0 {
		o.WritebackDelay = 5 * time.Second
	}
	if o.Readahead <= 0 {
		o.Readahead = 4
	}
	if o.Uploads <= 0 {
		o.Uploads = 8
	}
	if o.SyncInterval > 0 && o.HostExpiry == 0 {
		o.HostExpiry = max(3*time.Minute, 3*o.SyncInterval)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// FS is one mounted volume.
type FS struct {
	vol     *volume.Volume
	store   objstore.Store
	keys    format.Keys
	extSize int64
	opts    Options
	log     *slog.Logger
	cache   *cache.Cache
	bufs    *bufferPool
	upSem   chan struct{}
	// strays: keys under an inode's prefix that are not version keys,
	// already logged (once each: every refresh meets them).
	strays sync.Map
	// writeSeq orders writes to dirty extents across inodes (eviction
	// picks the least recently written).
	writeSeq atomic.Uint64
	// seqReaders counts open handles reading sequentially (readahead
	// shares the read cache among them).
	seqReaders atomic.Int64

	mu      sync.Mutex
	inodes  map[uint64]*inode
	openSet map[*inode]struct{} // inodes with open handles (for the ping)
	inv     Invalidator
	inval   invalQueue // invalidations not yet sent to inv

	sync syncer

	// levels is the volume (level 0) and, for a clone, its chain of
	// sources (FORMAT.md §16), indexed by extent origin.
	levels []level

	fetches    singleflight // blocks of extents (fetchBlocks)
	extFetches extFlights   // whole extents (fetchExtentBuf)
	extBufs    extBufs

	// allowed holds the capabilities (format.Cap*) every live host of
	// the volume has, so this host may write what they need (FORMAT.md
	// §12.1): learnt from the pings and capabilities objects at every
	// following of the other hosts (sync.go), nothing before the first;
	// allowedAt is when (Unix ns), for allowedCaps.
	allowed   atomic.Uint64
	allowedAt atomic.Int64

	// decisions caches the rename decisions this host has read (see
	// rename.go).
	decMu     sync.Mutex
	decisions map[decKey]decEntry
	// decPrune: the size of decisions at which entries no cached
	// directory needs are dropped (see pruneDecisions).
	decPrune, decPruneMin int
	// testHook, when set (tests), is called between the steps of a rename
	// transaction.
	testHook func(step string) bool
	// settling holds the renames whose commit had an unknown outcome and
	// that are being settled in the background (rename.go), by txid, each
	// with a channel closed when it is done (guarded by mu). Close waits
	// for them, then cancels settleCtx, which they run under, for those it
	// abandons.
	settling    map[uint64]chan struct{}
	settleCtx   context.Context
	settleAbort context.CancelFunc
	// forgotten: births of never-written files Forget dropped (guarded
	// by mu; see forgottenBirths).
	forgotten forgottenBirths
	// cleanups counts the removals of entries naming deleted inodes
	// running in the background (removeDangling); Close waits for them.
	cleanups sync.WaitGroup
	// createsWG counts the deferred creates being decided (create.go);
	// Close waits for them. deferred counts the deferred creates made.
	createsWG  sync.WaitGroup
	deferred   atomic.Uint64
	background workerPool // runs deferred creates' decisions and cleanups

	usage usageCache // for statfs

	// stop ends the write-back and following loops (loopDone), and
	// loops (a context) their requests; stopPing ends the ping loop
	// (pingDone), which Close keeps going until its last write-back is
	// done.
	stop     chan struct{}
	loops    context.Context
	endLoops context.CancelFunc
	loopDone sync.WaitGroup
	stopPing chan struct{}
	pingDone sync.WaitGroup
	closing  bool // Close was called
	unsettle bool // Close no longer waits for renames being settled
	closed   bool // Close has written everything back (its last ping holds nothing)
}

// New opens the engine over an opened volume.
func New(vol *volume.Volume, o Options) (*FS, error) {
	o.defaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c, err := cache.New(o.CacheSize, o.CacheDir)
	if err != nil {
		return nil, err
	}
	ext := int64(vol.Header.ExtentSize)
	if o.BufferSize < 2*ext {
		return nil, fmt.Errorf("buffer size %d is too small: it must hold at least two extents (%d bytes each)", o.BufferSize, ext)
	}
	fs := &FS{
		vol: vol, store: vol.Store, keys: vol.Keys, extSize: ext, opts: o,
		log:       o.Logger.With("volume", vol.URL.String(), "host", fmt.Sprintf("%016x", o.HostID)),
		cache:     c,
		upSem:     make(chan struct{}, o.Uploads),
		inodes:    map[uint64]*inode{},
		decisions: map[decKey]decEntry{},
		decPrune:  decPruneMin,
		openSet:   map[*inode]struct{}{},
		settling:  map[uint64]chan struct{}{},
		stop:      make(chan struct{}),
		stopPing:  make(chan struct{}),
	}
	fs.loops, fs.endLoops = context.WithCancel(context.Background())
	fs.settleCtx, fs.settleAbort = context.WithCancel(context.Background())
	fs.decPruneMin = decPruneMin
	fs.inval.idle.L = &fs.inval.mu
	fs.bufs = newBufferPool(o.BufferSize, ext)
	fs.extBufs.size = int(ext) + format.EnvelopeOverhead + 1
	if len(vol.Chain) != vol.Header.Depth() {
		return nil, fmt.Errorf("%s is a clone whose sources were not opened", vol.URL)
	}
	fs.levels = append(fs.levels, level{store: vol.Store, keys: vol.Keys, bucket: vol.URL.Bucket, depth: vol.Header.Depth()})
	for _, c := range vol.Chain {
		fs.levels = append(fs.levels, level{store: c.Store, keys: c.Keys, bucket: c.URL.Bucket, at: c.At, depth: c.Header.Depth()})
	}
	if _, err := fs.inode(context.Background(), format.RootID); err != nil {
		return nil, fmt.Errorf("load root directory: %w", err)
	}
	if !o.ReadOnly {
		fs.loopDone.Add(1)
		go fs.writebackLoop()
	}
	if o.SyncInterval > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := fs.writeCaps(ctx); err != nil {
			fs.Close(ctx)
			return nil, err
		}
		fs.startSync()
		if err := fs.Sync(ctx); err != nil {
			fs.Close(ctx)
			return nil, fmt.Errorf("first sync (this host's ping): %w", err)
		}
	}
	return fs, nil
}

// writeCaps writes this host's capabilities object (FORMAT.md §12.1),
// before its first ping: a host whose ping another host sees has its
// capabilities in the store already, or has none (an older build).
func (fs *FS) writeCaps(ctx context.Context) error {
	obj, err := format.EncodeCaps(&format.Caps{HostID: fs.opts.HostID, Bits: format.KnownCaps})
	if err != nil {
		return err
	}
	_, err = fs.store.Put(ctx, fs.keys.Caps(fs.opts.HostID), obj)
	if err != nil && fs.opts.ReadOnly && errors.Is(err, objstore.ErrAccessDenied) {
		// Read-only credentials: most likely no ping either (see ping).
		// If they may write the ping, the other hosts take this one for an
		// older build and write no format addition while it is mounted.
		fs.log.Warn("cannot write this host's capabilities with these credentials; if its ping can be written, other hosts will hold back format additions while it is mounted (grant caps/* as well as h/*)", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("write this host's capabilities: %w", err)
	}
	return nil
}

// allowedCaps returns the format additions this host may write now
// (FORMAT.md §12.1): those every live host reads, as last learnt, unless
// that was more than a host expiry ago (the following of the other hosts
// keeps failing, or the host was fenced: hosts of older builds may have
// come meanwhile), then none. Without pings (SyncInterval 0) there is no
// other host to wait for.
func (fs *FS) allowedCaps() uint64 {
	if fs.opts.SyncInterval == 0 {
		return format.KnownCaps
	}
	if time.Since(time.Unix(0, fs.allowedAt.Load())) > fs.opts.HostExpiry {
		return 0
	}
	return fs.allowed.Load()
}

// bornPuts reports whether this host may create files with born puts.
func (fs *FS) bornPuts() bool {
	return !fs.opts.Version1Objects && fs.allowedCaps()&format.CapBornPuts != 0
}

// uploadBlockShift is the block shift of the extents this host uploads:
// format.DefaultBlockShift, or 0 (one checksum of the whole extent) with
// Options.WholeExtentChecksums or while a live host cannot read block
// checksums (FORMAT.md §5.3, §12.1).
func (fs *FS) uploadBlockShift() uint8 {
	if fs.opts.WholeExtentChecksums || fs.allowedCaps()&format.CapBlockSums == 0 {
		return 0
	}
	return format.DefaultBlockShift
}

// level is one volume of a clone's chain as this engine reads it.
type level struct {
	store  objstore.Store
	keys   format.Keys
	bucket string
	at     time.Time // the instant it is seen at (levels >= 1)
	depth  int       // its own clone depth: the deepest origin its versions may name
}

// HostID is this mount's host id.
func (fs *FS) HostID() uint64 { return fs.opts.HostID }

// Volume returns the volume this engine serves.
func (fs *FS) Volume() *volume.Volume { return fs.vol }

// Close commits every dirty file and stops background work. It first
// waits for the renames being settled in the background (a commit whose
// outcome was unknown, rename.go) as long as ctx allows; those still
// unsettled when ctx is done are abandoned (logged), exactly as a crash
// would leave them: other hosts abort or apply them (docs/FORMAT.md §5.5).
// The host keeps renewing its ping until everything is written back, however
// long that takes: its lease must not lapse under the last write-back.
// Nothing of this FS uses the store once Close has returned.
func (fs *FS) Close(ctx context.Context) error {
	fs.mu.Lock()
	if fs.closing {
		fs.mu.Unlock()
		return nil
	}
	fs.closing = true
	fs.mu.Unlock()
	fs.settleRenames(ctx)
	fs.createsWG.Wait()
	fs.cleanups.Wait() // one directory commit each, while the host still pings
	fs.background.stop()
	close(fs.stop)
	fs.endLoops() // a following request waiting on the store (its retries) ends now
	fs.loopDone.Wait()
	err := fs.SyncAll(ctx)
	if fs.sync.kick != nil {
		close(fs.stopPing)
		fs.pingDone.Wait()
		fs.mu.Lock()
		fs.closed = true
		fs.mu.Unlock()
		// A last ping announces the final commits. The ping stays: peers
		// read its feed, and the reaper removes it once it has lapsed.
		fs.sync.pinging.Lock()
		if perr := fs.writePing(ctx); perr != nil {
			fs.log.Warn("final ping failed", "err", perr)
		}
		fs.sync.pinging.Unlock()
		fs.sync.fenceTimer.Stop()
	}
	return err
}

// settleRenames waits until the renames being settled in the background
// are done or ctx is; then it cancels those left, logging each, and waits
// for them to stop. No new one starts once fs.unsettle is set.
func (fs *FS) settleRenames(ctx context.Context) {
	fs.waitSettled(ctx.Done())
	fs.mu.Lock()
	fs.unsettle = true
	for tx := range fs.settling {
		fs.log.Warn("unmount: abandoning a rename whose outcome is unknown; other hosts will settle it (FORMAT.md §5.5)", "txid", fmt.Sprintf("%016x", tx))
	}
	fs.mu.Unlock()
	fs.settleAbort()
	fs.waitSettled(nil)
}

// waitSettled waits until no rename is being settled in the background, or
// until stop is closed.
func (fs *FS) waitSettled(stop <-chan struct{}) {
	for {
		fs.mu.Lock()
		var next chan struct{}
		for _, done := range fs.settling {
			next = done
			break
		}
		fs.mu.Unlock()
		if next == nil {
			return
		}
		select {
		case <-next:
		case <-stop:
			return
		}
	}
}

// SyncAll commits every inode with uncommitted changes.
func (fs *FS) SyncAll(ctx context.Context) error {
	var errs []error
	for _, ino := range fs.snapshotInodes() {
		if ino.isDirty() {
			err := fs.commitFile(ctx, ino, nil)
			if errors.Is(err, ErrNotExist) {
				// Another host deleted the file after these writes: in
				// the order the store decided, the delete came last, so the
				// data was dropped (W7: losing to a tombstone), not lost.
				fs.log.Warn("dropped uncommitted data of a file another host deleted", "inode", fmt.Sprintf("%016x", ino.id))
				continue
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (fs *FS) snapshotInodes() []*inode {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]*inode, 0, len(fs.inodes))
	for _, ino := range fs.inodes {
		out = append(out, ino)
	}
	return out
}

// writebackLoop commits files whose data has been dirty for longer than
// WritebackDelay, and attribute changes older than attrWriteback (or
// WritebackDelay, if shorter).
func (fs *FS) writebackLoop() {
	defer fs.loopDone.Done()
	t := time.NewTicker(min(fs.opts.WritebackDelay, attrWriteback) / 2)
	defer t.Stop()
	for {
		select {
		case <-fs.stop:
			return
		case <-t.C:
		}
		for _, ino := range fs.snapshotInodes() {
			ino.mu.Lock()
			due := !ino.dirtySince.IsZero() && time.Since(ino.dirtySince) >= fs.opts.WritebackDelay ||
				ino.file.attrs != nil && time.Since(ino.file.attrs.since) >= min(fs.opts.WritebackDelay, attrWriteback)
			ino.mu.Unlock()
			if due {
				if err := fs.commitFile(context.Background(), ino, nil); err != nil {
					fs.log.Warn("background write-back failed; will retry", "inode", fmt.Sprintf("%016x", ino.id), "err", err)
				}
			}
		}
	}
}

// Forget drops an inode from memory when the kernel no longer references it
// and it holds nothing uncommitted.
func (fs *FS) Forget(id uint64) {
	if id == format.RootID {
		return
	}
	fs.mu.Lock()
	ino := fs.inodes[id]
	fs.mu.Unlock()
	if ino == nil {
		return
	}
	ino.mu.Lock()
	idle := ino.open == 0 && !ino.dirtyLocked()
	birth, at := ino.birth, ino.birthAt
	if !ino.bornOnly {
		birth = nil // it has a version of its own: loaded by id alone
	}
	ino.mu.Unlock()
	if idle {
		fs.mu.Lock()
		if fs.inodes[id] == ino {
			delete(fs.inodes, id)
			if birth != nil {
				fs.forgotten.put(id, birth, at)
			}
		}
		fs.mu.Unlock()
	}
}

func randomID() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		if id := binary.LittleEndian.Uint64(b[:]); id > format.RootID {
			return id
		}
	}
}

func (fs *FS) writable() error {
	if fs.opts.ReadOnly {
		return ErrReadOnly
	}
	return nil
}

func now() int64 { return time.Now().UnixNano() }
