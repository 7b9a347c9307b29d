package vfs

import (
	"sync"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Kernel-cache invalidation.
//
// The kernel caches this host's lookups and attributes for the mount's
// cache timeout (fusefs), which may be long: every way by which what it
// cached can go stale on this host is covered by an invalidation instead.
// Changes made through the kernel (this host's own system calls) it
// accounts for itself. Everything else enters this host's view through
// refresh, which installs a newer version read from the store (another
// host's change, found by following the feed, by a lookup revalidating a
// directory, by an open's close-to-open check, or by a commit that lost
// its race and merges the winner): refresh queues the invalidation of
// the inode's attributes and pages and, for a directory, of each name
// whose entry differs, and of every name with a pending rename entry
// (whose view a decision may change). A fence and the recovery from it
// drop every cache the kernel holds of the mount (see checkFenced and
// unfence), so that a fenced host answers EIO rather than cached data.
//
// Invalidations are sent by a goroutine of their own, in the order they
// were queued, never with an engine lock held and never by the request
// that caused them: the kernel takes a directory's lock to drop an entry
// of it, which a request in that directory (a lookup that revalidated it)
// already holds until it is answered. Each is queued after the state it
// is about was installed, so a reply built from the older state reaches
// the kernel before the invalidation that drops it (the kernel's
// directory lock orders entries; its attribute version, attributes).

// invalOp is one queued invalidation.
type invalOp struct {
	all  bool   // every cache of the mount
	id   uint64 // the inode whose attributes and pages to drop, or the directory of name
	name string // the entry to drop, if set
}

// invalQueue holds the invalidations not yet sent.
type invalQueue struct {
	mu      sync.Mutex
	ops     []invalOp
	running bool
	idle    sync.Cond // signalled when the queue is drained (Flush, tests)
}

// invalidate queues ops for the kernel. Without an invalidator (tests,
// before the mount) they are dropped.
func (fs *FS) invalidate(ops ...invalOp) {
	if len(ops) == 0 || fs.invalidator() == nil {
		return
	}
	q := &fs.inval
	q.mu.Lock()
	q.ops = append(q.ops, ops...)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go fs.sendInvalidations()
	}
}

// sendInvalidations sends the queued invalidations until the queue is
// empty.
func (fs *FS) sendInvalidations() {
	inv := fs.invalidator()
	q := &fs.inval
	for {
		q.mu.Lock()
		ops := q.ops
		q.ops = nil
		if len(ops) == 0 {
			q.running = false
			q.idle.Broadcast()
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		for _, op := range ops {
			switch {
			case op.all:
				inv.InvalidateAll()
			case op.name != "":
				inv.InvalidateEntry(op.id, op.name)
			default:
				inv.InvalidateInode(op.id)
			}
		}
	}
}

// flushInvalidations waits until every invalidation queued before the
// call has been sent.
func (fs *FS) flushInvalidations() {
	q := &fs.inval
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.running || len(q.ops) > 0 {
		q.idle.Wait()
	}
}

// dirView is what the kernel may have cached of an inode: its version and,
// for a directory, its entries.
type dirView struct {
	cur     *format.Inode
	entries map[string]format.Entry
	pending map[string]format.Entry
}

// viewLocked returns ino's view (ino.mu held). The maps are not copied:
// installing a version replaces them (setCurLocked), and the only change
// made in place, a commit of this host, holds commitMu, which refresh's
// caller holds too.
func (ino *inode) viewLocked() dirView {
	return dirView{cur: ino.cur, entries: ino.entries, pending: ino.pending}
}

// invalidateChanged queues the invalidations of what changed in ino's
// view since before (see the top of this file). The caller holds
// ino.commitMu.
func (fs *FS) invalidateChanged(ino *inode, before dirView) {
	ino.mu.Lock()
	if before.cur == nil || ino.cur == before.cur {
		ino.mu.Unlock()
		return
	}
	ops := []invalOp{{id: ino.id}}
	for name, e := range before.entries {
		if n, ok := ino.entries[name]; !ok || n.Child != e.Child {
			ops = append(ops, invalOp{id: ino.id, name: name})
		}
	}
	for name := range ino.entries {
		if _, ok := before.entries[name]; !ok {
			ops = append(ops, invalOp{id: ino.id, name: name})
		}
	}
	for name := range before.pending {
		ops = append(ops, invalOp{id: ino.id, name: name})
	}
	for name := range ino.pending {
		ops = append(ops, invalOp{id: ino.id, name: name})
	}
	ino.mu.Unlock()
	fs.invalidate(ops...)
}
