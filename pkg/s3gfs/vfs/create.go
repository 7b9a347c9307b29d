package vfs

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Deferred creates.
//
// open(O_CREAT|O_TRUNC) without O_EXCL or O_APPEND (the way programs write
// a whole file: shell redirection, fopen "w", os.Create) of a name this
// host does not see does not wait for its directory commit: the file is
// created locally, as a born put's file (FORMAT.md §5.4), and the directory
// change that names it is sent in the background while the caller writes.
// The file's first close (or fsync) commits its content in parallel with
// that change and returns once both are decided, so a small file costs one
// round trip to the store, not two. PROTOCOL invariant 4 requires only
// O_EXCL creates to be decided before they return; this one is decided
// before the close or fsync that makes its data durable returns (see
// docs/guarantees.md), and this host sees the name meanwhile.
//
// The decision may find that another host created the name first. Then
// the open is what it would have been, had it come at the decision, after
// that create: an open of the existing file with O_TRUNC. The decision
// truncates that file (and commits it), and each later close or fsync of
// the local file applies to it what the local file's descriptors did
// since, in order: the byte ranges written (with the local file's
// current bytes) and the truncations (settleCreate), and commits it, as
// any writer of that file would; so bytes other hosts write into it after
// the decision stay where the local writes do not cover them. The local
// file, never named, is left to the reaper as an orphan. When the name
// turns out to be a directory or anything else that open cannot write,
// or the change fails, close and fsync report that error.

// While a deferred create is undecided, an operation of this host that
// reads or changes that name, that lists the directory, that needs the
// directory empty, or that links the file elsewhere waits for the
// decision first (waitCreated, waitDecided): the name is only this host's
// until then.

// pendingCreate is the state of a deferred create. err and into are
// written (with the file's mu held) before done is closed, and read
// after it or with that mu held.
type pendingCreate struct {
	dir  *inode
	name string
	done chan struct{}
	// err: the name could not be made this file's or another file's.
	err error
	// into: the file the name named instead, which this file's changes
	// are applied to by each close (nil: the name is this file's).
	into *inode
	// changes: what the file's descriptors did, in order, not yet applied
	// to into; guarded by the file's mu (recorded until the name is this
	// file's, noteWriteLocked and noteTruncateLocked).
	changes []fileChange
}

// fileChange is a write of [off, end), or (truncate) a truncation to off.
type fileChange struct {
	truncate bool
	off, end uint64
}

// noteWrite records a write of [off, end), merged into the previous change
// when that is a write it touches (a sequential writer's log stays one
// entry). The file's mu is held.
func (pc *pendingCreate) noteWrite(off, end uint64) {
	if pc.err != nil {
		return // failed: nothing will apply it
	}
	if n := len(pc.changes); n > 0 {
		if c := &pc.changes[n-1]; !c.truncate && off <= c.end && end >= c.off {
			c.off, c.end = min(c.off, off), max(c.end, end)
			return
		}
	}
	pc.changes = append(pc.changes, fileChange{off: off, end: end})
}

// noteTruncate records a truncation to size. The file's mu is held.
func (pc *pendingCreate) noteTruncate(size uint64) {
	if pc.err != nil {
		return
	}
	pc.changes = append(pc.changes, fileChange{truncate: true, off: size})
}

// CreateOpen is open(2) with O_CREAT of name in parent, flags being the
// open flags: O_EXCL creates or fails (Create with exclusive), and a
// create with O_TRUNC but not O_APPEND is deferred (see above) when the
// volume allows born puts. Anything else is Create.
func (fs *FS) CreateOpen(ctx context.Context, parent uint64, name string, mode uint32, flags int, caller Caller) (Attr, *Handle, error) {
	exclusive, trunc := flags&syscall.O_EXCL != 0, flags&syscall.O_TRUNC != 0
	if exclusive || !trunc || flags&syscall.O_APPEND != 0 {
		return fs.create(ctx, parent, name, mode, exclusive, trunc, caller)
	}
	a, h, err := fs.createDeferred(ctx, parent, name, mode, caller)
	if errors.Is(err, errNotDeferred) {
		return fs.create(ctx, parent, name, mode, false, true, caller)
	}
	return a, h, err
}

// errNotDeferred: a create that cannot be deferred (the name exists on
// this host, the volume cannot take born puts, or the engine is closing).
var errNotDeferred = errors.New("create not deferred")

func (fs *FS) createDeferred(ctx context.Context, parent uint64, name string, mode uint32, caller Caller) (Attr, *Handle, error) {
	dir, err := fs.dirForNewName(ctx, parent, name)
	if errors.Is(err, ErrExist) {
		return Attr{}, nil, errNotDeferred // open the file found (Create)
	}
	if err != nil {
		return Attr{}, nil, err
	}
	if !fs.bornPuts() {
		return Attr{}, nil, errNotDeferred
	}
	child, err := fs.newChild(ctx, dir, &format.Inode{Kind: format.KindFile, Mode: mode & 0o7777, Nlink: 1, Inline: true}, caller)
	if err != nil {
		return Attr{}, nil, err
	}
	child.mu.Lock()
	born := child.bornOnly
	child.mu.Unlock()
	if !born { // (a host that cannot read born puts appeared meanwhile)
		fs.Forget(child.id)
		return Attr{}, nil, errNotDeferred
	}
	pc := &pendingCreate{dir: dir, name: name, done: make(chan struct{})}
	fs.mu.Lock()
	closing := fs.closing
	if !closing {
		fs.createsWG.Add(1)
	}
	fs.mu.Unlock()
	if closing {
		fs.Forget(child.id)
		return Attr{}, nil, errNotDeferred
	}
	dir.mu.Lock()
	if other := dir.creates[name]; other != nil {
		// Another thread of this host is creating the same name: let
		// Create wait for it and open its file.
		dir.mu.Unlock()
		fs.createsWG.Done()
		fs.Forget(child.id)
		return Attr{}, nil, errNotDeferred
	}
	if dir.creates == nil {
		dir.creates = map[string]*pendingCreate{}
	}
	dir.creates[name] = pc
	dir.mu.Unlock()
	child.mu.Lock()
	child.create = pc
	child.mu.Unlock()
	fs.deferred.Add(1)
	h, _, err := fs.open(context.WithoutCancel(ctx), child.id, true, false)
	fs.background.run(func() { fs.decideCreate(child, pc) })
	if err != nil {
		return Attr{}, nil, err
	}
	return fs.attrOf(child), h, nil
}

// decideCreate commits the directory change of a deferred create of file
// ino, and records the outcome in pc.
func (fs *FS) decideCreate(ino *inode, pc *pendingCreate) {
	defer fs.createsWG.Done()
	ctx := fs.loops // ends only once Close has waited for this
	var into *inode
	var err error
	const attempts = 8
	for i := 1; ; i++ {
		// (A file found under the name on an earlier pass and gone by the
		// time it was opened is not this pass's: left set, a link that
		// then wins would send the descriptor's bytes to it.)
		into = nil
		err = fs.link(ctx, pc.dir, pc.name, ino, format.KindFile)
		if !errors.Is(err, ErrExist) {
			break
		}
		// Another host created the name first: this open is an open of
		// that file (O_TRUNC), unless it is gone again (then try anew).
		var e format.Entry
		var ok bool
		if e, ok, err = fs.lookupEntryNow(ctx, pc.dir, pc.name); err != nil {
			break
		}
		if !ok && i < attempts {
			fs.freshen(ctx, pc.dir) // (an error shows in the next link)
			continue
		}
		switch {
		case !ok:
			err = fmt.Errorf("create %q: the name was taken and removed again %d times: %w", pc.name, attempts, ErrConflict)
		case e.ChildKind == format.KindDir:
			err = fmt.Errorf("create %q: another host made it a directory: %w", pc.name, ErrIsDir)
		case e.ChildKind != format.KindFile:
			err = fmt.Errorf("create %q: another host made it a non-regular file: %w", pc.name, ErrExist)
		default:
			// The open: O_TRUNC of that file, now.
			if into, err = fs.child(ctx, pc.dir, e); err == nil {
				err = fs.truncateCommitted(ctx, into)
			}
			if errors.Is(err, ErrNotExist) && i < attempts {
				// Removed meanwhile: the name may be free again, which
				// this host's view, which names the file, would not show.
				fs.freshen(ctx, pc.dir)
				continue
			}
		}
		break
	}
	switch {
	case err != nil:
		into = nil
		fs.log.Warn("create decided after its open failed; the next close or fsync reports it",
			"dir", fmt.Sprintf("%016x", pc.dir.id), "name", pc.name, "err", err)
	case into != nil:
		// Rare (two hosts creating one name at once), and the descriptor
		// then shows an inode number no name has: worth a line.
		fs.log.Info("create found the name taken by another host; the open writes into that file",
			"dir", fmt.Sprintf("%016x", pc.dir.id), "name", pc.name,
			"created", fmt.Sprintf("%016x", ino.id), "inode", fmt.Sprintf("%016x", into.id))
	}
	pc.dir.mu.Lock()
	if pc.dir.creates[pc.name] == pc {
		delete(pc.dir.creates, pc.name)
	}
	pc.dir.mu.Unlock()
	ino.mu.Lock() // (noteWrite reads pc.err with it held)
	pc.err, pc.into = err, into
	if err == nil && into == nil {
		ino.create = nil // named: nothing left to settle
	}
	if err != nil {
		pc.changes = nil // nothing will apply them
	}
	ino.mu.Unlock()
	close(pc.done)
	if err != nil || into != nil {
		// The kernel holds the name as this file's, from the create.
		fs.invalidate(invalOp{id: pc.dir.id, name: pc.name})
	}
}

// waitCreated waits until the deferred creates of this host of name in
// dir (of any name, when name is "") that are undecided now are decided.
func (fs *FS) waitCreated(dir *inode, name string) {
	var wait []chan struct{}
	dir.mu.Lock()
	if name != "" {
		if pc := dir.creates[name]; pc != nil {
			wait = append(wait, pc.done)
		}
	} else {
		for _, pc := range dir.creates {
			wait = append(wait, pc.done)
		}
	}
	dir.mu.Unlock()
	for _, done := range wait {
		<-done
	}
}

// waitDecided waits until the deferred create of ino, if any, is decided.
func (fs *FS) waitDecided(ino *inode) *pendingCreate {
	ino.mu.Lock()
	pc := ino.create
	ino.mu.Unlock()
	if pc != nil {
		<-pc.done
	}
	return pc
}

// settleCreate completes the deferred create of file ino, if any, for a
// close or fsync: it waits for the decision and reports its error, or,
// when the name turned out to be another file's, applies to that file
// what ino's descriptors did since the last settle, and commits it.
func (fs *FS) settleCreate(ctx context.Context, ino *inode) error {
	pc := fs.waitDecided(ino)
	if pc == nil {
		return nil
	}
	if pc.err != nil {
		return pc.err
	}
	if pc.into == nil {
		return nil
	}
	ino.commitMu.Lock()
	defer ino.commitMu.Unlock()
	ino.mu.Lock()
	changes := pc.changes
	pc.changes = nil
	ino.mu.Unlock()
	if len(changes) == 0 {
		return nil
	}
	if err := fs.applyChanges(ctx, ino, pc.into, changes); err != nil {
		ino.mu.Lock()
		pc.changes = append(changes, pc.changes...) // the next close tries again
		ino.mu.Unlock()
		return fmt.Errorf("create %q: write into the file another host created: %w", pc.name, err)
	}
	return nil
}

// truncateCommitted truncates file dst to nothing and commits it, dropping
// the kernel's caches of it.
func (fs *FS) truncateCommitted(ctx context.Context, dst *inode) error {
	ctx = context.WithoutCancel(ctx)
	dst.ioMu.Lock()
	err := fs.truncate(ctx, dst, 0)
	dst.ioMu.Unlock()
	if err == nil {
		err = fs.commitFile(ctx, dst, nil)
	}
	fs.changedHere(dst)
	return err
}

// applyChanges applies changes, made to file src, to file dst, in order:
// a write copies src's current bytes of its range (what src holds there
// now is what the last change of each byte left), a truncation truncates;
// then it commits dst. A dst deleted meanwhile is left so (as an open
// file whose name another host removed). The caller holds src.commitMu.
func (fs *FS) applyChanges(ctx context.Context, src, dst *inode, changes []fileChange) error {
	ctx = context.WithoutCancel(ctx)
	h, _, err := fs.open(ctx, dst.id, true, true)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	src.ioMu.RLock()
	size := fs.attrOf(src).Size
	var buf []byte
	for _, c := range changes {
		if c.truncate {
			dst.ioMu.Lock()
			err = fs.truncate(ctx, dst, c.off)
			dst.ioMu.Unlock()
		}
		for off := c.off; !c.truncate && off < min(c.end, size) && err == nil; {
			if buf == nil {
				buf = make([]byte, 1<<20)
			}
			var n int
			n, err = fs.readAt(ctx, src, buf[:min(uint64(len(buf)), min(c.end, size)-off)], off, false)
			if err == nil {
				_, err = fs.Write(ctx, h, buf[:n], int64(off))
				off += uint64(n)
			}
		}
		if err != nil {
			break
		}
	}
	src.ioMu.RUnlock()
	if err == nil {
		err = fs.commitFile(ctx, dst, nil)
	}
	fs.changedHere(dst)
	if errors.Is(err, ErrNotExist) {
		err = nil // deleted by another host meanwhile
	}
	return errors.Join(err, fs.Release(ctx, h))
}

// changedHere drops the kernel's caches of file ino, which this host
// changed without the kernel (its attributes, its pages: the next open
// does not keep them).
func (fs *FS) changedHere(ino *inode) {
	ino.mu.Lock()
	ino.changed = true
	ino.mu.Unlock()
	fs.invalidate(invalOp{id: ino.id})
}

// DeferredCreates returns how many creates this engine deferred.
func (fs *FS) DeferredCreates() uint64 { return fs.deferred.Load() }
