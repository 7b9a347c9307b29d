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
// the open is what it would have been, had it come after that create:
// an open of the existing file with O_TRUNC. Each close or fsync of the
// local file then truncates that file and copies the local content into
// it (settleCreate), and the local file, never named, is left to the
// reaper as an orphan. When the name turns out to be a directory or
// anything else that open cannot write, or the change fails, close and
// fsync report that error.
//
// While a deferred create is undecided, an operation of this host that
// reads or changes that name, that lists the directory, that needs the
// directory empty, or that links the file elsewhere waits for the
// decision first (waitCreated, waitDecided): the name is only this host's
// until then.

// pendingCreate is the state of a deferred create. Every field but done
// is written before done is closed and only read after.
type pendingCreate struct {
	dir  *inode
	name string
	done chan struct{}
	// err: the name could not be made this file's or another file's.
	err error
	// into: the file the name named instead, which this file's content
	// is copied into by each close (nil: the name is this file's).
	into *inode
	// copied and copiedGen (guarded by the file's commitMu): the local
	// content at localGen copiedGen has been copied into into.
	copied    bool
	copiedGen uint64
}

// CreateOpen is open(2) with O_CREAT of name in parent, flags being the
// open flags: O_EXCL creates or fails (Create with exclusive), and a
// create with O_TRUNC but not O_APPEND is deferred (see above) when the
// volume allows born puts. Anything else is Create.
func (fs *FS) CreateOpen(ctx context.Context, parent uint64, name string, mode uint32, flags int, caller Caller) (Attr, *Handle, error) {
	exclusive := flags&syscall.O_EXCL != 0
	if exclusive || flags&syscall.O_TRUNC == 0 || flags&syscall.O_APPEND != 0 {
		return fs.Create(ctx, parent, name, mode, exclusive, caller)
	}
	a, h, err := fs.createDeferred(ctx, parent, name, mode, caller)
	if errors.Is(err, errNotDeferred) {
		return fs.Create(ctx, parent, name, mode, false, caller)
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
			into, err = fs.child(ctx, pc.dir, e)
			if errors.Is(err, ErrNotExist) && i < attempts {
				continue
			}
		}
		break
	}
	if err != nil {
		into = nil
		fs.log.Warn("create decided after its open failed; the next close or fsync reports it",
			"dir", fmt.Sprintf("%016x", pc.dir.id), "name", pc.name, "err", err)
	}
	pc.err, pc.into = err, into
	pc.dir.mu.Lock()
	if pc.dir.creates[pc.name] == pc {
		delete(pc.dir.creates, pc.name)
	}
	pc.dir.mu.Unlock()
	ino.mu.Lock()
	if err == nil && into == nil {
		ino.create = nil // named: nothing left to settle
	}
	ino.mu.Unlock()
	close(pc.done)
	if err != nil || into != nil {
		// The kernel holds the name as this file's, from the create.
		fs.invalidate(invalOp{id: pc.dir.id, name: pc.name})
	}
}

// waitCreated waits until no deferred create of this host of name in dir
// (of any name, when name is "") is undecided.
func (fs *FS) waitCreated(dir *inode, name string) {
	for {
		dir.mu.Lock()
		var done chan struct{}
		if name != "" {
			if pc := dir.creates[name]; pc != nil {
				done = pc.done
			}
		} else {
			for _, pc := range dir.creates {
				done = pc.done
				break
			}
		}
		dir.mu.Unlock()
		if done == nil {
			return
		}
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
// when the name turned out to be another file's, copies ino's content
// into that file.
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
	gen := ino.localGen
	ino.mu.Unlock()
	if pc.copied && pc.copiedGen == gen {
		return nil
	}
	if err := fs.copyInto(ctx, ino, pc.into); err != nil {
		return fmt.Errorf("create %q: write into the file another host created: %w", pc.name, err)
	}
	pc.copied, pc.copiedGen = true, gen
	return nil
}

// copyInto truncates file dst and writes src's content into it,
// committing it: what an open with O_TRUNC of dst followed by src's
// writes would have made. A dst deleted meanwhile is left so (as an open
// file whose name another host removed). The caller holds src.commitMu.
func (fs *FS) copyInto(ctx context.Context, src, dst *inode) error {
	ctx = context.WithoutCancel(ctx)
	h, _, err := fs.open(ctx, dst.id, true, true)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dst.ioMu.Lock()
	err = fs.truncate(ctx, dst, 0)
	dst.ioMu.Unlock()
	if err == nil {
		src.ioMu.RLock()
		size := fs.attrOf(src).Size
		buf := make([]byte, min(size, 1<<20))
		for off := uint64(0); off < size && err == nil; {
			var n int
			n, err = fs.readAt(ctx, src, buf[:min(uint64(len(buf)), size-off)], off, false)
			if err == nil {
				_, err = fs.Write(ctx, h, buf[:n], int64(off))
				off += uint64(n)
			}
		}
		src.ioMu.RUnlock()
	}
	if err == nil {
		err = fs.commitFile(ctx, dst, nil)
	}
	if errors.Is(err, ErrNotExist) {
		err = nil // deleted by another host meanwhile
	}
	return errors.Join(err, fs.Release(ctx, h))
}

// DeferredCreates returns how many creates this engine deferred.
func (fs *FS) DeferredCreates() uint64 { return fs.deferred.Load() }
