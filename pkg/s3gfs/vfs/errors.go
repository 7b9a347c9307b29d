package vfs

import "errors"

// Sentinel errors of the filesystem engine. Every error returned by an FS
// method wraps one of these or an object-store error; the FUSE binding maps
// them to errno values in one place (fusefs.errno).
var (
	ErrNotExist    = errors.New("no such file or directory")
	ErrExist       = errors.New("file exists")
	ErrNotEmpty    = errors.New("directory not empty")
	ErrNotDir      = errors.New("not a directory")
	ErrIsDir       = errors.New("is a directory")
	ErrInvalid     = errors.New("invalid argument")
	ErrNameTooLong = errors.New("file name too long")
	ErrReadOnly    = errors.New("read-only file system")
	ErrNoAttr      = errors.New("no such attribute")
	ErrAttrRange   = errors.New("attribute value too large")
	ErrTooBig      = errors.New("file too large")
	ErrNotSupp     = errors.New("operation not supported")
	// ErrXattrNotSupp: an extended attribute this filesystem does not
	// keep (see unsupportedXattr).
	ErrXattrNotSupp = errors.New("extended attribute not supported")
	// ErrConflict: a commit kept losing the race for the next version
	// (the store is too contended or something keeps changing the inode).
	ErrConflict = errors.New("too many concurrent changes to one inode")
	// ErrBusy: the name is held by another host's rename that is still
	// being decided (FORMAT.md §5.5), for longer than a call waits.
	ErrBusy = errors.New("name held by a rename in progress on another host")
	// ErrCorrupt: an object read from the store failed its checks.
	ErrCorrupt = errors.New("corrupt object in the store")
)
