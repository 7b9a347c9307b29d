// Command s3gfs-bench measures s3gfs side by side with the raw S3 backend
// and with the peers that run here (s3fs-fuse, rclone mount), against one
// S3 server, in one run, and writes a markdown table and a PNG chart of
// the figures into bench/results/. scripts/bench.sh (`make bench`) starts
// the server and runs it; see bench/README.md.
//
// Every request of every target goes through a counting proxy in this
// process, so the results can say how many S3 requests each operation
// cost. The proxy costs some CPU, the same for every target.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

type config struct {
	endpoint  string // the S3 server
	s3URL     string // what targets use: the counting proxy
	region    string
	accessKey string
	secretKey string
	s3gfsBin  string
	s3gfsArgs []string // extra `s3gfs mount` flags
	work      string   // scratch directory: mountpoints, logs, the tarball
	out       string   // results directory
	targets   []string

	smoke       bool
	size        int64 // sequential file size
	objSize     int64 // raw large-object size
	smallSize   int64 // small file / object size
	files       int   // small files
	lsSizes     []int // ls -l directory sizes
	randReads   int
	untarSrc    string // directory tarred for the untar workload
	visRounds   int
	visTimeout  time.Duration
	runID       string
	proxyCounts bool
	trace       string          // log every request here
	label       string          // results file suffix, e.g. "smoke"
	only        map[string]bool // workload groups to run (nil: all)
}

// workloadGroups are the groups -only selects from.
var workloadGroups = []string{"seq", "small", "ls", "untar", "vis"}

// want reports whether workload group g is to run.
func (c *config) want(g string) bool { return c.only == nil || c.only[g] }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "freeport" {
		port, err := freePort()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(port)
		return
	}
	cfg, err := parseConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3gfs-bench:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "s3gfs-bench:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func parseConfig() (*config, error) {
	c := &config{}
	smokeDef, _ := strconv.ParseBool(envOr("BENCH_SMOKE", "false"))
	var size, objSize, smallSize, lsSizes, targets, s3gfsArgs, only string
	flag.StringVar(&c.endpoint, "endpoint", envOr("BENCH_ENDPOINT", os.Getenv("AWS_ENDPOINT_URL")), "S3 endpoint of the server to measure (http://HOST:PORT)")
	flag.StringVar(&c.region, "region", envOr("AWS_REGION", "us-east-1"), "S3 region")
	flag.StringVar(&c.s3gfsBin, "s3gfs", envOr("S3GFS_BIN", "bin/s3gfs"), "the s3gfs binary")
	flag.StringVar(&s3gfsArgs, "s3gfs-args", os.Getenv("BENCH_S3GFS_ARGS"), "extra `s3gfs mount` flags, space separated")
	flag.StringVar(&c.work, "work", "", "scratch directory (default: a new temporary one)")
	flag.StringVar(&c.out, "out", "bench/results", "results directory")
	flag.StringVar(&targets, "targets", envOr("BENCH_TARGETS", "raw,s3gfs,s3fs,rclone"), "what to measure")
	flag.BoolVar(&c.smoke, "smoke", smokeDef, "a small, quick configuration that proves the harness works (BENCH_SMOKE=1)")
	flag.StringVar(&size, "size", os.Getenv("BENCH_SIZE"), "sequential file size (default 1GiB, smoke 64MiB)")
	flag.StringVar(&objSize, "object-size", envOr("BENCH_OBJECT_SIZE", "8MiB"), "raw large-object size")
	flag.StringVar(&smallSize, "small-size", envOr("BENCH_SMALL_SIZE", "4KiB"), "small file and object size")
	flag.IntVar(&c.files, "files", atoiOr(os.Getenv("BENCH_FILES"), 0), "small files (default 2000, smoke 200)")
	flag.StringVar(&lsSizes, "ls", os.Getenv("BENCH_LS"), "entries of the ls -l directories (default 1000,10000; smoke 100,1000)")
	flag.IntVar(&c.randReads, "rand-reads", atoiOr(os.Getenv("BENCH_RAND_READS"), 0), "random 4KiB reads (default 2000, smoke 300)")
	flag.StringVar(&c.untarSrc, "untar", os.Getenv("BENCH_UNTAR"), "directory to tar and untar (default $(go env GOROOT)/src; smoke .../src/encoding)")
	flag.IntVar(&c.visRounds, "vis-rounds", 0, "cross-mount visibility rounds (default 10, smoke 3)")
	flag.DurationVar(&c.visTimeout, "vis-timeout", 0, "give up on one visibility round after this (default 60s, smoke 10s)")
	flag.BoolVar(&c.proxyCounts, "count", true, "route every target through the counting proxy")
	flag.StringVar(&c.label, "label", os.Getenv("BENCH_LABEL"), "suffix of the results files and a note in them, e.g. quiet-machine (smoke runs: smoke)")
	flag.StringVar(&c.trace, "trace", os.Getenv("BENCH_TRACE"), "log every S3 request (workload, kind, status, latency, URI) to this file")
	flag.StringVar(&only, "only", os.Getenv("BENCH_ONLY"), "run only these workload groups of the filesystems, comma separated: "+strings.Join(workloadGroups, ", ")+" (default all; for profiling one bound)")
	flag.Parse()

	c.accessKey, c.secretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if c.endpoint == "" || c.accessKey == "" || c.secretKey == "" {
		return nil, fmt.Errorf("need -endpoint (or BENCH_ENDPOINT), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; scripts/bench.sh sets them")
	}
	c.targets = strings.Split(targets, ",")
	if only != "" {
		c.only = map[string]bool{}
		for _, g := range strings.Split(only, ",") {
			if !slices.Contains(workloadGroups, g) {
				return nil, fmt.Errorf("-only %q: unknown group %q (known: %s)", only, g, strings.Join(workloadGroups, ", "))
			}
			c.only[g] = true
		}
	}
	c.s3gfsArgs = strings.Fields(s3gfsArgs)
	def := func(full, smoke string) string {
		if c.smoke {
			return smoke
		}
		return full
	}
	var err error
	if size == "" {
		size = def("1GiB", "64MiB")
	}
	if c.size, err = parseSize(size); err != nil {
		return nil, err
	}
	if c.objSize, err = parseSize(objSize); err != nil {
		return nil, err
	}
	if c.smallSize, err = parseSize(smallSize); err != nil {
		return nil, err
	}
	if c.files == 0 {
		c.files = atoiOr(def("2000", "200"), 0)
	}
	if lsSizes == "" {
		lsSizes = def("1000,10000", "100,1000")
	}
	for _, s := range strings.Split(lsSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-ls %q: want a comma-separated list of counts", lsSizes)
		}
		c.lsSizes = append(c.lsSizes, n)
	}
	if c.randReads == 0 {
		c.randReads = atoiOr(def("2000", "300"), 0)
	}
	if c.visRounds == 0 {
		c.visRounds = atoiOr(def("10", "3"), 0)
	}
	if c.visTimeout == 0 {
		c.visTimeout, _ = time.ParseDuration(def("60s", "10s"))
	}
	if c.untarSrc == "" {
		out, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			out = []byte(runtime.GOROOT())
		}
		c.untarSrc = filepath.Join(strings.TrimSpace(string(out)), "src")
		if c.smoke {
			c.untarSrc = filepath.Join(c.untarSrc, "encoding")
		}
	}
	if c.size < 4*c.objSize {
		return nil, fmt.Errorf("-size %s must be at least 4 raw objects (%s each)", fmtBytes(c.size), fmtBytes(c.objSize))
	}
	if c.label == "" && c.smoke {
		c.label = "smoke"
	}
	c.runID = strconv.FormatInt(time.Now().Unix()%1000000, 36)
	return c, nil
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// parseSize parses "64MiB", "1GiB", "4KiB", "4096".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func (c *config) makeBucket(ctx context.Context, bucket string) error {
	st, err := c.store(ctx, bucket)
	if err != nil {
		return err
	}
	return st.EnsureBucket(ctx)
}

func (c *config) store(ctx context.Context, bucket string) (*s3store.Store, error) {
	return s3store.New(ctx, s3store.Config{
		Bucket: bucket, Endpoint: c.s3URL, Region: c.region,
		AccessKey: c.accessKey, SecretKey: c.secretKey,
	})
}

// emptyBucket deletes every object in bucket (not timed): a full run
// writes several GiB per target.
func (c *config) emptyBucket(ctx context.Context, bucket string) error {
	st, err := c.store(ctx, bucket)
	if err != nil {
		return err
	}
	for {
		page, err := st.List(ctx, "", "", 1000)
		if err != nil {
			return err
		}
		if len(page.Objects) == 0 {
			return nil
		}
		keys := make([]string, len(page.Objects))
		for i, o := range page.Objects {
			keys[i] = o.Key
		}
		if err := st.DeleteMany(ctx, keys); err != nil {
			return err
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, cfg *config) error {
	if cfg.work == "" {
		d, err := os.MkdirTemp("", "s3gfs-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		cfg.work = d
	} else if err := os.MkdirAll(cfg.work, 0o755); err != nil {
		return err
	}
	cfg.s3URL = cfg.endpoint
	var proxy *countingProxy
	if cfg.proxyCounts {
		var trace io.Writer
		if cfg.trace != "" {
			f, err := os.Create(cfg.trace)
			if err != nil {
				return err
			}
			defer f.Close()
			bw := bufio.NewWriterSize(f, 1<<20)
			defer bw.Flush()
			trace = bw
		}
		p, err := newCountingProxy(cfg.endpoint, trace)
		if err != nil {
			return err
		}
		defer p.Close()
		proxy = p
		cfg.s3URL = p.URL()
	}
	res := newResults(cfg)
	started := time.Now()

	if err := runLocal(cfg, res); err != nil {
		logf("local: %v", err)
	}
	for _, name := range cfg.targets {
		switch name {
		case "raw":
			logf("raw S3 (aws-sdk-go-v2 through s3store)")
			if err := runRaw(ctx, cfg, proxy, res, 1); err != nil {
				res.fail("raw", err)
				logf("raw: %v", err)
			}
		case "s3gfs", "s3fs", "rclone":
			var t fsTarget
			bucket := "bench-" + name + "-" + cfg.runID
			switch name {
			case "s3gfs":
				if _, err := os.Stat(cfg.s3gfsBin); err != nil {
					res.unavailable(name, "binary not found: "+cfg.s3gfsBin)
					continue
				}
				t = &s3gfsTarget{cfg: cfg, bucket: bucket}
			case "s3fs":
				if _, err := exec.LookPath("s3fs"); err != nil {
					res.unavailable(name, "s3fs not installed (apt-get install s3fs)")
					continue
				}
				t = &s3fsTarget{cfg: cfg, bucket: bucket}
			case "rclone":
				if _, err := exec.LookPath("rclone"); err != nil {
					res.unavailable(name, "rclone not installed (apt-get install rclone)")
					continue
				}
				t = &rcloneTarget{cfg: cfg, bucket: bucket}
			}
			logf("%s: bucket %s", name, bucket)
			proxy.setLabel(name + "/setup")
			if err := runFS(ctx, cfg, t, proxy, res); err != nil {
				res.fail(name, err)
				logf("%s: %v", name, err)
			}
			proxy.setLabel("cleanup")
			if err := cfg.emptyBucket(ctx, bucket); err != nil {
				logf("%s: emptying bucket %s: %v", name, bucket, err)
			}
		default:
			return fmt.Errorf("unknown target %q (known: raw, s3gfs, s3fs, rclone)", name)
		}
	}
	if slices.Contains(cfg.targets, "raw") && len(cfg.targets) > 1 {
		logf("raw S3, second pass")
		if err := runRaw(ctx, cfg, proxy, res, 2); err != nil {
			logf("raw, second pass: %v", err)
		}
	}
	res.elapsed = time.Since(started)
	return res.write()
}
