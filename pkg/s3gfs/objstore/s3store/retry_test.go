package s3store_test

// Tests of retry and error handling against a scripted fake S3 server:
// what the SDK retries, what it must not, and how s3store settles a
// conditional put whose first attempt may have landed.

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

// fakeS3 serves PUT, GET and HEAD of objects in one bucket, path-style. A
// test scripts failures with fail: it is called for each request first and
// may write a response itself (returning true).
type fakeS3 struct {
	mu    sync.Mutex
	objs  map[string][]byte
	calls map[string]int // "PUT", "GET", "HEAD" -> count
	fail  func(w http.ResponseWriter, r *http.Request, n int) bool
}

var lastModified = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newFake(t *testing.T, fail func(w http.ResponseWriter, r *http.Request, n int) bool) (*fakeS3, *s3store.Store) {
	f := &fakeS3{objs: map[string][]byte{}, calls: map[string]int{}, fail: fail}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	store := newStore(t, s3store.Config{
		Bucket: "b", Endpoint: srv.URL, AccessKey: "a", SecretKey: "s",
		Retries: 3, MaxBackoff: 10 * time.Millisecond,
	})
	return f, store
}

func (f *fakeS3) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func etagOf(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted</Message></Error>`, code)
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/b/")
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body)) // for fail to read again
	f.mu.Lock()
	f.calls[r.Method]++
	n := f.calls[r.Method]
	f.mu.Unlock()
	// The server's clock, which a put reports as its LastModified.
	w.Header().Set("Date", lastModified.Format(http.TimeFormat))
	if f.fail != nil && f.fail(w, r, n) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		if _, ok := f.objs[key]; ok && r.Header.Get("If-None-Match") == "*" {
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
		f.objs[key] = body
		w.Header().Set("ETag", etagOf(body))
	case http.MethodGet, http.MethodHead:
		obj, ok := f.objs[key]
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchKey")
			return
		}
		if m := r.Header.Get("If-Match"); m != "" && m != etagOf(obj) {
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
		w.Header().Set("ETag", etagOf(obj))
		w.Header().Set("Last-Modified", lastModified.Format(http.TimeFormat))
		w.Header().Set("Content-Length", fmt.Sprint(len(obj)))
		if r.Method == http.MethodGet {
			w.Write(obj)
		}
	default:
		s3Error(w, http.StatusNotImplemented, "NotImplemented")
	}
}

// failPuts fails the first n PUTs with status and code.
func failPuts(n, status int, code string) func(http.ResponseWriter, *http.Request, int) bool {
	return func(w http.ResponseWriter, r *http.Request, i int) bool {
		if r.Method == http.MethodPut && i <= n {
			s3Error(w, status, code)
			return true
		}
		return false
	}
}

func TestPreconditionNotRetried(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{412, "PreconditionFailed"},
		{409, "ConditionalRequestConflict"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			f, store := newFake(t, failPuts(100, tc.status, tc.code))
			_, err := store.PutIfAbsent(t.Context(), "k", []byte("x"))
			checkIs(t, "PutIfAbsent", err, objstore.ErrExists)
			if n := f.count("PUT"); n != 1 {
				t.Errorf("%d %s was sent %d times, want once", tc.status, tc.code, n)
			}
		})
	}
}

func TestTransientErrorsRetried(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{503, "SlowDown"},
		{500, "InternalError"},
		{429, "TooManyRequests"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			f, store := newFake(t, failPuts(2, tc.status, tc.code))
			info, err := store.PutIfAbsent(t.Context(), "k", []byte("x"))
			if err != nil {
				t.Fatalf("PutIfAbsent after two %d: %v", tc.status, err)
			}
			if n := f.count("PUT"); n != 3 {
				t.Errorf("sent %d PUTs, want 3", n)
			}
			if !info.LastModified.Equal(lastModified) {
				t.Errorf("LastModified = %v, want the server's %v", info.LastModified, lastModified)
			}
		})
	}
}

func TestRetriesExhausted(t *testing.T) {
	f, store := newFake(t, failPuts(100, 503, "SlowDown"))
	_, err := store.Put(t.Context(), "k", []byte("x"))
	checkIs(t, "Put", err, objstore.ErrUnavailable)
	if n := f.count("PUT"); n != 4 {
		t.Errorf("sent %d PUTs, want 4 (Retries: 3)", n)
	}
}

// TestAmbiguousPutIfAbsent: the first attempt is stored but its response is
// a 500; the retry then finds the object. Whether that is our own write is
// decided by its ETag.
func TestAmbiguousPutIfAbsent(t *testing.T) {
	landedThen500 := func(f **fakeS3, other []byte) func(http.ResponseWriter, *http.Request, int) bool {
		return func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.Method != http.MethodPut || n != 1 {
				return false
			}
			body, _ := io.ReadAll(r.Body)
			(*f).mu.Lock()
			if other != nil {
				body = other // someone else's write got there first
			}
			(*f).objs[strings.TrimPrefix(r.URL.Path, "/b/")] = body
			(*f).mu.Unlock()
			s3Error(w, 500, "InternalError")
			return true
		}
	}
	t.Run("own", func(t *testing.T) {
		var f *fakeS3
		f, store := newFake(t, nil)
		f.fail = landedThen500(&f, nil)
		info, err := store.PutIfAbsent(t.Context(), "k", []byte("mine"))
		if err != nil {
			t.Fatalf("PutIfAbsent whose first attempt landed: %v", err)
		}
		if info.ETag != strings.Trim(etagOf([]byte("mine")), `"`) || info.Size != 4 {
			t.Errorf("info = %+v", info)
		}
	})
	t.Run("other", func(t *testing.T) {
		var f *fakeS3
		f, store := newFake(t, nil)
		f.fail = landedThen500(&f, []byte("theirs"))
		_, err := store.PutIfAbsent(t.Context(), "k", []byte("mine"))
		checkIs(t, "PutIfAbsent", err, objstore.ErrExists)
	})
}

// TestGetBodyCutOff: a response body that breaks off is fetched again.
func TestGetBodyCutOff(t *testing.T) {
	body := []byte(strings.Repeat("0123456789", 100))
	var f *fakeS3
	f, store := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method != http.MethodGet || n != 1 {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Header().Set("Last-Modified", lastModified.Format(http.TimeFormat))
		w.WriteHeader(200)
		w.Write(body[:300])
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return true
	})
	f.objs["k"] = body
	got, _, err := store.Get(t.Context(), "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got) != string(body) {
		t.Errorf("got %d bytes, want %d", len(got), len(body))
	}
	if n := f.count("GET"); n != 2 {
		t.Errorf("sent %d GETs, want 2", n)
	}
}

// TestPutPayloadUnsigned: PUTs over plain HTTP send UNSIGNED-PAYLOAD, not
// the SHA-256 of their body (the SDK's default off TLS, a third of a
// mount's CPU while writing), and the header is still among the signed
// ones; or they are presigned (PutIfAbsent of a plain key), whose
// payload SigV4 never covers.
func TestPutPayloadUnsigned(t *testing.T) {
	var (
		mu      sync.Mutex
		hashes  []string
		signeds []string
	)
	_, store := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method == http.MethodPut {
			mu.Lock()
			h := r.Header.Get("X-Amz-Content-Sha256")
			if r.URL.Query().Get("X-Amz-Signature") != "" && h == "" {
				h = "presigned"
			}
			hashes = append(hashes, h)
			signeds = append(signeds, r.Header.Get("Authorization")+r.URL.Query().Get("X-Amz-SignedHeaders"))
			mu.Unlock()
		}
		return false
	})
	ctx := t.Context()
	body := []byte("payload")
	if _, err := store.Put(ctx, "a", body); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutIfAbsent(ctx, "b", body); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutIfMatch(ctx, "a", body, strings.Trim(etagOf(body), `"`)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hashes) != 3 {
		t.Fatalf("%d PUTs seen, want 3", len(hashes))
	}
	if hashes[1] != "presigned" {
		t.Errorf("PutIfAbsent of a plain key: %q, want a presigned request", hashes[1])
	}
	for i, h := range hashes {
		if i == 1 {
			continue
		}
		if h != "UNSIGNED-PAYLOAD" {
			t.Errorf("PUT %d: X-Amz-Content-Sha256 %q, want UNSIGNED-PAYLOAD", i, h)
		}
		if !strings.Contains(signeds[i], "x-amz-content-sha256") {
			t.Errorf("PUT %d: X-Amz-Content-Sha256 not signed: %s", i, signeds[i])
		}
	}
}

// TestPutWithinSignsOnStoreClock: a presigned conditional PUT is signed
// with the store's clock as last seen in a response's Date (here the fake's
// fixed 2030 clock), learnt between two requests of one Store, and expires
// after the time asked for (rounded up, plus a second: presignExpiry).
func TestPutWithinSignsOnStoreClock(t *testing.T) {
	var (
		mu       sync.Mutex
		dates    []string
		expiries []string
	)
	_, store := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method == http.MethodPut {
			mu.Lock()
			dates = append(dates, r.URL.Query().Get("X-Amz-Date"))
			expiries = append(expiries, r.URL.Query().Get("X-Amz-Expires"))
			mu.Unlock()
		}
		return false
	})
	ctx := t.Context()
	for i, key := range []string{"a", "b", "c"} {
		if _, err := store.PutIfAbsentWithin(ctx, key, []byte("x"), time.Duration(i+5)*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dates) != 3 {
		t.Fatalf("%d PUTs seen, want 3", len(dates))
	}
	for i, d := range dates {
		signed, err := time.Parse("20060102T150405Z", d)
		if err != nil {
			t.Fatalf("PUT %d: X-Amz-Date %q: %v", i, d, err)
		}
		onStore := signed.Sub(lastModified).Abs() < time.Minute
		if onStore != (i > 0) {
			t.Errorf("PUT %d signed at %v; the store's clock reads %v (learnt from the first response)", i, signed, lastModified)
		}
		if want := fmt.Sprint(i + 5 + 1); expiries[i] != want {
			t.Errorf("PUT %d: X-Amz-Expires %s, want %s", i, expiries[i], want)
		}
	}
}

// TestRangeAnsweredWithMoreRefused: a store that answers a ranged GET with
// more bytes than asked for (this fake ignores Range, as a broken or
// hostile server may) is refused, not read: a bounded read of a small
// record or one 64 KiB block must never make the host hold a huge body.
func TestRangeAnsweredWithMoreRefused(t *testing.T) {
	f, store := newFake(t, nil)
	f.objs["k"] = bytes.Repeat([]byte("x"), 1<<20)
	got, err := store.GetRange(t.Context(), "k", 0, 100)
	if err == nil {
		t.Fatalf("GetRange of 100 bytes returned %d bytes and no error", len(got))
	}
	if errors.Is(err, objstore.ErrUnavailable) {
		t.Errorf("refused as a transient fault (it would be retried): %v", err)
	}
	if n := f.count("GET"); n != 1 {
		t.Errorf("sent %d GETs, want 1", n)
	}
	// A whole-object GET has no such bound.
	if all, _, err := store.Get(t.Context(), "k"); err != nil || len(all) != 1<<20 {
		t.Errorf("Get: %d bytes, %v", len(all), err)
	}
}
