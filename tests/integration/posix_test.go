package integration

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are the posixtest tests s3gfs does not pass, each with the
// reason. Every other test in posixtest.All must pass.
var posixSkips = map[string]string{}

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
