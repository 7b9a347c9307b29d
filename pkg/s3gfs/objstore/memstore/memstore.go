// Package memstore is an in-memory objstore.Store for fast unit tests.
//
// It keeps the whole objstore contract (the conformance suite in
// objstore/storetest runs against it) and adds what tests of the layers
// above need: a clock that can be replaced, and hooks that make a chosen
// operation fail, either before it takes effect or after (a write that
// happened but whose response was lost).
//
// LastModified comes from the store's clock with nanosecond resolution and
// never goes backwards: every write gets a time strictly after the previous
// write's, even if the clock stalls or steps back.
package memstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Op names a Store operation, for Hooks.
type Op string

// The operations Hooks see.
const (
	OpPutIfAbsent Op = "put-if-absent"
	OpPut         Op = "put"
	OpPutIfMatch  Op = "put-if-match"
	OpGet         Op = "get"
	OpGetRange    Op = "get-range"
	OpHead        Op = "head"
	OpList        Op = "list"
	OpDelete      Op = "delete"
	OpDeleteMany  Op = "delete-many"
)

// Hooks inject faults. Each is called with the operation and its key (for
// List the prefix; for DeleteMany once per key) and may return an error,
// which the operation then returns, wrapped like every memstore error.
// Hooks run with the store locked, so they must not call the store.
type Hooks struct {
	// Before runs before the operation touches the store; an error means
	// the operation has no effect.
	Before func(op Op, key string) error
	// After runs after the operation succeeded; an error is returned to the
	// caller although the change stays made, like a response lost in
	// transit.
	After func(op Op, key string) error
}

// FailOnce returns a hook that fails the first call matching op and key
// (key "" matches any key) with err, and lets every other call through.
func FailOnce(op Op, key string, err error) func(Op, string) error {
	var once sync.Once
	return func(o Op, k string) error {
		var fail bool
		if o == op && (key == "" || k == key) {
			once.Do(func() { fail = true })
		}
		if fail {
			return err
		}
		return nil
	}
}

// Store is an in-memory bucket. The zero value is not usable; call New.
type Store struct {
	bucket string

	mu    sync.Mutex
	objs  map[string]object
	index []string // every key, sorted
	now   func() time.Time
	last  time.Time // the latest LastModified handed out
	hooks Hooks
}

type object struct {
	body []byte
	info objstore.ObjectInfo
}

var (
	_ objstore.Store         = (*Store)(nil)
	_ objstore.BucketCreator = (*Store)(nil)
)

// DefaultPageSize is the most keys List returns when asked for max 0.
const DefaultPageSize = 1000

// New returns an empty store named bucket, whose clock is time.Now.
func New(bucket string) *Store {
	return &Store{bucket: bucket, objs: map[string]object{}, now: time.Now}
}

// SetClock replaces the clock LastModified times are read from. Times
// still never go backwards.
func (s *Store) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetHooks installs fault-injection hooks (the zero Hooks removes them).
func (s *Store) SetHooks(h Hooks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = h
}

// Keys returns every key in the store, in order. For test assertions.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sortedKeys(""))
}

// Bucket names the bucket this store addresses.
func (s *Store) Bucket() string { return s.bucket }

// EnsureBucket does nothing: a memstore's bucket always exists.
func (s *Store) EnsureBucket(context.Context) error { return nil }

// PutIfAbsent creates key with body unless it exists (objstore.ErrExists).
func (s *Store) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	return s.put(ctx, OpPutIfAbsent, key, body)
}

// Put creates or replaces key with body.
func (s *Store) Put(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	return s.put(ctx, OpPut, key, body)
}

// PutIfMatch replaces key with body if its ETag is etag.
func (s *Store) PutIfMatch(ctx context.Context, key string, body []byte, etag string) (objstore.ObjectInfo, error) {
	return s.putCond(ctx, OpPutIfMatch, key, body, etag)
}

func (s *Store) put(ctx context.Context, op Op, key string, body []byte) (objstore.ObjectInfo, error) {
	return s.putCond(ctx, op, key, body, "")
}

func (s *Store) putCond(ctx context.Context, op Op, key string, body []byte, ifMatch string) (objstore.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.before(ctx, op, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	old, ok := s.objs[key]
	if ok && op == OpPutIfAbsent {
		return objstore.ObjectInfo{}, s.wrap(op, key, objstore.ErrExists)
	}
	if op == OpPutIfMatch {
		if !ok {
			return objstore.ObjectInfo{}, s.wrap(op, key, objstore.ErrNotFound)
		}
		if old.info.ETag != ifMatch {
			return objstore.ObjectInfo{}, s.wrap(op, key, objstore.ErrPrecondition)
		}
	}
	sum := md5.Sum(body)
	o := object{
		body: bytes.Clone(body),
		info: objstore.ObjectInfo{
			Key:          key,
			Size:         int64(len(body)),
			LastModified: s.tick(),
			ETag:         hex.EncodeToString(sum[:]),
		},
	}
	if _, ok := s.objs[key]; !ok {
		s.indexAdd(key)
	}
	s.objs[key] = o
	if err := s.after(op, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return o.info, nil
}

// tick returns the next LastModified: the clock's time, but always after
// the previous one. Called with s.mu held.
func (s *Store) tick() time.Time {
	t := s.now().UTC().Round(0) // drop the monotonic reading; keep ns
	if !t.After(s.last) {
		t = s.last.Add(time.Nanosecond)
	}
	s.last = t
	return t
}

// Get returns the whole object.
func (s *Store) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.before(ctx, OpGet, key); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	o, ok := s.objs[key]
	if !ok {
		return nil, objstore.ObjectInfo{}, s.wrap(OpGet, key, objstore.ErrNotFound)
	}
	if err := s.after(OpGet, key); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	return bytes.Clone(o.body), o.info, nil
}

// GetRange returns length bytes starting at off (fewer at the end).
func (s *Store) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	return s.GetRangeInto(ctx, key, off, length, nil)
}

// GetRangeInto is GetRange into buf when the bytes fit in it
// (objstore.RangeReaderInto).
func (s *Store) GetRangeInto(ctx context.Context, key string, off, length int64, buf []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.before(ctx, OpGetRange, key); err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, s.wrap(OpGetRange, key, fmt.Errorf("invalid range: offset %d, length %d", off, length))
	}
	o, ok := s.objs[key]
	if !ok {
		return nil, s.wrap(OpGetRange, key, objstore.ErrNotFound)
	}
	if err := s.after(OpGetRange, key); err != nil {
		return nil, err
	}
	size := int64(len(o.body))
	start := min(off, size)
	end := size
	if length < size-start { // not start+length: it may overflow
		end = start + length
	}
	if n := end - start; n <= int64(len(buf)) {
		return buf[:copy(buf, o.body[start:end])], nil
	}
	return bytes.Clone(o.body[start:end]), nil
}

// Head returns the object's metadata.
func (s *Store) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.before(ctx, OpHead, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	o, ok := s.objs[key]
	if !ok {
		return objstore.ObjectInfo{}, s.wrap(OpHead, key, objstore.ErrNotFound)
	}
	if err := s.after(OpHead, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return o.info, nil
}

// List lists keys under prefix strictly after startAfter, ascending, at
// most max (0 means DefaultPageSize).
func (s *Store) List(ctx context.Context, prefix, startAfter string, max int) (objstore.ListPage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.before(ctx, OpList, prefix); err != nil {
		return objstore.ListPage{}, err
	}
	if max <= 0 {
		max = DefaultPageSize
	}
	keys := s.sortedKeys(prefix)
	i := sort.SearchStrings(keys, startAfter)
	if i < len(keys) && keys[i] == startAfter {
		i++
	}
	keys = keys[i:]
	page := objstore.ListPage{Truncated: len(keys) > max}
	for _, k := range keys[:min(max, len(keys))] {
		page.Objects = append(page.Objects, s.objs[k].info)
	}
	if err := s.after(OpList, prefix); err != nil {
		return objstore.ListPage{}, err
	}
	return page, nil
}

// indexAdd and indexRemove keep s.index, every key in byte order (as S3
// orders keys), up to date. Called with s.mu held.
func (s *Store) indexAdd(key string) {
	i := sort.SearchStrings(s.index, key)
	s.index = slices.Insert(s.index, i, key)
}

func (s *Store) indexRemove(key string) {
	if i := sort.SearchStrings(s.index, key); i < len(s.index) && s.index[i] == key {
		s.index = slices.Delete(s.index, i, i+1)
	}
}

// sortedKeys returns the keys under prefix in byte order (a view of the
// index: callers must not keep it past s.mu). Called with s.mu held.
func (s *Store) sortedKeys(prefix string) []string {
	i := sort.SearchStrings(s.index, prefix)
	j := i
	for j < len(s.index) && strings.HasPrefix(s.index[j], prefix) {
		j++
	}
	return s.index[i:j:j]
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.before(ctx, OpDelete, key); err != nil {
		return err
	}
	if _, ok := s.objs[key]; ok {
		s.indexRemove(key)
	}
	delete(s.objs, key)
	return s.after(OpDelete, key)
}

// DeleteMany removes keys; missing keys are not errors. A hook failing for
// one key does not stop the others; the failures are returned joined.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return s.wrap(OpDeleteMany, "", err)
	}
	var errs []error
	for _, k := range keys {
		if s.hooks.Before != nil {
			if err := s.hooks.Before(OpDeleteMany, k); err != nil {
				errs = append(errs, s.wrap(OpDeleteMany, k, err))
				continue
			}
		}
		if _, ok := s.objs[k]; ok {
			s.indexRemove(k)
		}
		delete(s.objs, k)
		if err := s.after(OpDeleteMany, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// before checks ctx and runs the Before hook. Called with s.mu held.
func (s *Store) before(ctx context.Context, op Op, key string) error {
	if err := ctx.Err(); err != nil {
		return s.wrap(op, key, err)
	}
	if s.hooks.Before != nil {
		if err := s.hooks.Before(op, key); err != nil {
			return s.wrap(op, key, err)
		}
	}
	return nil
}

// after runs the After hook. Called with s.mu held.
func (s *Store) after(op Op, key string) error {
	if s.hooks.After != nil {
		if err := s.hooks.After(op, key); err != nil {
			return s.wrap(op, key, err)
		}
	}
	return nil
}

func (s *Store) wrap(op Op, key string, err error) error {
	return fmt.Errorf("mem %s %s/%s: %w", op, s.bucket, key, err)
}

// Now returns the store's clock.
func (s *Store) Now(context.Context) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now().UTC().Round(0), nil
}
