package integration

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are the posixtest tests not run, each with the reason. Every
// other test in posixtest.All must pass. (posixtest skips some tests itself
// when a filesystem lacks a feature: RenameOpenDir when fstat of a replaced
// directory fails, see TestOpenDirAfterRmdir; Tmpfile without O_TMPFILE
// support.)
var posixSkips = map[string]string{
	"FcntlFlockLocksFile": "expects a read lock taken through a second descriptor of the same process to conflict " +
		"with the first descriptor's write lock; classic POSIX record locks belong to the process, so they never " +
		"conflict with each other (the test fails on ext4 too, and go-fuse's own posixtest run skips it). " +
		"TestLocks checks the locking s3gfs offers: flock and OFD locks, kept by the kernel per host.",
}

// TestPosix runs every go-fuse posixtest conformance test, each on a fresh
// mount of a fresh volume.
func TestPosix(t *testing.T) {
	requireFUSE(t)
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			if reason, ok := posixSkips[name]; ok {
				t.Skip(reason)
			}
			m := mountVolume(t, mountOpts{})
			fn(t, m.Dir)
		})
	}
}
