package format

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// RootID is the inode id of every volume's root directory. All other inode
// ids are random non-zero 64-bit numbers chosen by the creating host.
const RootID uint64 = 1

// Keys builds and parses the object keys of one volume. A volume lives under
// a prefix of a bucket; every key below is that prefix plus "/" (nothing
// when the prefix is empty) plus the relative keys documented in FORMAT.md.
type Keys struct {
	prefix string // "" or "some/prefix/"
}

// NewKeys validates a volume prefix (no leading or trailing slash, no empty
// path segments, printable) and returns its key scheme.
func NewKeys(prefix string) (Keys, error) {
	if prefix == "" {
		return Keys{}, nil
	}
	if len(prefix) > 512 {
		return Keys{}, fmt.Errorf("volume prefix is %d bytes, at most 512 allowed", len(prefix))
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return Keys{}, fmt.Errorf("volume prefix %q has an empty, '.' or '..' segment", prefix)
		}
	}
	if !utf8.ValidString(prefix) {
		return Keys{}, fmt.Errorf("volume prefix %q is not valid UTF-8", prefix)
	}
	for _, r := range prefix {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return Keys{}, fmt.Errorf("volume prefix %q contains a control character", prefix)
		}
	}
	return Keys{prefix: prefix + "/"}, nil
}

// Prefix is the volume's key prefix including its trailing slash ("" for a
// volume at the root of its bucket).
func (k Keys) Prefix() string { return k.prefix }

// Volume is the key of the volume header.
func (k Keys) Volume() string { return k.prefix + "volume" }

// InodeDir is the common prefix of every version of inode id.
func (k Keys) InodeDir(id uint64) string { return fmt.Sprintf("%si/%016x/", k.prefix, id) }

// InodesPrefix is the common prefix of every inode version in the volume.
func (k Keys) InodesPrefix() string { return k.prefix + "i/" }

// Inode is the key of version v of inode id. The version is stored
// complemented (^v) in 16 hex digits so that newer versions sort first.
func (k Keys) Inode(id, v uint64) string {
	return fmt.Sprintf("%si/%016x/%016x", k.prefix, id, ^v)
}

// ParseInode parses a key made by Inode.
func (k Keys) ParseInode(key string) (id, v uint64, err error) {
	rest, ok := strings.CutPrefix(key, k.prefix+"i/")
	if !ok || len(rest) != 33 || rest[16] != '/' {
		return 0, 0, fmt.Errorf("%w: %q is not an inode version key", ErrCorrupt, key)
	}
	id, err1 := strconv.ParseUint(rest[:16], 16, 64)
	inv, err2 := strconv.ParseUint(rest[17:], 16, 64)
	if err1 != nil || err2 != nil || id == 0 || inv == 0 || ^inv == 0 || k.Inode(id, ^inv) != key {
		return 0, 0, fmt.Errorf("%w: %q is not an inode version key", ErrCorrupt, key)
	}
	return id, ^inv, nil
}

// ExtentsPrefix is the common prefix of every extent of the volume.
func (k Keys) ExtentsPrefix() string { return k.prefix + "d/" }

// ExtentDir is the common prefix of every extent written for inode id.
func (k Keys) ExtentDir(id uint64) string { return fmt.Sprintf("%sd/%016x/", k.prefix, id) }

// Extent is the key of the extent object eid written for inode id.
func (k Keys) Extent(id, eid uint64) string {
	return fmt.Sprintf("%sd/%016x/%016x", k.prefix, id, eid)
}

// ParseExtent parses a key made by Extent.
func (k Keys) ParseExtent(key string) (id, eid uint64, err error) {
	rest, ok := strings.CutPrefix(key, k.prefix+"d/")
	if !ok || len(rest) != 33 || rest[16] != '/' {
		return 0, 0, fmt.Errorf("%w: %q is not an extent key", ErrCorrupt, key)
	}
	id, err1 := strconv.ParseUint(rest[:16], 16, 64)
	eid, err2 := strconv.ParseUint(rest[17:], 16, 64)
	if err1 != nil || err2 != nil || k.Extent(id, eid) != key {
		return 0, 0, fmt.Errorf("%w: %q is not an extent key", ErrCorrupt, key)
	}
	return id, eid, nil
}

// PingsPrefix is the common prefix of every host's ping.
func (k Keys) PingsPrefix() string { return k.prefix + "h/" }

// Ping is the key of host hostID's ping object.
func (k Keys) Ping(hostID uint64) string { return fmt.Sprintf("%sh/%016x", k.prefix, hostID) }

// SnapshotsPrefix is the common prefix of every snapshot pin.
func (k Keys) SnapshotsPrefix() string { return k.prefix + "s/" }

// Snapshot is the key of the snapshot pin called name.
func (k Keys) Snapshot(name string) string { return k.prefix + "s/" + name }

// Lease is the key of the reaper's lease object.
func (k Keys) Lease() string { return k.prefix + "lease" }

// Probe is the key used to probe conditional-write support, unique per call.
func (k Keys) Probe(nonce uint64) string { return fmt.Sprintf("%sprobe/%016x", k.prefix, nonce) }
