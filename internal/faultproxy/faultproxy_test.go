package faultproxy_test

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// backend is a scripted upstream that counts the requests it handled and
// echoes the Host header it received.
type backend struct {
	hits atomic.Int64
	srv  *httptest.Server
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %d %s", r.Method, r.URL.Path, len(body), strings.Repeat("x", 100))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func newProxy(t *testing.T, target string, seed uint64) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// client has no retries and no connection reuse surprises: each test
// request sees exactly one fault decision.
func client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func TestForwardKeepsHost(t *testing.T) {
	b := newBackend(t)
	p := newProxy(t, b.srv.URL, 1)
	resp, err := client().Post(p.URL()+"/bucket/key", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "POST /bucket/key 5 ") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Seen-Host"); got != p.Addr() {
		t.Fatalf("upstream saw Host %q, want the proxy's %q (the one the client signed)", got, p.Addr())
	}
	if s := p.Stats(); s.Requests != 1 || s.Forwarded != 1 {
		t.Fatalf("stats %v", s)
	}
}

func TestRefusesNonLoopbackTarget(t *testing.T) {
	for _, target := range []string{"http://10.1.2.3:9000", "http://example.com", "https://127.0.0.1:1", "ftp://127.0.0.1:1"} {
		if p, err := faultproxy.New(target, 1); err == nil {
			p.Close()
			t.Errorf("New(%q) accepted a non-loopback or non-http target", target)
		}
	}
}

type s3Err struct {
	Code      string
	Message   string
	RequestID string `xml:"RequestId"`
}

func TestErrorAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults faultproxy.Faults
		status int
		code   string
	}{
		{"slowdown", faultproxy.Faults{SlowDown: 1}, 503, "SlowDown"},
		{"internal", faultproxy.Faults{InternalError: 1}, 500, "InternalError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			p := newProxy(t, b.srv.URL, 1)
			p.SetFaults(tc.faults)
			resp, err := client().Get(p.URL() + "/bucket/key")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e s3Err
			if err := xml.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("error body is not S3 XML: %v", err)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || e.RequestID == "" || resp.Header.Get("Content-Type") != "application/xml" {
				t.Fatalf("got %d %+v", resp.StatusCode, e)
			}
			if b.hits.Load() != 0 {
				t.Fatal("a failed request reached the server")
			}
			// HEAD: the status only, as S3 answers.
			resp, err = client().Head(p.URL() + "/bucket/key")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("HEAD: %d", resp.StatusCode)
			}
		})
	}
}

func TestDrops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		faults  faultproxy.Faults
		reached bool
	}{
		{"before", faultproxy.Faults{DropBefore: 1}, false},
		{"after", faultproxy.Faults{DropAfter: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			p := newProxy(t, b.srv.URL, 1)
			p.SetFaults(tc.faults)
			resp, err := client().Post(p.URL()+"/bucket/key", "text/plain", strings.NewReader("data"))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request got a response (%d) through a dropped connection", resp.StatusCode)
			}
			if got := b.hits.Load() > 0; got != tc.reached {
				t.Fatalf("request reached the server: %v, want %v", got, tc.reached)
			}
		})
	}
	t.Run("mid-body", func(t *testing.T) {
		b := newBackend(t)
		p := newProxy(t, b.srv.URL, 1)
		p.SetFaults(faultproxy.Faults{DropMidBody: 1})
		resp, err := client().Get(p.URL() + "/bucket/key")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) == 0 {
			t.Fatalf("read %d bytes, err %v: want a body cut short", len(body), err)
		}
	})
}

func TestLatency(t *testing.T) {
	b := newBackend(t)
	p := newProxy(t, b.srv.URL, 1)
	p.SetFaults(faultproxy.Faults{Latency: 150 * time.Millisecond, Jitter: 50 * time.Millisecond})
	start := time.Now()
	resp, err := client().Get(p.URL() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("answered after %v, before the added latency", d)
	}
}

func TestPartition(t *testing.T) {
	b := newBackend(t)
	p := newProxy(t, b.srv.URL, 1)
	// A keep-alive client: the partition must cut its idle connection too.
	c := &http.Client{Timeout: 5 * time.Second}
	get := func() error {
		resp, err := c.Get(p.URL() + "/x")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	p.Partition(true)
	hits := b.hits.Load()
	for i := 0; i < 5; i++ {
		if err := get(); err == nil {
			t.Fatal("a request got through a partition")
		}
	}
	if b.hits.Load() != hits {
		t.Fatal("the server saw requests during the partition")
	}
	p.Partition(false)
	if err := get(); err != nil {
		t.Fatalf("after healing: %v", err)
	}
	if s := p.Stats(); s.Refused == 0 {
		t.Fatalf("stats %v: no refusal counted", s)
	}
}

func TestPause(t *testing.T) {
	b := newBackend(t)
	p := newProxy(t, b.srv.URL, 1)
	p.Pause(true)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		resp, err := client().Get(p.URL() + "/x")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a request went through a pause: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if b.hits.Load() != 0 {
		t.Fatal("the server saw a request during the pause")
	}
	p.Pause(false)
	if err := <-done; err != nil {
		t.Fatalf("after the pause: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("answered after %v", d)
	}
	if s := p.Stats(); s.Held != 1 || s.Forwarded != 1 {
		t.Fatalf("stats %v", s)
	}
}

// outcomes runs n sequential requests and returns what each got.
func outcomes(t *testing.T, p *faultproxy.Proxy, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		resp, err := client().Get(p.URL() + "/x")
		if err != nil {
			b.WriteString("E")
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&b, "%d,", resp.StatusCode)
	}
	return b.String()
}

func TestSeeded(t *testing.T) {
	f := faultproxy.Faults{SlowDown: 0.2, InternalError: 0.2, DropBefore: 0.2}
	b := newBackend(t)
	var runs []string
	for _, seed := range []uint64{42, 42, 43} {
		p := newProxy(t, b.srv.URL, seed)
		p.SetFaults(f)
		runs = append(runs, outcomes(t, p, 40))
	}
	if runs[0] != runs[1] {
		t.Fatalf("same seed, different faults:\n%s\n%s", runs[0], runs[1])
	}
	if runs[0] == runs[2] {
		t.Fatalf("different seeds, same faults: %s", runs[0])
	}
	for _, want := range []string{"200,", "503,", "500,", "E"} {
		if !strings.Contains(runs[0], want) {
			t.Fatalf("outcome %q never happened in %s", want, runs[0])
		}
	}
}

// TestS3ThroughProxy checks, against the real test S3 server, that a
// client signing for the proxy's address is accepted (the server checks
// the signature against the Host header it receives), and that s3store's
// retries ride out every kind of fault, including a conditional put whose
// response was lost after the object was written.
func TestS3ThroughProxy(t *testing.T) {
	srv := testenv.S3(t)
	p := newProxy(t, srv.Endpoint, 7)
	cfg := srv.Config(testenv.BucketName(t))
	cfg.Endpoint = p.URL()
	cfg.MaxBackoff = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := s3store.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureBucket(ctx); err != nil {
		t.Fatalf("create bucket through the proxy: %v", err)
	}
	if _, err := store.Put(ctx, "plain", []byte("v")); err != nil {
		t.Fatalf("signed request through the proxy refused: %v", err)
	}
	p.SetFaults(faultproxy.Faults{Latency: time.Millisecond, SlowDown: 0.1, InternalError: 0.1, DropBefore: 0.05, DropAfter: 0.1, DropMidBody: 0.1})
	for i := 0; i < 40; i++ {
		key := fmt.Sprintf("k/%03d", i)
		body := []byte(fmt.Sprintf("object %d %s", i, strings.Repeat("z", i*10)))
		if _, err := store.PutIfAbsent(ctx, key, body); err != nil {
			t.Fatalf("put-if-absent %s: %v", key, err)
		}
		got, _, err := store.Get(ctx, key)
		if err != nil || string(got) != string(body) {
			t.Fatalf("get %s: %q, %v", key, got, err)
		}
		if _, err := store.PutIfAbsent(ctx, key, []byte("someone else")); !errors.Is(err, objstore.ErrExists) {
			t.Fatalf("second put-if-absent of %s: %v, want ErrExists", key, err)
		}
	}
	page, err := store.List(ctx, "k/", "", 0)
	if err != nil || len(page.Objects) != 40 {
		t.Fatalf("list: %d objects, %v", len(page.Objects), err)
	}
	st := p.Stats()
	t.Logf("proxy: %v", st)
	if st.DropsAfter == 0 || st.SlowDowns == 0 || st.DropsMidBody == 0 {
		t.Fatalf("faults not exercised: %v", st)
	}
}
