package s3store

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// writeLog is a net.Conn that records its writes.
type writeLog struct {
	net.Conn
	writes [][]byte
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return len(p), nil
}

// An uploadBody under the LimitReader net/http puts around a body of
// known length goes out in one Write of the caller's own slice; a body
// the limit does not match exactly, or of another type, is copied.
func TestBodyConnWritesUploadBodyWhole(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for _, tc := range []struct {
		name  string
		r     io.Reader
		n     int // bytes it must write
		whole bool
	}{
		{"upload body", io.LimitReader(uploadBody{bytes.NewReader(body)}, int64(len(body))), len(body), true},
		{"limit below the body", io.LimitReader(uploadBody{bytes.NewReader(body)}, int64(len(body)-1)), len(body) - 1, false},
		{"bytes.Reader", io.LimitReader(bytes.NewReader(body), int64(len(body))), len(body), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &writeLog{}
			n, err := bodyConn{w}.ReadFrom(tc.r)
			if err != nil || n != int64(tc.n) {
				t.Fatalf("wrote %d bytes (%v), want %d", n, err, tc.n)
			}
			want := body[:n]
			got := bytes.Join(w.writes, nil)
			if !bytes.Equal(got, want) {
				t.Fatalf("wrote other bytes than the body's (%d)", len(got))
			}
			one := len(w.writes) == 1 && &w.writes[0][0] == &body[0]
			if one != tc.whole {
				t.Fatalf("%d writes (from the body's slice: %v), want one from it: %v", len(w.writes), one, tc.whole)
			}
			if lr := tc.r.(*io.LimitedReader); tc.whole && lr.N != 0 {
				t.Fatalf("limit left at %d", lr.N)
			}
		})
	}
}

// Through a real transport (one connection, reused), upload requests'
// bodies of every size arrive intact.
func TestUploadRequestBodies(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	dialBodyConns(tr)
	client := &http.Client{Transport: tr}
	sizes := []int{0, 1, 100, 4096, 5000, 64 << 10, 4<<20 + 3}
	var bodies [][]byte
	for i, n := range sizes {
		body := make([]byte, n)
		for j := range body {
			body[j] = byte(j*7 + i)
		}
		bodies = append(bodies, body)
		req, err := newUploadRequest(t.Context(), http.MethodPut, srv.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("PUT of %d bytes: %v", n, err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(sizes) {
		t.Fatalf("server got %d requests, want %d", len(got), len(sizes))
	}
	for i := range got {
		if !bytes.Equal(got[i], bodies[i]) {
			t.Errorf("body %d (%d bytes): server got %d other bytes", i, len(bodies[i]), len(got[i]))
		}
	}
}
