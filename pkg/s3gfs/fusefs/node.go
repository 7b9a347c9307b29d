package fusefs

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// Node is one inode as the kernel sees it.
type Node struct {
	fs.Inode
	fsys *fsys
	id   uint64
}

var (
	_ fs.NodeLookuper      = (*Node)(nil)
	_ fs.NodeGetattrer     = (*Node)(nil)
	_ fs.NodeSetattrer     = (*Node)(nil)
	_ fs.NodeCreater       = (*Node)(nil)
	_ fs.NodeOpener        = (*Node)(nil)
	_ fs.NodeMkdirer       = (*Node)(nil)
	_ fs.NodeMknoder       = (*Node)(nil)
	_ fs.NodeRmdirer       = (*Node)(nil)
	_ fs.NodeUnlinker      = (*Node)(nil)
	_ fs.NodeRenamer       = (*Node)(nil)
	_ fs.NodeLinker        = (*Node)(nil)
	_ fs.NodeSymlinker     = (*Node)(nil)
	_ fs.NodeReadlinker    = (*Node)(nil)
	_ fs.NodeReaddirer     = (*Node)(nil)
	_ fs.NodeStatfser      = (*Node)(nil)
	_ fs.NodeGetxattrer    = (*Node)(nil)
	_ fs.NodeSetxattrer    = (*Node)(nil)
	_ fs.NodeListxattrer   = (*Node)(nil)
	_ fs.NodeRemovexattrer = (*Node)(nil)
	_ fs.NodeOnForgetter   = (*Node)(nil)
	_ fs.NodeAllocater     = (*Node)(nil)
	_ fs.NodeFsyncer       = (*Node)(nil)
)

func (n *Node) engine() *vfs.FS { return n.fsys.engine }

// child returns the kernel inode for attributes a, filling out. An inode
// the kernel already knows is answered with its existing node: go-fuse
// would otherwise make a new one and, for a CREATE reply, register it
// as a second kernel inode of the same file (a stale view of this host
// sends CREATE for a name whose file it knows under another name); and
// this host's invalidations must reach the node the kernel really holds.
func (n *Node) child(ctx context.Context, a vfs.Attr, out *fuse.EntryOut) *fs.Inode {
	fillAttr(a, &out.Attr)
	if a.Held {
		out.SetAttrTimeout(heldTimeout)
	}
	mode := a.Mode & syscall.S_IFMT
	return n.fsys.nodeFor(a.Ino, mode, func() *fs.Inode {
		return n.NewInode(ctx, &Node{fsys: n.fsys, id: a.Ino}, fs.StableAttr{Mode: mode, Ino: a.Ino})
	})
}

func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a, err := n.engine().Lookup(n.engine().Bound(ctx), n.id, name)
	if err != nil {
		return nil, n.fsys.errno("lookup", err)
	}
	if n.fsys.debug {
		n.fsys.trace("lookup", "parent", n.id, "name", name, "inode", a.Ino, "version", a.Version, "size", a.Size, "held", a.Held)
	}
	return n.child(ctx, a, out), 0
}

func (n *Node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := n.engine().GetAttr(n.engine().Bound(ctx), n.id)
	if err != nil {
		return n.fsys.errno("getattr", err)
	}
	if n.fsys.debug {
		n.fsys.trace("getattr", "inode", n.id, "version", a.Version, "size", a.Size, "held", a.Held)
	}
	fillAttr(a, &out.Attr)
	if a.Held {
		out.SetTimeout(heldTimeout)
	}
	return 0
}

// heldTimeout is how long the kernel may cache the attributes of a file
// held open here at a version another host has replaced (vfs.Attr.Held):
// the newer version is installed at its last close, which the kernel
// would not know to ask for. (Zero would mean go-fuse's default.)
const heldTimeout = time.Millisecond

func (n *Node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	var s vfs.SetAttr
	if m, ok := in.GetMode(); ok {
		s.Mode = &m
	}
	if u, ok := in.GetUID(); ok {
		s.UID = &u
	}
	if g, ok := in.GetGID(); ok {
		s.GID = &g
	}
	if sz, ok := in.GetSize(); ok {
		s.Size = &sz
	}
	if t, ok := in.GetATime(); ok {
		ns := t.UnixNano()
		s.Atime = &ns
	}
	if t, ok := in.GetMTime(); ok {
		ns := t.UnixNano()
		s.Mtime = &ns
	}
	a, err := n.engine().SetAttr(n.engine().Bound(ctx), n.id, s)
	if err != nil {
		return n.fsys.errno("setattr", err)
	}
	if n.fsys.debug {
		n.fsys.trace("setattr", "inode", n.id, "version", a.Version, "size", a.Size)
	}
	fillAttr(a, &out.Attr)
	return 0
}

func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	a, h, err := n.engine().CreateOpen(n.engine().Bound(ctx), n.id, name, mode, int(flags), callerOf(ctx))
	if err != nil {
		return nil, nil, 0, n.fsys.errno("create", err)
	}
	if n.fsys.debug {
		n.fsys.trace("create", "parent", n.id, "name", name, "flags", flags, "inode", a.Ino, "version", a.Version, "size", a.Size, "direct", h.Direct())
	}
	var ff uint32
	if h.Direct() {
		ff |= fuse.FOPEN_DIRECT_IO
	}
	// The engine may have found the file existing and opened it (see
	// child); without FOPEN_KEEP_CACHE the open drops its cached pages.
	return n.child(ctx, a, out), &handle{fsys: n.fsys, h: h}, ff, 0
}

func (n *Node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	h, keep, err := n.engine().Open(n.engine().Bound(ctx), n.id, writable)
	if err != nil {
		return nil, 0, n.fsys.errno("open", err)
	}
	var ff uint32
	if h.Direct() {
		// The kernel's pages hold an older version that other open
		// descriptors still read (see vfs.Handle): bypass them.
		ff |= fuse.FOPEN_DIRECT_IO
	}
	if n.fsys.debug {
		n.fsys.trace("open", "inode", n.id, "flags", flags, "keep", keep, "direct", h.Direct())
	}
	if keep {
		ff |= fuse.FOPEN_KEEP_CACHE
	} else {
		// The engine installed another host's version since the kernel last
		// saw this file. Without KEEP_CACHE the kernel drops its pages, but
		// it keeps the attributes it cached (for up to Timeout), and it cuts
		// reads at the cached size: a file another host grew would read
		// short, breaking close-to-open consistency. So expire the cached
		// attributes too. Offset -1 invalidates attributes only, touching
		// no page locks, which makes this safe inside a request.
		errno := n.NotifyContent(-1, 0)
		if n.fsys.debug {
			n.fsys.trace("open: invalidated cached attributes", "inode", n.id, "errno", errno)
		}
	}
	return &handle{fsys: n.fsys, h: h}, ff, 0
}

func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a, err := n.engine().Mkdir(n.engine().Bound(ctx), n.id, name, mode, callerOf(ctx))
	if err != nil {
		return nil, n.fsys.errno("mkdir", err)
	}
	return n.child(ctx, a, out), 0
}

func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a, err := n.engine().Mknod(n.engine().Bound(ctx), n.id, name, mode, dev, callerOf(ctx))
	if err != nil {
		return nil, n.fsys.errno("mknod", err)
	}
	return n.child(ctx, a, out), 0
}

func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a, err := n.engine().Symlink(n.engine().Bound(ctx), n.id, name, target, callerOf(ctx))
	if err != nil {
		return nil, n.fsys.errno("symlink", err)
	}
	return n.child(ctx, a, out), 0
}

func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := n.engine().Readlink(n.engine().Bound(ctx), n.id)
	if err != nil {
		return nil, n.fsys.errno("readlink", err)
	}
	return []byte(t), 0
}

func (n *Node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	a, err := n.engine().Link(n.engine().Bound(ctx), t.id, n.id, name)
	if err != nil {
		return nil, n.fsys.errno("link", err)
	}
	return n.child(ctx, a, out), 0
}

func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.fsys.errno("unlink", n.engine().Unlink(n.engine().Bound(ctx), n.id, name))
}

func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.fsys.errno("rmdir", n.engine().Rmdir(n.engine().Bound(ctx), n.id, name))
}

func (n *Node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*Node)
	if !ok || np.fsys != n.fsys {
		return syscall.EXDEV
	}
	return n.fsys.errno("rename", n.engine().Rename(n.engine().Bound(ctx), n.id, name, np.id, newName, flags))
}

func (n *Node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	es, err := n.engine().ReadDir(n.engine().Bound(ctx), n.id)
	if err != nil {
		return nil, n.fsys.errno("readdir", err)
	}
	out := make([]fuse.DirEntry, len(es))
	for i, e := range es {
		out[i] = fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode}
	}
	return fs.NewListDirStream(out), 0
}

func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	s := n.engine().StatFS(n.engine().Bound(ctx))
	out.Blocks, out.Bfree, out.Bavail = s.Blocks, s.Bfree, s.Bfree
	out.Files, out.Ffree = s.Files, s.Ffree
	out.Bsize, out.Frsize, out.NameLen = s.Bsize, s.Bsize, s.NameLen
	return 0
}

func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, err := n.engine().GetXattr(n.engine().Bound(ctx), n.id, attr)
	if err != nil {
		return 0, n.fsys.errno("getxattr", err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.fsys.errno("setxattr", n.engine().SetXattr(n.engine().Bound(ctx), n.id, attr, data, flags))
}

func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.fsys.errno("removexattr", n.engine().RemoveXattr(n.engine().Bound(ctx), n.id, attr))
}

func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	names, err := n.engine().ListXattr(n.engine().Bound(ctx), n.id)
	if err != nil {
		return 0, n.fsys.errno("listxattr", err)
	}
	var b []byte
	for _, name := range names {
		b = append(append(b, name...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// Allocate implements fallocate(2). An object store has no space to reserve,
// so the only visible effect left to produce is mode 0's growth of the file
// to off+size; FALLOC_FL_KEEP_SIZE alone changes nothing anyone can observe.
// Punching holes, zeroing, collapsing and inserting ranges are not supported.
//
// Growing is a GetAttr then a SetAttr: the kernel holds the inode lock across
// a size-changing fallocate and also across write and truncate, so no write
// from this host can land between the two and be cut off.
func (n *Node) Allocate(ctx context.Context, f fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	switch mode {
	case 0:
	case fallocKeepSize:
		return 0
	default:
		return syscall.EOPNOTSUPP
	}
	end := off + size
	if end < off {
		return syscall.EFBIG
	}
	a, err := n.engine().GetAttr(n.engine().Bound(ctx), n.id)
	if err != nil {
		return n.fsys.errno("fallocate", err)
	}
	if end <= a.Size {
		return 0
	}
	_, err = n.engine().SetAttr(n.engine().Bound(ctx), n.id, vfs.SetAttr{Size: &end})
	return n.fsys.errno("fallocate", err)
}

// Fsync implements fsync(2) of files and directories. A file's handle
// commits its data; a directory has nothing to commit, because every
// namespace operation is committed before it returns. (Without this,
// go-fuse answers a directory's fsync with EOPNOTSUPP, which breaks the
// create-then-fsync-the-directory pattern of databases and editors.)
func (n *Node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Fsync(ctx, flags)
	}
	return 0
}

// fallocKeepSize is FALLOC_FL_KEEP_SIZE.
const fallocKeepSize = 0x1

func (n *Node) OnForget() {
	n.fsys.forget(n.id, n.EmbeddedInode())
}

// handle is an open file.
type handle struct {
	fsys *fsys
	h    *vfs.Handle
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileFsyncer  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

// Read replies with the engine's read view (vfs.ReadView): go-fuse writes
// its slices to the kernel with one writev, so cached extent bytes are not
// copied into dest first, and calls Done, which releases the view, once
// the reply is written.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	v, err := h.fsys.engine.ReadView(h.fsys.engine.Bound(ctx), h.h, dest, off)
	if err != nil {
		return nil, h.fsys.errno("read", err)
	}
	if h.fsys.debug {
		h.fsys.trace("read", "inode", h.h.ID(), "off", off, "len", len(dest), "n", v.Len())
	}
	if v.Len() == 0 {
		// go-fuse does not call Done on an empty result.
		v.Release()
		return fuse.ReadResultData(nil), 0
	}
	return viewResult{v}, 0
}

// viewResult is a fuse.ReadResult of a vfs.ReadView. go-fuse (v2.12)
// writes a result that has Slices with writev and calls Done after the
// write; Bytes serves its other paths (a copy into buf).
type viewResult struct{ v *vfs.ReadView }

func (r viewResult) Slices() ([][]byte, fuse.Status) { return r.v.Slices(), fuse.OK }

func (r viewResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(buf) < r.v.Len() {
		buf = make([]byte, r.v.Len())
	}
	return buf[:r.v.CopyTo(buf)], fuse.OK
}

func (r viewResult) Size() int { return r.v.Len() }

func (r viewResult) Done() { r.v.Release() }

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.fsys.engine.Write(h.fsys.engine.Bound(ctx), h.h, data, off)
	if err != nil {
		return uint32(n), h.fsys.errno("write", err)
	}
	return uint32(n), 0
}

func (h *handle) Flush(ctx context.Context) syscall.Errno {
	err := h.fsys.engine.Flush(h.fsys.engine.Bound(ctx), h.h)
	if h.fsys.debug {
		h.fsys.trace("flush", "inode", h.h.ID(), "err", err)
	}
	return h.fsys.errno("flush", err)
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.fsys.errno("fsync", h.fsys.engine.Fsync(h.fsys.engine.Bound(ctx), h.h))
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	err := h.fsys.engine.Release(h.fsys.engine.Bound(ctx), h.h)
	if h.fsys.debug {
		h.fsys.trace("release", "inode", h.h.ID(), "err", err)
	}
	return h.fsys.errno("release", err)
}
