// Package cache keeps recently used extent contents in memory, bounded by
// bytes, and optionally on local disk. It holds whole extents and, in
// memory only, single checked blocks of extents read by range. Extents are immutable objects named
// by a unique key, so a cached copy never goes stale: there is nothing to
// invalidate, only to evict. A whole extent may be cached in a Buf, a
// counted buffer that goes back to its owner's pool once evicted and
// released by every reader that acquired it (GetBuf).
package cache

import (
	"container/list"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Key identifies one extent object, or one block of it.
type Key struct {
	Inode, EID uint64
	Origin     uint8 // the level of a clone's chain holding the extent (0: the volume's own)
	// Block is 0 for the whole extent, b+1 for its block b of 1<<Shift
	// bytes (docs/FORMAT.md §6: a block checked on its own). Blocks live
	// in memory only.
	Block uint32
	Shift uint8
}

// BlockKey is the key of block b of the extent k names.
func (k Key) BlockKey(b int, shift uint8) Key {
	k.Block, k.Shift = uint32(b)+1, shift
	return k
}

// Cache is an LRU of extent contents. A zero-byte limit disables the memory
// tier. Safe for concurrent use.
type Cache struct {
	mu    sync.Mutex
	limit int64
	used  int64
	lru   *list.List // of *entry, most recent at the front
	items map[Key]*list.Element
	dir   string // "" = no disk tier
}

type entry struct {
	key  Key
	data []byte
	buf  *Buf // nil: data is the garbage collector's
}

// Buf is an extent's bytes in a buffer that goes back to its pool
// (free) once no one holds it: the cache while the extent is cached, and
// every reader that acquired it until it releases it. A holder that
// cannot count its use (it keeps the bytes for as long as it likes) pins
// it instead: a pinned Buf is never freed, and the garbage collector
// takes it once unreferenced, as any slice.
type Buf struct {
	data   []byte
	refs   atomic.Int32
	pinned atomic.Bool
	free   func()
}

// NewBuf returns a Buf of data holding one reference, the caller's; free
// (nil: none) returns its buffer to the pool once the last is released.
func NewBuf(data []byte, free func()) *Buf {
	b := &Buf{data: data, free: free}
	b.refs.Store(1)
	return b
}

// Bytes returns the buffer's bytes, valid while the caller holds a
// reference (or has pinned it).
func (b *Buf) Bytes() []byte { return b.data }

// Add adds n references; the caller holds one, so the Buf is live.
func (b *Buf) Add(n int) {
	if b.refs.Add(int32(n)) <= int32(n) {
		panic("cache: reference to a freed buffer")
	}
}

// Release drops one reference; the last one frees the buffer unless it
// is pinned.
func (b *Buf) Release() {
	switch n := b.refs.Add(-1); {
	case n < 0:
		panic("cache: buffer released more often than acquired")
	case n == 0 && b.free != nil && !b.pinned.Load():
		b.data = nil
		b.free()
	}
}

// Pin makes the buffer the garbage collector's: it is never freed into
// its pool. The caller holds a reference.
func (b *Buf) Pin() { b.pinned.Store(true) }

// New returns a cache holding at most limit bytes in memory and, when dir
// is not empty, a copy of every extent in dir.
func New(limit int64, dir string) (*Cache, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
	}
	return &Cache{limit: limit, lru: list.New(), items: map[Key]*list.Element{}, dir: dir}, nil
}

// Get returns a cached extent's (or block's) bytes (shared: callers must
// not modify them). The disk tier, which holds whole extents only, is
// checked against ref's length and checksums.
//
// The bytes of an extent cached as a Buf (PutBuf) are pinned: Get's
// callers do not count their use.
func (c *Cache) Get(k Key, ref format.ExtentRef) ([]byte, bool) {
	c.mu.Lock()
	if el, ok := c.items[k]; ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*entry)
		if e.buf != nil {
			e.buf.Pin() // the cache holds a reference: it is live
		}
		c.mu.Unlock()
		return e.data, true
	}
	c.mu.Unlock()
	if c.dir == "" || k.Block != 0 {
		return nil, false
	}
	obj, err := os.ReadFile(c.path(k))
	if err != nil {
		return nil, false
	}
	data, err := format.DecodeExtent(obj, ref)
	if err != nil { // a damaged cache file is dropped, never served
		os.Remove(c.path(k))
		return nil, false
	}
	c.putMem(k, data, nil)
	return data, true
}

// GetBuf is Get returning a counted reference, which the caller releases
// when done with the bytes. Bytes not cached as a Buf (blocks, the disk
// tier's) come in a Buf of their own that frees nothing.
func (c *Cache) GetBuf(k Key, ref format.ExtentRef) (*Buf, bool) {
	c.mu.Lock()
	if el, ok := c.items[k]; ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*entry)
		if e.buf != nil {
			e.buf.Add(1) // the cache holds a reference: it is live
			c.mu.Unlock()
			return e.buf, true
		}
		c.mu.Unlock()
		return NewBuf(e.data, nil), true
	}
	c.mu.Unlock()
	data, ok := c.Get(k, ref) // the disk tier
	if !ok {
		return nil, false
	}
	return NewBuf(data, nil), true
}

// PutBuf is Put of a whole extent in a Buf the caller holds a reference
// to: the cache takes one of its own while it keeps the extent in memory,
// and releases it on eviction.
func (c *Cache) PutBuf(k Key, b *Buf) {
	c.putMem(k, b.data, b)
	c.putDisk(k, b.data)
}

// Put stores an extent's (or a block's) bytes; data must not be modified
// afterwards.
func (c *Cache) Put(k Key, data []byte) {
	c.putMem(k, data, nil)
	c.putDisk(k, data)
}

func (c *Cache) putDisk(k Key, data []byte) {
	if c.dir != "" && k.Block == 0 {
		p := c.path(k)
		if _, err := os.Stat(p); err == nil {
			return
		}
		tmp := p + ".tmp"
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
			if os.WriteFile(tmp, format.EncodeExtent(data), 0o600) == nil {
				os.Rename(tmp, p)
			}
		}
	}
}

// putMem caches data (in b, which it then holds a reference to, unless
// nil) and reports whether it did; data already cached under k stays.
func (c *Cache) putMem(k Key, data []byte, b *Buf) bool {
	n := int64(len(data))
	var evicted []*Buf
	defer func() { // outside c.mu: a release may free into a pool
		for _, b := range evicted {
			b.Release()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.limit {
		return false
	}
	if el, ok := c.items[k]; ok {
		c.lru.MoveToFront(el)
		return false
	}
	if b != nil {
		b.Add(1)
	}
	c.items[k] = c.lru.PushFront(&entry{k, data, b})
	c.used += n
	for c.used > c.limit {
		el := c.lru.Back()
		e := el.Value.(*entry)
		c.lru.Remove(el)
		delete(c.items, e.key)
		c.used -= int64(len(e.data))
		if e.buf != nil {
			evicted = append(evicted, e.buf)
		}
	}
	return true
}

// Used reports the bytes held in memory.
func (c *Cache) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

func (c *Cache) path(k Key) string {
	name := fmt.Sprintf("%016x-%016x", k.Inode, k.EID)
	if k.Origin != 0 {
		name += fmt.Sprintf("-%d", k.Origin)
	}
	return filepath.Join(c.dir, fmt.Sprintf("%02x", byte(k.EID)), name)
}
