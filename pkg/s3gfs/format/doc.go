// Package format defines every object s3gfs stores in a bucket: the object
// keys, the checksummed envelope around each object, and the binary encoding
// of the volume header, inode versions and data extents.
//
// It is the executable form of docs/FORMAT.md; the two must agree. Decoding
// treats every byte it is given as untrusted: unknown format versions,
// unknown flags, truncated or corrupt objects and out-of-range fields are
// refused with an error wrapping ErrCorrupt or ErrUnsupported, never a panic
// (the fuzz targets in this package check that).
//
// The package does no I/O; the filesystem, the reaper and fsck share it.
package format
