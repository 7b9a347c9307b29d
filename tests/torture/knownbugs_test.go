package torture

import "os"

// checkKnownBugs reports whether checks of known, not yet fixed bugs are
// on (S3GFS_KNOWN_BUGS=1, which `make torture` sets). Off, a test logs
// such a finding instead of failing: the check stays written down and
// runnable, and `make test` stays a gate for everything else.
func checkKnownBugs() bool { return os.Getenv("S3GFS_KNOWN_BUGS") == "1" }
