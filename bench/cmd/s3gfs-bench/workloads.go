package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fsRun is one target's run of the filesystem workloads.
type fsRun struct {
	ctx   context.Context
	cfg   *config
	t     fsTarget
	proxy *countingProxy
	res   *results
	dir   string   // mountpoint
	m     *mounted // current mount
}

func (r *fsRun) remount() error {
	if r.m != nil {
		if err := r.m.unmount(); err != nil {
			return err
		}
		r.m = nil
	}
	m, err := r.t.Mount(r.ctx, r.dir)
	if err != nil {
		return err
	}
	r.m = m
	return nil
}

func (r *fsRun) path(p ...string) string { return filepath.Join(append([]string{r.dir}, p...)...) }

// measure runs one workload on the current mount and records its value,
// the mount process's peak RSS during it, and the S3 requests it made.
// body returns the value (in the metric's unit) and the operations done.
func (r *fsRun) measure(key string, body func() (value float64, ops int64, secs float64, note string, err error)) {
	resetPeak(r.m.pid)
	if r.proxy != nil {
		r.proxy.setLabel(r.t.Name() + "/" + key)
		defer r.proxy.setLabel(r.t.Name() + "/-")
	}
	before := snap(r.proxy)
	v, ops, secs, note, err := body()
	c := cell{value: v, ops: ops, secs: secs, note: note, rss: peakRSS(r.m.pid), reqs: snap(r.proxy).sub(before)}
	if err != nil {
		c.err = err.Error()
		c.value = 0
	}
	r.res.set(r.t.Name(), key, c)
	logf("%s %s: %s", r.t.Name(), key, c.summary(metricByKey[key].unit))
}

// tarball is the untar workload's input, made once per run.
var tarball struct {
	once  sync.Once
	path  string
	files int64
	bytes int64
	err   error
}

func makeTarball(cfg *config) (string, int64, int64, error) {
	tarball.once.Do(func() {
		parent, base := filepath.Split(filepath.Clean(cfg.untarSrc))
		tarball.path = filepath.Join(cfg.work, "tree.tar")
		out, err := exec.Command("tar", "-cf", tarball.path, "-C", parent, base).CombinedOutput()
		if err != nil {
			tarball.err = fmt.Errorf("tar %s: %v: %s", cfg.untarSrc, err, out)
			return
		}
		tarball.err = filepath.WalkDir(cfg.untarSrc, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			tarball.files++
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					tarball.bytes += fi.Size()
				}
			}
			return nil
		})
	})
	return tarball.path, tarball.files, tarball.bytes, tarball.err
}

func runFS(ctx context.Context, cfg *config, t fsTarget, proxy *countingProxy, res *results) (err error) {
	if err := t.Prepare(ctx); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	r := &fsRun{ctx: ctx, cfg: cfg, t: t, proxy: proxy, res: res, dir: filepath.Join(cfg.work, t.Name()+"-a")}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	defer func() {
		if r.m != nil {
			if uerr := r.m.unmount(); uerr != nil && err == nil {
				err = uerr
			}
		}
	}()
	if err := r.remount(); err != nil {
		return err
	}
	size := cfg.size
	mib := float64(size) / (1 << 20)
	buf := randomBytes(1 << 20)

	if cfg.want("seq") {
		// Sequential write + fsync.
		r.measure("seqwrite", func() (float64, int64, float64, string, error) {
			d, err := writeFile(r.path("big"), size, buf, true)
			return mib / d.Seconds(), 1, d.Seconds(), "", err
		})
		// Setup, not timed: four files for the parallel readers.
		for i := 0; i < 4; i++ {
			if _, err := writeFile(r.path(fmt.Sprintf("par%d", i)), size/4, buf, true); err != nil {
				return fmt.Errorf("write par%d: %w", i, err)
			}
		}

		// Cold sequential read from a fresh mount.
		if err := r.remount(); err != nil {
			return err
		}
		r.measure("coldread", func() (float64, int64, float64, string, error) {
			d, n, err := readFiles([]string{r.path("big")})
			if err == nil && n != size {
				err = fmt.Errorf("read %d bytes, want %d", n, size)
			}
			return mib / d.Seconds(), 1, d.Seconds(), "", err
		})

		// Four readers of four files at once, cold.
		if err := r.remount(); err != nil {
			return err
		}
		r.measure("par4read", func() (float64, int64, float64, string, error) {
			var paths []string
			for i := 0; i < 4; i++ {
				paths = append(paths, r.path(fmt.Sprintf("par%d", i)))
			}
			d, n, err := readFiles(paths)
			if err == nil && n != size/4*4 {
				err = fmt.Errorf("read %d bytes, want %d", n, size/4*4)
			}
			return float64(n) / (1 << 20) / d.Seconds(), 4, d.Seconds(), "", err
		})

		// Random 4 KiB reads within the large file, cold.
		if err := r.remount(); err != nil {
			return err
		}
		r.measure("rand4k", func() (float64, int64, float64, string, error) {
			if _, err := exec.LookPath("fio"); err == nil {
				iops, d, err := fioRandRead(r.path("big"), size, cfg.randReads)
				return iops, int64(cfg.randReads), d.Seconds(), "fio, psync, 1 job", err
			}
			d, err := randomReads(r.path("big"), size, cfg.randReads)
			return float64(cfg.randReads) / d.Seconds(), int64(cfg.randReads), d.Seconds(), "Go harness (no fio)", err
		})

	}
	if cfg.want("small") {
		// Small files: create, write, close; then sync, counted.
		n := cfg.files
		small := randomBytes(cfg.smallSize)
		names := make([]string, n)
		for i := range names {
			names[i] = r.path("small", fmt.Sprintf("f%06d", i))
		}
		// A fresh mount, so the peak RSS of the small-file workloads is theirs
		// and not the read cache the random reads filled.
		if err := r.remount(); err != nil {
			return err
		}
		if err := os.Mkdir(r.path("small"), 0o755); err != nil {
			return err
		}
		r.measure("smallcreate", func() (float64, int64, float64, string, error) {
			start := time.Now()
			for _, p := range names {
				if err := os.WriteFile(p, small, 0o644); err != nil {
					return 0, 0, 0, "", err
				}
			}
			r.syncfs()
			d := time.Since(start)
			return float64(n) / d.Seconds(), int64(n), d.Seconds(), "", nil
		})
		r.measure("stat", func() (float64, int64, float64, string, error) {
			start := time.Now()
			for _, p := range names {
				var st syscall.Stat_t
				if err := syscall.Lstat(p, &st); err != nil {
					return 0, 0, 0, "", err
				}
			}
			d := time.Since(start)
			return float64(n) / d.Seconds(), int64(n), d.Seconds(), "warm: just created", nil
		})
		r.measure("rename", func() (float64, int64, float64, string, error) {
			start := time.Now()
			for _, p := range names {
				if err := os.Rename(p, p+".r"); err != nil {
					return 0, 0, 0, "", err
				}
			}
			r.syncfs()
			d := time.Since(start)
			return float64(n) / d.Seconds(), int64(n), d.Seconds(), "", nil
		})
		r.measure("unlink", func() (float64, int64, float64, string, error) {
			start := time.Now()
			for _, p := range names {
				if err := os.Remove(p + ".r"); err != nil {
					return 0, 0, 0, "", err
				}
			}
			r.syncfs()
			d := time.Since(start)
			return float64(n) / d.Seconds(), int64(n), d.Seconds(), "", nil
		})

	}
	if cfg.want("ls") {
		// ls -l of directories of cfg.lsSizes entries, cold (fresh mount) and warm.
		for _, k := range cfg.lsSizes {
			dir := r.path(fmt.Sprintf("ls%d", k))
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			for i := 0; i < k; i++ {
				// A few bytes rather than none: rclone mount loses empty files
				// created just before an unmount.
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("e%06d", i)), []byte("entry\n"), 0o644); err != nil {
					return fmt.Errorf("populate %s: %w", dir, err)
				}
			}
		}
		r.syncfs()
		if err := r.remount(); err != nil {
			return err
		}
		for i, k := range cfg.lsSizes {
			dir := r.path(fmt.Sprintf("ls%d", k))
			for _, temp := range []string{"cold", "warm"} {
				r.measure(lsKey(i, temp), func() (float64, int64, float64, string, error) {
					d, err := lsL(dir, k)
					return float64(d.Microseconds()) / 1000, int64(k), d.Seconds(), "", err
				})
			}
		}

	}
	if cfg.want("untar") {
		// Untar of a source tree, then sync.
		if tb, files, bytes, err := makeTarball(cfg); err != nil {
			r.res.set(t.Name(), "untar", cell{err: err.Error()})
		} else {
			if err := os.Mkdir(r.path("untar"), 0o755); err != nil {
				return err
			}
			r.measure("untar", func() (float64, int64, float64, string, error) {
				start := time.Now()
				out, terr := exec.Command("tar", "-xf", tb, "-C", r.path("untar")).CombinedOutput()
				r.syncfs()
				d := time.Since(start)
				// syncfs(2) reaches no FUSE daemon here (the kernel sends
				// FUSE_SYNCFS to virtiofs only), so what a target still
				// writes back after the last close (s3gfs: attribute
				// changes, within 1 s) is not in the time; wait for it
				// untimed, so its requests are counted.
				time.Sleep(settle)
				note := fmt.Sprintf("%d entries, %.0f MiB in %.1fs", files, float64(bytes)/(1<<20), d.Seconds())
				if terr != nil {
					return float64(files) / d.Seconds(), files, d.Seconds(), note + "; tar reported errors: " + lastLines(out, 2), nil
				}
				return float64(files) / d.Seconds(), files, d.Seconds(), note, nil
			})
		}

	}
	if cfg.want("vis") {
		// Time until a write on this mount is visible on a second mount.
		if err := r.visibility(); err != nil {
			r.res.set(t.Name(), "visibility", cell{err: err.Error()})
		}
	}
	return nil
}

// settle is how long a workload waits, untimed, for a target's
// write-back after its last close, so the requests it sends are counted.
const settle = 3 * time.Second

// syncfs is sync(2) for the mounted filesystem only (syncfs(2)): a
// global sync would also wait for other filesystems on the machine.
func (r *fsRun) syncfs() {
	f, err := os.Open(r.dir)
	if err != nil {
		return
	}
	unix.Syncfs(int(f.Fd()))
	f.Close()
}

func lsKey(i int, temp string) string { return fmt.Sprintf("ls%d.%s", i, temp) }

func (r *fsRun) visibility() error {
	dirB := filepath.Join(r.cfg.work, r.t.Name()+"-b")
	if err := os.MkdirAll(dirB, 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(r.path("vis"), 0o755); err != nil {
		return err
	}
	r.syncfs()
	mb, err := r.t.Mount(r.ctx, dirB)
	if err != nil {
		return fmt.Errorf("second mount: %w", err)
	}
	defer mb.unmount()
	r.measure("visibility", func() (float64, int64, float64, string, error) {
		var lat []time.Duration
		timeouts := 0
		// Two rounds that time out are enough to tell (rclone's directory
		// cache keeps a listing for 5 minutes by default).
		for i := 0; i < r.cfg.visRounds && timeouts < 2; i++ {
			name := fmt.Sprintf("r%03d", i)
			want := []byte(fmt.Sprintf("round %d of %s\n", i, r.cfg.runID))
			if err := os.WriteFile(r.path("vis", name), want, 0o644); err != nil {
				return 0, 0, 0, "", err
			}
			start := time.Now()
			for {
				got, err := os.ReadFile(filepath.Join(dirB, "vis", name))
				if err == nil && bytes.Equal(got, want) {
					lat = append(lat, time.Since(start))
					break
				}
				if time.Since(start) > r.cfg.visTimeout {
					timeouts++
					lat = append(lat, r.cfg.visTimeout)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		slices.Sort(lat)
		med := lat[len(lat)/2]
		note := fmt.Sprintf("median of %d rounds, max %.0f ms", len(lat), float64(lat[len(lat)-1].Microseconds())/1000)
		if timeouts > 0 {
			note += fmt.Sprintf("; %d rounds not visible after %s", timeouts, r.cfg.visTimeout)
			if timeouts*2 > len(lat) {
				return 0, int64(len(lat)), 0, note, fmt.Errorf("not visible after %s in %d of %d rounds", r.cfg.visTimeout, timeouts, len(lat))
			}
		}
		return float64(med.Microseconds()) / 1000, int64(len(lat)), med.Seconds(), note, nil
	})
	return nil
}

// writeFile writes size bytes to a new file at p in 1 MiB writes, fsyncs
// it if asked, and closes it; it returns the time taken.
func writeFile(p string, size int64, buf []byte, fsync bool) (time.Duration, error) {
	start := time.Now()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return 0, err
		}
		left -= n
	}
	if fsync {
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, fmt.Errorf("fsync: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close: %w", err)
	}
	return time.Since(start), nil
}

// readFiles reads the files at once, one reader each, in 1 MiB reads.
func readFiles(paths []string) (time.Duration, int64, error) {
	var mu sync.Mutex
	var total int64
	var first error
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := readFile(p)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	return time.Since(start), total, first
}

func readFile(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// randomReads does n reads of 4 KiB at random 4 KiB-aligned offsets.
func randomReads(p string, size int64, n int) (time.Duration, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	blocks := size / 4096
	start := time.Now()
	for i := 0; i < n; i++ {
		off := rng.Int64N(blocks) * 4096
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, fmt.Errorf("read at %d: %w", off, err)
		}
	}
	return time.Since(start), nil
}

// lsL runs `ls -l dir` and checks it listed want entries.
func lsL(dir string, want int) (time.Duration, error) {
	cmd := exec.Command("ls", "-l", dir)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("ls -l: %v: %s", err, lastLines(out.Bytes(), 2))
	}
	if got := bytes.Count(out.Bytes(), []byte("\n")) - 1; got != want { // minus the "total" line
		return d, fmt.Errorf("ls -l listed %d entries, want %d", got, want)
	}
	return d, nil
}

// fioRandRead runs fio: n random 4 KiB reads of the file at p, one job,
// synchronous reads; it returns fio's IOPS and the run time.
func fioRandRead(p string, size int64, n int) (float64, time.Duration, error) {
	out, err := exec.Command("fio", "--name=rand4k", "--filename="+p, "--readonly", "--rw=randread",
		"--bs=4k", "--ioengine=psync", "--numjobs=1", fmt.Sprintf("--size=%d", size),
		fmt.Sprintf("--number_ios=%d", n), "--randrepeat=1", "--output-format=json").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("fio: %v: %s", err, lastLines(out, 3))
	}
	// fio may print notices before its JSON.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var res struct {
		Jobs []struct {
			Read struct {
				IOPS     float64 `json:"iops"`
				TotalIOs int64   `json:"total_ios"`
				Runtime  int64   `json:"runtime"` // ms
			} `json:"read"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) != 1 {
		return 0, 0, fmt.Errorf("fio: unreadable output (%v): %s", err, lastLines(out, 3))
	}
	rd := res.Jobs[0].Read
	if rd.TotalIOs < int64(n) {
		return 0, 0, fmt.Errorf("fio did %d reads, want %d", rd.TotalIOs, n)
	}
	return rd.IOPS, time.Duration(rd.Runtime) * time.Millisecond, nil
}
