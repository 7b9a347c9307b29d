package vfs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// checkName maps a name's validation error to the engine's errors.
func checkName(name string) error {
	if err := format.ValidateName(name); err != nil {
		if errors.Is(err, format.ErrNameTooLong) {
			return fmt.Errorf("%w: %v", ErrNameTooLong, err)
		}
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// dirInode loads id and checks it is a directory, revalidating it against
// the store when this host's view is older than Options.Revalidate.
func (fs *FS) dirInode(ctx context.Context, id uint64) (ino *inode, err error) {
	ino, err = fs.inode(ctx, id)
	if err != nil {
		return ino, err // ino is returned for a removed directory (see removedAttr)
	}
	ino.mu.Lock()
	kind := ino.cur.Kind
	stale := time.Since(ino.checked) > fs.opts.Revalidate
	ino.mu.Unlock()
	if kind != format.KindDir {
		return nil, fmt.Errorf("inode %016x: %w", id, ErrNotDir)
	}
	defer func() {
		if err == nil {
			var gone bool
			if gone, err = fs.deletedByDecision(ctx, ino); err == nil && gone {
				ino, err = nil, fmt.Errorf("directory %016x: %w (replaced by a rename)", id, ErrNotExist)
			}
		}
	}()
	if stale {
		ino.commitMu.Lock()
		err := fs.refresh(ctx, ino)
		ino.commitMu.Unlock()
		if err != nil {
			return nil, err
		}
		ino.mu.Lock()
		defer ino.mu.Unlock()
		if ino.cur.Kind == format.KindTombstone {
			return nil, fmt.Errorf("directory %016x: %w (removed)", id, ErrNotExist)
		}
	}
	return ino, nil
}

// missRevalidate is how old this host's view of a directory may be for a
// lookup that does not find a name in it: older, the directory is read
// again first. Applications poll for a file another host is about to
// create (a job's output, a lock file); with Options.Revalidate alone
// they would wait up to a second after the name is in the store. At most
// one LIST per directory per missRevalidate, however many lookups miss.
const missRevalidate = 50 * time.Millisecond

// revalidateMiss reads directory dir again, after a lookup in it missed,
// unless this host's view of it is younger than missRevalidate (or
// Options.Revalidate, if shorter), and reports whether it did. A failure
// to read is left for the next lookup: the miss stands.
func (fs *FS) revalidateMiss(ctx context.Context, dir *inode) bool {
	if !fs.opts.AsOf.IsZero() {
		return false // a point-in-time view never changes
	}
	limit := min(missRevalidate, fs.opts.Revalidate)
	dir.mu.Lock()
	fresh := time.Since(dir.checked) <= limit
	dir.mu.Unlock()
	if fresh {
		return false
	}
	dir.commitMu.Lock()
	defer dir.commitMu.Unlock()
	dir.mu.Lock()
	fresh = time.Since(dir.checked) <= limit // another lookup's revalidation
	dir.mu.Unlock()
	if fresh {
		return true
	}
	return fs.refresh(ctx, dir) == nil
}

// freshen brings directory dir up to its newest version in the store,
// whatever the age of this host's view.
func (fs *FS) freshen(ctx context.Context, dir *inode) error {
	dir.commitMu.Lock()
	err := fs.refresh(ctx, dir)
	dir.commitMu.Unlock()
	if err != nil {
		return err
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if dir.cur.Kind == format.KindTombstone {
		return fmt.Errorf("directory %016x: %w (removed)", dir.id, ErrNotExist)
	}
	return nil
}

// Lookup finds name in directory parent.
func (fs *FS) Lookup(ctx context.Context, parent uint64, name string) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	dir, err := fs.dirInode(ctx, parent)
	if err != nil {
		return Attr{}, err
	}
	e, ok, err := fs.lookupEntry(ctx, dir, name)
	if err == nil && !ok && fs.revalidateMiss(ctx, dir) {
		e, ok, err = fs.lookupEntry(ctx, dir, name)
	}
	if err != nil {
		return Attr{}, err
	}
	if !ok {
		return Attr{}, ErrNotExist
	}
	child, err := fs.child(ctx, dir, e)
	if errors.Is(err, ErrNotExist) {
		// An entry left behind by an interrupted rmdir or rename: hide it
		// and remove it in the background.
		fs.log.Warn("directory entry refers to a deleted inode; removing it", "dir", fmt.Sprintf("%016x", parent), "name", name)
		if fs.opts.ReadOnly {
			return Attr{}, ErrNotExist
		}
		fs.removeDangling(dir, name, e.Child)
		return Attr{}, ErrNotExist
	}
	if err != nil {
		return Attr{}, err
	}
	return fs.attrOf(child), nil
}

// GetAttr returns the attributes of inode id.
func (fs *FS) GetAttr(ctx context.Context, id uint64) (Attr, error) {
	ino, err := fs.inode(ctx, id)
	if err != nil {
		if a, ok := removedAttr(ino); ok {
			return a, nil
		}
		return Attr{}, err
	}
	return fs.attrOf(ino), nil
}

// removedAttr returns the attributes of an inode this host saw removed
// (its last live version, with no links), for descriptors still open on
// it, as a local filesystem reports them.
func removedAttr(ino *inode) (Attr, bool) {
	if ino == nil {
		return Attr{}, false
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.cur == nil || ino.cur.Kind != format.KindTombstone || ino.last == nil {
		return Attr{}, false
	}
	c := ino.last
	return Attr{
		Ino: ino.id, Mode: typeBits(c.Kind, c.Mode) | c.Mode&0o7777, Size: c.Size,
		UID: c.UID, GID: c.GID, Rdev: c.Rdev, Atime: c.Atime, Mtime: c.Mtime, Ctime: ino.cur.Ctime, Version: ino.cur.Version,
	}, true
}

func (fs *FS) attrOf(ino *inode) Attr {
	ino.mu.Lock()
	defer ino.mu.Unlock()
	return fs.attrLocked(ino)
}

func (fs *FS) attrLocked(ino *inode) Attr {
	c := ino.cur
	a := Attr{
		Ino: ino.id, Mode: typeBits(c.Kind, c.Mode) | c.Mode&0o7777, Nlink: c.Nlink, Size: c.Size,
		UID: c.UID, GID: c.GID, Rdev: c.Rdev, Atime: c.Atime, Mtime: c.Mtime, Ctime: c.Ctime, Version: c.Version,
	}
	switch c.Kind {
	case format.KindDir:
		a.Nlink = uint32(2 + ino.subdirs)
		a.Size = 4096
	case format.KindFile:
		a.Size = ino.file.size
		if ino.file.mtime != 0 {
			a.Mtime, a.Ctime = ino.file.mtime, ino.file.mtime
		}
	}
	if c := ino.file.attrs; c != nil {
		c.applyAttr(&a)
	}
	if ino.unlinked {
		a.Nlink = 0
	}
	a.Held = ino.stale && ino.open > 0
	return a
}

// newChild creates version 1 of a new inode (rule W3: before any directory
// names it) and registers it on this host.
func (fs *FS) newChild(ctx context.Context, dir *inode, n *format.Inode, caller Caller) (*inode, error) {
	n.ID = randomID()
	n.Version = 1
	n.Writer = fs.opts.HostID
	n.UID, n.GID = caller.UID, caller.GID
	t := now()
	n.Atime, n.Mtime, n.Ctime = t, t, t
	dir.mu.Lock()
	if dir.cur.Mode&syscall.S_ISGID != 0 { // BSD group semantics of setgid directories
		n.GID = dir.cur.GID
		if n.Kind == format.KindDir {
			n.Mode |= syscall.S_ISGID
		}
	}
	dir.mu.Unlock()
	for {
		if taken, err := fs.takenBelow(ctx, n.ID); err != nil {
			return nil, fmt.Errorf("create inode: %w", err)
		} else if taken {
			n.ID = randomID()
			continue
		}
		if b := fs.birthOf(n); b != nil {
			// A born put: version 1 is written with the entry (link).
			ino := fs.install(n, time.Time{})
			ino.mu.Lock()
			ino.birth, ino.bornOnly = b, true
			ino.stored.Store(false)
			ino.mu.Unlock()
			return ino, nil
		}
		obj, err := format.EncodeInode(n)
		if err != nil {
			return nil, err
		}
		key := fs.keys.Inode(n.ID, 1)
		info, err := fs.createVersion(context.WithoutCancel(ctx), key, obj)
		if errors.Is(err, objstore.ErrExists) {
			n.ID = randomID() // a 64-bit id collision (W8): draw another
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create inode: %w", err)
		}
		return fs.install(n, info.LastModified), nil
	}
}

// birthOf returns the birth a born put of the new inode n carries, or nil
// when n needs a version 1 object of its own: anything but an empty
// regular file, or every new inode with Options.Version1Objects or while
// a live host cannot read born puts (FORMAT.md §5.4, §12.1).
func (fs *FS) birthOf(n *format.Inode) *format.Birth {
	if !fs.bornPuts() || n.Kind != format.KindFile || !n.Inline || n.Size != 0 || len(n.Xattrs) > 0 ||
		n.Nlink != 1 || n.Atime != n.Mtime || n.Mtime != n.Ctime {
		return nil
	}
	return &format.Birth{Mode: n.Mode, UID: n.UID, GID: n.GID, Time: n.Mtime}
}

// takenBelow reports whether id has a version at any level of a clone's
// chain below the clone itself: a new inode must not take such an id
// (FORMAT.md §16.4), or it would hide that inode where a source's
// directory names it. One LIST per level; nothing for other volumes.
func (fs *FS) takenBelow(ctx context.Context, id uint64) (bool, error) {
	for k := 1; k < len(fs.levels); k++ {
		lv := &fs.levels[k]
		page, err := lv.store.List(ctx, lv.keys.InodeDir(id), "", 1)
		if err != nil {
			return false, fmt.Errorf("look up inode id %016x in source level %d: %w", id, k, err)
		}
		if len(page.Objects) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// link adds name -> child to dir, failing with ErrExist when name exists.
// A new file without a version object of its own is added with its birth
// (a born put), whose store time becomes its version 1's.
func (fs *FS) link(ctx context.Context, dir *inode, name string, child *inode, kind format.InodeKind) error {
	child.mu.Lock()
	var birth *format.Birth
	if child.bornOnly {
		birth = child.birth
	}
	child.mu.Unlock()
	ch := &dirChange{ops: []dirOp{{name: name, child: child.id, kind: kind, noReplace: true, born: birth}}}
	if err := fs.applyDir(ctx, dir, ch); err != nil {
		return err
	}
	if birth != nil {
		child.mu.Lock()
		child.birthAt = ch.at
		if child.bornOnly {
			child.curTime = ch.at // what a handle on it holds (inode.birthAt)
		}
		child.mu.Unlock()
	}
	return nil
}

// Mkdir creates directory name in parent.
func (fs *FS) Mkdir(ctx context.Context, parent uint64, name string, mode uint32, caller Caller) (Attr, error) {
	return fs.mknode(ctx, parent, name, &format.Inode{Kind: format.KindDir, Mode: mode & 0o7777, Base: 1}, caller)
}

// Symlink creates symbolic link name in parent pointing at target.
func (fs *FS) Symlink(ctx context.Context, parent uint64, name, target string, caller Caller) (Attr, error) {
	if target == "" { // symlink(2) answers ENOENT for an empty target
		return Attr{}, fmt.Errorf("empty symlink target: %w", ErrNotExist)
	}
	if len(target) > format.MaxSymlinkLen {
		return Attr{}, fmt.Errorf("symlink target of %d bytes: %w", len(target), ErrNameTooLong)
	}
	return fs.mknode(ctx, parent, name, &format.Inode{Kind: format.KindSymlink, Mode: 0o777, Nlink: 1, Target: target, Size: uint64(len(target))}, caller)
}

// Mknod creates a regular file, FIFO, socket or device node.
func (fs *FS) Mknod(ctx context.Context, parent uint64, name string, mode, rdev uint32, caller Caller) (Attr, error) {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG, 0:
		return fs.mknode(ctx, parent, name, &format.Inode{Kind: format.KindFile, Mode: mode & 0o7777, Nlink: 1, Inline: true}, caller)
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
		return fs.mknode(ctx, parent, name, &format.Inode{Kind: format.KindSpecial, Mode: mode & (syscall.S_IFMT | 0o7777), Nlink: 1, Rdev: rdev}, caller)
	}
	return Attr{}, ErrInvalid
}

// dirForNewName returns directory parent for adding name, which must be a
// valid name this host does not already see there (ErrExist). The commit
// that adds it decides for good (noReplace).
func (fs *FS) dirForNewName(ctx context.Context, parent uint64, name string) (*inode, error) {
	if err := fs.writable(); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir, err := fs.dirInode(ctx, parent)
	if err != nil {
		return nil, err
	}
	if _, ok, err := fs.lookupEntry(ctx, dir, name); err != nil {
		return nil, err
	} else if ok {
		return nil, ErrExist
	}
	return dir, nil
}

func (fs *FS) mknode(ctx context.Context, parent uint64, name string, n *format.Inode, caller Caller) (Attr, error) {
	dir, err := fs.dirForNewName(ctx, parent, name)
	if err != nil {
		return Attr{}, err
	}
	child, err := fs.newChild(ctx, dir, n, caller)
	if err != nil {
		return Attr{}, err
	}
	if err := fs.link(ctx, dir, name, child, n.Kind); err != nil {
		fs.Forget(child.id) // an unreferenced version 1 object is left for the reaper
		return Attr{}, err
	}
	return fs.attrOf(child), nil
}

// Create creates and opens regular file name in parent. Without exclusive,
// an existing file of that name is opened instead; when another host
// removes that file between the two steps, the create is tried again, so
// open(O_CREAT) never fails with ENOENT because of a race it can win.
func (fs *FS) Create(ctx context.Context, parent uint64, name string, mode uint32, exclusive bool, caller Caller) (Attr, *Handle, error) {
	return fs.create(ctx, parent, name, mode, exclusive, false, caller)
}

// create is Create; with trunc (O_TRUNC), an existing file it opens is
// truncated, as the kernel, told the file was created, does not.
func (fs *FS) create(ctx context.Context, parent uint64, name string, mode uint32, exclusive, trunc bool, caller Caller) (Attr, *Handle, error) {
	const attempts = 8
	for i := 1; ; i++ {
		a, h, err := fs.createOnce(ctx, parent, name, mode, exclusive, trunc, caller)
		if exclusive || !errors.Is(err, errCreateRace) || i == attempts {
			if errors.Is(err, errCreateRace) {
				err = ErrNotExist
			}
			return a, h, err
		}
		// The name this host saw was removed: read the directory again, or
		// a view older than that removal finds the same name every time.
		if dir, derr := fs.dirInode(ctx, parent); derr == nil {
			if derr := fs.freshen(ctx, dir); derr != nil {
				return Attr{}, nil, derr
			}
		}
	}
}

// errCreateRace: the file an open(O_CREAT) found was removed before it
// could be opened.
var errCreateRace = fmt.Errorf("file removed while being opened: %w", ErrNotExist)

func (fs *FS) createOnce(ctx context.Context, parent uint64, name string, mode uint32, exclusive, trunc bool, caller Caller) (Attr, *Handle, error) {
	a, err := fs.mknode(ctx, parent, name, &format.Inode{Kind: format.KindFile, Mode: mode & 0o7777, Nlink: 1, Inline: true}, caller)
	created := err == nil
	if errors.Is(err, ErrExist) && !exclusive {
		if a, err = fs.Lookup(ctx, parent, name); errors.Is(err, ErrNotExist) {
			return Attr{}, nil, errCreateRace
		}
		if err == nil && a.IsDir() {
			return Attr{}, nil, ErrIsDir
		}
	}
	if err != nil {
		return Attr{}, nil, err
	}
	// The name is committed: an interrupt (the kernel cancels ctx when the
	// caller gets a signal) must not turn that into a failure, or the
	// caller's retried O_EXCL open would find its own file and fail.
	h, _, err := fs.open(context.WithoutCancel(ctx), a.Ino, true, !created)
	if errors.Is(err, ErrNotExist) && !created {
		return Attr{}, nil, errCreateRace
	}
	if err != nil {
		return Attr{}, nil, err
	}
	if !created {
		// What the open found (it revalidated the file), not the view the
		// lookup answered from: the kernel caches these attributes.
		a = fs.attrOf(h.ino)
	}
	if trunc && !created && a.Size > 0 {
		zero := uint64(0)
		if a, err = fs.SetAttr(context.WithoutCancel(ctx), a.Ino, SetAttr{Size: &zero}); err != nil {
			fs.Release(ctx, h)
			return Attr{}, nil, err
		}
	}
	return a, h, nil
}

// Readlink returns a symlink's target.
func (fs *FS) Readlink(ctx context.Context, id uint64) (string, error) {
	ino, err := fs.inode(ctx, id)
	if err != nil {
		return "", err
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.cur.Kind != format.KindSymlink {
		return "", ErrInvalid
	}
	return ino.cur.Target, nil
}

// Link adds a hard link name in parent to inode id: the inode's link count
// is raised first (rule W3), then the name is added.
func (fs *FS) Link(ctx context.Context, id, parent uint64, name string) (Attr, error) {
	dir, err := fs.dirForNewName(ctx, parent, name)
	if err != nil {
		return Attr{}, err
	}
	ino, err := fs.inode(ctx, id)
	if err != nil {
		return Attr{}, err
	}
	if pc := fs.waitDecided(ino); pc != nil && pc.err != nil {
		return Attr{}, pc.err
	} else if pc != nil && pc.into != nil {
		ino = pc.into // the file the deferred create opened instead
	}
	var kind format.InodeKind
	err = fs.commitFile(ctx, ino, func(n *format.Inode) error {
		if n.Kind == format.KindDir {
			return ErrNotSupp
		}
		if n.Nlink == 0 || ino.unlinked {
			return ErrNotExist
		}
		kind = n.Kind
		n.Nlink++
		n.Ctime = now()
		return nil
	})
	if err != nil {
		return Attr{}, err
	}
	if err := fs.link(ctx, dir, name, ino, kind); err != nil {
		if derr := fs.dropLink(context.WithoutCancel(ctx), ino); derr != nil {
			fs.log.Error("could not undo link count after a failed link", "inode", fmt.Sprintf("%016x", id), "err", derr)
		}
		return Attr{}, err
	}
	return fs.attrOf(ino), nil
}

// dropLink lowers a non-directory's link count after one of its names was
// removed (rule W4), writing its tombstone when no name and no local open
// handle remains. An open inode is tombstoned at its last release.
func (fs *FS) dropLink(ctx context.Context, ino *inode) error {
	err := fs.commitFile(ctx, ino, func(n *format.Inode) error {
		if n.Nlink > 0 {
			n.Nlink--
		}
		n.Ctime = now()
		if n.Nlink == 0 {
			if ino.open > 0 {
				ino.unlinked = true
				return nil
			}
			*n = *tombstoneOf(n)
		}
		return nil
	})
	if errors.Is(err, ErrNotExist) {
		return nil // already deleted
	}
	return err
}

// Unlink removes name (not a directory) from parent.
func (fs *FS) Unlink(ctx context.Context, parent uint64, name string) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	dir, err := fs.dirInode(ctx, parent)
	if err != nil {
		return err
	}
	fs.waitCreated(dir, name)
	ch := &dirChange{ops: []dirOp{{name: name, remove: true, wantDir: -1}}}
	if err := fs.applyDir(ctx, dir, ch); err != nil {
		return err
	}
	return fs.dropReplaced(context.WithoutCancel(ctx), dir, ch.replaced) // the name is gone: finish even if interrupted
}

// removeDangling removes, in the background, entry name of dir, which
// names child, a deleted inode (an interrupted rmdir or rename left it).
// Close waits for it; none starts once Close has begun.
func (fs *FS) removeDangling(dir *inode, name string, child uint64) {
	fs.mu.Lock()
	if fs.closing {
		fs.mu.Unlock()
		return // the next host to meet it removes it
	}
	fs.cleanups.Add(1)
	fs.mu.Unlock()
	fs.background.run(func() {
		defer fs.cleanups.Done()
		if err := fs.applyDir(context.Background(), dir, &dirChange{ops: []dirOp{{name: name, remove: true, child: child}}}); err != nil {
			fs.log.Debug("could not remove an entry naming a deleted inode", "dir", fmt.Sprintf("%016x", dir.id), "name", name, "err", err)
		}
	})
}

// dropReplaced drops the link of every non-directory a change of
// directory dir removed.
func (fs *FS) dropReplaced(ctx context.Context, dir *inode, removed []format.Entry) error {
	var errs []error
	for _, e := range removed {
		if e.ChildKind == format.KindDir {
			continue
		}
		err := fs.persist(ctx, func(ctx context.Context) error {
			child, err := fs.child(ctx, dir, e)
			if errors.Is(err, ErrNotExist) {
				return nil // deleted meanwhile
			}
			if err != nil {
				return err
			}
			return fs.dropLink(ctx, child)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("drop link of %016x: %w", e.Child, err))
		}
	}
	return errors.Join(errs...)
}

// Rmdir removes the empty directory name from parent: the directory is
// tombstoned first, conditionally on being empty (rule W5), then its entry
// is removed.
//
// The parent is read from the store first (unless getting it just did).
// The tombstone is of the directory, not of the name, and a rename does
// not change the directory it moves (W6): judged on a view up to one sync
// interval old, an rmdir of a name another host has since renamed away
// would remove the directory under its new name. (A rename racing the
// rmdir, between this read and the tombstone, still can:
// docs/guarantees.md.)
func (fs *FS) Rmdir(ctx context.Context, parent uint64, name string) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	start := time.Now()
	dir, err := fs.dirInode(ctx, parent)
	if err != nil {
		return err
	}
	dir.mu.Lock()
	read := dir.checked.After(start) // (dirInode revalidated a stale view)
	dir.mu.Unlock()
	if !read {
		if err := fs.freshen(ctx, dir); err != nil {
			return err
		}
	}
	e, ok, err := fs.lookupEntry(ctx, dir, name)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotExist
	}
	if e.ChildKind != format.KindDir {
		return ErrNotDir
	}
	if _, err := fs.child(ctx, dir, e); errors.Is(err, ErrNotExist) {
		// Another host removed it: only its entry may remain (it hides it
		// and removes it); this rmdir did not remove anything.
		fs.removeDangling(dir, name, e.Child)
		return ErrNotExist
	}
	if err := fs.removeEmptyDir(ctx, e.Child); err != nil {
		return err // ErrNotExist when another host's tombstone won the race
	}
	err = fs.applyDir(ctx, dir, &dirChange{ops: []dirOp{{name: name, remove: true, child: e.Child, wantDir: 1}}})
	if errors.Is(err, ErrNotExist) {
		return nil // someone else removed the entry meanwhile; the directory is gone either way
	}
	return err
}

// removeEmptyDir tombstones directory id if it is empty.
func (fs *FS) removeEmptyDir(ctx context.Context, id uint64) error {
	child, err := fs.inode(ctx, id)
	if errors.Is(err, ErrNotExist) {
		return nil // already tombstoned: only the stale entry remains
	}
	if err != nil {
		return err
	}
	return fs.applyDir(ctx, child, &dirChange{tombstone: true})
}

// Rename flags (renameat2).
const (
	RenameNoReplace = 1 << 0
	RenameExchange  = 1 << 1
)

// Rename moves oldName in oldParent to newName in newParent, atomically
// for every host (rule W6): within one directory as one version, across
// directories or onto a directory as a transaction (FORMAT.md §5.5). With
// RenameExchange it swaps the two names' inodes, the same way (one version
// within a directory, a transaction across two).
func (fs *FS) Rename(ctx context.Context, oldParent uint64, oldName string, newParent uint64, newName string, flags uint32) error {
	if err := fs.writable(); err != nil {
		return err
	}
	if err := checkName(oldName); err != nil {
		return err
	}
	if err := checkName(newName); err != nil {
		return err
	}
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return ErrInvalid
	}
	src, err := fs.dirInode(ctx, oldParent)
	if err != nil {
		return err
	}
	dst := src
	if newParent != oldParent {
		if dst, err = fs.dirInode(ctx, newParent); err != nil {
			return err
		}
	}
	se, ok, err := fs.lookupEntry(ctx, src, oldName)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotExist
	}
	if oldParent == newParent && oldName == newName {
		return nil
	}
	te, targetExists, err := fs.lookupEntry(ctx, dst, newName)
	if err != nil {
		return err
	}
	if src != dst || (targetExists && flags&RenameExchange == 0 && (te.ChildKind == format.KindDir || te.Child == se.Child)) {
		// This rename is a transaction (a cross-directory move, or one
		// replacing a directory), whose failure costs an abort; or it
		// would do nothing, finding both names on one inode. Check both
		// directories against the store first, so that a view up to one
		// sync interval old does not start a move of a name another host
		// already moved away, aim at a directory that is no longer the
		// target, or skip a rename because of a name since moved.
		if err := fs.freshen(ctx, src); err != nil {
			return err
		}
		if dst != src {
			if err := fs.freshen(ctx, dst); err != nil {
				return err
			}
		}
		if se, ok, err = fs.lookupEntry(ctx, src, oldName); err != nil {
			return err
		} else if !ok {
			return ErrNotExist
		}
		if te, targetExists, err = fs.lookupEntry(ctx, dst, newName); err != nil {
			return err
		}
	}
	if flags&RenameExchange != 0 {
		if !targetExists {
			return ErrNotExist
		}
		if te.Child == se.Child {
			return nil // two names of one inode: nothing to swap
		}
		if src != dst {
			// A transaction (FORMAT.md §5.5 X2x), whose pending puts
			// cannot carry a birth: files still without a version of
			// their own get one first.
			for _, x := range []struct {
				dir *inode
				e   format.Entry
			}{{src, se}, {dst, te}} {
				if err := fs.materialize(ctx, x.dir, x.e); err != nil {
					return err
				}
			}
			se.Born, te.Born = nil, nil
			return fs.renameTx(ctx, src, dst, se, oldName, newName, false, 0, &te)
		}
		if !fs.bornPuts() {
			// No born put may be written (FORMAT.md §12.1): the files
			// get versions of their own instead of carrying births.
			for _, e := range []format.Entry{se, te} {
				if err := fs.materialize(ctx, src, e); err != nil {
					return err
				}
			}
			se.Born, te.Born = nil, nil
		}
		return fs.applyDir(ctx, src, &dirChange{ops: []dirOp{
			{name: oldName, child: te.Child, kind: te.ChildKind, replaceDir: se.Child, exchange: true, born: te.Born},
			{name: newName, child: se.Child, kind: se.ChildKind, replaceDir: te.Child, exchange: true, born: se.Born},
		}})
	}
	noReplace := flags&RenameNoReplace != 0
	if targetExists && !noReplace && te.Child == se.Child {
		// Both names refer to one inode (hard links): POSIX rename does
		// nothing. (Going on would remove oldName without dropping the
		// inode's link count.)
		return nil
	}
	var replaceDir uint64 // the empty target directory, deleted by the rename's decision
	if targetExists && !noReplace && te.Child != se.Child {
		switch {
		case te.ChildKind == format.KindDir && se.ChildKind != format.KindDir:
			return ErrIsDir
		case te.ChildKind != format.KindDir && se.ChildKind == format.KindDir:
			return ErrNotDir
		case te.ChildKind == format.KindDir:
			replaceDir = te.Child
		}
	}
	if src == dst && replaceDir == 0 {
		if !fs.bornPuts() {
			// No born put may be written (FORMAT.md §12.1).
			if err := fs.materialize(ctx, src, se); err != nil {
				return err
			}
			se.Born = nil
		}
		// A born put's birth moves with the name (FORMAT.md §5.4).
		put := dirOp{name: newName, child: se.Child, kind: se.ChildKind, noReplace: noReplace, notSame: true, born: se.Born}
		remove := dirOp{name: oldName, remove: true, child: se.Child}
		ch := &dirChange{ops: []dirOp{remove, put}}
		if err := fs.applyDir(ctx, src, ch); err != nil {
			if errors.Is(err, errSameInode) {
				// Both names refer to one inode by now (hard links):
				// POSIX rename does nothing. (Going on would remove
				// oldName without dropping the inode's link count.)
				return nil
			}
			return err
		}
		return fs.dropReplaced(context.WithoutCancel(ctx), src, ch.replaced[1:]) // the first is the source's own entry
	}
	// More than one version: a transaction (FORMAT.md §5.5). Its pending
	// put cannot carry a birth, so a file still without a version of its
	// own gets one first.
	if err := fs.materialize(ctx, src, se); err != nil {
		return err
	}
	se.Born = nil
	return fs.renameTx(ctx, src, dst, se, oldName, newName, noReplace, replaceDir, nil)
}

// materialize gives the file a born put names (FORMAT.md §5.4) a version
// object of its own unless it has one: version 2, its birth unchanged (a
// host that wrote a version first has done it already). An entry naming
// the file without its birth may be written after this returns.
func (fs *FS) materialize(ctx context.Context, dir *inode, e format.Entry) error {
	if e.Born == nil {
		return nil
	}
	child, err := fs.child(ctx, dir, e)
	if err != nil {
		return err
	}
	err = fs.commitFile(ctx, child, func(n *format.Inode) error {
		if !child.bornOnly {
			return errHasVersion
		}
		return nil
	})
	if errors.Is(err, errHasVersion) {
		return nil
	}
	return err
}

// errHasVersion: materialize found a version of the file's own.
var errHasVersion = errors.New("the file has a version of its own")

// persist runs step, a cleanup an operation must finish once it has
// begun changing the volume (dropping a replaced file's link, folding a
// rename's pending entries), again while it fails for reasons that may
// pass (the store unreachable, a lost race whose re-read failed), within
// a few seconds. Decided outcomes (the name or inode is gone, this host is
// fenced) end it at once.
func (fs *FS) persist(ctx context.Context, step func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for i := 0; i < 6; i++ {
		if i > 0 {
			time.Sleep(time.Duration(25<<i) * time.Millisecond)
		}
		err = step(ctx)
		if err == nil || decided(err) || errors.Is(err, ErrFenced) {
			return err
		}
	}
	return err
}

// decided reports whether err is a definite outcome of a namespace change
// (it was refused and took no effect), as opposed to one that leaves open
// whether it took effect (the store unreachable).
func decided(err error) bool {
	return errors.Is(err, ErrNotExist) || errors.Is(err, ErrExist) || errors.Is(err, ErrNotEmpty) ||
		errors.Is(err, ErrIsDir) || errors.Is(err, ErrNotDir) || errors.Is(err, ErrReadOnly)
}

// ReadDir lists directory id, sorted by name.
func (fs *FS) ReadDir(ctx context.Context, id uint64) ([]DirEntry, error) {
	dir, err := fs.dirInode(ctx, id)
	if err != nil {
		if a, ok := removedAttr(dir); ok && a.IsDir() {
			return nil, nil // a removed directory still open here lists empty
		}
		return nil, err
	}
	fs.waitCreated(dir, "")
	es, err := fs.effectiveEntries(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(es))
	for _, e := range es {
		out = append(out, DirEntry{Name: e.Name, Ino: e.Child, Mode: typeBits(e.ChildKind, 0)})
	}
	// Leave out entries this host knows to name a deleted inode (left by
	// an interrupted rmdir or rename, W5/W6): a lookup would not find them.
	live := out[:0]
	for _, e := range out {
		if !fs.knownDeleted(e.Ino) {
			live = append(live, e)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Name < live[j].Name })
	fs.prefetchChildren(dir, live)
	return live, nil
}

// Prefetch bounds: children loaded at once, and per listing.
const (
	prefetchParallel = 16
	prefetchMax      = 10000
)

// prefetchChildren loads, in the background and in parallel, the inodes a
// listing names that this host has not loaded: a listing is usually
// followed by a lookup of every name (ls -l), which would otherwise load
// them one after another, two requests each.
func (fs *FS) prefetchChildren(dir *inode, entries []DirEntry) {
	var ids []uint64
	fs.mu.Lock()
	for _, e := range entries {
		if len(ids) == prefetchMax {
			break
		}
		if fs.inodes[e.Ino] == nil {
			ids = append(ids, e.Ino)
		}
	}
	fs.mu.Unlock()
	if len(ids) == 0 || !dir.prefetching.CompareAndSwap(false, true) {
		return
	}
	births := map[uint64]*format.Birth{} // of born puts' files (FORMAT.md §5.4)
	dir.mu.Lock()
	birthAt := dir.curTime
	for _, e := range dir.entries {
		if e.Born != nil {
			births[e.Child] = e.Born
		}
	}
	dir.mu.Unlock()
	go func() {
		defer dir.prefetching.Store(false)
		ctx := fs.Bound(context.Background())
		// Each id is sent once; the buffer holds them all, so that the
		// listers never wait for the loaders.
		load := make(chan uint64, len(ids))
		var wg sync.WaitGroup
		for range min(prefetchParallel, len(ids)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range load {
					fs.inodeBorn(ctx, id, births[id], birthAt) // errors surface at the lookup that needs it
				}
			}()
		}
		if len(ids) >= hintMin && fs.opts.AsOf.IsZero() {
			fs.hintNewest(ctx, ids, load)
		} else {
			for _, id := range ids {
				load <- id
			}
		}
		close(load)
		wg.Wait()
	}()
}

// Listing many inodes at once: from hintMin inodes to load on, and while
// a page of hintPage keys names at least hintUseful of them, in up to
// hintRanges ranges of the key space at once.
const (
	hintMin    = 32
	hintPage   = 1000
	hintUseful = 4
	hintRanges = 8
	// A hint older than this is not used. It must outlast the loading of
	// a big listing's children (10,000 at prefetchParallel at a time);
	// what other hosts change meanwhile they announce (see firstPage).
	hintLife = time.Minute
)

// hintNewest finds the newest version keys of the inodes ids (not yet
// loaded) with a few LISTs of the whole inode key space instead of one
// LIST per inode: inode ids are random, so where the listed directory
// holds a good part of the volume's inodes, one page of keys walks past
// many of them. Each inode found gets the key as its hint (firstPage);
// the others, and all of them once pages stop paying, are listed one by
// one as before. The ids, split into ranges of the key space listed at
// the same time, are sent to load as soon as the listing of their range
// has passed them (loaded with their hint, or without one), so that
// loading starts with the first page, not after the last.
func (fs *FS) hintNewest(ctx context.Context, ids []uint64, load chan<- uint64) {
	want := slices.Clone(ids)
	slices.Sort(want)
	n := min(hintRanges, (len(want)+hintMin-1)/hintMin)
	var wg sync.WaitGroup
	for r := range n {
		part := want[r*len(want)/n : (r+1)*len(want)/n]
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs.hintRange(ctx, part, load)
		}()
	}
	wg.Wait()
}

// hintRange lists the inode key space from the first of want (sorted) on
// until it has passed all of them or a page stops paying, and sends each
// of want to load once passed (the rest at the end).
func (fs *FS) hintRange(ctx context.Context, want []uint64, load chan<- uint64) {
	prefix := fs.keys.InodesPrefix()
	i := 0
	defer func() {
		for ; i < len(want); i++ {
			load <- want[i] // listed one by one
		}
	}()
	for i < len(want) {
		// Start right before the next wanted inode's keys.
		start := strings.TrimSuffix(fs.keys.InodeDir(want[i]), "/")
		page, err := fs.store.List(ctx, prefix, start, hintPage)
		if err != nil || len(page.Objects) == 0 {
			return
		}
		found := 0
		listedAt := time.Now()
		var last uint64
		for _, obj := range page.Objects {
			id, _, err := fs.keys.ParseInode(obj.Key)
			if err != nil || id == last {
				continue // a foreign key, or an older version of the same inode
			}
			last = id
			for i < len(want) && want[i] < id {
				load <- want[i] // no version in the own volume: listed one by one
				i++
			}
			if i < len(want) && want[i] == id {
				fs.setHint(id, obj, listedAt)
				load <- id
				found++
				i++
			}
		}
		if !page.Truncated || found < hintUseful {
			return
		}
		// The last inode of the page may go on in the next: its newest
		// key was the first seen, so it is done either way.
	}
}

// setHint records the newest version key of inode id, unless it is loaded.
func (fs *FS) setHint(id uint64, obj objstore.ObjectInfo, at time.Time) {
	fs.mu.Lock()
	ino := fs.inodes[id]
	if ino == nil {
		ino = newInode(id)
		fs.inodes[id] = ino
	}
	fs.mu.Unlock()
	ino.mu.Lock()
	if ino.cur == nil {
		ino.hint, ino.hintedAt = &obj, at
	}
	ino.mu.Unlock()
}

// knownDeleted reports whether this host holds inode id as tombstoned.
func (fs *FS) knownDeleted(id uint64) bool {
	fs.mu.Lock()
	ino := fs.inodes[id]
	fs.mu.Unlock()
	if ino == nil {
		return false
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	return ino.cur != nil && ino.cur.Kind == format.KindTombstone
}

// SetAttr changes attributes; a size change truncates or extends the file.
func (fs *FS) SetAttr(ctx context.Context, id uint64, s SetAttr) (Attr, error) {
	if err := fs.writable(); err != nil {
		return Attr{}, err
	}
	ino, err := fs.inode(ctx, id)
	if err != nil {
		return Attr{}, err
	}
	ino.mu.Lock()
	kind := ino.cur.Kind
	ino.mu.Unlock()
	if s.Size != nil {
		if kind == format.KindDir {
			return Attr{}, ErrIsDir
		}
		if kind != format.KindFile {
			return Attr{}, ErrInvalid
		}
		if *s.Size > 1<<50 {
			return Attr{}, ErrTooBig
		}
		ino.ioMu.Lock()
		err := fs.truncate(ctx, ino, *s.Size)
		ino.ioMu.Unlock()
		if err != nil {
			return Attr{}, err
		}
	}
	mutate := func(n *format.Inode) error {
		if s.Mode != nil {
			n.Mode = n.Mode&^0o7777 | *s.Mode&0o7777
		}
		if s.UID != nil {
			n.UID = *s.UID
		}
		if s.GID != nil {
			n.GID = *s.GID
		}
		if s.Atime != nil {
			n.Atime = *s.Atime
		}
		if s.Mtime != nil {
			n.Mtime = *s.Mtime
		}
		n.Ctime = now()
		return nil
	}
	if kind == format.KindDir {
		dir, err := fs.dirInode(ctx, id)
		if err != nil {
			return Attr{}, err
		}
		err = fs.applyDir(ctx, dir, &dirChange{mutate: mutate})
		if err != nil {
			return Attr{}, err
		}
		return fs.attrOf(dir), nil
	}
	if s.Size == nil {
		// Owner, mode and times of a non-directory wait for its next
		// commit (see attrChange); a size change commits at once.
		return fs.deferAttr(ino, s)
	}
	if s.Mtime != nil {
		// An explicit mtime overrides the time of pending writes.
		ino.mu.Lock()
		ino.file.mtime = 0
		ino.mu.Unlock()
	}
	if err := fs.commitFile(ctx, ino, mutate); err != nil {
		return Attr{}, err
	}
	return fs.attrOf(ino), nil
}

// deferAttr records an attribute change of non-directory ino for its next
// commit and returns the attributes it now has.
func (fs *FS) deferAttr(ino *inode, s SetAttr) (Attr, error) {
	// Shared, as for a write: a commit in flight holds it exclusively and
	// resets the file's local changes when it is done.
	ino.ioMu.RLock()
	defer ino.ioMu.RUnlock()
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.cur.Kind == format.KindTombstone || ino.cur.Kind == format.KindDir {
		return Attr{}, fmt.Errorf("inode %016x: %w", ino.id, ErrNotExist)
	}
	if s.Mtime != nil {
		ino.file.mtime = 0 // an explicit mtime overrides the time of pending writes
	}
	if ino.file.attrs == nil {
		ino.file.attrs = &attrChange{since: time.Now()}
	}
	ino.file.attrs.add(s, now())
	return fs.attrLocked(ino), nil
}

// Xattr flags (setxattr).
const (
	XattrCreate  = 1
	XattrReplace = 2
)

// unsupportedXattr reports the extended attributes s3gfs does not keep,
// answered with ErrXattrNotSupp (EOPNOTSUPP), as a filesystem without
// SELinux labels or POSIX ACLs answers them:
//
//   - system.posix_acl_access and system.posix_acl_default: the mount does
//     not ask the kernel for POSIX ACL support (FUSE_POSIX_ACL), so the
//     kernel would never enforce a stored ACL; keeping one would show
//     getfacl and ls -l ("+") a permission that is not checked.
//   - security.selinux: the kernel's SELinux labels a FUSE mount by policy
//     (genfscon) and answers this attribute itself without asking the
//     filesystem, and refuses to set it; only hosts without SELinux ask,
//     and a label kept for those alone would differ from what SELinux
//     hosts of the same volume see.
//
// Answering "not supported" rather than "no such attribute" matters: ls -l
// asks for both attributes of every entry, each a round trip to the mount,
// and stops asking for the rest of the listing once the device says it
// does not support them (coreutils caches that per st_dev), so a warm
// ls -l of 10,000 entries costs 2 round trips instead of 20,000. Values of
// these names stored by older versions are hidden.
func unsupportedXattr(name string) bool {
	switch name {
	case "system.posix_acl_access", "system.posix_acl_default", "security.selinux":
		return true
	}
	return false
}

// GetXattr returns the value of extended attribute name.
func (fs *FS) GetXattr(ctx context.Context, id uint64, name string) ([]byte, error) {
	if unsupportedXattr(name) {
		return nil, fmt.Errorf("%s: %w", name, ErrXattrNotSupp)
	}
	ino, err := fs.inode(ctx, id)
	if err != nil {
		return nil, err
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	for _, x := range ino.cur.Xattrs {
		if x.Name == name {
			return x.Value, nil
		}
	}
	return nil, ErrNoAttr
}

// ListXattr lists the names of extended attributes.
func (fs *FS) ListXattr(ctx context.Context, id uint64) ([]string, error) {
	ino, err := fs.inode(ctx, id)
	if err != nil {
		return nil, err
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	out := make([]string, 0, len(ino.cur.Xattrs))
	for _, x := range ino.cur.Xattrs {
		if !unsupportedXattr(x.Name) {
			out = append(out, x.Name)
		}
	}
	return out, nil
}

// SetXattr sets (or with value nil and remove, removes) an extended attribute.
func (fs *FS) SetXattr(ctx context.Context, id uint64, name string, value []byte, flags uint32) error {
	if name == "" || len(name) > format.MaxXattrNameLen {
		return ErrAttrRange
	}
	if unsupportedXattr(name) {
		return fmt.Errorf("%s: %w", name, ErrXattrNotSupp)
	}
	if len(value) > format.MaxXattrValueLen {
		return ErrAttrRange
	}
	return fs.changeXattr(ctx, id, func(xs []format.Xattr) ([]format.Xattr, error) {
		for i, x := range xs {
			if x.Name == name {
				if flags&XattrCreate != 0 {
					return nil, ErrExist
				}
				xs[i].Value = append([]byte(nil), value...)
				return xs, nil
			}
		}
		if flags&XattrReplace != 0 {
			return nil, ErrNoAttr
		}
		if len(xs) >= format.MaxXattrs {
			return nil, ErrAttrRange
		}
		xs = append(xs, format.Xattr{Name: name, Value: append([]byte{}, value...)})
		format.SortXattrs(xs)
		return xs, nil
	})
}

// RemoveXattr removes an extended attribute.
func (fs *FS) RemoveXattr(ctx context.Context, id uint64, name string) error {
	if unsupportedXattr(name) {
		return fmt.Errorf("%s: %w", name, ErrXattrNotSupp)
	}
	return fs.changeXattr(ctx, id, func(xs []format.Xattr) ([]format.Xattr, error) {
		for i, x := range xs {
			if x.Name == name {
				return append(xs[:i], xs[i+1:]...), nil
			}
		}
		return nil, ErrNoAttr
	})
}

func (fs *FS) changeXattr(ctx context.Context, id uint64, change func([]format.Xattr) ([]format.Xattr, error)) error {
	if err := fs.writable(); err != nil {
		return err
	}
	ino, err := fs.inode(ctx, id)
	if err != nil {
		return err
	}
	mutate := func(n *format.Inode) error {
		xs, err := change(n.Xattrs)
		if err != nil {
			return err
		}
		n.Xattrs = xs
		n.Ctime = now()
		return nil
	}
	ino.mu.Lock()
	isDir := ino.cur.Kind == format.KindDir
	ino.mu.Unlock()
	if isDir {
		return fs.applyDir(ctx, ino, &dirChange{mutate: mutate})
	}
	return fs.commitFile(ctx, ino, mutate)
}
