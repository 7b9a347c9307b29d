package reaper

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// A scan is what one listing of a volume's inode versions and extents
// found, with the versions decoded on demand. The reaper, fsck and the
// versions command share it.
type scan struct {
	vol   *volume.Volume
	store objstore.Store
	keys  format.Keys

	inodes  map[uint64]*inodeScan
	extents map[uint64][]extentScan // by inode id
	strays  []objstore.ObjectInfo   // keys under i/ or d/ that are not s3gfs keys

	// below: for a clone, the scans of its chain's levels, each seen at
	// its instant; walk falls through to them (FORMAT.md §16.2). Only
	// fsck sets it.
	below []levelScan
}

type levelScan struct {
	s  *scan
	at time.Time
}

// resolve finds the version of inode id a view of the volume at t shows:
// its own, else (for a clone whose scan has levels below) the first
// level's with a version visible at that level's instant. It returns the
// scan that holds it, or nil when no level has one.
func (s *scan) resolve(id uint64, t time.Time) (*scan, *inodeScan, *versionScan) {
	if in := s.inodes[id]; in != nil {
		if x := in.at(t); x != nil {
			return s, in, x
		}
	}
	for _, l := range s.below {
		if in := l.s.inodes[id]; in != nil {
			if x := in.at(l.at); x != nil {
				return l.s, in, x
			}
		}
	}
	return nil, nil, nil
}

type inodeScan struct {
	id       uint64
	versions []*versionScan // ascending by version number
}

type versionScan struct {
	v    uint64
	info objstore.ObjectInfo

	loaded bool
	n      *format.Inode
	err    error // could not be read or decoded (never deleted because of it)

	entries    map[string]format.Entry // directories: the committed entries, once built
	pending    map[string]format.Entry // directories: the pending entries (FORMAT §5.5)
	entriesErr error
}

type extentScan struct {
	eid  uint64
	info objstore.ObjectInfo
}

// newest is the inode's newest version.
func (in *inodeScan) newest() *versionScan { return in.versions[len(in.versions)-1] }

// at returns the newest version whose LastModified is at or before t (the
// version a point-in-time view at t shows), or nil. A zero t means now:
// the newest version.
func (in *inodeScan) at(t time.Time) *versionScan {
	if t.IsZero() {
		return in.newest()
	}
	for i := len(in.versions) - 1; i >= 0; i-- {
		if !in.versions[i].info.LastModified.After(t) {
			return in.versions[i]
		}
	}
	return nil
}

// before returns the newest version whose LastModified is strictly before
// t, or nil.
func (in *inodeScan) before(t time.Time) *versionScan {
	for i := len(in.versions) - 1; i >= 0; i-- {
		if in.versions[i].info.LastModified.Before(t) {
			return in.versions[i]
		}
	}
	return nil
}

func (in *inodeScan) version(v uint64) *versionScan {
	i := sort.Search(len(in.versions), func(i int) bool { return in.versions[i].v >= v })
	if i < len(in.versions) && in.versions[i].v == v {
		return in.versions[i]
	}
	return nil
}

// listAll lists every key under prefix.
func listAll(ctx context.Context, store objstore.Store, prefix string, fn func(objstore.ObjectInfo)) error {
	after := ""
	for {
		page, err := store.List(ctx, prefix, after, 0)
		if err != nil {
			return err
		}
		for _, o := range page.Objects {
			fn(o)
		}
		if !page.Truncated || len(page.Objects) == 0 {
			return nil
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
}

// newScan lists every inode version, then every extent, of vol. Versions
// are listed before extents: an extent that a version created after the
// first listing names is younger than the grace period (or is named by a
// version the first listing saw).
func newScan(ctx context.Context, vol *volume.Volume) (*scan, error) {
	s := &scan{vol: vol, store: vol.Store, keys: vol.Keys, inodes: map[uint64]*inodeScan{}, extents: map[uint64][]extentScan{}}
	err := listAll(ctx, s.store, s.keys.InodesPrefix(), func(o objstore.ObjectInfo) {
		id, v, err := s.keys.ParseInode(o.Key)
		if err != nil {
			s.strays = append(s.strays, o)
			return
		}
		in := s.inodes[id]
		if in == nil {
			in = &inodeScan{id: id}
			s.inodes[id] = in
		}
		in.versions = append(in.versions, &versionScan{v: v, info: o})
	})
	if err != nil {
		return nil, fmt.Errorf("list inode versions: %w", err)
	}
	for _, in := range s.inodes {
		sort.Slice(in.versions, func(i, j int) bool { return in.versions[i].v < in.versions[j].v })
	}
	err = listAll(ctx, s.store, s.keys.ExtentsPrefix(), func(o objstore.ObjectInfo) {
		id, eid, err := s.keys.ParseExtent(o.Key)
		if err != nil {
			s.strays = append(s.strays, o)
			return
		}
		s.extents[id] = append(s.extents[id], extentScan{eid: eid, info: o})
	})
	if err != nil {
		return nil, fmt.Errorf("list extents: %w", err)
	}
	return s, nil
}

// errVanished: a listed object was gone when read (another reaper, or a
// concurrent delete). Treated like an unreadable object: keep everything.
var errVanished = errors.New("listed but missing when read")

// load reads and decodes the given versions, concurrently. A version that
// cannot be read for a reason other than its content (the store failing)
// makes load fail; one whose content is bad gets err set.
func (s *scan) load(ctx context.Context, id uint64, vs []*versionScan) error {
	var todo []*versionScan
	for _, vs := range vs {
		if !vs.loaded {
			todo = append(todo, vs)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	return parallel(ctx, len(todo), func(i int) error {
		x := todo[i]
		obj, _, err := s.store.Get(ctx, x.info.Key)
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			x.err = fmt.Errorf("%s: %w", x.info.Key, errVanished)
		case err != nil:
			return err
		default:
			n, err := format.DecodeInode(obj, s.vol.Header.ExtentSize)
			if err == nil && (n.ID != id || n.Version != x.v) {
				err = fmt.Errorf("%w: object holds inode %016x v%d", format.ErrCorrupt, n.ID, n.Version)
			}
			if err == nil {
				err = n.CheckOrigins(s.vol.Header.Depth())
			}
			if err != nil {
				x.err = fmt.Errorf("%s: %w", x.info.Key, err)
			} else {
				x.n = n
			}
		}
		x.loaded = true
		return nil
	})
}

// chain returns the versions a directory version needs to be read: its
// base through itself. ok is false when one of them is not listed.
func (in *inodeScan) chain(x *versionScan) (out []*versionScan, ok bool) {
	if x.n == nil || x.n.Kind != format.KindDir {
		return []*versionScan{x}, true
	}
	for v := x.n.Base; v <= x.v; v++ {
		y := in.version(v)
		if y == nil {
			return out, false
		}
		out = append(out, y)
	}
	return out, true
}

// dirEntries builds the full entry list of directory version x, loading
// its delta chain as needed.
func (s *scan) dirEntries(ctx context.Context, in *inodeScan, x *versionScan) (map[string]format.Entry, error) {
	if x.entries != nil || x.entriesErr != nil {
		return x.entries, x.entriesErr
	}
	if err := s.load(ctx, in.id, []*versionScan{x}); err != nil {
		return nil, err
	}
	if x.err != nil {
		x.entriesErr = x.err
		return nil, x.err
	}
	if x.n.Kind != format.KindDir {
		x.entriesErr = fmt.Errorf("%s: not a directory but a %s", x.info.Key, x.n.Kind)
		return nil, x.entriesErr
	}
	chain, ok := in.chain(x)
	if !ok {
		x.entriesErr = fmt.Errorf("%s: %w: a version of its delta chain (from v%d) is missing", x.info.Key, format.ErrCorrupt, x.n.Base)
		return nil, x.entriesErr
	}
	if err := s.load(ctx, in.id, chain); err != nil {
		return nil, err
	}
	st := format.NewDirState()
	for _, y := range chain {
		if y.err != nil {
			x.entriesErr = fmt.Errorf("%s: delta chain: %w", x.info.Key, y.err)
			return nil, x.entriesErr
		}
		if y.n.Kind != format.KindDir || (y.v != x.n.Base && y.n.Base != x.n.Base) || (y.v == x.n.Base && !y.n.IsFull()) {
			x.entriesErr = fmt.Errorf("%s: %w: v%d does not belong to its delta chain", x.info.Key, format.ErrCorrupt, y.v)
			return nil, x.entriesErr
		}
		if err := st.Apply(y.n.Entries); err != nil {
			x.entriesErr = fmt.Errorf("%s: v%d: %w", x.info.Key, y.v, err)
			return nil, x.entriesErr
		}
	}
	x.entries, x.pending = st.Committed, st.Pending
	return st.Committed, nil
}

// walk visits every inode reachable from the root in the point-in-time
// view at t (zero: every inode's newest version). visit is called once per
// reachable inode with its version in that view (nil when the entry
// dangles: no version of the child exists at t). Directories whose entries
// cannot be built are reported through bad; their subtrees are not walked.
func (s *scan) walk(ctx context.Context, t time.Time, visit func(id uint64, x *versionScan, parent uint64, name string), bad func(id uint64, x *versionScan, err error)) error {
	seen := map[uint64]bool{format.RootID: true}
	type item struct {
		s  *scan // the level holding x
		in *inodeScan
		x  *versionScan
	}
	rs, root, rx := s.resolve(format.RootID, t)
	if rx == nil {
		return nil // the volume had no root yet at t
	}
	visit(format.RootID, rx, 0, "")
	queue := []item{{rs, root, rx}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if err := it.s.load(ctx, it.in.id, []*versionScan{it.x}); err != nil {
			return err
		}
		if it.x.err == nil && it.x.n.Kind != format.KindDir {
			continue // a tombstoned directory named by a stale entry: nothing below
		}
		entries, err := it.s.dirEntries(ctx, it.in, it.x)
		if err != nil {
			if errors.Is(err, format.ErrCorrupt) || errors.Is(err, format.ErrUnsupported) || errors.Is(err, errVanished) || it.x.err != nil {
				bad(it.in.id, it.x, err)
				continue
			}
			return err
		}
		// Committed entries and pending puts alike: a rename in flight
		// (or decided but not yet folded) hides no subtree (FORMAT §5.5).
		list := make([]format.Entry, 0, len(entries)+len(it.x.pending))
		for _, e := range entries {
			list = append(list, e)
		}
		for _, e := range it.x.pending {
			if e.Op == format.EntryPendingPut {
				list = append(list, e)
			}
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].Name != list[j].Name {
				return list[i].Name < list[j].Name
			}
			return list[i].Op < list[j].Op
		})
		for _, e := range list {
			name := e.Name
			if seen[e.Child] {
				continue
			}
			seen[e.Child] = true
			cs, cin, cx := s.resolve(e.Child, t)
			if cx == nil && e.Born != nil {
				// A born put's file with no version of its own at t: its
				// version 1 is the entry (FORMAT.md §5.4); nothing to keep.
				continue
			}
			visit(e.Child, cx, it.in.id, name)
			if cx != nil && e.ChildKind == format.KindDir {
				queue = append(queue, item{cs, cin, cx})
			}
		}
	}
	return nil
}

// parallel runs fn(0..n-1) on a few goroutines and returns the first error.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	const workers = 16
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := ctx.Err(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// usageAfter is what the volume will hold under i/ and d/ once p's
// deletions are done (FORMAT §15.9): every listed object, strays
// included, less those p deletes. inodes is the count the walk reached.
func (s *scan) usageAfter(at time.Time, inodes int, p *plan) *format.Usage {
	u := &format.Usage{At: at, Inodes: uint64(inodes)}
	count := func(o objstore.ObjectInfo) {
		u.Bytes += uint64(max(o.Size, 0))
		u.Objects++
	}
	for _, in := range s.inodes {
		for _, x := range in.versions {
			count(x.info)
		}
	}
	for _, es := range s.extents {
		for _, e := range es {
			count(e.info)
		}
	}
	for _, o := range s.strays {
		count(o)
	}
	for _, ph := range [][]objstore.ObjectInfo{p.versions, p.orphanLast, p.extents, p.tombstones} {
		for _, o := range ph {
			u.Bytes -= uint64(max(o.Size, 0))
			u.Objects--
		}
	}
	return u
}
