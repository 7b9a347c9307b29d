package main

import (
	"bytes"
	"image/png"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "1GiB": 1 << 30, "4KiB": 4096, "4096": 4096, "8M": 8 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1TiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		method, target string
		want           int
	}{
		{"PUT", "/b/k", reqPut},
		{"PUT", "/b", reqPut},
		{"GET", "/b/k/x", reqGet},
		{"GET", "/b?list-type=2&prefix=x", reqList},
		{"GET", "/b/", reqList},
		{"HEAD", "/b/k", reqHead},
		{"DELETE", "/b/k", reqDelete},
		{"POST", "/b?delete", reqPost},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if got := classify(r); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.method, c.target, reqNames[got], reqNames[c.want])
		}
	}
}

// TestReport renders the table and the chart from made-up figures.
func TestReport(t *testing.T) {
	cfg := &config{size: 64 << 20, objSize: 8 << 20, smallSize: 4096, files: 200, lsSizes: []int{100, 1000},
		randReads: 300, untarSrc: "/usr/local/go/src/encoding", visRounds: 3, visTimeout: 10 * time.Second,
		smoke: true, label: "smoke", out: t.TempDir()}
	r := newResults(cfg)
	r.set("raw", "raw.put8", cell{value: 300, ops: 8, reqs: counts{reqPut: 8}})
	r.set("raw", "raw.get8", cell{value: 1000, ops: 8})
	r.set("raw", "raw.smallput1", cell{value: 1000, ops: 200})
	r.set("s3gfs", "seqwrite", cell{value: 250, ops: 1, rss: 100 << 20, reqs: counts{reqPut: 16, reqList: 1}})
	r.set("s3gfs", "coldread", cell{value: 500, ops: 1, rss: 400 << 20})
	r.set("s3gfs", "smallcreate", cell{value: 600, ops: 200, rss: 50 << 20})
	r.set("s3fs", "smallcreate", cell{value: 100, ops: 200})
	r.set("raw", "local.ls1", cell{value: 4, ops: 1000})
	r.set("s3gfs", "ls1.warm", cell{value: 8, ops: 1000})
	r.set("rclone", "visibility", cell{err: "not visible after 10s"})
	r.unavailable("rclone", "testing")
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	mds, _ := filepath.Glob(filepath.Join(cfg.out, "*-smoke.md"))
	if len(mds) != 1 {
		t.Fatalf("results: %v", mds)
	}
	md, _ := os.ReadFile(mds[0])
	for _, want := range []string{
		"SMOKE RUN",
		"| Sequential write 64MiB + fsync | MiB/s | 300 (best raw PUT) | 250 |",
		"0.83x | — | — | >= 0.8x raw PUT | **met** |",
		"| Cold sequential read 64MiB | MiB/s | 1000 (best raw GET) | 500 |",
		"**missed**",
		"**met** (6.00x vs s3fs, 0.60x vs raw)",
		"Peak RSS target over all workloads: **missed**",
		"17.0 (PUT 16.0, LIST 1.00)",
		"rclone, write on A visible on B: **failed**",
		"| ls -l 1000 entries, warm | ms | 4.00 (local fs, warm) | 8.00 | — | — | 0.50x |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results lack %q:\n%s", want, md)
		}
	}
	b, err := os.ReadFile(strings.TrimSuffix(mds[0], ".md") + ".png")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}
