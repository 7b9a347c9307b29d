package reaper

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
)

// gen is the self-describing content of generation n of path: a header
// line, then lines that only that generation has. Any torn, stale-mixed
// or missing data shows.
func gen(path string, n, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d %d\n", path, n, size)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%s gen %d line %d\n", path, n, i)
	}
	if size < b.Len() {
		return b.Bytes()[:max(size, 0)]
	}
	return b.Bytes()
}

// checkGen verifies data is some whole generation of path (or empty, as a
// file is between its create and its first write-back). An empty path
// accepts a generation of any path (a file about to be renamed holds its
// new name's content).
func checkGen(path string, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	var p string
	var n, size int
	line, _, _ := bytes.Cut(data, []byte("\n"))
	if _, err := fmt.Sscanf(string(line), "%s %d %d", &p, &n, &size); err != nil || (path != "" && p != path) {
		return fmt.Errorf("%s: bad header %q", path, clip(string(line)))
	}
	if !bytes.Equal(data, gen(p, n, size)) {
		return fmt.Errorf("%s: %d bytes are not generation %d (%d bytes)", path, len(data), n, size)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60]
	}
	return s
}

// TestConcurrentSafety: a writer host churns files, two reader hosts hold
// files open across the churn, a continuous reaper runs passes every half
// second with a short retention, and point-in-time mounts within the
// retention window read whole trees; no read ever fails or sees torn data,
// every open handle reads the one version it opened, and fsck is clean.
func TestConcurrentSafety(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.mount()
	readers := []*host{f.mount(), f.mount()}
	b := readers[0]
	const ext = 64 << 10
	duration := 15 * time.Second
	if testing.Short() {
		duration = 5 * time.Second
	}
	rlog := &testenv.LogBuffer{}
	rcmd := f.command("reaper", "--interval", "1s", "--grace", "2s", "--retention", "3s", "--lease-duration", "5s", "--log-level", "debug", f.url.String())
	rcmd.Stderr = rlog
	if err := rcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		rcmd.Process.Signal(os.Interrupt)
		rcmd.Wait()
	}()

	// The churned files are overwritten with new sizes, renamed and
	// removed. The held files are only ever overwritten, keeping their
	// size: a handle open on another host keeps its version's content,
	// but (vfs today) not its size across a change, nor its kind across a
	// removal (it reads EINVAL once the file is tombstoned); both are
	// reported to the engine's owners, and kept out of this test of the
	// reaper.
	paths := []string{"x/f0", "x/f1", "x/f2", "y/f0", "y/f1", "y/f2"}
	held := []string{"hold/h0", "hold/h1", "hold/h2"}
	heldSize := func(p string) int { return 2*ext + 100 + int(p[len(p)-1]-'0')*ext/2 }
	for i, p := range paths {
		write(t, a.path(p), gen(p, 0, 2*ext+i))
	}
	for _, p := range held {
		write(t, a.path(p), gen(p, 0, heldSize(p)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int32
	var failMu sync.Mutex
	var failMsgs []string
	fail := func(format string, args ...any) {
		failures.Add(1)
		failMu.Lock()
		failMsgs = append(failMsgs, fmt.Sprintf(format, args...))
		failMu.Unlock()
	}
	var writes, reads, views atomic.Int32

	// The writer.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		n := 1
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := paths[rng.IntN(len(paths))]
			switch rng.IntN(8) {
			case 6, 7:
				// In place, without truncating: no version of another
				// size comes between (see above).
				h := held[rng.IntN(len(held))]
				hf, err := os.OpenFile(a.path(h), os.O_WRONLY, 0)
				if err == nil {
					_, err = hf.WriteAt(gen(h, n, heldSize(h)), 0)
					if cerr := hf.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					fail("write %s: %v", h, err)
				}
			case 0:
				os.Remove(a.path(p))
			case 1:
				q := paths[rng.IntN(len(paths))]
				if data, err := os.ReadFile(a.path(p)); err == nil && q != p {
					// Rename keeps the content, which names p: rewrite it
					// under q's name first so checks stay exact.
					write(t, a.path(p), gen(q, n, len(data)))
					if err := os.Rename(a.path(p), a.path(q)); err != nil && !errors.Is(err, fs.ErrNotExist) {
						fail("rename %s %s: %v", p, q, err)
					}
				}
			default:
				size := rng.IntN(3*ext + 100)
				if err := os.WriteFile(a.path(p), gen(p, n, size), 0o644); err != nil {
					fail("write %s: %v", p, err)
				}
			}
			n++
			writes.Add(1)
			time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		}
	}()

	// The readers, one per host: each opens a file, holds it open while
	// the writer and the reaper go on, then reads it all: the one version
	// it opened.
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := held[rng.IntN(len(held))]
				fd, err := os.Open(readers[r].path(p))
				if err != nil {
					continue // removed or renamed meanwhile
				}
				// Nothing is read before the hold: the host would fetch (and
				// cache) the whole file ahead of a reader, and the reads
				// after the hold would not come from the store.
				time.Sleep(time.Duration(500+rng.IntN(7500)) * time.Millisecond) // often past the grace period: only the ping holds
				rest, err := io.ReadAll(fd)
				fd.Close()
				if err != nil {
					fail("reader: %s held open: %v", p, err)
					continue
				}
				if err := checkGen(p, rest); err != nil {
					fail("reader: held open: %v", err)
				}
				reads.Add(1)
			}
		}()
	}

	// Point-in-time views within the retention window.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(5, 6))
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			at := f.now().Add(-time.Duration(1+rng.IntN(2)) * time.Second)
			m, err := f.tryMount("--as-of", at.Format(time.RFC3339))
			if err != nil {
				fail("as-of %s within the retention window: %v", at, err)
				continue
			}
			err = filepath.WalkDir(m.dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(m.dir, p)
				if strings.HasPrefix(rel, "hold/") {
					return checkGen(rel, data)
				}
				return checkGen("", data)
			})
			if err != nil {
				fail("as-of %s: %v\nlog of that mount:\n%s\n%s\n%s", at, err, m.log, f.describe("/x", at), f.describe("/y", at))
			}
			m.stop()
			views.Add(1)
		}
	}()

	time.Sleep(duration)
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d failures:\n%s\nreaper log:\n%s\nwriter host log:\n%s\nreader host log:\n%s", failures.Load(), strings.Join(failMsgs, "\n"), rlog, a.log, b.log)
	}
	passes := strings.Count(rlog.String(), "reaper pass")
	t.Logf("%d writes, %d held reads, %d point-in-time views, %d reaper passes", writes.Load(), reads.Load(), views.Load(), passes)
	if passes < 3 || reads.Load() == 0 || views.Load() == 0 {
		t.Fatalf("too little happened\n%s", rlog)
	}
	// In a short run on a loaded machine the churn may end before any
	// superseded version is past the grace period and the retention: the
	// reaper goes on running, and must then delete some within a few of
	// its passes.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(rlog.String(), "deleted=\"map[") && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(rlog.String(), "deleted=\"map[") || strings.Contains(rlog.String(), "level=ERROR") {
		t.Fatalf("reaper log:\n%s", rlog)
	}
	// The present state, read on a fresh host, is whole.
	c := f.mount()
	for p, data := range readTree(t, c.dir) {
		if data != "<dir>" {
			if !strings.HasPrefix(p, "hold/") {
				p = ""
			}
			if err := checkGen(p, []byte(data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := f.mustRun("fsck", f.url.String())
	if !strings.Contains(out, "healthy") {
		t.Fatalf("fsck:\n%s", out)
	}
}
