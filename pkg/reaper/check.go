package reaper

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// CheckOptions tune Check.
type CheckOptions struct {
	// SkipData skips reading extents (their existence is still checked).
	SkipData bool
	// Progress, when set, is called as the check advances.
	Progress func(Progress)
}

// CheckReport is what Check found.
type CheckReport struct {
	Inodes, Versions, Extents int
	// Damage: each entry names an object and what is wrong with it. A
	// volume with damage is not healthy.
	Damage []string
	// Warnings: objects that are not s3gfs's, or leftovers that do no harm.
	Warnings []string
	// Orphans: inodes no path from the root reaches now (harmless; the
	// reaper removes them once older than its grace period and horizon).
	Orphans []uint64
	// Unreferenced: extents no version names (the reaper removes them).
	Unreferenced int
}

// Healthy reports whether Check found no damage.
func (r *CheckReport) Healthy() bool { return len(r.Damage) == 0 }

// Check verifies every object of vol: every inode version and extent
// decodes and its checksum matches, every extent a version names exists
// and matches the length and CRC the version recorded, every directory
// delta chain is complete, and every entry in the present state, at every
// snapshot pin and at the reaper's horizon names an inode that exists
// there. Pings, pins, the lease, the reaper's record and settings must
// decode too. It changes nothing.
func Check(ctx context.Context, vol *volume.Volume, o CheckOptions) (*CheckReport, error) {
	r := &CheckReport{}
	var mu sync.Mutex
	damage := func(f string, a ...any) {
		mu.Lock()
		r.Damage = append(r.Damage, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	prog := func(phase string, done, total int) {
		if o.Progress != nil {
			o.Progress(Progress{Phase: phase, Done: done, Total: total})
		}
	}
	store, keys := vol.Store, vol.Keys
	prog("list", 0, 0)
	s, err := newScan(ctx, vol)
	if err != nil {
		return nil, err
	}
	r.Inodes = len(s.inodes)
	for _, o := range s.strays {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s: not an s3gfs key", o.Key))
	}
	ids := make([]uint64, 0, len(s.inodes))
	for id, in := range s.inodes {
		ids = append(ids, id)
		r.Versions += len(in.versions)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	extents := map[string]objstore.ObjectInfo{}
	for _, es := range s.extents {
		for _, e := range es {
			extents[e.info.Key] = e.info
			r.Extents++
		}
	}

	// Every version decodes; every delta chain builds.
	var done int
	err = parallel(ctx, len(ids), func(i int) error {
		in := s.inodes[ids[i]]
		if err := s.load(ctx, in.id, in.versions); err != nil {
			return err
		}
		for _, x := range in.versions {
			if errors.Is(x.err, errVanished) {
				continue // deleted since the listing (a reaper at work)
			}
			if x.err != nil {
				damage("%v", x.err)
				continue
			}
			if x.n.Kind == format.KindDir {
				if _, err := s.dirEntries(ctx, in, x); err != nil && x.err == nil && !errors.Is(err, errVanished) && !vanished(ctx, s, x) {
					damage("%v", err)
				}
			}
		}
		mu.Lock()
		done++
		d := done
		mu.Unlock()
		if d%1000 == 0 {
			prog("versions", d, len(ids))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	prog("versions", len(ids), len(ids))

	// Every extent named exists and matches.
	type ref struct {
		key string
		ref format.ExtentRef
		by  *versionScan
	}
	var refs, below []ref
	named := map[string]bool{}
	for _, id := range ids {
		for _, x := range s.inodes[id].versions {
			if x.n == nil || x.n.Kind != format.KindFile {
				continue
			}
			for _, e := range x.n.Extents {
				if e.Origin != 0 {
					// An extent of a clone's source (C4).
					below = append(below, ref{vol.Chain[e.Origin-1].Keys.Extent(id, e.EID), e, x})
					continue
				}
				k := keys.Extent(id, e.EID)
				if _, ok := extents[k]; !ok {
					if !vanished(ctx, s, x) {
						damage("%s names extent %s (index %d), which is missing", x.info.Key, k, e.Index)
					}
					continue
				}
				if !named[k] || !o.SkipData {
					refs = append(refs, ref{k, e, x})
				}
				named[k] = true
			}
		}
	}
	for k := range extents {
		if !named[k] {
			r.Unreferenced++
		}
	}
	if !o.SkipData {
		// Read each extent once; check it against every reference to it.
		byKey := map[string][]ref{}
		var order []string
		for _, rf := range refs {
			if byKey[rf.key] == nil {
				order = append(order, rf.key)
			}
			byKey[rf.key] = append(byKey[rf.key], rf)
		}
		done = 0
		err = parallel(ctx, len(order), func(i int) error {
			k := order[i]
			// At most one byte more than the longest object a reference
			// describes: an oversized object is damage, not read whole.
			var limit int64
			for _, rf := range byKey[k] {
				limit = max(limit, int64(rf.ref.Length)+format.EnvelopeOverhead+1)
			}
			obj, err := store.GetRange(ctx, k, 0, limit)
			if errors.Is(err, objstore.ErrNotFound) {
				for _, rf := range byKey[k] {
					if !vanished(ctx, s, rf.by) {
						damage("%s: listed but missing when read (named by %s)", k, rf.by.info.Key)
						break
					}
				}
				return nil
			}
			if err != nil {
				return err
			}
			seen := map[format.ExtentRef]bool{}
			for _, rf := range byKey[k] {
				x := rf.ref
				x.Index = 0
				if seen[x] {
					continue
				}
				seen[x] = true
				if _, err := format.DecodeExtent(obj, rf.ref); err != nil {
					damage("%s (named by %s): %v", k, rf.by.info.Key, err)
				}
			}
			mu.Lock()
			done++
			d := done
			mu.Unlock()
			if d%100 == 0 {
				prog("extents", d, len(order))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		prog("extents", len(order), len(order))
	}

	// A clone's references into its sources (C4): each extent exists
	// there and holds what the reference says. (CheckOrigins bounded the
	// origins when the versions were read.)
	err = parallel(ctx, len(below), func(i int) error {
		rf := below[i]
		lv := vol.Chain[rf.ref.Origin-1]
		// Bounded as for the volume's own extents: an oversized object is
		// refused without being read whole. (Only its existence with
		// SkipData.)
		var obj []byte
		var err error
		if o.SkipData {
			_, err = lv.Store.Head(ctx, rf.key)
		} else {
			obj, err = lv.Store.GetRange(ctx, rf.key, 0, int64(rf.ref.Length)+format.EnvelopeOverhead+1)
		}
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			if !vanished(ctx, s, rf.by) {
				damage("%s names extent %s of its source %s (index %d, origin %d), which is missing", rf.by.info.Key, rf.key, lv.URL, rf.ref.Index, rf.ref.Origin)
			}
		case err != nil:
			return err
		default:
			if !o.SkipData {
				if _, err := format.DecodeExtent(obj, rf.ref); err != nil {
					damage("%s of source %s (named by %s): %v", rf.key, lv.URL, rf.by.info.Key, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// References resolve: now, at every pin, at the reaper's horizon.
	now, err := hosts.ServerNow(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("read the store's clock: %w", err)
	}
	views := []struct {
		name string
		t    time.Time
	}{{"now", time.Time{}}}
	pins, err := snapshot.ListKeys(ctx, store, keys)
	if err != nil {
		return nil, err
	}
	for _, p := range pins {
		if _, err := keys.ParseSnapshot(p.Key); err != nil {
			// Not s3gfs's, but the reaper honours it as a pin (§13 S3).
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: not an s3gfs key (the reaper keeps what the volume held at its time, as for a snapshot)", p.Key))
			views = append(views, struct {
				name string
				t    time.Time
			}{"snapshot " + p.Key, p.LastModified})
			continue
		}
		obj, _, err := store.Get(ctx, p.Key)
		if err == nil {
			var pin *format.SnapshotPin
			pin, err = format.DecodeSnapshotPin(obj)
			if err == nil {
				if name, kerr := keys.ParseSnapshot(p.Key); kerr != nil || name != pin.Name {
					err = fmt.Errorf("%w: pin names %q", format.ErrCorrupt, pin.Name)
				}
			}
		}
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			damage("%s: %v", p.Key, err)
		}
		views = append(views, struct {
			name string
			t    time.Time
		}{"snapshot " + p.Key, p.LastModified})
	}
	rec, err := snapshot.ReadRecord(ctx, store, keys)
	if err != nil {
		damage("%v", err)
	} else if rec != nil && rec.Horizon.Before(now) {
		views = append(views, struct {
			name string
			t    time.Time
		}{"the reaper's horizon", rec.Horizon})
	}
	if vol.Header.Clone != nil {
		// Entries of a clone may name inodes only its sources have: the
		// walk falls through to every level at its instant (§16.2, C4).
		for _, lv := range vol.Chain {
			ls, err := newScan(ctx, lv.Volume)
			if err != nil {
				return nil, fmt.Errorf("list the clone's source %s: %w", lv.URL, err)
			}
			s.below = append(s.below, levelScan{s: ls, at: lv.At})
		}
	}
	if _, _, x := s.resolve(format.RootID, time.Time{}); x == nil {
		damage("the root directory (inode %016x) has no version", format.RootID)
	}
	reachedNow := map[uint64]bool{}
	for vi, v := range views {
		err := s.walk(ctx, v.t, func(id uint64, x *versionScan, parent uint64, name string) {
			if vi == 0 {
				reachedNow[id] = true
			}
			if id == format.RootID {
				return
			}
			if x == nil || (x.n != nil && x.n.Kind == format.KindTombstone) {
				if recheckAt(ctx, s, id, v.t) {
					return // created or changed since the listing
				}
				if x != nil {
					// rmdir tombstones the directory before it removes
					// its name (W5): a crash between leaves this entry,
					// which hosts drop when they meet it.
					mu.Lock()
					r.Warnings = append(r.Warnings, fmt.Sprintf("entry %q of directory %016x names inode %016x, which is deleted (a tombstone) at %s", name, parent, id, v.name))
					mu.Unlock()
					return
				}
				damage("entry %q of directory %016x names inode %016x, which has no version at %s", name, parent, id, v.name)
			}
		}, func(id uint64, x *versionScan, err error) {})
		if err != nil {
			return nil, err
		}
	}
	for _, id := range ids {
		in := s.inodes[id]
		if reachedNow[id] {
			continue
		}
		if x := in.newest(); x.n != nil && x.n.Kind == format.KindTombstone {
			continue
		}
		r.Orphans = append(r.Orphans, id)
	}

	// The other objects decode.
	hl, err := hosts.List(ctx, store, keys, now)
	if err != nil {
		return nil, err
	}
	for _, h := range hl {
		if h.Stray {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: not an s3gfs key", h.Key))
		} else if h.Err != nil {
			damage("%s: %v", h.Key, h.Err)
		} else if id, _ := keys.ParsePing(h.Key); id != h.Ping.HostID {
			damage("%s: holds the ping of host %016x", h.Key, h.Ping.HostID)
		}
	}
	if obj, _, err := store.Get(ctx, keys.Lease()); err == nil {
		if _, err := format.DecodeLease(obj); err != nil {
			damage("%s: %v", keys.Lease(), err)
		}
	} else if !errors.Is(err, objstore.ErrNotFound) {
		return nil, err
	}
	// eachObject checks every object under prefix: a key parse refuses is
	// foreign (a warning); an object check refuses is damage; one gone
	// meanwhile (a reaper at work) is neither.
	eachObject := func(prefix string, parse func(string) (uint64, error), check func(id uint64, obj []byte) error) error {
		return listAll(ctx, store, prefix, func(o objstore.ObjectInfo) {
			id, err := parse(o.Key)
			if err != nil {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s: not an s3gfs key", o.Key))
				return
			}
			obj, _, err := store.Get(ctx, o.Key)
			if errors.Is(err, objstore.ErrNotFound) {
				return
			}
			if err == nil {
				err = check(id, obj)
			}
			if err != nil {
				damage("%s: %v", o.Key, err)
			}
		})
	}
	err = listAll(ctx, store, keys.SettingsPrefix(), func(o objstore.ObjectInfo) {
		v, err := keys.ParseSettings(o.Key)
		if err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: not an s3gfs key", o.Key))
			return
		}
		obj, _, err := store.Get(ctx, o.Key)
		if err != nil {
			damage("%s: %v", o.Key, err)
			return
		}
		st, err := format.DecodeSettings(obj)
		if err == nil && st.Version != v {
			err = fmt.Errorf("%w: holds settings v%d", format.ErrCorrupt, st.Version)
		}
		if err != nil {
			damage("%s: %v", o.Key, err)
		}
	})
	if err != nil {
		return nil, err
	}
	// Capabilities objects decode and name their host (FORMAT §12.1).
	err = eachObject(keys.CapsPrefix(), keys.ParseCaps, func(id uint64, obj []byte) error {
		c, err := format.DecodeCaps(obj)
		if err == nil && c.HostID != id {
			err = fmt.Errorf("%w: holds the capabilities of host %016x", format.ErrCorrupt, c.HostID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// Rename decisions decode; pending entries of the present view are
	// decided, or reported as in flight (FORMAT §5.5, §15.8).
	decided := map[uint64]bool{}
	err = eachObject(keys.DecisionsPrefix(), keys.ParseDecision, func(tx uint64, obj []byte) error {
		_, err := format.DecodeDecision(obj)
		if err == nil {
			decided[tx] = true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		x := s.inodes[id].newest()
		if x.pending == nil {
			continue
		}
		for _, e := range x.pending {
			if !decided[e.Tx] {
				r.Warnings = append(r.Warnings, fmt.Sprintf("directory %016x: %q has a pending entry of rename %016x (host %016x), undecided: in flight, or abandoned (the next writer of the name aborts it)", id, e.Name, e.Tx, e.Host))
			}
		}
	}

	// Objects outside every part of the key space the format defines.
	err = listAll(ctx, store, keys.Prefix(), func(o objstore.ObjectInfo) {
		if !definedKey(keys, o.Key) {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: not an s3gfs key", o.Key))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list the volume's keys: %w", err)
	}
	sort.Strings(r.Damage)
	return r, nil
}

// definedKey reports whether key lies in a part of the volume's key space
// that FORMAT §2.2 defines (whether or not it has the right shape there:
// those are checked, and reported, with their kind). The CSI driver's
// records at the top of a bucket are not a volume's (§2.1).
func definedKey(keys format.Keys, key string) bool {
	rel := strings.TrimPrefix(key, keys.Prefix())
	switch rel {
	case "volume", "lease", "reaper", "usage":
		return true
	}
	for _, p := range []string{"i/", "d/", "h/", "s/", "t/", "settings/", "probe/", "caps/"} {
		if strings.HasPrefix(rel, p) {
			return true
		}
	}
	return keys.Prefix() == "" && strings.HasPrefix(key, ".s3gfs-csi/")
}

// vanished reports whether version x is gone from the store now: what it
// names may then be gone too (a reaper deleted both since the listing).
func vanished(ctx context.Context, s *scan, x *versionScan) bool {
	_, err := s.store.Head(ctx, x.info.Key)
	return errors.Is(err, objstore.ErrNotFound)
}

// recheckAt reports whether inode id, listed again now, has a version
// that is not a tombstone in the view at t (zero: its newest): it may have
// been created after the listing that missed it.
func recheckAt(ctx context.Context, s *scan, id uint64, t time.Time) bool {
	in := &inodeScan{id: id}
	err := listAll(ctx, s.store, s.keys.InodeDir(id), func(o objstore.ObjectInfo) {
		if _, v, err := s.keys.ParseInode(o.Key); err == nil {
			in.versions = append(in.versions, &versionScan{v: v, info: o})
		}
	})
	if err != nil || len(in.versions) == 0 {
		return false
	}
	sort.Slice(in.versions, func(i, j int) bool { return in.versions[i].v < in.versions[j].v })
	x := in.at(t)
	if x == nil {
		return false
	}
	obj, _, err := s.store.Get(ctx, x.info.Key)
	if err != nil {
		return false
	}
	n, err := format.DecodeInode(obj, s.vol.Header.ExtentSize)
	return err == nil && n.Kind != format.KindTombstone
}
