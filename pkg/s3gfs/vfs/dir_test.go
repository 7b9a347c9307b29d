package vfs_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// checkChain decodes every stored version of directory id and checks the
// delta chain rules of FORMAT.md §5.4; it returns how many are full.
func checkChain(t *testing.T, e *env, id uint64) (full int) {
	t.Helper()
	vs := e.versions(id)
	byV := map[uint64]*format.Inode{}
	for _, v := range vs {
		byV[v] = e.version(id, v)
	}
	sinceFull := 0
	for v := uint64(1); v <= vs[0]; v++ {
		n := byV[v]
		if n == nil {
			t.Fatalf("directory %016x: version %d missing (versions must be dense)", id, v)
		}
		if n.Kind != format.KindDir {
			continue
		}
		if n.IsFull() {
			full++
			sinceFull = 0
			continue
		}
		sinceFull++
		if sinceFull > format.MaxDeltaChain || v-n.Base > format.MaxDeltaChain {
			t.Fatalf("v%d: %d versions since the last full one (base %d), limit %d", v, sinceFull, n.Base, format.MaxDeltaChain)
		}
		base := byV[n.Base]
		if base == nil || !base.IsFull() {
			t.Fatalf("v%d: base v%d is missing or not full", v, n.Base)
		}
		for w := n.Base + 1; w < v; w++ {
			if byV[w].Base != n.Base {
				t.Fatalf("v%d (base %d): v%d in between has base %d", v, n.Base, w, byV[w].Base)
			}
		}
	}
	return full
}

func TestDirectoryDeltaChain(t *testing.T) {
	e := newEnv(t)
	a := e.engine()
	d := mkdir(t, a, root, "big")
	const n = 230
	want := map[string]uint64{}
	var mid *[]string
	b := e.engine()
	for i := range n {
		name := fmt.Sprintf("file-%03d", i)
		want[name] = writeFile(t, a, d, name, nil)
		if i == 100 {
			// b loads the directory in the middle of a chain; later it must
			// catch up across full versions and deltas.
			got := names(t, b, d)
			mid = &got
		}
	}
	if len(*mid) != 101 {
		t.Fatalf("host b saw %d names mid-way, want 101", len(*mid))
	}
	// Remove some, rename some: deltas with removals.
	for i := 0; i < n; i += 7 {
		name := fmt.Sprintf("file-%03d", i)
		must(t, a.Unlink(ctx, d, name))
		delete(want, name)
	}
	for i := 1; i < n; i += 11 {
		old := fmt.Sprintf("file-%03d", i)
		if _, ok := want[old]; !ok {
			continue
		}
		nw := fmt.Sprintf("renamed-%03d", i)
		must(t, a.Rename(ctx, d, old, d, nw, 0))
		want[nw] = want[old]
		delete(want, old)
	}
	wantNames := make([]string, 0, len(want))
	for k := range want {
		wantNames = append(wantNames, k)
	}
	slices.Sort(wantNames)

	versions := e.versions(d)
	full := checkChain(t, e, d)
	t.Logf("%d directory versions, %d full", len(versions), full)
	if len(versions) < n {
		t.Fatalf("only %d versions for %d sequential creates", len(versions), n)
	}
	if minFull := len(versions) / (format.MaxDeltaChain + 1); full < minFull {
		t.Fatalf("%d full versions among %d, want at least %d", full, len(versions), minFull)
	}
	// Deltas are small: no version but the full ones holds more than a
	// few entries.
	for _, v := range versions {
		if x := e.version(d, v); !x.IsFull() && len(x.Entries) > 2 {
			t.Fatalf("delta v%d holds %d entries", v, len(x.Entries))
		}
	}

	check := func(who string, got []string) {
		t.Helper()
		if !slices.Equal(got, wantNames) {
			t.Fatalf("%s lists %d names, want %d; first: %v", who, len(got), len(wantNames), got[:min(5, len(got))])
		}
	}
	check("writing host", names(t, a, d))
	check("host that caught up", names(t, b, d))
	fresh := e.engine()
	check("fresh host", names(t, fresh, d))
	for name, id := range want {
		if got := lookup(t, fresh, d, name); got.Ino != id {
			t.Fatalf("fresh host: %q -> %016x, want %016x", name, got.Ino, id)
		}
	}
}

// Many goroutines of one host creating files in one directory: all
// succeed, and group commit may fold several into one version.
func TestGroupCommit(t *testing.T) {
	e := newEnv(t)
	fs := e.engine()
	d := mkdir(t, fs, root, "d")
	before := len(e.versions(d))
	const workers = 32
	var wg sync.WaitGroup
	errs := make([]error, workers)
	start := make(chan struct{})
	for i := range workers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			_, h, err := fs.Create(ctx, d, fmt.Sprintf("f%02d", i), 0o644, true, caller)
			if err == nil {
				_, err = fs.Write(ctx, h, []byte(fmt.Sprintf("file %d", i)), 0)
			}
			if err == nil {
				err = fs.Flush(ctx, h)
			}
			if err == nil {
				err = fs.Release(ctx, h)
			}
			errs[i] = err
		}(i)
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	written := len(e.versions(d)) - before
	t.Logf("%d concurrent creates wrote %d directory versions", workers, written)
	if written < 1 || written > workers {
		t.Fatalf("%d creates wrote %d directory versions", workers, written)
	}
	checkChain(t, e, d)
	fresh := e.engine()
	got := names(t, fresh, d)
	if len(got) != workers {
		t.Fatalf("fresh host lists %d names: %v", len(got), got)
	}
	for i := range workers {
		name := fmt.Sprintf("f%02d", i)
		if s := string(readFile(t, fresh, lookup(t, fresh, d, name).Ino)); s != fmt.Sprintf("file %d", i) {
			t.Fatalf("%s holds %q", name, s)
		}
	}
	// A batch mixing a failing change with good ones: the failure is
	// reported to its caller only.
	var wg2 sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg2.Add(1)
		go func(i int) {
			defer wg2.Done()
			name := fmt.Sprintf("g%d", i)
			if i%2 == 0 {
				name = "f00" // exists
			}
			_, results[i] = fs.Mkdir(ctx, d, name, 0o755, caller)
		}(i)
	}
	wg2.Wait()
	for i, err := range results {
		if i%2 == 0 && err == nil {
			t.Fatalf("mkdir of an existing name succeeded in a batch")
		}
		if i%2 == 1 && err != nil {
			t.Fatalf("mkdir g%d failed in a batch: %v", i, err)
		}
	}
	if got := len(names(t, e.engine(), d)); got != workers+4 {
		t.Fatalf("after the mixed batch: %d names, want %d", got, workers+4)
	}
}
