package vfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/cache"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Extents fetched whole are read into buffers from a pool (extBufs) when
// the store can read into a given buffer (objstore.RangeReaderInto): a
// fresh 4 MiB buffer costs the clearing of its memory, about as much CPU
// as reading it from the socket. A pooled buffer is a cache.Buf, counted:
// the cache holds a reference while the extent is cached, each reader
// from acquiring it until it is done (a ReadView until the FUSE reply is
// written), and the buffer goes back to the pool only after the last
// release. Callers that do not count (fetchExtent's) pin it: it is then
// never reused.

// extBufs is the pool of extent buffers of one FS.
type extBufs struct {
	size int // an extent object's largest size, plus one (see fetchExtentBuf)
	pool sync.Pool
}

func (p *extBufs) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, p.size)
	return &b
}

func (p *extBufs) put(b *[]byte) { p.pool.Put(b) }

// within reports whether s lies inside buf.
func within(s, buf []byte) bool {
	if len(s) == 0 || len(buf) == 0 {
		return false
	}
	p, b := uintptr(unsafe.Pointer(unsafe.SliceData(s))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return p >= b && p+uintptr(len(s)) <= b+uintptr(len(buf))
}

// extFlights merges concurrent fetches of one extent, handing each caller
// its own reference to the result.
type extFlights struct {
	mu    sync.Mutex
	calls map[string]*extFlight
}

type extFlight struct {
	done    chan struct{}
	waiters int // callers that joined the leader's fetch
	buf     *cache.Buf
	err     error
}

// join waits for the fetch of key in flight, if there is one, and returns
// its result, a reference the caller releases; ok reports whether there
// was one.
func (s *extFlights) join(key string) (buf *cache.Buf, ok bool, err error) {
	s.mu.Lock()
	f, ok := s.calls[key]
	if ok {
		f.waiters++
	}
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	<-f.done
	return f.buf, true, f.err
}

// do returns fn's result for key, a reference the caller releases, from
// the fetch in flight if there is one. fn returns a Buf holding one
// reference, which becomes the leader's.
func (s *extFlights) do(key string, fn func() (*cache.Buf, error)) (*cache.Buf, error) {
	if buf, ok, err := s.join(key); ok {
		return buf, err
	}
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*extFlight{}
	}
	if f, ok := s.calls[key]; ok { // started between join and here
		f.waiters++
		s.mu.Unlock()
		<-f.done
		return f.buf, f.err
	}
	f := &extFlight{done: make(chan struct{})}
	s.calls[key] = f
	s.mu.Unlock()
	f.buf, f.err = fn()
	s.mu.Lock()
	delete(s.calls, key) // no one joins from now on
	if f.err == nil && f.waiters > 0 {
		f.buf.Add(f.waiters) // one for each who joined
	}
	s.mu.Unlock()
	close(f.done)
	return f.buf, f.err
}

// fetchExtentBuf returns an extent's bytes from the cache or the store,
// as a reference the caller releases.
func (fs *FS) fetchExtentBuf(ctx context.Context, id uint64, ref format.ExtentRef) (*cache.Buf, error) {
	ck := cache.Key{Inode: id, EID: ref.EID, Origin: ref.Origin}
	if b, ok := fs.cache.GetBuf(ck, ref); ok {
		return b, nil
	}
	if int(ref.Origin) >= len(fs.levels) { // refused when the version was read
		return nil, fmt.Errorf("extent %016x of inode %016x: %w: origin %d beyond the clone's chain", ref.EID, id, ErrCorrupt, ref.Origin)
	}
	lv := &fs.levels[ref.Origin]
	key := lv.keys.Extent(id, ref.EID)
	return fs.extFetches.do(lv.bucket+"/"+key, func() (*cache.Buf, error) {
		// A fetch that missed the cache just as another one finished
		// would otherwise fetch the extent again.
		if b, ok := fs.cache.GetBuf(ck, ref); ok {
			return b, nil
		}
		// At most one byte more than the object the reference describes:
		// an oversized object at this key (beyond the format's bounds) is
		// refused without being read whole into memory.
		limit := int64(ref.Length) + format.EnvelopeOverhead + 1
		var raw *[]byte
		var obj []byte
		var err error
		if rs, ok := lv.store.(objstore.RangeReaderInto); ok && limit <= int64(fs.extBufs.size) {
			raw = fs.extBufs.get()
			obj, err = rs.GetRangeInto(ctx, key, 0, limit, *raw)
		} else {
			obj, err = lv.store.GetRange(ctx, key, 0, limit)
		}
		free := func() {}
		if raw != nil {
			free = func() { fs.extBufs.put(raw) }
		}
		if err != nil {
			free()
			if errors.Is(err, objstore.ErrNotFound) {
				fs.log.Error("extent named by an inode version is missing", "key", key)
				return nil, fmt.Errorf("%s: %w: missing extent", key, ErrCorrupt)
			}
			return nil, fmt.Errorf("read extent %s: %w", key, err)
		}
		data, err := format.DecodeExtent(obj, ref)
		if err != nil {
			free()
			fs.log.Error("refusing corrupt extent", "key", key, "err", err)
			return nil, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
		}
		var b *cache.Buf
		if raw != nil && within(data, *raw) {
			b = cache.NewBuf(data, free)
		} else {
			free() // the bytes are elsewhere (a body larger than the buffer, an empty extent)
			b = cache.NewBuf(data, nil)
		}
		fs.cache.PutBuf(ck, b)
		return b, nil
	})
}

// fetchExtent returns an extent's bytes from the cache or the store, for
// a caller that keeps them as long as it likes: they are never reused.
func (fs *FS) fetchExtent(ctx context.Context, id uint64, ref format.ExtentRef) ([]byte, error) {
	b, err := fs.fetchExtentBuf(ctx, id, ref)
	if err != nil {
		return nil, err
	}
	b.Pin()
	data := b.Bytes()
	b.Release()
	return data, nil
}
