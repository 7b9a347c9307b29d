package vfs

import (
	"context"
	"sort"
	"sync"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// bufferPool hands out extent-sized write-back buffers and enforces the
// memory bound on dirty data: get blocks, asking evict to start uploads,
// until a buffer fits under the limit. Buffers are recycled, so the heap
// stays near the bound while a large file streams through.
type bufferPool struct {
	mu sync.Mutex
	// freed is broadcast whenever a waiting get may now succeed or evict
	// something: a buffer was returned (put), a buffer became evictable
	// (noteDirty), or an upload failed and left its extent evictable again
	// (wake). gen counts those broadcasts.
	freed *sync.Cond
	gen   uint64
	limit int64
	size  int64
	used  int64
	peak  int64 // high-water mark of used (diagnostics and tests)
	free  []freeBuf
	dirty map[*inode]struct{} // inodes that may hold dirty buffers
}

// freeBuf is a recycled raw buffer whose content from dirty on is zero, so
// get clears only what was used (a small file uses a few KiB of its
// extent-sized buffer: clearing all of it cost more than the write).
type freeBuf struct {
	b     []byte
	dirty int
}

func newBufferPool(limit, size int64) *bufferPool {
	p := &bufferPool{limit: limit, size: size, dirty: map[*inode]struct{}{}}
	p.freed = sync.NewCond(&p.mu)
	return p
}

// get returns a zeroed buffer, blocking while the pool is at its limit. The
// buffer is raw: an extent's content lives at contentOf(raw), with room
// around it for the envelope its upload seals in place (putExtent).
func (p *bufferPool) get(ctx context.Context, evict func() bool) ([]byte, error) {
	raw, dirty, err := p.getDirty(ctx, evict)
	if err != nil {
		return nil, err
	}
	clear(contentOf(raw)[:dirty])
	return raw, nil
}

// getDirty is get without the clearing: the buffer's content is zero from
// dirty on, and anything before. A writer that overwrites the bytes it
// uses (a sequential writer fills whole extents) need not clear them
// first: clearing 4 MiB for every extent written cost as much CPU as
// checksumming it.
func (p *bufferPool) getDirty(ctx context.Context, evict func() bool) (raw []byte, dirty int, err error) {
	p.mu.Lock()
	for p.used+p.size > p.limit {
		if err := ctx.Err(); err != nil {
			p.mu.Unlock()
			return nil, 0, err
		}
		gen := p.gen
		p.mu.Unlock()
		evict()
		p.mu.Lock()
		// Wait for an upload to finish (or a buffer to become evictable)
		// before evicting more, but only if nothing of the kind happened
		// since before evict: the upload it started may already have
		// finished (or failed) and broadcast before p.mu was re-taken,
		// and a Wait would then sleep forever. (It did: writers hung in
		// get, first after a successful upload, then after failed ones,
		// which free nothing, so re-checking used was not enough.)
		if p.used+p.size > p.limit && p.gen == gen {
			p.freed.Wait()
		}
	}
	p.used += p.size
	p.peak = max(p.peak, p.used)
	var f freeBuf
	if n := len(p.free); n > 0 {
		f = p.free[n-1]
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if f.b == nil {
		return make([]byte, format.EnvelopeOverhead+p.size), 0, nil
	}
	return f.b, f.dirty, nil
}

// contentOf is the extent content of a raw buffer from get.
func contentOf(raw []byte) []byte {
	return raw[format.EnvelopeHeader : len(raw)-format.EnvelopeOverhead+format.EnvelopeHeader : len(raw)-format.EnvelopeOverhead+format.EnvelopeHeader]
}

// put returns a raw buffer to the pool; its content's bytes from dirty on
// must be zero (a dirtyExtent's from its used() on are).
func (p *bufferPool) put(raw []byte, dirty int) {
	p.mu.Lock()
	p.used -= p.size
	p.free = append(p.free, freeBuf{raw, min(max(dirty, 0), int(p.size))})
	p.gen++
	p.freed.Broadcast()
	p.mu.Unlock()
}

// noteDirty records that ino holds dirty buffers (for eviction). A getter
// that found nothing to evict (every buffer was between get and its first
// use) is woken, since a buffer just became evictable.
func (p *bufferPool) noteDirty(ino *inode) {
	p.mu.Lock()
	p.dirty[ino] = struct{}{}
	p.gen++
	p.freed.Broadcast()
	p.mu.Unlock()
}

// wake makes waiting getters re-check the pool and evict again (after an
// upload failed: its extent stays dirty and may be evicted once more, but
// no buffer was returned).
func (p *bufferPool) wake() {
	p.mu.Lock()
	p.gen++
	p.freed.Broadcast()
	p.mu.Unlock()
}

// dirtyInodes lists inodes that may hold dirty buffers, forgetting those
// that no longer do.
func (p *bufferPool) dirtyInodes() []*inode {
	p.mu.Lock()
	out := make([]*inode, 0, len(p.dirty))
	for ino := range p.dirty {
		out = append(out, ino)
	}
	p.mu.Unlock()
	var keep []*inode
	for _, ino := range out {
		ino.mu.Lock() // lock order: inode.mu before bufferPool.mu
		if len(ino.file.dirtyExt) > 0 {
			keep = append(keep, ino)
		} else {
			p.mu.Lock()
			delete(p.dirty, ino)
			p.mu.Unlock()
		}
		ino.mu.Unlock()
	}
	return keep
}

func sortExtents(xs []format.ExtentRef) {
	sort.Slice(xs, func(i, j int) bool { return xs[i].Index < xs[j].Index })
}
