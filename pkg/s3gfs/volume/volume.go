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
}

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
	if bc, ok := store.(objstore.BucketCreator); ok {
		if err := bc.EnsureBucket(ctx); err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", u.Bucket, err)
		}
	}
	if err := Probe(ctx, store, keys); err != nil {
		return nil, err
	}
	h := &format.Volume{ExtentSize: o.ExtentSize, InlineLimit: o.InlineLimit, Retention: o.Retention, Created: time.Now()}
	if h.ExtentSize == 0 {
		h.ExtentSize = format.DefaultExtentSize
	}
	if h.InlineLimit == 0 {
		h.InlineLimit = format.DefaultInlineLimit
	}
	if _, err := rand.Read(h.ID[:]); err != nil {
		return nil, err
	}
	obj, err := format.EncodeVolume(h)
	if err != nil {
		return nil, fmt.Errorf("volume parameters: %w", err)
	}
	info, err := store.PutIfAbsent(ctx, keys.Volume(), obj)
	if errors.Is(err, objstore.ErrExists) {
		return nil, fmt.Errorf("%s: %w (s3gfs never formats over an existing volume)", u, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("write volume header: %w", err)
	}
	v := &Volume{Store: store, URL: u, Keys: keys, Header: h, Created: info.LastModified}
	if err := v.ensureRoot(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Open reads the header of the volume at u. With writable set it also
// probes conditional writes and repairs a root directory missing because a
// format was interrupted.
func Open(ctx context.Context, store objstore.Store, u URL, writable bool) (*Volume, error) {
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
	v := &Volume{Store: store, URL: u, Keys: keys, Header: h, Created: info.LastModified}
	if h.Clone != nil {
		return nil, fmt.Errorf("volume header of %s: %w: clone volumes are not supported by this build yet", u, format.ErrUnsupported)
	}
	if writable {
		if err := Probe(ctx, store, keys); err != nil {
			return nil, err
		}
		if err := v.ensureRoot(ctx); err != nil {
			return nil, err
		}
	}
	return v, nil
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
