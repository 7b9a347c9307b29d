package driver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// The host mounter's copies in BinDir (the s3gfs binary, by content, and
// each CA bundle it handed out) are removed once no running process uses
// them, so upgrades and CA rotations do not pile them up on the node: a
// copy a live mount process runs, or names as its AWS_CA_BUNDLE, stays,
// as does one handed out moments ago (a mount process may be starting
// with it); an unused old one goes when a mount is stopped.
func TestHostMounterRemovesUnusedStagedCopies(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary to run as a mount process")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(bin, 0o755))
	prog, err := os.ReadFile(sleep)
	must(err)
	// Copies made by earlier plugin versions, an hour ago.
	running := filepath.Join(bin, "s3gfs-00000000000000aa") // a live mount process runs it
	old := filepath.Join(bin, "s3gfs-00000000000000bb")     // nothing runs it any more
	caUsed := filepath.Join(bin, "ca-00000000000000cc.pem") // the live process's CA bundle
	caOld := filepath.Join(bin, "ca-00000000000000dd.pem")  // a rotated-away bundle
	leftover := filepath.Join(bin, ".tmp-ca-1234567")       // a copy cut short by a crash
	other := filepath.Join(bin, "README")                   // not the mounter's
	for _, f := range []string{running, old} {
		must(os.WriteFile(f, prog, 0o755))
	}
	for _, f := range []string{caUsed, caOld, leftover, other} {
		must(os.WriteFile(f, []byte("pem\n"), 0o644))
	}
	hourAgo := time.Now().Add(-time.Hour)
	for _, f := range []string{running, old, caUsed, caOld, leftover, other} {
		must(os.Chtimes(f, hourAgo, hourAgo))
	}
	cmd := exec.Command(running, "1000")
	cmd.Env = []string{"AWS_CA_BUNDLE=" + caUsed}
	must(cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	m := &HostMounter{Binary: sleep, BinDir: bin, HostRoot: "/"}
	ca := filepath.Join(dir, "ca.pem")
	must(os.WriteFile(ca, []byte("current CA\n"), 0o644))
	env, err := m.hostEnv([]string{"AWS_CA_BUNDLE=" + ca}) // handed out just now
	must(err)
	fresh := strings.TrimPrefix(env[0], "AWS_CA_BUNDLE=")
	// A mount stopped (none of this test's: nothing is mounted there).
	must(m.Unmount(t.Context(), filepath.Join(dir, "not-mounted"), 0))

	exists := func(f string) bool { _, err := os.Stat(f); return err == nil }
	for _, f := range []string{running, caUsed, fresh, other} {
		if !exists(f) {
			t.Errorf("%s was removed, but it is in use (or not the mounter's)", filepath.Base(f))
		}
	}
	for _, f := range []string{old, caOld, leftover} {
		if exists(f) {
			t.Errorf("%s stays in %s, though no process uses it", filepath.Base(f), bin)
		}
	}
	// Once the last process running a copy ends, the copy goes too.
	cmd.Process.Kill()
	cmd.Wait()
	must(m.Unmount(t.Context(), filepath.Join(dir, "not-mounted"), 0))
	if exists(running) || exists(caUsed) {
		t.Errorf("copies stay after the process that used them ended: binary %v, CA %v", exists(running), exists(caUsed))
	}
}
