package vfs

import (
	"bytes"
	"context"
	"slices"
	"sort"
)

// Re-applying a file's local changes onto a version another host committed
// first (FORMAT.md W7: "Files merge by byte range: this host's dirty ranges
// are written onto the winner's content (new extents for the indices they
// touch); extents the winner has and this host did not change are reused").
//
// A host's uncommitted changes to a file are, in effect, at most one
// truncation point (the lowest size it truncated to) and the bytes it wrote
// since; re-applied to the winner W, the file's content at byte x is
//
//   - this host's byte, if it wrote x since its last commit;
//   - else 0, if it truncated and x lies at or past its truncation point;
//   - else W's byte at x (0 past W's end),
//
// and its size is this host's size if it truncated (a truncation sets the
// size absolutely; later writes only extend it), else the larger of W's
// size and the end of this host's furthest write. When W is the version the
// changes were made on, that is exactly this host's working content, so
// only extents whose committed content W changed need rebuilding.

// span is a byte range [from, to) within one extent.
type span struct{ from, to int }

// addSpan adds [from, to) to the sorted, disjoint spans s, merging
// overlapping and adjacent ones.
func addSpan(s []span, from, to int) []span {
	i := sort.Search(len(s), func(i int) bool { return s[i].to >= from })
	j := i
	for j < len(s) && s[j].from <= to {
		from, to = min(from, s[j].from), max(to, s[j].to)
		j++
	}
	if i == j {
		return slices.Insert(s, i, span{from, to})
	}
	s[i] = span{from, to}
	return append(s[:i+1], s[j:]...)
}

// noteChangeLocked records which version the local changes are made on,
// at the first one since the last commit. ino.mu is held.
func (ino *inode) noteChangeLocked() {
	ino.localGen++ // handles pinned to an older version now follow cur (see Handle)
	if ino.file.builtOn == nil {
		ino.file.builtOn = ino.cur
	}
}

// noteWriteLocked records a write of [from, to) in extent idx, ending at
// file offset end. ino.mu is held.
func (ino *inode) noteWriteLocked(idx uint64, from, to int, end uint64) {
	ino.noteChangeLocked()
	f := &ino.file
	if f.ranges == nil {
		f.ranges = map[uint64][]span{}
	}
	f.ranges[idx] = addSpan(f.ranges[idx], from, to)
	f.writeEnd = max(f.writeEnd, end)
	if pc := ino.create; pc != nil {
		pc.noteWrite(end-uint64(to-from), end)
	}
}

// noteTruncateLocked records a truncation to size: written bytes at or
// past it are gone. ino.mu is held.
func (ino *inode) noteTruncateLocked(size, E uint64) {
	if pc := ino.create; pc != nil {
		pc.noteTruncate(size)
	}
	ino.noteChangeLocked()
	f := &ino.file
	if !f.truncated || size < f.truncAt {
		f.truncAt = size
	}
	f.truncated = true
	f.writeEnd = min(f.writeEnd, size)
	for idx, s := range f.ranges {
		start := idx * E
		if start >= size {
			delete(f.ranges, idx)
			continue
		}
		limit := int(min(E, size-start))
		k := 0
		for _, sp := range s {
			if sp.from < limit {
				s[k] = span{sp.from, min(sp.to, limit)}
				k++
			}
		}
		if k == 0 {
			delete(f.ranges, idx)
		} else {
			f.ranges[idx] = s[:k]
		}
	}
}

// noteBaseLocked records, the first time extent idx gets local content
// since the last commit, which committed content that was built on.
// ino.mu is held.
func (ino *inode) noteBaseLocked(idx uint64) {
	ino.noteChangeLocked()
	if ino.file.base == nil {
		ino.file.base = map[uint64]source{}
	}
	if _, ok := ino.file.base[idx]; !ok {
		ino.file.base[idx] = ino.committedSourceLocked(idx)
	}
}

// rebase re-applies this host's uncommitted changes to file ino onto
// ino.cur, a version another host committed after they began (see the top
// of this file): every extent whose committed content changed under local
// content, or that a local truncation cuts, gets a new dirty buffer holding
// the merged bytes; the working size becomes the merged size. The caller
// holds ino.commitMu and ino.ioMu exclusively.
func (fs *FS) rebase(ctx context.Context, ino *inode) error {
	E := uint64(fs.extSize)
	type job struct {
		idx   uint64
		win   source         // the winner's content of the extent
		spans []span         // bytes this host wrote there...
		local []byte         // ...found here (a copy of its dirty buffer)
		up    *pendingExtent // ...or here (uploaded since the last commit)
	}
	ino.mu.Lock()
	f := &ino.file
	cands := map[uint64]bool{}
	for idx := range f.dirtyExt {
		cands[idx] = true
	}
	for idx := range f.pending {
		cands[idx] = true
	}
	if f.truncated { // the winner's bytes past the truncation point go
		if ino.cur.Inline {
			if uint64(len(ino.cur.Data)) > f.truncAt {
				cands[0] = true
			}
		} else {
			for _, x := range ino.cur.Extents {
				if x.Index*E+uint64(x.Length) > f.truncAt {
					cands[x.Index] = true
				}
			}
		}
	}
	var jobs []job
	for idx := range cands {
		win := ino.committedSourceLocked(idx)
		if b, ok := f.base[idx]; ok && b.same(win) {
			// The winner did not change what the local content (which
			// already reflects the local truncation) was built on.
			continue
		}
		j := job{idx: idx, win: win, spans: slices.Clone(f.ranges[idx])}
		if len(j.spans) > 0 {
			if d := f.dirtyExt[idx]; d != nil {
				j.local = bytes.Clone(d.buf[:d.n])
			} else if p := f.pending[idx]; p != nil && p.ref != nil {
				j.up = p
			}
		}
		jobs = append(jobs, j)
	}
	size := f.size
	if !f.truncated {
		size = max(ino.cur.Size, f.writeEnd)
	}
	// The merged size holds from now on: uploads started meanwhile (by
	// eviction) cut extents at the working size, which must not cut the
	// winner's bytes in a rebuilt extent.
	f.size = size
	f.sizeDirty = true
	onto := ino.cur
	truncated, truncAt := f.truncated, f.truncAt
	ino.mu.Unlock()

	for _, j := range jobs {
		start := j.idx * E
		var content []byte
		switch {
		case j.win.inline != nil:
			content = j.win.inline
		case j.win.hasRef:
			var err error
			if content, err = fs.fetchExtent(ctx, ino.id, j.win.ref); err != nil {
				return err
			}
		}
		if truncated {
			content = content[:min(uint64(len(content)), max(truncAt, start)-start)]
		}
		local := j.local
		if j.up != nil {
			var err error
			if local, err = fs.fetchExtent(ctx, ino.id, *j.up.ref); err != nil {
				return err
			}
		}
		n := len(content)
		for _, s := range j.spans {
			n = max(n, s.to)
		}
		if size <= start {
			n = 0
		} else {
			n = min(n, int(min(E, size-start)))
		}
		var raw, buf []byte
		if n > 0 {
			var err error
			if raw, err = fs.bufs.get(ctx, fs.evictOne); err != nil {
				return err
			}
			buf = contentOf(raw)
			copy(buf[:n], content)
			for _, s := range j.spans {
				if s.from < n {
					copyClip(buf[s.from:min(s.to, n)], local, s.from)
				}
			}
		}
		ino.mu.Lock()
		if d := f.dirtyExt[j.idx]; d != nil {
			delete(f.dirtyExt, j.idx)
			if !d.uploading { // an upload in flight frees its own buffer
				fs.bufs.put(d.raw, d.used())
			}
		}
		if f.dirtyExt == nil {
			f.dirtyExt = map[uint64]*dirtyExtent{}
		}
		if f.pending == nil {
			f.pending = map[uint64]*pendingExtent{}
		}
		delete(f.pending, j.idx)
		if n > 0 {
			f.dirtyExt[j.idx] = &dirtyExtent{raw: raw, buf: buf, n: n, lastWrite: fs.writeSeq.Add(1)}
			fs.bufs.noteDirty(ino)
		} else {
			f.pending[j.idx] = &pendingExtent{} // a hole in the merged file
		}
		if f.base == nil {
			f.base = map[uint64]source{}
		}
		f.base[j.idx] = j.win
		ino.mu.Unlock()
	}
	// Only now: a rebase that failed half way is redone by the next commit
	// (extents already rebuilt are skipped, their base being the winner's).
	ino.mu.Lock()
	f.builtOn = onto
	ino.mu.Unlock()
	return nil
}
