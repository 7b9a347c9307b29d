package torture

import (
	"os"
	"testing"
)

// knownBug skips a test that exposes a bug not fixed yet, unless
// S3GFS_KNOWN_BUGS=1 (which `make torture` sets): the test stays written
// down and runnable, and `make test` stays a gate for everything else.
func knownBug(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("S3GFS_KNOWN_BUGS") != "1" {
		t.Skip("known bug: " + why + " (run with S3GFS_KNOWN_BUGS=1)")
	}
}
