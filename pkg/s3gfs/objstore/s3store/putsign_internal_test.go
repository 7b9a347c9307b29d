package s3store

import (
	"context"
	"net/url"
	"testing"
	"time"
)

// The PUTs putSigner presigns are exactly the SDK's: same URL, same query
// (signature included, when both are signed within one second) and same
// signed headers, for path-style and virtual-hosted addressing and keys
// that need escaping.
func TestPutSignerMatchesSDK(t *testing.T) {
	keys := []string{"vol/i/0123456789abcdef/fffffffffffffffe", "a b/c+d/e%f/~g/é/x=y&z", "trailing/"}
	for _, pathStyle := range []bool{true, false} {
		s, err := New(context.Background(), Config{Bucket: "bkt", Endpoint: "http://s3.example.test:9000", Region: "eu-west-3",
			AccessKey: "AK", SecretKey: "SK", PathStyle: &pathStyle})
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			var ours, sdk string
			for attempt := 0; ; attempt++ {
				o, oh, err := s.presignPut(t.Context(), key, 123, 7*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				k, kh, err := s.sdkPresignPut(t.Context(), key, 123, 7*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !s.putSigner.ok {
					t.Fatalf("path style %v: the SDK's URL %s was not understood", pathStyle, k)
				}
				if oh.Get("If-None-Match") != "*" || kh.Get("If-None-Match") != "*" {
					t.Fatalf("signed headers: ours %v, SDK's %v", oh, kh)
				}
				ou, _ := url.Parse(o)
				ku, _ := url.Parse(k)
				if ou.Query().Get("X-Amz-Date") != ku.Query().Get("X-Amz-Date") && attempt < 5 {
					continue // signed in different seconds
				}
				ours, sdk = o, k
				if ou.Scheme != ku.Scheme || ou.Host != ku.Host || ou.EscapedPath() != ku.EscapedPath() {
					t.Fatalf("path style %v, key %q: URL\n ours %s\n SDK  %s", pathStyle, key, o, k)
				}
				oq, kq := ou.Query(), ku.Query()
				for name := range kq {
					if oq.Get(name) != kq.Get(name) {
						t.Fatalf("path style %v, key %q: query %s: ours %q, SDK's %q\n%s\n%s", pathStyle, key, name, oq.Get(name), kq.Get(name), o, k)
					}
				}
				if len(oq) != len(kq) {
					t.Fatalf("path style %v, key %q: query\n ours %v\n SDK  %v", pathStyle, key, oq, kq)
				}
				break
			}
			t.Logf("%s\n%s", ours, sdk)
		}
	}
}
