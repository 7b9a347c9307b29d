package vfs_test

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
)

// recordingInvalidator records what the engine tells the kernel to drop.
type recordingInvalidator struct {
	mu      sync.Mutex
	inodes  map[uint64]int
	entries map[string]int // "parent/name"
	all     int
}

func newRecorder(fs *vfs.FS) *recordingInvalidator {
	r := &recordingInvalidator{inodes: map[uint64]int{}, entries: map[string]int{}}
	fs.SetInvalidator(r)
	return r
}

func (r *recordingInvalidator) InvalidateInode(id uint64) {
	r.mu.Lock()
	r.inodes[id]++
	r.mu.Unlock()
}

func (r *recordingInvalidator) InvalidateEntry(parent uint64, name string) {
	r.mu.Lock()
	r.entries[fmt.Sprintf("%x/%s", parent, name)]++
	r.mu.Unlock()
}

func (r *recordingInvalidator) InvalidateAll() {
	r.mu.Lock()
	r.all++
	r.mu.Unlock()
}

// take returns what was recorded since the last take and forgets it.
func (r *recordingInvalidator) take(fs *vfs.FS) (inodes []uint64, entries []string, all int) {
	fs.FlushInvalidations()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.inodes {
		inodes = append(inodes, id)
	}
	for e := range r.entries {
		entries = append(entries, e)
	}
	slices.Sort(inodes)
	sort.Strings(entries)
	all = r.all
	r.inodes, r.entries, r.all = map[uint64]int{}, map[string]int{}, 0
	return inodes, entries, all
}

// TestInvalidationOfOtherHostsChanges: every change of another host that
// enters this host's view drops exactly the kernel caches it affects,
// whichever way it enters: a directory revalidated by a lookup (before
// any ping announces it), the change feed, and a commit that lost its race
// and merged the winner. The kernel may then cache lookups and attributes
// for a long time (fusefs.DefaultTimeout).
func TestInvalidationOfOtherHostsChanges(t *testing.T) {
	e := newEnv(t)
	a, _ := e.host(syncEvery(time.Hour, 3*time.Hour)) // follows only when told
	b, _ := e.host(syncEvery(time.Hour, 3*time.Hour))
	rec := newRecorder(a)
	d := mkdir(t, b, root, "d")
	f := writeFile(t, b, d, "f", []byte("f"))
	g := writeFile(t, b, d, "g", []byte("g"))
	writeFile(t, b, d, "h", []byte("h"))
	must(t, b.Sync(ctx))
	must(t, a.Sync(ctx))
	lookup(t, a, root, "d")
	for _, n := range []string{"f", "g", "h"} {
		lookup(t, a, d, n)
	}
	rec.take(a)
	dir := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, fmt.Sprintf("%x/%s", d, n))
		}
		sort.Strings(out)
		return out
	}

	// Names another host removed, renamed and added, met by a lookup that
	// revalidates the directory (Revalidate is 1ns here).
	must(t, b.Unlink(ctx, d, "g"))
	must(t, b.Rename(ctx, d, "h", d, "h2", 0))
	writeFile(t, b, d, "n", nil)
	lookup(t, a, d, "f")
	inodes, entries, _ := rec.take(a)
	if want := dir("g", "h", "h2", "n"); !slices.Equal(entries, want) {
		t.Errorf("entries dropped after the directory was revalidated: %v, want %v", entries, want)
	}
	if !slices.Contains(inodes, d) {
		t.Errorf("the directory's attributes were not dropped: %v", inodes)
	}

	// An attribute change another host announces.
	mode := uint32(0o600)
	_, err := b.SetAttr(ctx, f, vfs.SetAttr{Mode: &mode})
	must(t, err)
	must(t, b.SyncAll(ctx))
	must(t, b.Sync(ctx))
	must(t, a.Sync(ctx))
	inodes, entries, _ = rec.take(a)
	if !slices.Contains(inodes, f) || !slices.Contains(inodes, g) || len(entries) != 0 {
		// (g: unlinked above, its tombstone announced now; the directory
		// was already up to date.)
		t.Errorf("after b's chmod was announced: inodes %v entries %v, want %016x, %016x and no entry", inodes, entries, f, g)
	}
	if got := lookup(t, a, d, "f"); got.Mode&0o777 != 0o600 {
		t.Errorf("a sees mode %o after the chmod", got.Mode&0o777)
	}

	// A commit that lost its race to another host's and merged it: the
	// file's size is now the other host's, not what the kernel saw written.
	h := open(t, a, f, true)
	write(t, a, h, []byte("a"), 0)
	hb := open(t, b, f, true)
	write(t, b, hb, []byte("bbbbbbbbbb"), 5)
	closeH(t, b, hb)
	rec.take(a)
	closeH(t, a, h)
	inodes, _, _ = rec.take(a)
	if !slices.Contains(inodes, f) {
		t.Errorf("a merged b's version of f without dropping the kernel's attributes: %v", inodes)
	}
	if at, err := a.GetAttr(ctx, f); err != nil || at.Size != 15 {
		t.Errorf("a's size of f after the merge: %d, %v; want 15", at.Size, err)
	}
}

// An open that fetches another host's newer version of a file, and the
// announcement of that very version reaching this host afterwards, queue
// no invalidation of the file: the open answers the kernel itself (it
// drops the kernel's attributes and pages before it returns: keepCache
// false), and an invalidation arriving while the program fstats and reads
// makes the kernel drop the fresh attributes it is fetching and read to
// the size it cached before (TestCloseToOpenRacingInvalidations, in
// tests/multihost, saw reads end empty). A newer version announced while
// the file is open is still invalidated.
func TestOpenAndFollowingQueueNoNeedlessInvalidation(t *testing.T) {
	e := newEnv(t)
	a, _ := e.host(syncEvery(time.Hour, 3*time.Hour)) // follows only when told
	b, _ := e.host(syncEvery(time.Hour, 3*time.Hour))
	rec := newRecorder(a)
	f := writeFile(t, b, root, "f", nil)
	must(t, b.Sync(ctx))
	must(t, a.Sync(ctx))
	lookup(t, a, root, "f")
	rec.take(a)

	hb := open(t, b, f, true)
	write(t, b, hb, []byte("written by b"), 0)
	closeH(t, b, hb)
	h, keep, err := a.Open(ctx, f, false)
	must(t, err)
	if keep {
		t.Error("the open of another host's newer version kept the kernel's caches")
	}
	if inodes, _, _ := rec.take(a); slices.Contains(inodes, f) {
		t.Errorf("the open queued an invalidation of the file it answers: %v", inodes)
	}
	must(t, b.Sync(ctx))
	must(t, a.Sync(ctx)) // b's announcement of the version a's open fetched
	if inodes, _, _ := rec.take(a); slices.Contains(inodes, f) {
		t.Errorf("following b's announcement of the version a has invalidated the file: %v", inodes)
	}
	if at, err := a.GetAttr(ctx, f); err != nil || at.Held {
		t.Errorf("a's attributes of the file it has current: %+v, %v (held: not to be cached)", at, err)
	}

	hb = open(t, b, f, true)
	write(t, b, hb, []byte("newer"), 0)
	closeH(t, b, hb)
	must(t, b.Sync(ctx))
	must(t, a.Sync(ctx))
	if inodes, _, _ := rec.take(a); !slices.Contains(inodes, f) {
		t.Errorf("a newer version announced while the file is open here was not invalidated: %v", inodes)
	}
	must(t, a.Release(ctx, h))

	// An open that finds the file deleted fails, telling the kernel
	// nothing: the change is queued, and the announcement of that very
	// version will not queue it.
	must(t, b.Unlink(ctx, root, "f"))
	_, _, err = a.Open(ctx, f, false)
	wantErr(t, err, vfs.ErrNotExist, "open of a file another host deleted")
	if inodes, _, _ := rec.take(a); !slices.Contains(inodes, f) {
		t.Errorf("an open that found the file deleted queued no invalidation of it: %v", inodes)
	}
}

// An inode this host forgot and loads again is opened without the
// kernel's caches: the kernel may still hold attributes of an older
// version (it answered a lookup from the inode just before forgetting it).
func TestOpenAfterForgetDropsKernelCaches(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	b := e.engine()
	f := writeFile(t, b, root, "f", []byte("one"))
	lookup(t, a, root, "f")
	h := open(t, a, f, false)
	must(t, a.Release(ctx, h))
	a.Forget(f)
	_, keep, err := a.Open(ctx, f, false)
	must(t, err)
	if keep {
		t.Error("the first open after the inode was loaded again kept the kernel's caches")
	}
}
