// Package cache keeps recently used extent contents in memory, bounded by
// bytes, and optionally on local disk. It holds whole extents and, in
// memory only, single checked blocks of extents read by range. Extents are immutable objects named
// by a unique key, so a cached copy never goes stale: there is nothing to
// invalidate, only to evict.
package cache

import (
	"container/list"
	"fmt"
	"os"
	"path/filepath"
	"sync"

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
}

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
func (c *Cache) Get(k Key, ref format.ExtentRef) ([]byte, bool) {
	c.mu.Lock()
	if el, ok := c.items[k]; ok {
		c.lru.MoveToFront(el)
		d := el.Value.(*entry).data
		c.mu.Unlock()
		return d, true
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
	c.putMem(k, data)
	return data, true
}

// Put stores an extent's (or a block's) bytes; data must not be modified
// afterwards.
func (c *Cache) Put(k Key, data []byte) {
	c.putMem(k, data)
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

func (c *Cache) putMem(k Key, data []byte) {
	n := int64(len(data))
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.limit {
		return
	}
	if el, ok := c.items[k]; ok {
		c.lru.MoveToFront(el)
		return
	}
	c.items[k] = c.lru.PushFront(&entry{k, data})
	c.used += n
	for c.used > c.limit {
		el := c.lru.Back()
		e := el.Value.(*entry)
		c.lru.Remove(el)
		delete(c.items, e.key)
		c.used -= int64(len(e.data))
	}
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
