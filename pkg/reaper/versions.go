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
	// Level is the level of a clone's chain the version lies in (0: the
	// volume's own; k: its k-th source, seen at its instant).
	Level int
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

// chainScans returns a scan of each level of vol's chain, level 0 (the
// volume itself) first, and the instant each is seen at (zero: now).
func chainScans(vol *volume.Volume) ([]*scan, []time.Time) {
	scans := []*scan{{vol: vol, store: vol.Store, keys: vol.Keys, inodes: map[uint64]*inodeScan{}}}
	ats := []time.Time{{}}
	for _, lv := range vol.Chain {
		scans = append(scans, &scan{vol: lv.Volume, store: lv.Store, keys: lv.Keys, inodes: map[uint64]*inodeScan{}})
		ats = append(ats, lv.At)
	}
	return scans, ats
}

// find returns the level whose version of inode id the volume shows now
// (FORMAT.md §16.2), its versions, and that version (-1 when none).
func find(ctx context.Context, scans []*scan, ats []time.Time, id uint64) (int, *inodeScan, *versionScan, error) {
	for k, s := range scans {
		in, err := s.scanInode(ctx, id)
		if err != nil {
			return -1, nil, nil, err
		}
		if in == nil || in.at(ats[k]) == nil {
			continue
		}
		x, err := s.newestReadable(ctx, in, ats[k])
		return k, in, x, err
	}
	return -1, nil, nil, nil
}

// newestReadable is the version readers use: the newest at or before at
// (zero: any) that decodes.
func (s *scan) newestReadable(ctx context.Context, in *inodeScan, at time.Time) (*versionScan, error) {
	for i := len(in.versions) - 1; i >= 0; i-- {
		x := in.versions[i]
		if !at.IsZero() && x.info.LastModified.After(at) {
			continue
		}
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
	scans, ats := chainScans(vol)
	id := format.RootID
	for _, name := range strings.Split(path, "/") {
		if name == "" || name == "." {
			continue
		}
		k, in, x, err := find(ctx, scans, ats, id)
		if err != nil {
			return 0, err
		}
		if k < 0 {
			return 0, fmt.Errorf("%s: inode %016x has no version: %w", path, id, ErrNoPath)
		}
		if x.n.Kind != format.KindDir {
			return 0, fmt.Errorf("%s: %q is not in a directory: %w", path, name, ErrNoPath)
		}
		entries, err := scans[k].dirEntries(ctx, in, x)
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
	// A clone's own versions, then those of the first level below that
	// has one visible at its instant (the inode's history before the
	// clone changed it).
	scans, ats := chainScans(vol)
	var out []VersionInfo
	for k, s := range scans {
		in, err := s.scanInode(ctx, id)
		if err != nil {
			return nil, err
		}
		if in == nil || in.at(ats[k]) == nil {
			continue
		}
		vs, err := s.versionInfos(ctx, in, ats[k], k)
		if err != nil {
			return nil, err
		}
		out = append(out, vs...)
		if k > 0 {
			break
		}
	}
	return out, nil
}

// versionInfos describes in's versions at or before at (zero: all),
// newest first.
func (s *scan) versionInfos(ctx context.Context, in *inodeScan, at time.Time, level int) ([]VersionInfo, error) {
	id := in.id
	if err := s.load(ctx, id, in.versions); err != nil {
		return nil, err
	}
	var out []VersionInfo
	for i := len(in.versions) - 1; i >= 0; i-- {
		x := in.versions[i]
		if !at.IsZero() && x.info.LastModified.After(at) {
			continue
		}
		vi := VersionInfo{ID: id, Version: x.v, Time: x.info.LastModified, Key: x.info.Key, Bytes: x.info.Size, Err: x.err, Level: level}
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
