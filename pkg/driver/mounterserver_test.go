package driver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// fakeMounter records what the mounter server asks of it.
type fakeMounter struct {
	mu    sync.Mutex
	specs []MountSpec
	err   error
}

func (f *fakeMounter) Mount(ctx context.Context, s MountSpec) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, s)
	return 4242, f.err
}

func (f *fakeMounter) Unmount(ctx context.Context, target string, pid int) error { return f.err }

func TestMounterProtocol(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "m.sock")
	fm := &fakeMounter{}
	srv := &MounterServer{Mounter: fm}
	go srv.Serve(sock)
	defer srv.Shutdown(context.Background())
	for i := 0; ; i++ {
		if st, err := os.Stat(sock); err == nil && st.Mode()&os.ModeSocket != 0 {
			if st.Mode().Perm() != 0o600 {
				t.Errorf("socket mode %v, want 0600", st.Mode().Perm())
			}
			break
		}
		if i > 200 {
			t.Fatal("mounter socket never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := NewRemoteMounter(sock)
	ctx := context.Background()
	spec := MountSpec{URL: "s3://b/p", Target: "/staging", AccessKeyID: "AKID", SecretAccessKey: "SECRET"}
	pid, err := m.Mount(ctx, spec)
	if err != nil || pid != 4242 {
		t.Fatalf("mount: %d %v", pid, err)
	}
	if got := fm.specs[0]; got != spec {
		t.Errorf("the mounter got %+v, want %+v", got, spec)
	}
	// The node's --compat-writes travels to the mount's arguments (through
	// the mounter's protocol too).
	compat := MountSpec{URL: "s3://b/p", Target: "/staging2", CompatWrites: true}
	if _, err := m.Mount(ctx, compat); err != nil || !fm.specs[1].CompatWrites {
		t.Fatalf("mount with compat writes: %v, the mounter got %+v", err, fm.specs[1])
	}
	if a := strings.Join(compat.args(true), " "); !strings.Contains(a, "--compat-writes -- s3://b/p") {
		t.Errorf("compat writes: args %q", a)
	}
	if a := strings.Join(spec.args(true), " "); strings.Contains(a, "--compat-writes") {
		t.Errorf("no compat writes: args %q", a)
	}
	if strings.Contains(spec.String(), "SECRET") || strings.Contains(spec.String(), "AKID") || strings.Contains(strings.Join(spec.args(true), " "), "SECRET") {
		t.Error("a mount spec's description or arguments show its credentials")
	}
	for _, bad := range []MountSpec{{URL: "s3://b/p", Target: "relative"}, {URL: "file:///etc", Target: "/x"}} {
		_, err := m.Mount(ctx, bad)
		if code(err) != codes.InvalidArgument {
			t.Errorf("mount %+v: %v (%v), want InvalidArgument", bad, code(err), err)
		}
	}
	fm.err = fmt.Errorf("%w: no such volume", ErrNotFound)
	if _, err := m.Mount(ctx, spec); code(err) != codes.NotFound {
		t.Errorf("the mounter's NotFound arrived as %v (%v)", code(err), err)
	}
	if err := m.Unmount(ctx, "/staging", 0); code(err) != codes.NotFound {
		t.Errorf("unmount error arrived as %v (%v)", code(err), err)
	}
	// Garbage on the socket.
	resp, err := m.client.Post("http://mounter/mount", "application/json", strings.NewReader("{not json"))
	if err != nil || resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("garbage request: %v %v", resp, err)
	}
	srv.Shutdown(context.Background())
	if _, err := m.Mount(ctx, spec); code(err) != codes.Unavailable || !errors.Is(err, errMounterDown) {
		t.Errorf("mount with the mounter down: %v (%v), want Unavailable", code(err), err)
	}
}
