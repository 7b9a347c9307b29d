// Package reaper deletes what no one can read any more from an s3gfs
// volume: superseded inode versions, extents no kept version names,
// tombstoned inodes, orphans, stale pings and probe objects. It plans a
// pass from one listing of the volume, then executes the plan in batches.
// The rules it follows are FORMAT.md §15; in short (protocol invariant 7)
// it keeps the newest version of every inode, every version visible at
// the horizon or later, the version visible at every snapshot pin, every
// directory delta chain a kept version needs, every extent a kept version
// names, and everything younger than the grace period.
//
// In a clone (FORMAT.md §16.5, C2) a pass plans from the clone's own
// objects only, never counts an extent of its source as named, and never
// deletes a deleted inode's tombstone or an orphan (D3, D4): the newest
// version of every inode stays, since it may hide the source's inode.
//
// A pass is safe to interrupt at any point and to run again, and safe
// while hosts mount and write the volume. One reaper acts on a volume at a
// time (Lease). Package reaper also checks volumes (Check, for fsck) and
// lists an inode's versions (Versions).
package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Defaults.
const (
	// DefaultGrace is the grace period unless Config.Grace says otherwise.
	DefaultGrace = 15 * time.Minute
	// DefaultBatch is how many keys one delete request carries.
	DefaultBatch = 1000
	// maxUnreadablePingAge: a ping that cannot be decoded may belong to a
	// live host whose expiry (at most 24h) and oldest are unknown.
	maxUnreadablePingAge = 24 * time.Hour
)

// Config tunes a pass.
type Config struct {
	// Retention overrides the volume's retention window when >= 0; a
	// negative value (the default through DefaultConfig) uses the volume's
	// (its newest settings version, else its header).
	Retention time.Duration
	// Grace is the least age of anything the pass deletes for being
	// superseded or unreferenced. The pass uses at least twice the longest
	// host expiry it finds in a ping.
	Grace time.Duration
	// PingTTL: pings lapsed for longer are deleted. Zero means
	// max(10 × the ping's expiry, min(retention, 1h)).
	PingTTL time.Duration
	// DryRun plans and reports but deletes and writes nothing.
	DryRun bool
	// Batch is the number of keys per delete request (DefaultBatch).
	Batch int
	// Owner names this reaper in its record (the lease owner).
	Owner  string
	Logger *slog.Logger
	// Progress, when set, is called as the pass advances.
	Progress func(Progress)
	// Deleted, when set, is called for every object deleted (or, in a dry
	// run, that would be), with its kind.
	Deleted func(key, kind string)
}

// DefaultConfig is the configuration `s3gfs gc` starts from.
func DefaultConfig() Config { return Config{Retention: -1, Grace: DefaultGrace} }

// Progress reports how far a pass is.
type Progress struct {
	Phase string // "list", "plan", "delete"
	Done  int
	Total int
}

// Kinds of objects, as counted in a Report.
const (
	KindVersion   = "version"   // superseded inode versions
	KindTombstone = "tombstone" // every version of a deleted inode
	KindOrphan    = "orphan"    // every version of an inode no path reaches
	KindExtent    = "extent"
	KindPing      = "ping"
	KindProbe     = "probe"
	KindCaps      = "capabilities" // of hosts whose ping is gone (FORMAT §12.1)
	KindDecision  = "decision"     // rename decisions (FORMAT §5.5) no kept version needs
)

// Report says what a pass found, kept and deleted.
type Report struct {
	DryRun    bool
	Now       time.Time     // the store's time when the pass began
	Horizon   time.Time     // versions visible at or after it are kept
	Recorded  time.Time     // the earliest mountable time now recorded
	Retention time.Duration // the retention window used
	Grace     time.Duration // the grace period used
	Snapshots int
	LiveHosts int
	// HoldAll: something the pass could not read (a ping) may hold any
	// version, so no version or extent was deleted.
	HoldAll bool

	Inodes  int            // inodes listed
	Kept    map[string]int // objects kept, by kind ("version", "extent")
	Planned map[string]int // objects the plan deletes, by kind
	Deleted map[string]int // objects deleted, by kind
	Bytes   int64          // bytes deleted (or planned, in a dry run)
	// Orphans are inodes no path reaches in any view walked (deleted once
	// older than the grace period and the horizon).
	Orphans []uint64
	// Problems lists objects that could not be read or make no sense,
	// each naming its key. They are kept.
	Problems []string
	// Usage is what the volume holds after the pass, as recorded for
	// statfs (FORMAT §15.9); nil for a dry run or an incomplete pass.
	Usage    *format.Usage
	Duration time.Duration
}

// plan is what a pass will delete, in order.
type plan struct {
	versions   []objstore.ObjectInfo // superseded versions (oldest first per inode), and the non-final versions of dropped inodes
	orphanLast []objstore.ObjectInfo // the newest versions of orphans
	extents    []objstore.ObjectInfo
	tombstones []objstore.ObjectInfo // last: a tombstone goes after everything of its inode
	pings      []objstore.ObjectInfo
	probes     []objstore.ObjectInfo
	kinds      map[string]string // key -> kind, for counting

	// usage is what the volume holds once the plan is carried out
	// (FORMAT §15.9); nil when the pass held everything back.
	usage *format.Usage
}

// Run makes one pass over vol: it plans, records its horizon, and deletes
// (unless cfg.DryRun). Call it while holding the lease (held is the
// context Lease.Acquire returned): it stops between delete batches once
// held is done. The report is filled in as far as the pass got, also when
// it returns an error.
func Run(held context.Context, vol *volume.Volume, cfg Config) (*Report, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	start := time.Now()
	r := &Report{DryRun: cfg.DryRun, Kept: map[string]int{}, Planned: map[string]int{}, Deleted: map[string]int{}}
	defer func() { r.Duration = time.Since(start) }()
	p, err := makePlan(held, vol, cfg, r)
	if err != nil {
		return r, err
	}
	if cfg.DryRun {
		if cfg.Deleted != nil {
			for _, ph := range [][]objstore.ObjectInfo{p.versions, p.orphanLast, p.extents, p.tombstones, p.pings, p.probes} {
				for _, o := range ph {
					cfg.Deleted(o.Key, p.kinds[o.Key])
				}
			}
		}
		return r, nil
	}
	if err := execute(held, vol.Store, cfg, p, r); err != nil {
		return r, err
	}
	if p.usage != nil {
		writeUsage(held, vol, cfg, p.usage)
		r.Usage = p.usage
	}
	return r, nil
}

// writeUsage records what the volume holds after a complete pass. A
// failure is logged, not returned: the figure informs statfs, nothing
// depends on it, and the pass itself succeeded.
func writeUsage(ctx context.Context, vol *volume.Volume, cfg Config, u *format.Usage) {
	if err := putUsage(ctx, vol, u); err != nil {
		cfg.Logger.Warn("could not write the usage record", "key", vol.Keys.Usage(), "err", err)
	}
}

// putUsage writes u unless the record holds the figures of a pass that
// began later: two passes may overlap (a lease lost mid-pass, a Kubernetes
// Lease and `s3gfs gc` side by side), and the one that ends last may be
// the older. The record is replaced only if it is still the one read
// (If-Match its ETag, or a conditional create when there is none), as the
// reaper's record is (FORMAT §15.9, §15.2). An unreadable record is
// replaced.
func putUsage(ctx context.Context, vol *volume.Volume, u *format.Usage) error {
	obj, err := format.EncodeUsage(u)
	if err != nil {
		return err
	}
	key := vol.Keys.Usage()
	for attempt := 1; ; attempt++ {
		old, info, err := vol.Store.Get(ctx, key)
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			_, err = vol.Store.PutIfAbsent(ctx, key, obj)
		case err != nil:
			return fmt.Errorf("read it: %w", err)
		default:
			if prev, derr := format.DecodeUsage(old); derr == nil && prev.At.After(u.At) {
				return nil // a later pass's figures stand
			}
			_, err = vol.Store.PutIfMatch(ctx, key, obj, info.ETag)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, objstore.ErrExists) || errors.Is(err, objstore.ErrPrecondition) || errors.Is(err, objstore.ErrNotFound):
			// Another pass wrote (or removed) it since: read it again.
			if attempt >= maxRecordAttempts {
				return fmt.Errorf("changed by another writer %d times in a row: %w", attempt, err)
			}
		default:
			return err
		}
	}
}

func (c *Config) progress(phase string, done, total int) {
	if c.Progress != nil {
		c.Progress(Progress{Phase: phase, Done: done, Total: total})
	}
}

// holdState is what the pings say.
type holdState struct {
	oldest    time.Time // the oldest time a live host reads (zero: none)
	maxExpiry time.Duration
	live      int
	holdAll   bool
	stale     []objstore.ObjectInfo
	hosts     map[uint64]bool // every host with a ping, readable or not
}

func readPings(ctx context.Context, vol *volume.Volume, now time.Time, retention time.Duration, cfg Config, r *Report) (holdState, error) {
	h := holdState{hosts: map[uint64]bool{}}
	list, err := hosts.List(ctx, vol.Store, vol.Keys, now)
	if err != nil {
		return h, err
	}
	for _, host := range list {
		if host.Stray {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: not an s3gfs key; left alone", host.Key))
			continue
		}
		if id, err := vol.Keys.ParsePing(host.Key); err == nil {
			h.hosts[id] = true
		}
		if host.Err != nil {
			// Its expiry and oldest are unknown: while it may be live, it
			// may hold anything.
			r.Problems = append(r.Problems, fmt.Sprintf("%s: unreadable ping: %v", host.Key, host.Err))
			if host.Age < maxUnreadablePingAge {
				h.holdAll = true
			}
			continue
		}
		p := host.Ping
		h.maxExpiry = max(h.maxExpiry, p.Expiry)
		if host.Live {
			h.live++
			if !p.Oldest.IsZero() && (h.oldest.IsZero() || p.Oldest.Before(h.oldest)) {
				h.oldest = p.Oldest
			}
			continue
		}
		ttl := cfg.PingTTL
		if ttl <= 0 {
			ttl = max(10*p.Expiry, min(retention, time.Hour))
		}
		if host.Age-p.Expiry >= ttl {
			h.stale = append(h.stale, objstore.ObjectInfo{Key: host.Key, LastModified: host.Written})
		}
	}
	return h, nil
}

// maxRecordAttempts bounds how often writeRecord re-reads a record that
// another reaper changed under it.
const maxRecordAttempts = 10

// writeRecord records the horizon (K1): the later of the recorded one and
// this pass's (only the recorded one while an unreadable ping holds
// everything), and returns it; a dry run writes nothing. The record is
// replaced only if it is still the one read (If-Match its ETag, or a
// conditional create when there is none): two passes planning at once
// (a lease lost mid-pass, a Kubernetes Lease and `s3gfs gc` side by side)
// each re-read what the other wrote, so the recorded horizon never
// decreases (FORMAT §15.2).
func writeRecord(ctx context.Context, store objstore.Store, keys format.Keys, cfg Config, now, horizon time.Time, holdAll bool,
	retention, grace time.Duration) (time.Time, error) {
	for attempt := 1; ; attempt++ {
		old, info, err := snapshot.ReadRecordInfo(ctx, store, keys)
		if err != nil {
			// Cannot tell what earlier passes promised: do not guess.
			return time.Time{}, fmt.Errorf("%w (the record says how far back point-in-time mounts may go, so no pass runs while it is unreadable; "+
				"removing it lets mounts older than earlier passes kept be attempted, and fail)", err)
		}
		recorded := horizon
		if old != nil && old.Horizon.After(recorded) {
			recorded = old.Horizon
		}
		if holdAll {
			recorded = time.Time{}
			if old != nil {
				recorded = old.Horizon
			}
		}
		if cfg.DryRun || recorded.IsZero() {
			return recorded, nil
		}
		rec := &format.ReaperRecord{Horizon: recorded, Pass: now, Owner: cfg.Owner, Retention: retention, Grace: grace}
		if len(rec.Owner) > format.MaxOwnerLen {
			rec.Owner = rec.Owner[:format.MaxOwnerLen]
		}
		body, err := format.EncodeReaperRecord(rec)
		if err != nil {
			return time.Time{}, err
		}
		if old == nil {
			_, err = store.PutIfAbsent(ctx, keys.Reaper(), body)
		} else {
			_, err = store.PutIfMatch(ctx, keys.Reaper(), body, info.ETag)
		}
		switch {
		case err == nil:
			return recorded, nil
		case errors.Is(err, objstore.ErrExists) || errors.Is(err, objstore.ErrPrecondition) || errors.Is(err, objstore.ErrNotFound):
			// Another pass wrote (or removed) it since: read it again.
			if attempt >= maxRecordAttempts {
				return time.Time{}, fmt.Errorf("write the reaper's record: changed by another writer %d times in a row: %w", attempt, err)
			}
			cfg.Logger.Info("the reaper's record changed while this pass wrote it; reading it again", "key", keys.Reaper())
		default:
			return time.Time{}, fmt.Errorf("write the reaper's record: %w", err)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func makePlan(ctx context.Context, vol *volume.Volume, cfg Config, r *Report) (*plan, error) {
	log := cfg.Logger
	store, keys := vol.Store, vol.Keys
	cfg.progress("list", 0, 0)
	now, err := hosts.ServerNow(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("read the store's clock: %w", err)
	}
	r.Now = now
	retention := cfg.Retention
	if retention < 0 {
		if retention, err = Retention(ctx, vol); err != nil {
			return nil, err
		}
	}
	r.Retention = retention

	// 1. Who holds what: pings and snapshot pins.
	h1, err := readPings(ctx, vol, now, retention, cfg, r)
	if err != nil {
		return nil, err
	}
	pins, err := snapshot.ListKeys(ctx, store, keys)
	if err != nil {
		return nil, err
	}
	r.Snapshots = len(pins)
	grace := max(cfg.Grace, minGrace(h1.maxExpiry))
	horizon := minTime(now.Add(-retention), now.Add(-grace))
	horizon = minTime(horizon, h1.oldest)

	// 2. Record the horizon before anything is deleted, then read the
	// pings again: a point-in-time mount checks the record after its
	// first ping, so it either sees this record or this pass sees its ping.
	recorded, err := writeRecord(ctx, store, keys, cfg, now, horizon, h1.holdAll, retention, grace)
	if err != nil {
		return nil, err
	}
	r.Recorded = recorded
	h2, err := readPings(ctx, vol, now, retention, cfg, &Report{})
	if err != nil {
		return nil, err
	}
	grace = max(grace, minGrace(h2.maxExpiry))
	horizon = minTime(horizon, now.Add(-grace))
	horizon = minTime(horizon, h2.oldest)
	holdAll := h1.holdAll || h2.holdAll
	if holdAll {
		horizon = time.Time{}
		log.Warn("an unreadable ping may hold any version: this pass deletes no version and no extent")
	}
	r.HoldAll, r.Horizon, r.Grace = holdAll, horizon, grace
	r.LiveHosts = max(h1.live, h2.live)
	graceEdge := now.Add(-grace) // objects last modified before it are older than the grace period

	p := &plan{kinds: map[string]string{}}
	add := func(list *[]objstore.ObjectInfo, kind string, o objstore.ObjectInfo) {
		*list = append(*list, o)
		p.kinds[o.Key] = kind
		r.Planned[kind]++
		r.Bytes += o.Size
	}
	for _, o := range h1.stale {
		add(&p.pings, KindPing, o)
	}
	err = listAll(ctx, store, keys.ProbesPrefix(), func(o objstore.ObjectInfo) {
		if o.LastModified.Before(graceEdge) {
			add(&p.probes, KindProbe, o)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list probes: %w", err)
	}
	// A host writes its capabilities before its first ping: one with no
	// ping in either reading, older than the grace period, is of a host
	// that is gone (its ping was deleted).
	err = listAll(ctx, store, keys.CapsPrefix(), func(o objstore.ObjectInfo) {
		id, err := keys.ParseCaps(o.Key)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: not an s3gfs key; left alone", o.Key))
			return
		}
		if !h1.hosts[id] && !h2.hosts[id] && o.LastModified.Before(graceEdge) {
			add(&p.probes, KindCaps, o)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list capabilities: %w", err)
	}

	// 3. List every version and extent.
	s, err := newScan(ctx, vol)
	if err != nil {
		return nil, err
	}
	r.Inodes = len(s.inodes)
	for _, o := range s.strays {
		r.Problems = append(r.Problems, fmt.Sprintf("%s: not an s3gfs key; left alone", o.Key))
	}
	if holdAll {
		for _, in := range s.inodes {
			r.Kept[KindVersion] += len(in.versions)
		}
		for _, es := range s.extents {
			r.Kept[KindExtent] += len(es)
		}
		return p, nil
	}

	// 4. Per inode: the versions each keep point needs.
	keepPoints := []time.Time{}
	for _, pin := range pins {
		keepPoints = append(keepPoints, pin.LastModified)
		// Clients read a pin's time with HEAD, whose Last-Modified has
		// whole seconds, while some stores LIST milliseconds (G4): keep
		// what the instant as they read it shows too (a clone's T).
		if s := pin.LastModified.Truncate(time.Second); !s.Equal(pin.LastModified) {
			keepPoints = append(keepPoints, s)
		}
	}
	type decision struct {
		keep    map[uint64]bool
		keepAll bool // something unreadable: keep every version and extent
		drop    bool // tombstoned or orphaned: every object goes
		orphan  bool
		skipped bool // one version and no extent: not read before the walk
	}
	ids := make([]uint64, 0, len(s.inodes))
	for id := range s.inodes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	dec := make(map[uint64]*decision, len(ids))
	for _, id := range ids {
		dec[id] = &decision{keep: map[uint64]bool{}}
	}
	done := 0
	cfg.progress("plan", 0, len(ids))
	err = parallel(ctx, len(ids), func(i int) error {
		in, d := s.inodes[ids[i]], dec[ids[i]]
		newest := in.newest()
		d.keep[newest.v] = true
		if len(in.versions) == 1 && len(s.extents[in.id]) == 0 {
			// Nothing of it can go but as an orphan or a leftover
			// tombstone (decided after the walk): no need to read it now.
			// (A directory is read by the walk.)
			d.skipped = true
			return nil
		}
		for _, x := range in.versions {
			if !x.info.LastModified.Before(horizon) {
				d.keep[x.v] = true
			}
		}
		if x := in.before(horizon); x != nil {
			d.keep[x.v] = true
		}
		for _, t := range keepPoints {
			if x := in.at(t); x != nil {
				d.keep[x.v] = true
			}
		}
		var kept []*versionScan
		for _, x := range in.versions {
			if d.keep[x.v] {
				kept = append(kept, x)
			}
		}
		if err := s.load(ctx, in.id, kept); err != nil {
			return err
		}
		// A deleted inode: nothing but its tombstone is visible at any keep
		// point, and the tombstone is older than the horizon and grace.
		if newest.err == nil && newest.n.Kind == format.KindTombstone && len(kept) == 1 &&
			newest.info.LastModified.Before(horizon) && newest.info.LastModified.Before(graceEdge) {
			d.drop = true
			return nil
		}
		// Delta chains of kept directory versions.
		for _, x := range kept {
			if x.err != nil {
				d.keepAll = true
				continue
			}
			if x.n.Kind != format.KindDir || x.n.IsFull() {
				continue
			}
			chain, ok := in.chain(x)
			if !ok {
				d.keepAll = true
				continue
			}
			for _, y := range chain {
				d.keep[y.v] = true
			}
			if err := s.load(ctx, in.id, chain); err != nil {
				return err
			}
			for _, y := range chain {
				if y.err != nil {
					d.keepAll = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		in, d := s.inodes[id], dec[id]
		for _, x := range in.versions {
			if x.err != nil && d.keep[x.v] {
				r.Problems = append(r.Problems, fmt.Sprintf("%v (inode %016x: every version and extent kept)", x.err, id))
			}
		}
		done++
	}
	cfg.progress("plan", done, len(ids))

	reachedNow := map[uint64]bool{} // (a clone's stays empty: no walk)
	if vol.Header.Clone == nil {
		// (C2: in a clone there is no D3 or D4: the walk would have to
		// fall through to the source, and a tombstone hides the source's
		// inode; D1 and D2 apply as everywhere.)
		// 5. Orphans: inodes no path from the root reaches in any view: now,
		// the horizon, the last instant outside the grace period (a view every
		// commit before it is visible in, so no rename in flight hides a
		// subtree), and every pin.
		reached := map[uint64]bool{}
		walkOK := true
		views := append([]time.Time{{}, horizon, graceEdge}, keepPoints...)
		for _, t := range views {
			err := s.walk(ctx, t, func(id uint64, _ *versionScan, _ uint64, _ string) {
				reached[id] = true
				if t.IsZero() {
					reachedNow[id] = true
				}
			},
				func(id uint64, x *versionScan, err error) {
					walkOK = false
					r.Problems = append(r.Problems, fmt.Sprintf("directory %016x v%d unreadable (%v): no orphan is deleted this pass", id, x.v, err))
				})
			if err != nil {
				return nil, fmt.Errorf("walk the tree: %w", err)
			}
		}
		if s.inodes[format.RootID] == nil {
			walkOK = false
			r.Problems = append(r.Problems, "the root directory has no version: no orphan is deleted")
		}
		for _, id := range ids {
			in, d := s.inodes[id], dec[id]
			if d.drop && reached[id] {
				// A directory entry still names the deleted inode (rmdir
				// tombstones before it removes the name, W5; a crash between
				// leaves the entry, which hosts drop when they meet it). Keep
				// the tombstone while any view shows that entry.
				d.drop = false
				r.Problems = append(r.Problems, fmt.Sprintf("inode %016x is deleted but a directory entry still names it; its tombstone is kept", id))
				continue
			}
			if reached[id] || d.drop {
				continue
			}
			newest := in.newest()
			if err := s.load(ctx, id, []*versionScan{newest}); err != nil {
				return nil, err
			}
			if newest.err != nil && !d.keepAll {
				d.keepAll = true
				r.Problems = append(r.Problems, fmt.Sprintf("%v (inode %016x: every version and extent kept)", newest.err, id))
			}
			if newest.err == nil && newest.n.Kind == format.KindTombstone {
				// A deleted inode reduced to its tombstone (an interrupted
				// pass), or one a keep point still needs.
				if d.skipped && newest.info.LastModified.Before(horizon) && newest.info.LastModified.Before(graceEdge) {
					d.drop = true
				}
				continue
			}
			r.Orphans = append(r.Orphans, id)
			if walkOK && !d.keepAll && newest.info.LastModified.Before(horizon) && newest.info.LastModified.Before(graceEdge) {
				d.drop, d.orphan = true, true
			}
		}
	} else {
		for _, d := range dec {
			d.drop = false
		}
	}

	// 6. The plan: versions, then extents, then tombstones.
	for _, id := range ids {
		in, d := s.inodes[id], dec[id]
		switch {
		case d.keepAll:
			r.Kept[KindVersion] += len(in.versions)
		case d.drop:
			kind := KindTombstone
			if d.orphan {
				kind = KindOrphan
			}
			last := len(in.versions) - 1
			for _, x := range in.versions[:last] {
				add(&p.versions, kind, x.info)
			}
			if d.orphan {
				add(&p.orphanLast, kind, in.versions[last].info)
			} else {
				add(&p.tombstones, kind, in.versions[last].info)
			}
		default:
			for _, x := range in.versions {
				if d.keep[x.v] {
					r.Kept[KindVersion]++
				} else {
					add(&p.versions, KindVersion, x.info)
				}
			}
		}
	}
	extIDs := make([]uint64, 0, len(s.extents))
	for id := range s.extents {
		extIDs = append(extIDs, id)
	}
	sort.Slice(extIDs, func(i, j int) bool { return extIDs[i] < extIDs[j] })
	for _, id := range extIDs {
		es := s.extents[id]
		d := dec[id]
		if d != nil && d.keepAll {
			r.Kept[KindExtent] += len(es)
			continue
		}
		named := map[uint64]bool{}
		if in := s.inodes[id]; in != nil && !d.drop {
			for _, x := range in.versions {
				if d.keep[x.v] && x.n != nil {
					for _, ref := range x.n.Extents {
						if ref.Origin == 0 { // others are a source's (C2)
							named[ref.EID] = true
						}
					}
				}
			}
		}
		for _, e := range es {
			if named[e.eid] || !e.info.LastModified.Before(graceEdge) {
				r.Kept[KindExtent]++
				continue
			}
			add(&p.extents, KindExtent, e.info)
		}
	}
	if err := planDecisions(ctx, s, graceEdge, func(id uint64) (func(uint64) bool, bool) {
		d := dec[id]
		if d == nil || d.drop {
			return nil, false
		}
		return func(v uint64) bool { return d.keepAll || d.keep[v] }, true
	}, func(o objstore.ObjectInfo) { add(&p.pings, KindDecision, o) }, r); err != nil {
		return nil, err
	}
	inodes := len(reachedNow)
	if vol.Header.Clone != nil {
		inodes = len(s.inodes) // no walk in a clone (§15.9, C2)
	}
	p.usage = s.usageAfter(now, inodes, p)
	log.Debug("reaper plan", "horizon", horizon, "grace", grace, "retention", retention, "planned", r.Planned)
	return p, nil
}

// execute deletes the plan in order, stopping between batches when the
// lease is lost, and at the first failed batch (the next pass resumes).
func execute(held context.Context, store objstore.Store, cfg Config, p *plan, r *Report) error {
	phases := [][]objstore.ObjectInfo{p.versions, p.orphanLast, p.extents, p.tombstones, p.pings, p.probes}
	total := 0
	for _, ph := range phases {
		total += len(ph)
	}
	done := 0
	cfg.progress("delete", 0, total)
	for _, ph := range phases {
		for startIdx := 0; startIdx < len(ph); startIdx += cfg.Batch {
			if err := context.Cause(held); err != nil {
				return fmt.Errorf("stopped after %d of %d deletions: %w", done, total, err)
			}
			batch := ph[startIdx:min(startIdx+cfg.Batch, len(ph))]
			keys := make([]string, len(batch))
			for i, o := range batch {
				keys[i] = o.Key
			}
			if err := store.DeleteMany(held, keys); err != nil {
				if cause := context.Cause(held); cause != nil && errors.Is(err, context.Canceled) {
					err = cause
				}
				return fmt.Errorf("delete batch (after %d of %d deletions): %w", done, total, err)
			}
			for _, k := range keys {
				r.Deleted[p.kinds[k]]++
				cfg.Logger.Debug("deleted", "key", k, "kind", p.kinds[k])
				if cfg.Deleted != nil {
					cfg.Deleted(k, p.kinds[k])
				}
			}
			done += len(keys)
			cfg.progress("delete", done, total)
		}
	}
	return nil
}

// minGrace is the least grace hosts with host expiry e allow: a version in
// flight names extents uploaded at most e before it was sent (FORMAT
// §15.7), and lands at most e + 2 s after it was sent (its request expires
// at the host's fence instant, counted by the store in whole seconds:
// §12 P3); a host that opened a version announces it within e (P4).
func minGrace(e time.Duration) time.Duration { return 2*e + 5*time.Second }

// planDecisions applies D7 (FORMAT §15.5): a rename decision older than
// the grace period goes when it is an abort, or a commit that no kept
// version of the directories it lists holds a pending entry of. kept
// returns, for a directory id, which of its versions the pass keeps
// (false: none, the inode goes or has no version).
func planDecisions(ctx context.Context, s *scan, graceEdge time.Time, kept func(id uint64) (func(v uint64) bool, bool), drop func(objstore.ObjectInfo), r *Report) error {
	var old []objstore.ObjectInfo
	err := listAll(ctx, s.store, s.keys.DecisionsPrefix(), func(o objstore.ObjectInfo) {
		if _, err := s.keys.ParseDecision(o.Key); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: not an s3gfs key; left alone", o.Key))
			return
		}
		if o.LastModified.Before(graceEdge) {
			old = append(old, o)
		} else {
			r.Kept[KindDecision]++
		}
	})
	if err != nil {
		return fmt.Errorf("list rename decisions: %w", err)
	}
	// held: per directory, the txids of the pending entries its kept
	// versions hold (unsure: a kept version could not be read), found
	// once per pass, not once per decision: a busy directory's many
	// decisions would each scan all its kept versions again.
	type holds struct {
		txs    map[uint64]bool
		unsure bool
	}
	held := map[uint64]*holds{}
	heldIn := func(id uint64) (*holds, error) {
		if h := held[id]; h != nil {
			return h, nil
		}
		h := &holds{txs: map[uint64]bool{}}
		keep, ok := kept(id)
		in := s.inodes[id]
		if ok && in != nil {
			var vs []*versionScan
			for _, x := range in.versions {
				if keep(x.v) {
					vs = append(vs, x)
				}
			}
			if err := s.load(ctx, id, vs); err != nil {
				return nil, err
			}
			for _, x := range vs {
				if x.err != nil {
					h.unsure = true // cannot tell: keep
					continue
				}
				for _, t := range format.Txids(x.n.Entries) {
					h.txs[t] = true
				}
			}
		}
		held[id] = h
		return h, nil
	}
	for _, o := range old {
		tx, _ := s.keys.ParseDecision(o.Key)
		obj, _, err := s.store.Get(ctx, o.Key)
		if errors.Is(err, objstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", o.Key, err)
		}
		d, err := format.DecodeDecision(obj)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %v (kept)", o.Key, err))
			r.Kept[KindDecision]++
			continue
		}
		needed := false
		if d.Outcome == format.Commit {
			for _, id := range d.Dirs {
				h, err := heldIn(id)
				if err != nil {
					return err
				}
				needed = needed || h.unsure || h.txs[tx]
			}
		}
		if needed {
			r.Kept[KindDecision]++
		} else {
			drop(o)
		}
	}
	return nil
}
