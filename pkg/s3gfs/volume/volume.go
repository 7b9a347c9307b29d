// Package volume creates and opens s3gfs volumes: it parses volume URLs,
// writes the volume header and root directory at format time, probes the
// store for conditional-write support, and reads the header back at mount
// time. It does no FUSE and no file I/O, so the reaper and fsck use it too.
package volume

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// URL names a volume: a bucket and a key prefix.
type URL struct {
	Bucket string
	Prefix string // no leading or trailing slash; may be empty
}

func (u URL) String() string {
	if u.Prefix == "" {
		return "s3://" + u.Bucket
	}
	return "s3://" + u.Bucket + "/" + u.Prefix
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ValidateBucket checks an S3 bucket name against the general-purpose
// bucket naming rules.
func ValidateBucket(b string) error {
	if !bucketRE.MatchString(b) || strings.Contains(b, "..") {
		return fmt.Errorf("invalid bucket name %q: use 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit", b)
	}
	return nil
}

// ParseURL parses "s3://BUCKET[/PREFIX]".
func ParseURL(s string) (URL, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return URL{}, fmt.Errorf("volume %q: want s3://BUCKET/PREFIX", s)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	prefix = strings.TrimSuffix(prefix, "/")
	if err := ValidateBucket(bucket); err != nil {
		return URL{}, fmt.Errorf("volume %q: %w", s, err)
	}
	if _, err := format.NewKeys(prefix); err != nil {
		return URL{}, fmt.Errorf("volume %q: %w", s, err)
	}
	return URL{Bucket: bucket, Prefix: prefix}, nil
}

// Volume is an opened volume: its store, key scheme and header.
type Volume struct {
	Store  objstore.Store
	URL    URL
	Keys   format.Keys
	Header *format.Volume
	// Created is the store's time of the header object: the instant the
	// volume began to exist.
	Created time.Time
	// Chain is a clone's chain of sources (FORMAT.md §16): Chain[0] is
	// its source (level 1), Chain[1] the source's source, and so on. Empty
	// for a volume that is not a clone.
	Chain []Level
}

// Level is one volume of a clone's chain, seen at the instant At.
type Level struct {
	*Volume
	At time.Time
}

// StoreOpener reaches another bucket of the same object store, for a
// clone whose source lives there.
type StoreOpener func(ctx context.Context, bucket string) (objstore.Store, error)

// Errors for callers to test.
var (
	ErrExists   = errors.New("a volume already exists there")
	ErrNoVolume = errors.New("no s3gfs volume there")
)

// FormatOptions are the parameters of a new volume.
type FormatOptions struct {
	ExtentSize  uint32
	InlineLimit uint32
	Retention   time.Duration
}

// Format creates a volume at u in store: it creates the bucket when the
// store can and it is missing, probes conditional writes, then creates the
// header and the root directory, each with a conditional create.
func Format(ctx context.Context, store objstore.Store, u URL, o FormatOptions) (*Volume, error) {
	keys, err := format.NewKeys(u.Prefix)
	if err != nil {
		return nil, err
	}
	h := &format.Volume{ExtentSize: o.ExtentSize, InlineLimit: o.InlineLimit, Retention: o.Retention, Created: time.Now()}
	if h.ExtentSize == 0 {
		h.ExtentSize = format.DefaultExtentSize
	}
	if h.InlineLimit == 0 {
		h.InlineLimit = format.DefaultInlineLimit
	}
	v, err := create(ctx, store, u, keys, h, "volume parameters")
	if err != nil {
		return nil, err
	}
	if err := v.ensureRoot(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// ErrTooDeep: a clone of this volume would exceed format.MaxCloneDepth.
var ErrTooDeep = fmt.Errorf("clones of clones are limited to a chain of %d volumes", format.MaxCloneDepth)

// FormatClone creates at u a clone of src as it was at the store time at,
// which the pin called pin in src holds (FORMAT.md §16). Nothing is
// copied: the clone gets its header only, with src's extent size and
// inline limit; its root directory falls through to src's. The caller
// made the pin, and MUST have waited until the store's clock left at's
// second (store times have one-second resolution: until then src may still
// gain versions stamped within it). The pin must outlive the clone.
func FormatClone(ctx context.Context, store objstore.Store, u URL, src *Volume, pin string, at time.Time, retention time.Duration) (*Volume, error) {
	keys, err := format.NewKeys(u.Prefix)
	if err != nil {
		return nil, err
	}
	if src.Header.Depth() >= format.MaxCloneDepth {
		return nil, fmt.Errorf("clone of %s: %w", src.URL, ErrTooDeep)
	}
	if u.Bucket == src.URL.Bucket && (u.Prefix == src.URL.Prefix || under(u.Prefix, src.URL.Prefix) || under(src.URL.Prefix, u.Prefix)) {
		return nil, fmt.Errorf("clone %s and its source %s would share keys", u, src.URL)
	}
	h := &format.Volume{
		ExtentSize: src.Header.ExtentSize, InlineLimit: src.Header.InlineLimit, Retention: retention, Created: time.Now(),
		Features: format.FeatureClone,
		Clone: &format.CloneSource{
			Bucket: src.URL.Bucket, Prefix: src.URL.Prefix, ID: src.Header.ID, At: at, Pin: pin,
			Depth: src.Header.Depth() + 1,
		},
	}
	v, err := create(ctx, store, u, keys, h, "clone parameters")
	if err != nil {
		return nil, err
	}
	v.Chain = append([]Level{{Volume: src, At: at}}, src.Chain...)
	return v, nil
}

// create makes the volume at u with header h, whose id it draws: the
// bucket when the store can and it is missing, the conditional-write
// probe, then the header's conditional create. what names h's fields in
// an error.
func create(ctx context.Context, store objstore.Store, u URL, keys format.Keys, h *format.Volume, what string) (*Volume, error) {
	if bc, ok := store.(objstore.BucketCreator); ok {
		if err := bc.EnsureBucket(ctx); err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", u.Bucket, err)
		}
	}
	if err := Probe(ctx, store, keys); err != nil {
		return nil, err
	}
	if _, err := rand.Read(h.ID[:]); err != nil {
		return nil, err
	}
	obj, err := format.EncodeVolume(h)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	info, err := store.PutIfAbsent(ctx, keys.Volume(), obj)
	if errors.Is(err, objstore.ErrExists) {
		return nil, fmt.Errorf("%s: %w (s3gfs never formats over an existing volume)", u, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("write volume header: %w", err)
	}
	return &Volume{Store: store, URL: u, Keys: keys, Header: h, Created: info.LastModified}, nil
}

// under reports whether prefix p lies strictly below prefix q.
func under(p, q string) bool { return q == "" || strings.HasPrefix(p, q+"/") }

// Open reads the header of the volume at u. With writable set it also
// probes conditional writes and repairs a root directory missing because a
// format was interrupted. A clone's sources are opened too, when they live
// in the same bucket (see OpenWith for others).
func Open(ctx context.Context, store objstore.Store, u URL, writable bool) (*Volume, error) {
	return OpenWith(ctx, store, u, writable, nil)
}

// OpenWith is Open, reaching the buckets of a clone's sources other than
// its own with storeFor (nil: through the store itself if it is an
// objstore.BucketSwitcher, else a source in another bucket is an error).
func OpenWith(ctx context.Context, store objstore.Store, u URL, writable bool, storeFor StoreOpener) (*Volume, error) {
	v, err := openHeader(ctx, store, u)
	if err != nil {
		return nil, err
	}
	if err := v.openChain(ctx, storeFor); err != nil {
		return nil, err
	}
	if writable {
		if err := Probe(ctx, store, v.Keys); err != nil {
			return nil, err
		}
		if v.Header.Clone == nil { // a clone's root falls through to its source
			if err := v.ensureRoot(ctx); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

func openHeader(ctx context.Context, store objstore.Store, u URL) (*Volume, error) {
	keys, err := format.NewKeys(u.Prefix)
	if err != nil {
		return nil, err
	}
	obj, info, err := store.Get(ctx, keys.Volume())
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w (run `s3gfs format %s` first)", u, ErrNoVolume, u)
	}
	if err != nil {
		return nil, fmt.Errorf("read volume header: %w", err)
	}
	h, err := format.DecodeVolume(obj)
	if err != nil {
		return nil, fmt.Errorf("volume header of %s: %w", u, err)
	}
	return &Volume{Store: store, URL: u, Keys: keys, Header: h, Created: info.LastModified}, nil
}

// ErrBadChain: a clone's source chain does not hold together (FORMAT.md
// §16.1): a source is missing, was replaced, or its pin is gone.
var ErrBadChain = errors.New("the clone's source chain is broken")

// openChain opens every level of a clone's chain and checks it (FORMAT.md
// §16.1): ids, extent sizes, depths, and each level's pin.
func (v *Volume) openChain(ctx context.Context, storeFor StoreOpener) error {
	stores := map[string]objstore.Store{v.URL.Bucket: v.Store}
	up := v
	for up.Header.Clone != nil {
		c := up.Header.Clone
		st := stores[c.Bucket]
		if st == nil {
			if sw, ok := v.Store.(objstore.BucketSwitcher); ok && storeFor == nil {
				storeFor = func(_ context.Context, b string) (objstore.Store, error) { return sw.ForBucket(b), nil }
			}
			if storeFor == nil {
				return fmt.Errorf("%s: %w: its source s3://%s/%s is in another bucket and no way to reach it was given", up.URL, ErrBadChain, c.Bucket, c.Prefix)
			}
			var err error
			if st, err = storeFor(ctx, c.Bucket); err != nil {
				return fmt.Errorf("%s: reach the bucket of its source: %w", up.URL, err)
			}
			stores[c.Bucket] = st
		}
		su := URL{Bucket: c.Bucket, Prefix: c.Prefix}
		if su == v.URL || len(v.Chain) >= format.MaxCloneDepth {
			return fmt.Errorf("%s: %w: the chain loops or is too deep", v.URL, ErrBadChain)
		}
		src, err := openHeader(ctx, st, su)
		if err != nil {
			return fmt.Errorf("%s: source: %w: %w", up.URL, ErrBadChain, err)
		}
		switch {
		case src.Header.ID != c.ID:
			return fmt.Errorf("%s: %w: the volume at its source %s is another one (id %x, recorded %x)", up.URL, ErrBadChain, su, src.Header.ID, c.ID)
		case src.Header.ExtentSize != up.Header.ExtentSize:
			return fmt.Errorf("%s: %w: its source %s has another extent size", up.URL, ErrBadChain, su)
		case src.Header.Depth() != c.Depth-1:
			return fmt.Errorf("%s: %w: its source %s has depth %d, want %d", up.URL, ErrBadChain, su, src.Header.Depth(), c.Depth-1)
		}
		pin, err := st.Head(ctx, src.Keys.Snapshot(c.Pin))
		if err != nil {
			return fmt.Errorf("%s: %w: the pin %q of its source %s: %w", up.URL, ErrBadChain, c.Pin, su, err)
		}
		if !pin.LastModified.Truncate(time.Second).Equal(c.At.Truncate(time.Second)) {
			return fmt.Errorf("%s: %w: the pin %q of its source %s is from %s, not %s", up.URL, ErrBadChain, c.Pin, su, pin.LastModified, c.At)
		}
		v.Chain = append(v.Chain, Level{Volume: src, At: c.At})
		up = src
	}
	return nil
}

// ensureRoot creates version 1 of the root directory unless it exists.
func (v *Volume) ensureRoot(ctx context.Context) error {
	page, err := v.Store.List(ctx, v.Keys.InodeDir(format.RootID), "", 1)
	if err != nil {
		return fmt.Errorf("look up root directory: %w", err)
	}
	if len(page.Objects) > 0 {
		return nil
	}
	now := time.Now().UnixNano()
	root := &format.Inode{ID: format.RootID, Version: 1, Kind: format.KindDir, Mode: 0o755, Base: 1, Atime: now, Mtime: now, Ctime: now}
	obj, err := format.EncodeInode(root)
	if err != nil {
		return err
	}
	if _, err := v.Store.PutIfAbsent(ctx, v.Keys.Inode(format.RootID, 1), obj); err != nil && !errors.Is(err, objstore.ErrExists) {
		return fmt.Errorf("create root directory: %w", err)
	}
	return nil
}

// Probe checks that the store refuses a conditional create of an existing
// key (see objstore.Probe), using a fresh key under the volume's prefix.
func Probe(ctx context.Context, store objstore.Store, keys format.Keys) error {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	return objstore.Probe(ctx, store, keys.Probe(binary.LittleEndian.Uint64(nonce[:])))
}
