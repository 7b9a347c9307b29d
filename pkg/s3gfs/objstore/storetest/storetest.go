// Package storetest is the conformance suite for objstore.Store: one set of
// tests, run against every implementation, that checks the contract written
// down in package objstore.
//
// An implementation's tests call Run with a function that returns a store
// to test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) objstore.Store { return memstore.New("b") })
//	}
//
// Subtests run in parallel and each writes only under its own unique key
// prefix, so newStore may return the same bucket every time, and runs may
// share a bucket with other tests.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// RaceWriters is how many goroutines race to create one key.
const RaceWriters = 16

// ManyKeys is how many keys the DeleteMany test deletes: more than the
// 1000 S3 accepts in one request, so implementations must batch.
const ManyKeys = 1100

// Run runs the conformance suite. newStore is called once per subtest, from
// parallel subtests.
func Run(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s objstore.Store, prefix string)
	}{
		{"Bucket", testBucket},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"PutOverwrite", testPutOverwrite},
		{"PutIfMatch", testPutIfMatch},
		{"PutIfMatchRace", testPutIfMatchRace},
		{"Missing", testMissing},
		{"GetRange", testGetRange},
		{"Head", testHead},
		{"ListOrder", testListOrder},
		{"ListPaging", testListPaging},
		{"ListStartAfter", testListStartAfter},
		{"ListPrefix", testListPrefix},
		{"ListMax", testListMax},
		{"LastModified", testLastModified},
		{"Clock", testClock},
		{"Delete", testDelete},
		{"DeleteMany", testDeleteMany},
		{"BinaryBody", testBinaryBody},
		{"EmptyBody", testEmptyBody},
		{"KeyNames", testKeyNames},
		{"Canceled", testCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t), uniquePrefix(t))
		})
	}
}

// uniquePrefix is a key prefix no other test or run uses.
func uniquePrefix(t *testing.T) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("storetest/%s-%s/", name, hex.EncodeToString(b))
}

// ctx is a context for one test, bounded so a hung store fails the test
// instead of the whole binary.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func testBucket(t *testing.T, s objstore.Store, _ string) {
	if s.Bucket() == "" {
		t.Error("Bucket() is empty")
	}
}

func testPutIfAbsent(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	key := p + "obj"
	info, err := s.PutIfAbsent(c, key, []byte("first"))
	if err != nil {
		t.Fatalf("first PutIfAbsent: %v", err)
	}
	checkNewInfo(t, "PutIfAbsent", info, key, 5)

	_, err = s.PutIfAbsent(c, key, []byte("second"))
	if !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("second PutIfAbsent: got %v, want ErrExists", err)
	}
	checkMentions(t, err, key)

	got, ginfo, err := s.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "first" {
		t.Errorf("Get after lost PutIfAbsent = %q, want %q", got, "first")
	}
	sameInfo(t, "Get vs PutIfAbsent", ginfo, info)

	// An object made by Put is just as present.
	if _, err := s.Put(c, p+"put", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIfAbsent(c, p+"put", []byte("y")); !errors.Is(err, objstore.ErrExists) {
		t.Errorf("PutIfAbsent over Put: got %v, want ErrExists", err)
	}
}

func testPutIfAbsentRace(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	for round := range 3 {
		key := fmt.Sprintf("%srace-%d", p, round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, RaceWriters)
			infos = make([]objstore.ObjectInfo, RaceWriters)
		)
		for i := range RaceWriters {
			wg.Go(func() {
				<-start
				infos[i], errs[i] = s.PutIfAbsent(c, key, []byte(fmt.Sprintf("writer %d", i)))
			})
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("round %d: writers %d and %d both won", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, objstore.ErrExists):
				t.Errorf("round %d: writer %d: got %v, want nil or ErrExists", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		got, info, err := s.Get(c, key)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("writer %d", winner); string(got) != want {
			t.Errorf("round %d: stored %q, but the winner wrote %q", round, got, want)
		}
		sameInfo(t, "Get vs winner's PutIfAbsent", info, infos[winner])
	}
}

func testPutOverwrite(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	key := p + "obj"
	v1, err := s.PutIfAbsent(c, key, []byte("version one"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Put(c, key, []byte("v2"))
	if err != nil {
		t.Fatalf("Put over existing: %v", err)
	}
	checkNewInfo(t, "Put", v2, key, 2)
	if v2.ETag == v1.ETag {
		t.Errorf("ETag unchanged by an overwrite with other content: %q", v2.ETag)
	}
	if v2.LastModified.Before(v1.LastModified) {
		t.Errorf("overwrite's LastModified %v is before the original's %v", v2.LastModified, v1.LastModified)
	}
	got, info, err := s.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "v2" {
		t.Errorf("Get = %q, want %q", got, "v2")
	}
	sameInfo(t, "Get vs Put", info, v2)

	// Put also creates.
	if _, err := s.Put(c, p+"new", []byte("n")); err != nil {
		t.Fatalf("Put of a new key: %v", err)
	}
	if got, _, err := s.Get(c, p+"new"); err != nil || string(got) != "n" {
		t.Errorf("Get new = %q, %v", got, err)
	}
}

func testPutIfMatch(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	key := p + "obj"
	v1, err := s.PutIfAbsent(c, key, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.PutIfMatch(c, key, []byte("two"), v1.ETag)
	if err != nil {
		t.Fatalf("PutIfMatch with the current ETag: %v", err)
	}
	checkNewInfo(t, "PutIfMatch", v2, key, 3)
	if v2.ETag == v1.ETag {
		t.Errorf("ETag unchanged by PutIfMatch with other content")
	}
	_, err = s.PutIfMatch(c, key, []byte("three"), v1.ETag)
	if !errors.Is(err, objstore.ErrPrecondition) || errors.Is(err, objstore.ErrExists) {
		t.Fatalf("PutIfMatch with a stale ETag: got %v, want ErrPrecondition (not ErrExists)", err)
	}
	checkMentions(t, err, key)
	got, info, err := s.Get(c, key)
	if err != nil || string(got) != "two" {
		t.Fatalf("Get after lost PutIfMatch = %q, %v; want \"two\"", got, err)
	}
	sameInfo(t, "Get vs PutIfMatch", info, v2)
	_, err = s.PutIfMatch(c, p+"missing", []byte("x"), v1.ETag)
	if !errors.Is(err, objstore.ErrNotFound) && !errors.Is(err, objstore.ErrPrecondition) {
		t.Fatalf("PutIfMatch of a missing key: got %v, want ErrNotFound or ErrPrecondition", err)
	}
	if _, _, err := s.Get(c, p+"missing"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("failed PutIfMatch created the key: %v", err)
	}
}

func testPutIfMatchRace(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	key := p + "obj"
	base, err := s.PutIfAbsent(c, key, []byte("base"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	var won atomic.Int32
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.PutIfMatch(c, key, []byte(fmt.Sprintf("writer %d", i)), base.ETag)
			if err == nil {
				won.Add(1)
			} else if !errors.Is(err, objstore.ErrPrecondition) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("racing PutIfMatch: %v", err)
		}
	}
	if won.Load() != 1 {
		t.Errorf("%d racing PutIfMatch calls with one ETag succeeded, want exactly 1", won.Load())
	}
}

func testMissing(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	key := p + "missing"
	if _, _, err := s.Get(c, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Get: got %v, want ErrNotFound", err)
	} else {
		checkMentions(t, err, key)
	}
	if _, err := s.Head(c, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Head: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetRange(c, key, 0, 10); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("GetRange: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetRange(c, key, 0, 0); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("GetRange of 0 bytes: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetRange(c, key, 1000, 10); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("GetRange past the end: got %v, want ErrNotFound", err)
	}
}

func testGetRange(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	body := make([]byte, 100)
	for i := range body {
		body[i] = byte(i)
	}
	key, empty := p+"hundred", p+"empty"
	if _, err := s.PutIfAbsent(c, key, body); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIfAbsent(c, empty, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key         string
		off, length int64
		want        []byte
	}{
		{key, 0, 10, body[0:10]},
		{key, 10, 20, body[10:30]},
		{key, 0, 100, body},
		{key, 0, 1000, body},
		{key, 10, math.MaxInt64, body[10:]}, // "to the end"
		{key, 99, 1, body[99:]},
		{key, 90, 20, body[90:]}, // runs past the end
		{key, 100, 5, nil},       // starts at the end
		{key, 150, 5, nil},       // starts past the end
		{key, 5, 0, nil},         // zero length
		{empty, 0, 10, nil},
		{empty, 0, 0, nil},
	} {
		got, err := s.GetRange(c, tc.key, tc.off, tc.length)
		if err != nil {
			t.Errorf("GetRange(%s, %d, %d): %v", tc.key, tc.off, tc.length, err)
			continue
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("GetRange(%s, %d, %d) = %d bytes %v, want %d bytes", tc.key, tc.off, tc.length, len(got), clip(got), len(tc.want))
		}
	}
}

func testHead(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	for i, body := range [][]byte{[]byte("hello, head"), nil} {
		key := fmt.Sprintf("%sobj%d", p, i)
		put, err := s.Put(c, key, body)
		if err != nil {
			t.Fatal(err)
		}
		head, err := s.Head(c, key)
		if err != nil {
			t.Fatal(err)
		}
		checkNewInfo(t, "Head", head, key, int64(len(body)))
		sameInfo(t, "Head vs Put", head, put)
	}
}

func testListOrder(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	// Ascending byte order, chosen to catch sorting by rune, by case, or by
	// path component ('-' < '/' < '0' < 'a' < '~' < 0xC3 of "é"). No key is
	// also a "directory" of another: filesystem-backed servers cannot store
	// both "a" and "a/b".
	want := []string{"B", "a b", "a-b", "a/c", "a/d/e", "a0", "aa", "z", "~x", "é"}
	infos := map[string]objstore.ObjectInfo{}
	for _, i := range mrand.Perm(len(want)) {
		info, err := s.PutIfAbsent(c, p+want[i], []byte(want[i]))
		if err != nil {
			t.Fatal(err)
		}
		infos[p+want[i]] = info
	}
	page, err := s.List(c, p, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if page.Truncated {
		t.Error("Truncated listing of 10 keys with max 0")
	}
	if got := keysOf(page, p); !slices.Equal(got, want) {
		t.Fatalf("List order:\n got %q\nwant %q", got, want)
	}
	for _, o := range page.Objects {
		sameInfo(t, "List vs PutIfAbsent", o, infos[o.Key])
	}
}

// putKeys creates p+name for each name, 16 at a time, and fails the test on
// any error.
func putKeys(t *testing.T, s objstore.Store, p string, names []string) {
	c := ctx(t)
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 16)
		mu   sync.Mutex
		errs []error
	)
	for _, n := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := s.PutIfAbsent(c, p+n, []byte(n)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func numbered(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("k%04d", i)
	}
	return names
}

func testListPaging(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	names := numbered(25)
	putKeys(t, s, p, names)

	var got []string
	var truncs []bool
	after := ""
	for range 10 {
		page, err := s.List(c, p, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keysOf(page, p)...)
		truncs = append(truncs, page.Truncated)
		if !page.Truncated {
			break
		}
		if len(page.Objects) == 0 {
			t.Fatal("empty page marked Truncated")
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
	if !slices.Equal(got, names) {
		t.Errorf("paged listing:\n got %q\nwant %q", got, names)
	}
	if fmt.Sprint(truncs) != "[true true false]" {
		t.Errorf("Truncated flags of pages of 10, 10, 5 keys = %v, want [true true false]", truncs)
	}

	// A page that takes exactly the remaining keys is not truncated.
	page, err := s.List(c, p, p+"k0014", 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(page, p); !slices.Equal(got, names[15:]) || page.Truncated {
		t.Errorf("last exact page: got %q truncated=%v, want %q truncated=false", got, page.Truncated, names[15:])
	}
}

func testListStartAfter(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	names := numbered(10)
	putKeys(t, s, p, names)
	for _, tc := range []struct {
		after string
		want  []string
	}{
		{"", names},
		{p + "k0004", names[5:]},  // an existing key is excluded
		{p + "k0004x", names[5:]}, // a key between two
		{p + "k0009", nil},        // the last key
		{p + "zzz", nil},          // past every key
		{"storetest/", names},     // before the prefix
		{p[:len(p)-1], names},     // the prefix without its '/'
		{p + "k", names},          // a prefix of every key
	} {
		page, err := s.List(c, p, tc.after, 0)
		if err != nil {
			t.Fatalf("List after %q: %v", tc.after, err)
		}
		if got := keysOf(page, p); !slices.Equal(got, tc.want) || page.Truncated {
			t.Errorf("List after %q: got %q truncated=%v, want %q", tc.after, got, page.Truncated, tc.want)
		}
	}
}

func testListPrefix(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	putKeys(t, s, p, []string{"a/1", "a/2", "ab/1", "abc", "b/1"})
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/2"}},
		{"a", []string{"a/1", "a/2", "ab/1", "abc"}}, // a string prefix, not a directory
		{"ab", []string{"ab/1", "abc"}},
		{"b/", []string{"b/1"}},
		{"c/", nil},
		{"a/1", []string{"a/1"}},
	} {
		page, err := s.List(c, p+tc.prefix, "", 0)
		if err != nil {
			t.Fatalf("List %q: %v", tc.prefix, err)
		}
		if got := keysOf(page, p); !slices.Equal(got, tc.want) || page.Truncated {
			t.Errorf("List %q: got %q truncated=%v, want %q", tc.prefix, got, page.Truncated, tc.want)
		}
	}
}

func testListMax(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	names := numbered(5)
	putKeys(t, s, p, names)
	for _, tc := range []struct {
		max   int
		want  []string
		trunc bool
	}{
		{1, names[:1], true},
		{4, names[:4], true},
		{5, names, false},
		{6, names, false},
		{0, names, false},
	} {
		page, err := s.List(c, p, "", tc.max)
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(page, p); !slices.Equal(got, tc.want) || page.Truncated != tc.trunc {
			t.Errorf("List max %d: got %q truncated=%v, want %q truncated=%v", tc.max, got, page.Truncated, tc.want, tc.trunc)
		}
	}
}

func testLastModified(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	var prev objstore.ObjectInfo
	infos := map[string]objstore.ObjectInfo{}
	for i := range 5 {
		key := fmt.Sprintf("%sseq%d", p, i)
		put := s.PutIfAbsent
		if i%2 == 1 {
			put = s.Put
		}
		info, err := put(c, key, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		infos[key] = info
		checkNewInfo(t, "put", info, key, 1)
		if i > 0 && info.LastModified.Before(prev.LastModified) {
			t.Errorf("LastModified went backwards: %s at %v, then %s at %v",
				prev.Key, prev.LastModified, key, info.LastModified)
		}
		prev = info
	}
	// Listing reports the very times the puts returned.
	page, err := s.List(c, p, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != len(infos) {
		t.Fatalf("listed %d objects, want %d", len(page.Objects), len(infos))
	}
	for _, o := range page.Objects {
		sameInfo(t, "List vs put", o, infos[o.Key])
	}
}

func testDelete(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	key := p + "obj"
	if _, err := s.PutIfAbsent(c, key, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(c, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := s.Get(c, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Get after Delete: got %v, want ErrNotFound", err)
	}
	if err := s.Delete(c, key); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := s.Delete(c, p+"never-existed"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if page, err := s.List(c, p, "", 0); err != nil || len(page.Objects) != 0 {
		t.Errorf("List after Delete: %v, %v", keysOf(page, p), err)
	}
	if _, err := s.PutIfAbsent(c, key, []byte("again")); err != nil {
		t.Errorf("PutIfAbsent after Delete: %v", err)
	}
}

func testDeleteMany(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	if err := s.DeleteMany(c, nil); err != nil {
		t.Errorf("DeleteMany(nil): %v", err)
	}
	names := numbered(ManyKeys)
	start := time.Now()
	putKeys(t, s, p+"del/", names)
	putKeys(t, s, p, []string{"keep"})
	created := time.Since(start)

	keys := make([]string, 0, len(names)+2)
	for _, n := range names {
		keys = append(keys, p+"del/"+n)
	}
	keys = append(keys, p+"del/missing-1", p+"missing-2") // missing keys are fine
	mrand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	start = time.Now()
	if err := s.DeleteMany(c, keys); err != nil {
		t.Fatalf("DeleteMany: %v", err)
	}
	t.Logf("created %d keys in %v, deleted them in %v", len(names), created, time.Since(start))

	page, err := s.List(c, p, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(page, p); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("after DeleteMany, keys left: %q (%d), want just \"keep\"", clipKeys(got), len(got))
	}
}

func testBinaryBody(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	body := make([]byte, 256*1024+7)
	for i := range 256 {
		body[i] = byte(i) // every byte value, NUL and invalid UTF-8 included
	}
	rand.Read(body[256:])
	key := p + "bin"
	info, err := s.PutIfAbsent(c, key, body)
	if err != nil {
		t.Fatal(err)
	}
	checkNewInfo(t, "PutIfAbsent", info, key, int64(len(body)))
	got, _, err := s.Get(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Errorf("Get returned %d different bytes, want the %d written", len(got), len(body))
	}
	part, err := s.GetRange(c, key, 100_000, 70_000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, body[100_000:170_000]) {
		t.Error("GetRange of a binary body returned the wrong bytes")
	}
}

func testEmptyBody(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	for i, put := range []func(context.Context, string, []byte) (objstore.ObjectInfo, error){s.PutIfAbsent, s.Put} {
		for j, body := range [][]byte{nil, {}} {
			key := fmt.Sprintf("%sempty-%d-%d", p, i, j)
			info, err := put(c, key, body)
			if err != nil {
				t.Fatal(err)
			}
			checkNewInfo(t, "put", info, key, 0)
			got, ginfo, err := s.Get(c, key)
			if err != nil || len(got) != 0 || ginfo.Size != 0 {
				t.Errorf("Get %s = %d bytes, size %d, %v; want empty", key, len(got), ginfo.Size, err)
			}
		}
	}
	page, err := s.List(c, p, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 4 {
		t.Errorf("listed %d empty objects, want 4", len(page.Objects))
	}
	for _, o := range page.Objects {
		if o.Size != 0 {
			t.Errorf("List: %s has size %d, want 0", o.Key, o.Size)
		}
	}
}

func testKeyNames(t *testing.T, s objstore.Store, p string) {
	c := ctx(t)
	names := []string{
		"with space/file name.txt",
		"ünïcødé/文件 ✓.txt",
		"emoji 🙂",
		"plus+eq=amp&q?hash#pct%25",
		`quotes'"`,
		"semi;colon,comma:colon@at",
		"tilde~star*paren()[brackets]{braces}",
		"dollar$caret^bang!",
		"trailing space ",
	}
	want := make(map[string]string)
	for i, n := range names {
		body := fmt.Sprintf("body %d", i)
		want[p+n] = body
		if _, err := s.PutIfAbsent(c, p+n, []byte(body)); err != nil {
			t.Errorf("PutIfAbsent %q: %v", n, err)
			continue
		}
		got, info, err := s.Get(c, p+n)
		if err != nil || string(got) != body || info.Key != p+n {
			t.Errorf("Get %q = %q (key %q), %v; want %q", n, got, info.Key, err, body)
		}
		if _, err := s.Head(c, p+n); err != nil {
			t.Errorf("Head %q: %v", n, err)
		}
	}
	page, err := s.List(c, p, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, o := range page.Objects {
		listed = append(listed, o.Key)
		if _, ok := want[o.Key]; !ok {
			t.Errorf("List returned unexpected key %q", o.Key)
		}
	}
	if len(listed) != len(names) {
		t.Errorf("List returned %d keys, want %d: %q", len(listed), len(names), listed)
	}
	if err := s.DeleteMany(c, append([]string(nil), listed...)); err != nil {
		t.Errorf("DeleteMany of odd keys: %v", err)
	}
	if page, err := s.List(c, p, "", 0); err != nil || len(page.Objects) != 0 {
		t.Errorf("List after DeleteMany: %q, %v", keysOf(page, p), err)
	}
}

func testCanceled(t *testing.T, s objstore.Store, p string) {
	c, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.PutIfAbsent(c, p+"x", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("PutIfAbsent with a canceled context: got %v, want context.Canceled", err)
	}
	if _, _, err := s.Get(c, p+"x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context: got %v, want context.Canceled", err)
	}
	if _, err := s.List(c, p, "", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a canceled context: got %v, want context.Canceled", err)
	}
}

// checkNewInfo checks the ObjectInfo a write or Head returned.
func checkNewInfo(t *testing.T, what string, info objstore.ObjectInfo, key string, size int64) {
	t.Helper()
	if info.Key != key {
		t.Errorf("%s: Key = %q, want %q", what, info.Key, key)
	}
	if info.Size != size {
		t.Errorf("%s: Size = %d, want %d", what, info.Size, size)
	}
	if info.ETag == "" {
		t.Errorf("%s: empty ETag", what)
	}
	if info.LastModified.IsZero() {
		t.Errorf("%s: zero LastModified", what)
	} else if d := time.Since(info.LastModified); d > time.Hour || d < -time.Hour {
		// The store's clock is authoritative, but an hour off means a unit
		// or parsing bug, not clock skew.
		t.Errorf("%s: LastModified %v is %v away from now", what, info.LastModified, d)
	}
}

// sameInfo checks two descriptions of one object version agree.
func sameInfo(t *testing.T, what string, got, want objstore.ObjectInfo) {
	t.Helper()
	// A put reports the store's clock at its response, which may be a
	// second past the LastModified the store records.
	d := got.LastModified.Sub(want.LastModified)
	if got.Key != want.Key || got.Size != want.Size || got.ETag != want.ETag || d < -time.Second || d > time.Second {
		t.Errorf("%s: got %+v, want %+v", what, got, want)
	}
}

// checkMentions checks err names the key it is about.
func checkMentions(t *testing.T, err error, key string) {
	t.Helper()
	if !strings.Contains(err.Error(), key) {
		t.Errorf("error %q does not mention key %q", err, key)
	}
}

// keysOf returns the page's keys without prefix p.
func keysOf(page objstore.ListPage, p string) []string {
	var keys []string
	for _, o := range page.Objects {
		keys = append(keys, strings.TrimPrefix(o.Key, p))
	}
	return keys
}

func clip(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func clipKeys(k []string) []string {
	if len(k) > 5 {
		return k[:5]
	}
	return k
}

// testClock checks a store's clock agrees with the LastModified it assigns.
func testClock(t *testing.T, s objstore.Store, p string) {
	clock, ok := s.(objstore.Clock)
	if !ok {
		t.Skip("store has no clock")
	}
	c := ctx(t)
	before, err := clock.Now(c)
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	if _, err := s.PutIfAbsent(c, p+"clock", []byte("x")); err != nil {
		t.Fatal(err)
	}
	info, err := s.Head(c, p+"clock")
	if err != nil {
		t.Fatal(err)
	}
	after, err := clock.Now(c)
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	// Stores with 1-second resolution truncate; allow that much.
	if info.LastModified.Before(before.Add(-time.Second)) || info.LastModified.After(after.Add(time.Second)) {
		t.Errorf("LastModified %v outside the store clock's [%v, %v]", info.LastModified, before, after)
	}
}
