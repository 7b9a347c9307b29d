package multihost

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// TestHostsCommand: `s3gfs hosts` lists every mounted host as live, with
// its node name, and a host that unmounted stays listed (its ping is left
// for the reaper) until it lapses.
func TestHostsCommand(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{})
	v.mount(t, "--node-name", "node-a")
	b := v.mount(t, "--node-name", "node-b", "--host-expiry", "2s")
	hosts := func() string {
		cmd := exec.Command(binary(t), "hosts", "--endpoint", v.srv.Endpoint, v.url.String())
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+v.srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+v.srv.SecretKey)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("s3gfs hosts: %v\n%s", err, out)
		}
		return string(out)
	}
	out := hosts()
	for _, node := range []string{"node-a", "node-b"} {
		line := lineWith(out, node)
		if !strings.Contains(line, " live ") || !strings.Contains(line, " rw ") {
			t.Fatalf("host %s not listed as live and read-write:\n%s", node, out)
		}
	}
	b.stop()
	eventually(t, visible, "unmounted host lapses after its 2s expiry", func() error {
		out = hosts()
		if !strings.Contains(lineWith(out, "node-b"), " lapsed ") {
			return errorf("node-b not lapsed:\n%s", out)
		}
		return nil
	})
	if !strings.Contains(lineWith(out, "node-a"), " live ") {
		t.Fatalf("node-a should still be live:\n%s", out)
	}
}

func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
