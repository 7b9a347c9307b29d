package cache

import (
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// A cached Buf goes back to its pool only once the cache has evicted it
// and every reader that acquired it has released it; one that Get handed
// out (uncounted) never does.
func TestBufFreedAfterLastRelease(t *testing.T) {
	c, err := New(8, "")
	if err != nil {
		t.Fatal(err)
	}
	freed := map[string]int{}
	mk := func(name string, n int) *Buf {
		return NewBuf(make([]byte, n), func() { freed[name]++ })
	}
	a, b, d := mk("a", 4), mk("b", 4), mk("d", 8)
	ka, kb, kd := Key{EID: 1}, Key{EID: 2}, Key{EID: 3}
	var ref format.ExtentRef
	c.PutBuf(ka, a)
	c.PutBuf(kb, b)
	a.Release() // the fetchers' references
	b.Release()
	r, ok := c.GetBuf(ka, ref) // a reader of a
	if !ok || r != a {
		t.Fatal("a not cached")
	}
	if _, ok := c.Get(kb, ref); !ok { // an uncounted reader of b
		t.Fatal("b not cached")
	}
	c.PutBuf(kd, d) // evicts a and b
	d.Release()
	if _, ok := c.GetBuf(ka, ref); ok {
		t.Fatal("a still cached")
	}
	if _, ok := c.GetBuf(kb, ref); ok {
		t.Fatal("b still cached")
	}
	if freed["a"] != 0 {
		t.Fatal("a freed while a reader holds it")
	}
	r.Release()
	if freed["a"] != 1 {
		t.Fatalf("a freed %d times after its last release, want 1", freed["a"])
	}
	if freed["b"] != 0 {
		t.Fatal("b, which Get handed out, was freed")
	}
	if freed["d"] != 0 {
		t.Fatal("d freed while cached")
	}
}
