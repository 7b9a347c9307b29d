package torture

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/faultproxy"
	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Mount parameters of every host: short enough that a partition longer
// than the host expiry fits in a test.
const (
	syncInterval = 200 * time.Millisecond
	hostExpiry   = 2 * time.Second
)

// cluster is one formatted volume on the test S3 server and the hosts
// mounting it, each through its own fault proxy.
type cluster struct {
	t     *testing.T
	srv   *testenv.Server
	url   volume.URL
	seed  uint64
	hosts []*host
}

func newCluster(t *testing.T, seed uint64) *cluster {
	// The smallest extents, so that files of a few hundred KiB span
	// several of them and concurrent writes to one file merge extent by
	// extent.
	srv, u := testenv.NewVolume(t, "torture", volume.FormatOptions{ExtentSize: format.MinExtentSize})
	return &cluster{t: t, srv: srv, url: u, seed: seed}
}

// host is one `s3gfs mount` process and its proxy.
type host struct {
	*testenv.Mount
	c     *cluster
	idx   int
	dir   string
	proxy *faultproxy.Proxy
	log   *logBuffer
}

// logBuffer keeps a mount's log: the first and the last lines, and a count
// of notable ones.
type logBuffer struct {
	mu      sync.Mutex
	head    []string
	tail    []string
	partial []byte
	counts  map[string]int
	full    io.Writer // every line, when the run is traced (traceDir)
	// lost: the creates this host logged as lost to another host's file,
	// from the descriptor's own inode to the file written (lostCreate).
	lost map[uint64]uint64
}

// lostCreate parses the line a host logs when a deferred create finds its
// name taken by another host's file (vfs.decideCreate): the descriptor's
// inode, and the inode of the file its bytes go to.
func lostCreate(line string) (created, into uint64, ok bool) {
	if !strings.Contains(line, `msg="create found the name taken by another host`) {
		return 0, 0, false
	}
	field := func(k string) (uint64, bool) {
		i := strings.Index(line, " "+k+"=")
		if i < 0 {
			return 0, false
		}
		v := line[i+len(k)+2:]
		if j := strings.IndexByte(v, ' '); j >= 0 {
			v = v[:j]
		}
		n, err := strconv.ParseUint(v, 16, 64)
		return n, err == nil
	}
	created, ok1 := field("created")
	into, ok2 := field("inode")
	return created, into, ok1 && ok2
}

var notable = []string{"level=ERROR", "level=WARN", "fencing this host", "host unfenced", "sync failed", "panic", "DATA RACE"}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.full != nil {
		l.full.Write(p)
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if created, into, ok := lostCreate(line); ok {
			if l.lost == nil {
				l.lost = map[uint64]uint64{}
			}
			l.lost[created] = into
		}
		for _, n := range notable {
			if strings.Contains(line, n) {
				l.counts[n]++
			}
		}
		if len(l.head) < 200 {
			l.head = append(l.head, line)
			continue
		}
		l.tail = append(l.tail, line)
		if len(l.tail) > 2000 {
			l.tail = append([]string(nil), l.tail[len(l.tail)-1000:]...)
		}
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.head, "\n")
	if len(l.tail) > 0 {
		s += "\n…\n" + strings.Join(l.tail, "\n")
	}
	return s + string(l.partial)
}

func (l *logBuffer) count(what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[what]
}

func (l *logBuffer) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for _, n := range notable {
		if l.counts[n] > 0 {
			parts = append(parts, fmt.Sprintf("%q×%d", n, l.counts[n]))
		}
	}
	if len(parts) == 0 {
		return "quiet"
	}
	return strings.Join(parts, " ")
}

// mount starts host idx through a fresh proxy (no faults yet) and waits
// until its mountpoint is live.
func (c *cluster) mount(idx int) *host {
	t := c.t
	t.Helper()
	p, err := faultproxy.New(c.srv.Endpoint, c.seed*1000+uint64(idx)+1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	h := &host{c: c, idx: idx, dir: t.TempDir(), proxy: p, log: &logBuffer{counts: map[string]int{}}}
	name := fmt.Sprintf("torture-h%d", idx)
	level := "info"
	if dir := traceDir(); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("h%d.log", idx)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		h.log.full, level = f, "debug"
	}
	h.Mount = testenv.StartMount(t, c.srv, name, h.dir, h.log,
		"--log-level", level,
		"--endpoint", p.URL(),
		"--sync-interval", syncInterval.String(),
		"--host-expiry", hostExpiry.String(),
		"--node-name", name,
		c.url.String())
	c.hosts = append(c.hosts, h)
	return h
}

// traceDir is where a traced run (S3GFS_TORTURE_TRACE=DIR) writes each
// host's whole log, at debug level: what the engine decided at each open
// and commit, to explain a failure the history alone cannot.
func traceDir() string { return os.Getenv("S3GFS_TORTURE_TRACE") }

func (h *host) path(p string) string { return filepath.Join(h.dir, p) }

// unmount unmounts the host and waits for its process to write back and
// exit; it returns the process's error.
func (h *host) unmount() error { return h.Stop() }

// dumpGoroutines asks the mount process for a goroutine dump (SIGQUIT
// makes a Go program print its goroutines and exit).
func (h *host) dumpGoroutines() {
	if ended, _ := h.Ended(); !ended && h.Cmd.Process != nil {
		h.Cmd.Process.Signal(syscall.SIGQUIT)
	}
}

// walk reads a host's whole tree (except the excluded top-level name when
// skipExcluded).
func walk(root string) (tree, error) {
	out := tree{}
	var visit func(rel string) error
	visit = func(rel string) error {
		ents, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			return fmt.Errorf("readdir %q: %w", rel, err)
		}
		for _, e := range ents {
			p := e.Name()
			if rel != "" {
				p = rel + "/" + p
			}
			full := filepath.Join(root, p)
			var st syscall.Stat_t
			if err := syscall.Lstat(full, &st); err != nil {
				out[p] = node{Kind: '!', Err: err.Error()}
				continue
			}
			n := node{Ino: st.Ino, Size: st.Size, Nlink: uint64(st.Nlink)}
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				n.Kind = 'd'
				out[p] = n
				if err := visit(p); err != nil {
					return err
				}
				continue
			case syscall.S_IFREG:
				n.Kind = 'f'
				data, err := os.ReadFile(full)
				if err != nil {
					return fmt.Errorf("read %q: %w", p, err)
				}
				n.Data = data
			default:
				n.Kind = '?'
			}
			out[p] = n
		}
		return nil
	}
	return out, visit("")
}

// diffTrees describes how b differs from a (nil when equal).
func diffTrees(a, b tree) []string {
	var out []string
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		x, inA := a[k]
		y, inB := b[k]
		switch {
		case !inA:
			out = append(out, fmt.Sprintf("%s: absent vs %s", k, y))
		case !inB:
			out = append(out, fmt.Sprintf("%s: %s vs absent", k, x))
		case x.Kind != y.Kind || x.Ino != y.Ino || x.Size != y.Size || !bytes.Equal(x.Data, y.Data):
			out = append(out, fmt.Sprintf("%s: %s vs %s", k, x, y))
		}
	}
	return out
}

func formatTree(tr tree) string {
	keys := make([]string, 0, len(tr))
	for k := range tr {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		n := tr[k]
		switch n.Kind {
		case 'f':
			fmt.Fprintf(&b, "  %s f %016x %d %v\n", k, n.Ino, n.Nlink, encode(n.Data))
		default:
			fmt.Fprintf(&b, "  %s %c %016x %d %s\n", k, n.Kind, n.Ino, n.Nlink, n.Err)
		}
	}
	return b.String()
}

// writeReport keeps a run's history and logs in a file that outlives the
// test's temporary directories.
func writeReport(t *testing.T, seed uint64, write func(w io.Writer)) string {
	f, err := os.CreateTemp("", fmt.Sprintf("s3gfs-torture-%d-*.log", seed))
	if err != nil {
		t.Logf("cannot keep the report: %v", err)
		return ""
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	write(w)
	w.Flush()
	return f.Name()
}
