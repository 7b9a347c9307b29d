package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The host mounter hands a mount process a copy of the plugin's
// AWS_CA_BUNDLE that the host can read; when the bundle changes (a
// ConfigMap volume is updated in place on a CA rotation), the next mount
// gets a copy of the new bundle, not the first one the plugin copied.
func TestHostMounterCopiesTheCurrentCABundle(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	m := &HostMounter{BinDir: filepath.Join(dir, "bin")}
	for _, content := range []string{"old CA\n", "new CA\n"} {
		if err := os.WriteFile(ca, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		env, err := m.hostEnv([]string{"PATH=/bin", "AWS_CA_BUNDLE=" + ca})
		if err != nil {
			t.Fatal(err)
		}
		if len(env) != 2 || env[0] != "PATH=/bin" || !strings.HasPrefix(env[1], "AWS_CA_BUNDLE="+m.BinDir+"/") {
			t.Fatalf("environment for the host: %q", env)
		}
		got, err := os.ReadFile(strings.TrimPrefix(env[1], "AWS_CA_BUNDLE="))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("the mount process gets a CA bundle holding %q; the plugin's holds %q", got, content)
		}
	}
}
