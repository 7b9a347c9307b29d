// Package objstore is the one interface s3gfs uses to reach an object store,
// and the contract every implementation must keep.
//
// The filesystem, the reaper and the CLI only ever talk to a Store. Two
// implementations exist: s3store (Amazon S3 and S3-compatible servers through
// aws-sdk-go-v2) and memstore (in memory, for fast unit tests). The shared
// conformance suite in objstore/storetest runs against both, so a behaviour
// the filesystem relies on is written down once, here, and checked for every
// backend.
//
// Contract (every implementation MUST):
//
//   - PutIfAbsent creates key only if no object with that key exists, and
//     reports ErrExists otherwise (S3: If-None-Match: * answered by 412, or
//     409 ConditionalRequestConflict on a race). Of any number of racing
//     PutIfAbsent calls on one key, exactly one succeeds.
//   - Put creates or replaces key unconditionally (used only for objects a
//     single writer owns, such as a host's ping).
//   - PutIfMatch replaces key only if its current ETag is etag (S3:
//     If-Match), and reports ErrPrecondition otherwise (412, or 409
//     ConditionalRequestConflict on a race); a missing key is ErrNotFound
//     (or ErrPrecondition on stores that answer 412). Of racing PutIfMatch
//     calls with one ETag, at most one succeeds. Used only for the reaper's
//     lease and record.
//   - Get and GetRange report ErrNotFound for a missing key; GetRange with a
//     range past the end returns the bytes that exist.
//   - List returns keys under prefix in ascending byte order, strictly after
//     startAfter, at most max keys (0 = implementation's page size), and
//     whether more keys follow. Every ObjectInfo carries the store's own
//     LastModified time: s3gfs never uses a client clock for versions.
//     (Put and PutIfAbsent report the store's clock at their response,
//     which may differ from the recorded LastModified by up to a second.)
//   - Delete of a missing key succeeds (idempotent).
//   - Every error other than the sentinels below is wrapped with the key and
//     operation, and transient ones (throttling, 5xx, dropped connections)
//     have already been retried with backoff before they are returned.
//   - Methods are safe for concurrent use; implementations bound their own
//     number of requests in flight.
package objstore

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them (errors.Is works).
var (
	// ErrNotFound: the key (or bucket) does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists: a conditional create lost because the key exists.
	ErrExists = errors.New("object already exists")
	// ErrNoBucket: the bucket does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrAccessDenied: the credentials were refused or lack permission.
	ErrAccessDenied = errors.New("access denied by object store")
	// ErrPrecondition: a conditional overwrite (PutIfMatch) lost because
	// the object is no longer the one whose ETag was given.
	ErrPrecondition = errors.New("object changed (ETag does not match)")
	// ErrUnavailable: the store could not be reached after retries.
	ErrUnavailable = errors.New("object store unavailable")
	// ErrExpired: the store refused a request that reached it after its
	// deadline (see Deadliner); it took no effect.
	ErrExpired = errors.New("request reached the object store after its deadline")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time // the store's clock
	ETag         string
}

// ListPage is one page of a listing.
type ListPage struct {
	Objects   []ObjectInfo
	Truncated bool // more keys follow the last one returned
}

// Store is an object store bucket. Keys are full keys within the bucket.
type Store interface {
	// PutIfAbsent creates key with body unless it exists (ErrExists).
	PutIfAbsent(ctx context.Context, key string, body []byte) (ObjectInfo, error)
	// Put creates or replaces key with body.
	Put(ctx context.Context, key string, body []byte) (ObjectInfo, error)
	// PutIfMatch replaces key with body if its ETag is etag
	// (ErrPrecondition otherwise, ErrNotFound if it is missing).
	PutIfMatch(ctx context.Context, key string, body []byte, etag string) (ObjectInfo, error)
	// Get returns the whole object.
	Get(ctx context.Context, key string) ([]byte, ObjectInfo, error)
	// GetRange returns length bytes starting at off (fewer at the end).
	GetRange(ctx context.Context, key string, off, length int64) ([]byte, error)
	// Head returns the object's metadata.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List lists keys under prefix strictly after startAfter, ascending.
	List(ctx context.Context, prefix, startAfter string, max int) (ListPage, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// DeleteMany removes keys in batches; missing keys are not errors.
	DeleteMany(ctx context.Context, keys []string) error
	// Bucket names the bucket this store addresses.
	Bucket() string
}

// BucketCreator is implemented by stores that can create their bucket.
type BucketCreator interface {
	// EnsureBucket creates the bucket if it does not exist.
	EnsureBucket(ctx context.Context) error
}

// RangeReaderInto is implemented by stores that can read a range into a
// buffer the caller provides (and may reuse: a pool of extent buffers).
type RangeReaderInto interface {
	// GetRangeInto is GetRange returning its bytes in buf[:n] when they
	// fit in buf, else in a fresh buffer.
	GetRangeInto(ctx context.Context, key string, off, length int64, buf []byte) ([]byte, error)
}

// BucketSwitcher is implemented by stores that can reach another bucket of
// the same object store with the same endpoint and credentials (a clone's
// source may live in another bucket).
type BucketSwitcher interface {
	ForBucket(bucket string) Store
}

// Clock is implemented by stores that can tell their own current time.
// s3gfs compares versions, pings and retention against the store's clock,
// never a client's (protocol invariant 6), so "now" comes from here.
type Clock interface {
	// Now returns the store's current time (to the second for S3).
	Now(ctx context.Context) (time.Time, error)
}

// Deadliner is implemented by stores that can make a conditional create
// expire by their own clock, so that a request the client gave up on
// cannot take effect when the network delivers it late. (A cancelled
// context only stops the client from waiting: bytes already sent, or held
// by a stalled network, may still reach the store.)
type Deadliner interface {
	// PutIfAbsentWithin is PutIfAbsent, except that the store refuses the
	// request (ErrExpired, no effect) if it arrives too long after the
	// call, measured by the store's clock: never later than d + 2 s (stores
	// count whole seconds), and not before d − 1 s.
	PutIfAbsentWithin(ctx context.Context, key string, body []byte, d time.Duration) (ObjectInfo, error)
}
