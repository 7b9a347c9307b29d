package multihost

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// TestMountAsOf: a mount --as-of T shows every file as it was at T (the
// store's clock), refuses writes, and a time before the volume existed is
// refused with the earliest time the volume can show.
func TestMountAsOf(t *testing.T) {
	v := newVolume(t, volume.FormatOptions{ExtentSize: 64 << 10})
	store, err := s3store.New(t.Context(), v.srv.Config(v.url.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	a := v.mount(t)
	big := strings.Repeat("first version of a multi-extent file. ", 5000)
	for name, content := range map[string]string{"f": "one", "g": "gone later", "big": big} {
		if err := os.WriteFile(a.path(name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(a.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // stores keep times to the second
	at, err := store.Now(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := os.WriteFile(a.path("f"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.path("big"), []byte("short now"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{os.Remove(a.path("g")), os.Remove(a.path("d")), os.Mkdir(a.path("e"), 0o755), os.WriteFile(a.path("h"), []byte("new"), 0o644)} {
		if err != nil {
			t.Fatal(err)
		}
	}

	past := v.mount(t, "--as-of", at.Format(time.RFC3339))
	for name, want := range map[string]string{"f": "one", "g": "gone later", "big": big} {
		got, err := os.ReadFile(past.path(name))
		if err != nil || string(got) != want {
			t.Fatalf("%s as of %s: %d bytes, %v; want %d bytes", name, at, len(got), err, len(want))
		}
	}
	if st, err := os.Stat(past.path("d")); err != nil || !st.IsDir() {
		t.Fatalf("d as of then: %v", err)
	}
	for _, name := range []string{"e", "h"} {
		if _, err := os.Stat(past.path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s, created after the point in time, is visible: %v", name, err)
		}
	}
	if err := os.WriteFile(past.path("x"), []byte("no"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to a point-in-time mount: %v, want EROFS", err)
	}
	// The live mount is unaffected.
	if got, _ := os.ReadFile(a.path("f")); string(got) != "two" {
		t.Fatalf("live f = %q", got)
	}

	cmd := exec.Command(binary(t), "mount", "--endpoint", v.srv.Endpoint, "--as-of", "2001-01-01T00:00:00Z", v.url.String(), t.TempDir())
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+v.srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+v.srv.SecretKey)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "before the volume existed") || !strings.Contains(string(out), "can go back to") {
		t.Fatalf("mount --as-of before creation: %v\n%s", err, out)
	}
}
