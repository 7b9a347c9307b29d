// Package fusefs binds the vfs engine to the kernel through go-fuse. It is
// deliberately thin: each FUSE operation translates its arguments, calls
// one vfs method, and maps the result's error to an errno in one place
// (errno). It makes no object-store calls of its own.
//
// Every call passes the engine the request's context through
// vfs.FS.Bound, which drops the kernel's interrupt and binds the request
// to the host's lease instead. go-fuse cancels a request's context when
// the kernel forwards a signal (FUSE_INTERRUPT), and Go programs receive
// signals all the time (the runtime preempts goroutines with SIGURG):
// answering EINTR would fail their stat and rename calls at random, which
// few programs retry; worse, a change the store may already have accepted
// must run to its end and report what happened, not stop halfway (a rename
// half done, an O_EXCL create committed but reported as not). The lease
// still bounds every request: once the host fences itself, whatever waits
// on the store fails with EIO.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// MountOptions configure a mount.
type MountOptions struct {
	AllowOther bool
	ReadOnly   bool
	// Timeout is how long the kernel may cache entries and attributes
	// (default DefaultTimeout, or ShortTimeout for an engine that does not
	// follow other hosts: see vfs.FS.Invalidates). The engine drops them
	// when they change other than through the kernel (vfs.Invalidator),
	// so it bounds only what no invalidation covers (see
	// docs/guarantees.md).
	Timeout time.Duration
	// ReadAhead is the kernel's readahead for the mount, in bytes
	// (default DefaultReadAhead; see raiseReadAhead).
	ReadAhead int
	Debug     bool
	Logger    *slog.Logger
}

// DefaultReadAhead is the kernel readahead a mount asks for: with the
// kernel's default of 128 KiB a sequential reader costs one FUSE request
// per 128 KiB; with 4 MiB the kernel sends requests of the largest size
// the mount allows (MaxWrite, 1 MiB), several at once.
const DefaultReadAhead = 4 << 20

// DefaultTimeout is how long the kernel caches lookups and attributes
// unless told otherwise: every change it cannot see for itself is
// invalidated (vfs.Invalidator), so this bounds only the staleness of what
// no host announced (a host killed between a commit and its next ping).
const DefaultTimeout = time.Minute

// ShortTimeout is the default cache timeout for an engine that does not
// follow other hosts, which finds their changes only when the kernel asks
// (it then caches no failed lookup either).
const ShortTimeout = time.Second

// Mount mounts engine at dir and returns the running server; the caller
// waits on it (server.Wait) and unmounts it (server.Unmount).
func Mount(dir string, engine *vfs.FS, o MountOptions) (*fuse.Server, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
		if !engine.Invalidates() {
			o.Timeout = ShortTimeout
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadAhead <= 0 {
		o.ReadAhead = DefaultReadAhead
	}
	f := &fsys{engine: engine, log: o.Logger, debug: o.Logger.Enabled(context.Background(), slog.LevelDebug), nodes: map[uint64]*fs.Inode{}, forgotten: map[uint64]*fs.Inode{}}
	root := &Node{fsys: f, id: format.RootID}
	opts := []string{"default_permissions"}
	if o.ReadOnly {
		opts = append(opts, "ro")
	}
	// Failed lookups are not cached: a name another host adds is
	// invalidated like any other change of its directory, but a directory
	// version this host could not read (damaged in transit, FORMAT's
	// corrupt versions are skipped) is found only by the next lookup
	// that revalidates the directory (vfs.Options.Revalidate).
	neg := time.Duration(0)
	server, err := fs.Mount(dir, root, &fs.Options{
		EntryTimeout:    &o.Timeout,
		AttrTimeout:     &o.Timeout,
		NegativeTimeout: &neg,
		RootStableAttr:  &fs.StableAttr{Ino: format.RootID, Mode: syscall.S_IFDIR},
		// Report permission bits as stored: without this go-fuse shows a
		// file created or chmod-ed to 000 as 0644 (0755 for a directory).
		// The kernel checks permissions itself (default_permissions).
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			AllowOther:   o.AllowOther,
			FsName:       engine.Volume().URL.String(),
			Name:         "s3gfs",
			DirectMount:  true,
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			Options:      opts,
			Debug:        o.Debug,
		},
	})
	if err != nil {
		return nil, err
	}
	f.register(format.RootID, root.EmbeddedInode())
	engine.SetInvalidator(f)
	if err := raiseReadAhead(dir, o.ReadAhead); err != nil {
		o.Logger.Debug("kernel readahead left at its default", "err", err)
	}
	return server, nil
}

// raiseReadAhead sets the kernel's readahead of the mount at dir to n
// bytes. The kernel gives a FUSE mount's backing device (its bdi) the
// default readahead of 128 KiB and lets the daemon only lower it when the
// connection starts (max_readahead); root may raise it afterwards through
// sysfs. Best effort: without privilege the default stays.
func raiseReadAhead(dir string, n int) error {
	dev, err := mountDevice(dir)
	if err != nil {
		return err
	}
	p := "/sys/class/bdi/" + dev + "/read_ahead_kb"
	if err := os.WriteFile(p, []byte(strconv.Itoa(n>>10)), 0); err != nil {
		return fmt.Errorf("set readahead: %w", err)
	}
	return nil
}

// mountDevice returns the "major:minor" device of the mount at dir, from
// /proc/self/mountinfo (not stat, which would ask this very server).
func mountDevice(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	dev := ""
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint ...; the last match is
		// the mount on top.
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == abs {
			dev = f[2]
		}
	}
	if dev == "" {
		return "", fmt.Errorf("%s: not in /proc/self/mountinfo", abs)
	}
	return dev, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fsys is shared by every node of one mount.
type fsys struct {
	engine *vfs.FS
	log    *slog.Logger
	debug  bool // log is at debug level: requests are traced (trace)

	mu    sync.Mutex
	nodes map[uint64]*fs.Inode // the kernel's live inodes, for invalidation
	// forgotten: nodes the kernel forgot, dropped at the next sweep unless
	// looked up again meanwhile (see forget).
	forgotten map[uint64]*fs.Inode
	sweeping  bool
}

// forgetDelay is how long a node the kernel forgot stays registered (and
// its inode in the engine) before it is dropped.
const forgetDelay = 5 * time.Second

// trace logs one request's answer at debug level (--log-level debug):
// what the kernel was told, to explain what a program saw. Inode numbers
// are printed in hex, as everywhere else. Callers test f.debug first, so
// that the arguments cost nothing on the hot paths otherwise.
func (f *fsys) trace(msg string, args ...any) {
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "inode" || k == "parent" {
			if id, ok := args[i+1].(uint64); ok {
				args[i+1] = fmt.Sprintf("%016x", id)
			}
		}
	}
	f.log.Debug(msg, args...)
}

func (f *fsys) register(id uint64, in *fs.Inode) {
	f.mu.Lock()
	f.nodes[id] = in
	f.mu.Unlock()
}

// forget notes that the kernel forgot in, its node for id. The node's
// registration and the engine's inode are dropped a moment later (sweep),
// unless the kernel holds the node again by then: a lookup of the inode
// racing the forget may have handed this very node back to the kernel
// (child), and the engine's invalidations must go on reaching it (the
// kernel caches for long). Dropping them at once would leave the kernel
// holding an inode no invalidation names.
func (f *fsys) forget(id uint64, in *fs.Inode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes[id] != in {
		return // a newer node replaced it
	}
	f.forgotten[id] = in
	if !f.sweeping {
		f.sweeping = true
		time.AfterFunc(forgetDelay, f.sweep)
	}
}

// sweep drops the nodes forgotten since the last sweep that the kernel
// has not looked up again, and their inodes in the engine.
func (f *fsys) sweep() {
	f.mu.Lock()
	cands := f.forgotten
	f.forgotten = map[uint64]*fs.Inode{}
	f.sweeping = false
	f.mu.Unlock()
	var drop []uint64
	f.mu.Lock()
	for id, in := range cands {
		// (go-fuse takes no lock of ours, and calls OnForget without the
		// node's lock: f.mu may be held while asking it.)
		if f.nodes[id] == in && in.Forgotten() {
			delete(f.nodes, id)
			drop = append(drop, id)
		}
	}
	f.mu.Unlock()
	for _, id := range drop {
		f.engine.Forget(id)
	}
}

func (f *fsys) node(id uint64) *fs.Inode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[id]
}

// nodeFor returns the node of inode id (of file type mode) for a reply to
// hand to the kernel: the registered one, unless go-fuse has forgotten it
// (then it is no longer in go-fuse's tables) or it is of another type;
// else a new one, made by newNode and registered. The check and the
// registration are one step: two lookups of one new inode at once (two
// names, or one name from two processes) would otherwise each make a
// node, go-fuse would hand the kernel the first (it keeps one node per
// inode), and the second, registered last, would be the one this host's
// invalidations of the inode were sent to: to a node the kernel never
// saw, so they would reach nothing. (go-fuse calls no code of ours with
// its locks held, nor does newNode: f.mu may be held while it runs.)
func (f *fsys) nodeFor(id uint64, mode uint32, newNode func() *fs.Inode) *fs.Inode {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.nodes[id]
	if in != nil && !(f.forgotten[id] == in && in.Forgotten()) && in.StableAttr().Mode == mode {
		return in
	}
	in = newNode()
	f.nodes[id] = in
	return in
}

// InvalidateInode drops the kernel's cached attributes and pages of an
// inode another host changed (vfs.Invalidator).
func (f *fsys) InvalidateInode(id uint64) {
	if in := f.node(id); in != nil {
		errno := in.NotifyContent(0, 0) // ENOENT just means the kernel has forgotten it
		if f.debug {
			f.trace("invalidated inode", "inode", id, "errno", errno)
		}
	}
}

// InvalidateEntry drops the kernel's cached lookup of parent/name.
func (f *fsys) InvalidateEntry(parent uint64, name string) {
	if in := f.node(parent); in != nil {
		errno := in.NotifyEntry(name)
		if f.debug {
			f.trace("invalidated entry", "parent", parent, "name", name, "errno", errno)
		}
	}
}

// InvalidateAll drops every lookup, attribute and page the kernel caches
// of the mount (a fence, and the recovery from it).
func (f *fsys) InvalidateAll() {
	f.mu.Lock()
	nodes := make([]*fs.Inode, 0, len(f.nodes))
	for _, in := range f.nodes {
		nodes = append(nodes, in)
	}
	f.mu.Unlock()
	for _, in := range nodes {
		in.NotifyContent(0, 0)
		if in.IsDir() {
			for name := range in.Children() {
				in.NotifyEntry(name)
			}
		}
	}
}

// errno maps an engine error to the errno the kernel gets. This is the one
// place where that mapping happens.
func (f *fsys) errno(op string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, vfs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, vfs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, vfs.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, vfs.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, vfs.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, vfs.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, vfs.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, vfs.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, vfs.ErrNoAttr):
		return syscall.ENODATA
	case errors.Is(err, vfs.ErrAttrRange):
		return syscall.E2BIG
	case errors.Is(err, vfs.ErrTooBig):
		return syscall.EFBIG
	case errors.Is(err, vfs.ErrNotSupp):
		return syscall.EPERM
	case errors.Is(err, vfs.ErrXattrNotSupp):
		return syscall.EOPNOTSUPP
	case errors.Is(err, vfs.ErrBusy):
		return syscall.EBUSY
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, objstore.ErrAccessDenied):
		f.log.Error("object store refused access", "op", op, "err", err)
		return syscall.EACCES
	}
	f.log.Error("I/O error", "op", op, "err", err)
	return syscall.EIO
}

func callerOf(ctx context.Context) vfs.Caller {
	if c, ok := fuse.FromContext(ctx); ok {
		return vfs.Caller{UID: c.Uid, GID: c.Gid}
	}
	return vfs.Caller{}
}

func fillAttr(a vfs.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = a.Blocks()
	out.Blksize = 4096
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	out.Rdev = a.Rdev
	out.Atime, out.Atimensec = uint64(a.Atime/1e9), uint32(a.Atime%1e9)
	out.Mtime, out.Mtimensec = uint64(a.Mtime/1e9), uint32(a.Mtime%1e9)
	out.Ctime, out.Ctimensec = uint64(a.Ctime/1e9), uint32(a.Ctime%1e9)
}
