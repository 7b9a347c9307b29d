package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// runLocal measures warm stat and warm `ls -l` on the local filesystem
// holding the scratch directory: the speed the kernel's caches allow, which
// the issue asks of warm stat and ls -l on a mount. Stored with the raw
// figures.
func runLocal(cfg *config, res *results) error {
	dir := filepath.Join(cfg.work, "local")
	if err := os.MkdirAll(filepath.Join(dir, "small"), 0o755); err != nil {
		return err
	}
	small := randomBytes(cfg.smallSize)
	names := make([]string, cfg.files)
	for i := range names {
		names[i] = filepath.Join(dir, "small", fmt.Sprintf("f%06d", i))
		if err := os.WriteFile(names[i], small, 0o644); err != nil {
			return err
		}
	}
	statAll := func() (time.Duration, error) {
		start := time.Now()
		for _, p := range names {
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	statAll() // warm the caches
	d, err := statAll()
	c := cell{ops: int64(len(names)), secs: d.Seconds()}
	if err != nil {
		c.err = err.Error()
	} else {
		c.value = float64(len(names)) / d.Seconds()
	}
	res.set("raw", "local.stat", c)
	logf("local stat: %s", c.summary("ops/s"))
	for i, k := range cfg.lsSizes {
		ld := filepath.Join(dir, fmt.Sprintf("ls%d", k))
		if err := os.Mkdir(ld, 0o755); err != nil {
			return err
		}
		for j := 0; j < k; j++ {
			if err := os.WriteFile(filepath.Join(ld, fmt.Sprintf("e%06d", j)), []byte("entry\n"), 0o644); err != nil {
				return err
			}
		}
		lsL(ld, k) // warm the caches
		d, err := lsL(ld, k)
		c := cell{ops: int64(k), secs: d.Seconds(), value: float64(d.Microseconds()) / 1000}
		if err != nil {
			c.err, c.value = err.Error(), 0
		}
		res.set("raw", localLsKey(i), c)
		logf("local ls -l %d: %s", k, c.summary("ms"))
	}
	return os.RemoveAll(dir)
}

func localLsKey(i int) string { return fmt.Sprintf("local.ls%d", i) }
