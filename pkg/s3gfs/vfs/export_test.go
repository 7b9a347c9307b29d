package vfs

import (
	"context"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Test-only accessors for package vfs_test.

// BufferPoolUsage reports the bytes of write-back buffers handed out and the
// pool's limit.
func (fs *FS) BufferPoolUsage() (used, limit int64) {
	fs.bufs.mu.Lock()
	defer fs.bufs.mu.Unlock()
	return fs.bufs.used, fs.bufs.limit
}

// BufferPoolPeak reports the most bytes of write-back buffers ever handed
// out at once.
func (fs *FS) BufferPoolPeak() int64 {
	fs.bufs.mu.Lock()
	defer fs.bufs.mu.Unlock()
	return fs.bufs.peak
}

// InodeVersion reports the version this host holds as current for id, and
// the version number its next commit will claim (0, 0 when not loaded).
func (fs *FS) InodeVersion(id uint64) (cur, next uint64) {
	fs.mu.Lock()
	ino := fs.inodes[id]
	fs.mu.Unlock()
	if ino == nil {
		return 0, 0
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.cur == nil {
		return 0, ino.nextVersion
	}
	return ino.cur.Version, ino.nextVersion
}

// OldestHeld is the store time this host's ping holds back the reaper from.
func (fs *FS) OldestHeld() time.Time { return fs.oldestHeld() }

// VersionTime is the store time of the version h reads.
func (h *Handle) VersionTime() time.Time {
	h.ino.mu.Lock()
	defer h.ino.mu.Unlock()
	return h.verTime
}

// TakenBelow reports whether a new inode of a clone may not take id.
func (fs *FS) TakenBelow(id uint64) (bool, error) { return fs.takenBelow(context.Background(), id) }

// SetRenameHook installs a function called between the steps of a rename
// transaction ("src", "dst", "target", "decide", "decided"); when it
// returns false the rename stops there, as a crash would.
func (fs *FS) SetRenameHook(h func(step string) bool) { fs.testHook = h }

// WaitRenames waits for the renames being settled in the background (a
// commit whose outcome was unknown) to be settled.
func (fs *FS) WaitRenames() { fs.waitSettled(nil) }

// Prefetching reports whether a listing of directory id is still loading
// its children in the background.
func (fs *FS) Prefetching(id uint64) bool {
	fs.mu.Lock()
	ino := fs.inodes[id]
	fs.mu.Unlock()
	return ino != nil && ino.prefetching.Load()
}

// SetHint gives inode id the newest version key obj, as a cold listing's
// prefetch does (hintNewest).
func (fs *FS) SetHint(id uint64, obj objstore.ObjectInfo) { fs.setHint(id, obj, time.Now()) }

// SetUsageWaitHook sets a function a statfs calls when it waits for the
// first read of the usage record that another call began.
func (fs *FS) SetUsageWaitHook(h func()) {
	fs.usage.mu.Lock()
	fs.usage.waitHook = h
	fs.usage.mu.Unlock()
}

// DecisionsCached is the size of the rename decision cache.
func (fs *FS) DecisionsCached() int {
	fs.decMu.Lock()
	defer fs.decMu.Unlock()
	return len(fs.decisions)
}

// SetDecisionPrune sets the least size at which the decision cache is
// pruned.
func (fs *FS) SetDecisionPrune(n int) {
	fs.decMu.Lock()
	fs.decPrune, fs.decPruneMin = n, n
	fs.decMu.Unlock()
}

// CacheUsed reports the bytes the extent cache holds in memory.
func (fs *FS) CacheUsed() int64 { return fs.cache.Used() }

// FlushInvalidations waits until the queued kernel-cache invalidations
// have been sent to the invalidator.
func (fs *FS) FlushInvalidations() { fs.flushInvalidations() }
