package reaper_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
)

// TestGarbageEverywhere plants garbage and truncated or bit-flipped copies
// of real objects at every kind of key. A pass must neither fail nor
// delete any planted object, nor anything of an inode with an unreadable
// version; fsck must name every planted key under i/ and d/ it reads.
func TestGarbageEverywhere(t *testing.T) {
	e := newTEnv(t)
	fs := e.host()
	for i := range 4 {
		put(t, fs, fmt.Sprintf("d/f%d", i), data(byte('a'+i), extSize+i))
		put(t, fs, fmt.Sprintf("d/f%d", i), data(byte('A'+i), extSize+i))
	}
	rng := rand.New(rand.NewPCG(1, 1))
	mangle := func(b []byte) []byte {
		switch rng.IntN(3) {
		case 0:
			return b[:rng.IntN(len(b))]
		case 1:
			c := append([]byte(nil), b...)
			c[rng.IntN(len(c))] ^= byte(1 + rng.IntN(255))
			return c
		}
		return []byte("not an s3gfs object at all")
	}
	planted := map[string]bool{}
	plant := func(key string, body []byte) {
		e.store.Put(ctx, key, body)
		planted[key] = true
	}
	// Damage the newest version of f0 (every object of f0 is then kept),
	// and an extent f1's newest version names.
	f0 := mustLookup(t, fs, "d/f0")
	k0 := e.vol.Keys.Inode(f0, e.versionsOf(fs, "d/f0")[0])
	obj, _, _ := e.store.Get(ctx, k0)
	plant(k0, mangle(obj))
	f0objs := e.count(fmt.Sprintf("i/%016x/", f0)) + e.count(fmt.Sprintf("d/%016x/", f0))
	f1 := mustLookup(t, fs, "d/f1")
	var ext string
	for _, k := range e.store.Keys() {
		if strings.HasPrefix(k, e.vol.Keys.ExtentDir(f1)) {
			ext = k // one of them; the newest version names one of two
		}
	}
	obj, _, _ = e.store.Get(ctx, ext)
	e.store.Put(ctx, ext, mangle(obj))
	keys := e.vol.Keys
	plant(keys.Inode(0xdead, 3), mangle([]byte("xxxxxxxxxxxxxxxxxxxxxxxx")))
	plant(keys.Extent(0xdead, 7), []byte("junk"))
	plant(keys.Prefix()+"i/zzzz/not-a-key", []byte("junk"))
	plant(keys.Prefix()+"d/0000000000000001", []byte("junk"))
	plant(keys.Snapshot("junk-pin"), []byte("junk"))
	plant(keys.Prefix()+"s/bad..name", []byte("junk"))
	plant(keys.Ping(0xbeef), []byte("junk"))
	e.advance(48 * time.Hour) // the junk ping is old enough not to hold all
	r := e.gc(cfg(0, time.Minute))
	for k := range planted {
		if _, _, err := e.store.Get(ctx, k); err != nil && k != keys.Ping(0xbeef) {
			t.Errorf("planted %s deleted: %v", k, err)
		}
	}
	if len(r.Problems) == 0 {
		t.Fatal("no problems reported")
	}
	if got := e.count(fmt.Sprintf("i/%016x/", f0)) + e.count(fmt.Sprintf("d/%016x/", f0)); got != f0objs {
		t.Fatalf("objects of an inode with an unreadable newest version: %d, had %d", got, f0objs)
	}
	mustGetErr := func(path string) {
		if _, err := get(e.host(), path); err != nil {
			t.Fatalf("read %s after gc: %v", path, err)
		}
	}
	mustGetErr("d/f2")
	mustGetErr("d/f3")
	c, err := reaper.Check(ctx, e.vol, reaper.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(append(c.Damage, c.Warnings...), "\n")
	for _, k := range []string{keys.Inode(0xdead, 3), keys.Prefix() + "i/zzzz/not-a-key", keys.Snapshot("junk-pin"), keys.Ping(0xbeef)} {
		if !strings.Contains(all, k) {
			t.Errorf("fsck does not mention %s:\n%s", k, all)
		}
	}
	if c.Healthy() {
		t.Fatal("fsck calls a damaged volume healthy")
	}
	// Unreadable objects that a pass relies on stop it, with the key named.
	for _, k := range []string{keys.Reaper(), keys.Settings(1)} {
		e.store.Put(ctx, k, []byte("junk"))
		if _, err := e.gcErr(cfg(-1, time.Minute)); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("pass over an unreadable %s: %v", k, err)
		}
		e.store.Delete(ctx, k)
	}
}
