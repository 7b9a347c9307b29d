package vfs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// StatFS is what statfs reports. An object store has no fixed size, so
// the total is a nominal constant; what is used comes from the reaper's
// usage record (FORMAT §15.9), as of its last complete pass.
type StatFS struct {
	Blocks, Bfree, Files, Ffree uint64
	Bsize                       uint32
	NameLen                     uint32
}

const (
	statBlockSize  = 4096
	nominalBytes   = 1 << 50 // 1 PiB
	nominalInodes  = 1 << 40
	usageRefresh   = time.Minute
	usageFirstWait = 5 * time.Second
)

// usageCache holds the last usage record read from the store.
type usageCache struct {
	mu       sync.Mutex
	u        *format.Usage // nil: none read (or none exists)
	read     time.Time     // when it was last fetched; zero: never
	fetching bool
	// first is closed when the first fetch is over; nil until one began.
	first chan struct{}
	// waitHook, when set (tests), is called by a statfs that waits for
	// the first fetch another call began.
	waitHook func()
}

// StatFS returns the filesystem's statistics. The first call reads the
// usage record (waiting a few seconds at most); later calls answer from
// memory and refresh it in the background at most once a minute. A call
// made while the first read is in flight waits for it too (within the
// same bound) rather than report nothing used. A first read cut short
// because its caller gave up (ctx done) is no read: the next call reads
// again, and a call that waited for it reads itself.
func (fs *FS) StatFS(ctx context.Context) StatFS {
	c := &fs.usage
	for {
		c.mu.Lock()
		first := c.first == nil
		if first {
			c.first = make(chan struct{})
			c.fetching = true
		}
		done := c.first
		stale := !first && !c.fetching && time.Since(c.read) > usageRefresh
		if stale {
			c.fetching = true
		}
		hook := c.waitHook
		c.mu.Unlock()
		if first {
			wctx, cancel := context.WithTimeout(ctx, usageFirstWait)
			read := fs.refreshUsage(wctx, ctx)
			cancel()
			if !read {
				c.mu.Lock()
				c.first = nil // the next call is the first again
				c.mu.Unlock()
			}
			close(done)
		} else if stale {
			go func() {
				rctx, cancel := context.WithTimeout(context.Background(), usageRefresh)
				defer cancel()
				fs.refreshUsage(rctx, rctx)
			}()
		} else {
			select {
			case <-done:
			default:
				if hook != nil {
					hook()
				}
				t := time.NewTimer(usageFirstWait)
				select {
				case <-done:
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
			c.mu.Lock()
			again := c.first == nil // the read waited for was no read
			c.mu.Unlock()
			if again && ctx.Err() == nil {
				continue
			}
		}
		c.mu.Lock()
		u := c.u
		c.mu.Unlock()
		return statFSFrom(u)
	}
}

// refreshUsage reads the usage record; a missing one reads as nothing
// used, an unreadable one keeps the last figure (and is logged). A read
// that failed because caller is done (the caller gave up) changes nothing
// and does not count as a read: it returns false.
func (fs *FS) refreshUsage(ctx, caller context.Context) bool {
	var u *format.Usage
	obj, _, err := fs.store.Get(ctx, fs.keys.Usage())
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		err = nil
	case err == nil:
		u, err = format.DecodeUsage(obj)
	}
	c := &fs.usage
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetching = false
	if err != nil && caller.Err() != nil {
		return false
	}
	c.read = time.Now()
	if err != nil {
		fs.log.Warn("usage record unreadable; statfs keeps its last figure", "key", fs.keys.Usage(), "err", err)
		return true
	}
	c.u = u
	return true
}

func statFSFrom(u *format.Usage) StatFS {
	s := StatFS{
		Blocks: nominalBytes / statBlockSize, Bfree: nominalBytes / statBlockSize,
		Files: nominalInodes, Ffree: nominalInodes,
		Bsize: statBlockSize, NameLen: format.MaxNameLen,
	}
	if u != nil {
		used := min((u.Bytes+statBlockSize-1)/statBlockSize, s.Blocks)
		s.Bfree -= used
		s.Ffree -= min(u.Inodes, s.Files)
	}
	return s
}
