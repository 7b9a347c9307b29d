package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireFUSE skips the test unless it runs as root with /dev/fuse (or
// fails it when S3GFS_REQUIRE_FUSE=1, as `make test` sets).
func RequireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err == nil && os.Geteuid() == 0 {
		return
	}
	if os.Getenv("S3GFS_REQUIRE_FUSE") == "1" {
		t.Fatal("FUSE tests need root and /dev/fuse (S3GFS_REQUIRE_FUSE=1)")
	}
	t.Skip("FUSE tests need root and /dev/fuse")
}

// IsMounted reports whether dir is a mountpoint in this mount namespace.
func IsMounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// Binary returns the s3gfs binary to test: $S3GFS_BIN (which `make test`
// sets to the freshly built bin/s3gfs), or one built once per test binary.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("S3GFS_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "s3gfs-bin-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "s3gfs")
		out, err := exec.Command("go", "build", "-o", built, "github.com/s3gfs/s3gfs/cmd/s3gfs").CombinedOutput()
		if err != nil {
			buildErr = err
			built = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build s3gfs: %v\n%s", buildErr, built)
	}
	return built
}
