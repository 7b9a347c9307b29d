package s3store_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

// sinkStore is a Store whose server drains every request body and answers
// 200 with an ETag and a Date: what a PUT costs on the client side.
func sinkStore(b *testing.B) *s3store.Store {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
	}))
	b.Cleanup(srv.Close)
	s, err := s3store.New(b.Context(), s3store.Config{
		Bucket: "b", Endpoint: srv.URL, AccessKey: "a", SecretKey: "s",
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchPut(b *testing.B, size int, put func(s *s3store.Store, body []byte) error) {
	s := sinkStore(b)
	body := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if err := put(s, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut4MiB: one extent-sized PUT over plain HTTP.
func BenchmarkPut4MiB(b *testing.B) {
	benchPut(b, 4<<20, func(s *s3store.Store, body []byte) error {
		_, err := s.Put(b.Context(), "k", body)
		return err
	})
}

// BenchmarkPutIfAbsent4MiB: an extent upload (a presigned request, past
// the SDK's middleware, its body written in one write: bodyConn).
func BenchmarkPutIfAbsent4MiB(b *testing.B) {
	benchPut(b, 4<<20, func(s *s3store.Store, body []byte) error {
		_, err := s.PutIfAbsent(b.Context(), "k", body)
		return err
	})
}

// BenchmarkPutIfAbsent4KiB: a small conditional create (a small file's
// inode version).
func BenchmarkPutIfAbsent4KiB(b *testing.B) {
	benchPut(b, 4<<10, func(s *s3store.Store, body []byte) error {
		_, err := s.PutIfAbsent(b.Context(), "k", body)
		return err
	})
}

// BenchmarkPutIfAbsentWithin4KiB: the same through the presigned,
// self-expiring conditional PUT.
func BenchmarkPutIfAbsentWithin4KiB(b *testing.B) {
	benchPut(b, 4<<10, func(s *s3store.Store, body []byte) error {
		_, err := s.PutIfAbsentWithin(b.Context(), "k", body, 10*time.Second)
		return err
	})
}
