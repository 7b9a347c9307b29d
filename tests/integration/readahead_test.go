package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/fusefs"
)

// TestKernelReadAhead: a mount raises the kernel's readahead of its
// backing device from the kernel's 128 KiB to fusefs.DefaultReadAhead
// (fewer, larger FUSE reads for a sequential reader).
func TestKernelReadAhead(t *testing.T) {
	t.Parallel()
	m := mountVolume(t, mountOpts{})
	var st syscall.Stat_t
	must(t, "stat mountpoint", syscall.Stat(m.Dir, &st))
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	b, err := os.ReadFile(p)
	must(t, "read "+p, err)
	kb, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must(t, "parse "+p, err)
	if want := fusefs.DefaultReadAhead >> 10; kb != want {
		t.Errorf("%s = %d KiB, want %d", p, kb, want)
	}
}
