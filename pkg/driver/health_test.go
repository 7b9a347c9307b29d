package driver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHealthChecks: /healthz answers 200 while the plugin answers CSI
// Probe on its socket (the mounter, its /healthz), and 503 once it no
// longer serves.
func TestHealthChecks(t *testing.T) {
	dir := t.TempDir()
	get := func(h http.Handler) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}

	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	srv := NewControllerServer("", "test", ControllerConfig{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(endpoint) }()
	check, err := ProbeCSI(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	h := healthHandler(check)
	for {
		// Serve listens in the background: wait for the socket.
		if code, _ := get(h); code == http.StatusOK {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve: %v", err)
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	srv.Stop()
	<-done
	if code, body := get(h); code != http.StatusServiceUnavailable || !strings.Contains(body, "CSI Probe") {
		t.Fatalf("after the plugin stopped: %d %q", code, body)
	}
	if _, err := ProbeCSI("tcp://127.0.0.1:1"); err == nil {
		t.Fatal("ProbeCSI accepted a non-unix endpoint")
	}

	socket := filepath.Join(dir, "mounter.sock")
	ms := &MounterServer{Mounter: &DetachedMounter{Binary: "/nonexistent"}}
	mdone := make(chan error, 1)
	go func() { mdone <- ms.Serve(socket) }()
	mh := healthHandler(ProbeMounter(socket))
	for {
		if code, _ := get(mh); code == http.StatusOK {
			break
		}
		select {
		case err := <-mdone:
			t.Fatalf("mounter serve: %v", err)
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	ms.Shutdown(context.Background())
	<-mdone
	if code, body := get(mh); code != http.StatusServiceUnavailable || !strings.Contains(body, "mounter") {
		t.Fatalf("after the mounter stopped: %d %q", code, body)
	}
}
