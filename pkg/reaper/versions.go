package reaper

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// VersionInfo describes one stored version of an inode.
type VersionInfo struct {
	ID      uint64
	Version uint64
	Time    time.Time // the store's LastModified
	Key     string
	Bytes   int64 // the object's size
	// Decoded fields; zero when Err is set.
	Kind    format.InodeKind
	Size    uint64 // file size, symlink target length
	Writer  uint64
	Entries int // directories: entries in the full list (-1 if it cannot be built)
	Extents int // files: extents named
	Err     error
}

// ErrNoPath: the path does not name anything in the volume's present state.
var ErrNoPath = errors.New("no such file or directory")

// scanInode lists and returns the versions of one inode (nil if none).
func (s *scan) scanInode(ctx context.Context, id uint64) (*inodeScan, error) {
	if in, ok := s.inodes[id]; ok {
		return in, nil
	}
	in := &inodeScan{id: id}
	err := listAll(ctx, s.store, s.keys.InodeDir(id), func(o objstore.ObjectInfo) {
		if _, v, err := s.keys.ParseInode(o.Key); err == nil {
			in.versions = append(in.versions, &versionScan{v: v, info: o})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list versions of inode %016x: %w", id, err)
	}
	if len(in.versions) == 0 {
		s.inodes[id] = nil
		return nil, nil
	}
	sort.Slice(in.versions, func(i, j int) bool { return in.versions[i].v < in.versions[j].v })
	s.inodes[id] = in
	return in, nil
}

// newestReadable is the version readers use: the newest that decodes.
func (s *scan) newestReadable(ctx context.Context, in *inodeScan) (*versionScan, error) {
	for i := len(in.versions) - 1; i >= 0; i-- {
		x := in.versions[i]
		if err := s.load(ctx, in.id, []*versionScan{x}); err != nil {
			return nil, err
		}
		if x.err == nil {
			return x, nil
		}
	}
	return nil, fmt.Errorf("inode %016x: no readable version", in.id)
}

// Resolve finds the inode a path names in the volume's present state
// ("/" or "" is the root).
func Resolve(ctx context.Context, vol *volume.Volume, path string) (uint64, error) {
	s := &scan{vol: vol, store: vol.Store, keys: vol.Keys, inodes: map[uint64]*inodeScan{}}
	id := format.RootID
	for _, name := range strings.Split(path, "/") {
		if name == "" || name == "." {
			continue
		}
		in, err := s.scanInode(ctx, id)
		if err != nil {
			return 0, err
		}
		if in == nil {
			return 0, fmt.Errorf("%s: inode %016x has no version: %w", path, id, ErrNoPath)
		}
		x, err := s.newestReadable(ctx, in)
		if err != nil {
			return 0, err
		}
		if x.n.Kind != format.KindDir {
			return 0, fmt.Errorf("%s: %q is not in a directory: %w", path, name, ErrNoPath)
		}
		entries, err := s.dirEntries(ctx, in, x)
		if err != nil {
			return 0, err
		}
		e, ok := entries[name]
		if !ok {
			return 0, fmt.Errorf("%s: no entry %q: %w", path, name, ErrNoPath)
		}
		id = e.Child
	}
	return id, nil
}

// Versions lists every stored version of inode id, newest first.
func Versions(ctx context.Context, vol *volume.Volume, id uint64) ([]VersionInfo, error) {
	s := &scan{vol: vol, store: vol.Store, keys: vol.Keys, inodes: map[uint64]*inodeScan{}}
	in, err := s.scanInode(ctx, id)
	if err != nil || in == nil {
		return nil, err
	}
	if err := s.load(ctx, id, in.versions); err != nil {
		return nil, err
	}
	var out []VersionInfo
	for i := len(in.versions) - 1; i >= 0; i-- {
		x := in.versions[i]
		vi := VersionInfo{ID: id, Version: x.v, Time: x.info.LastModified, Key: x.info.Key, Bytes: x.info.Size, Err: x.err}
		if x.err == nil {
			vi.Kind, vi.Size, vi.Writer, vi.Extents = x.n.Kind, x.n.Size, x.n.Writer, len(x.n.Extents)
			if x.n.Kind == format.KindDir {
				vi.Entries = -1
				if m, err := s.dirEntries(ctx, in, x); err == nil {
					vi.Entries = len(m)
				}
			}
		}
		out = append(out, vi)
	}
	return out, nil
}
