package vfs

import (
	"syscall"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// Attr is what stat(2) reports for an inode.
type Attr struct {
	Ino                 uint64
	Mode                uint32 // file type bits | permission bits
	Nlink               uint32
	Size                uint64
	UID, GID            uint32
	Rdev                uint32
	Atime, Mtime, Ctime int64 // nanoseconds since the epoch
	Version             uint64
	// Held: the attributes of the version this host's open handles read,
	// while another host has announced a newer one; the newer one is
	// installed at the last close, so they are not to be cached.
	Held bool
}

// Blocks is the number of 512-byte blocks the file occupies.
func (a Attr) Blocks() uint64 { return (a.Size + 511) / 512 }

// IsDir reports whether the attribute describes a directory.
func (a Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// typeBits maps an inode kind to stat(2) file-type bits.
func typeBits(k format.InodeKind, mode uint32) uint32 {
	switch k {
	case format.KindDir:
		return syscall.S_IFDIR
	case format.KindSymlink:
		return syscall.S_IFLNK
	case format.KindSpecial:
		return mode & syscall.S_IFMT
	}
	return syscall.S_IFREG
}

// SetAttr is a setattr request; nil fields are left unchanged.
type SetAttr struct {
	Mode         *uint32
	UID, GID     *uint32
	Size         *uint64
	Atime, Mtime *int64
}

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name string
	Ino  uint64
	Mode uint32 // file type bits only
}

// Caller identifies who performs an operation (for ownership of new files).
type Caller struct{ UID, GID uint32 }
