package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// A metric is one figure the harness reports.
type metric struct {
	key         string
	label       string
	unit        string
	lowerBetter bool
	fs          bool     // measured on the filesystems (else on raw S3)
	raw         []string // raw metrics it is compared with (the best of them)
	rawLabel    string
	target      string // the target, if any
}

var metricByKey = map[string]metric{}

// cell is one measured figure.
type cell struct {
	value float64
	ops   int64 // operations done (files, reads, objects...)
	secs  float64
	rss   int64 // peak RSS of the mount process during it
	reqs  counts
	note  string
	err   string
}

func (c cell) summary(unit string) string {
	if c.err != "" {
		return "FAILED: " + c.err
	}
	s := fmt.Sprintf("%s %s (%d ops, %.2fs, %d requests", fmtNum(c.value), unit, c.ops, c.secs, c.reqs.total())
	if c.rss > 0 {
		s += fmt.Sprintf(", peak RSS %.0f MiB", float64(c.rss)/(1<<20))
	}
	return s + ")"
}

type results struct {
	cfg     *config
	metrics []metric
	cells   map[string]map[string]cell // target -> metric -> cell
	status  map[string]string          // target -> why it has no figures
	started time.Time
	elapsed time.Duration
}

var fsTargets = []string{"s3gfs", "s3fs", "rclone"}

const rssTarget = 300 << 20

// kernelTarget is the target for warm stat and ls -l, which it
// does not quantify: the table shows the ratio to the local filesystem.
const kernelTarget = "kernel-cache speed (see ratio to local fs)"

func newResults(cfg *config) *results {
	size := fmtBytes(cfg.size)
	ms := []metric{
		{key: "raw.put1", label: fmt.Sprintf("PUT %s objects, 1 stream", fmtBytes(cfg.objSize)), unit: "MiB/s"},
		{key: "raw.put8", label: fmt.Sprintf("PUT %s objects, 8 streams", fmtBytes(cfg.objSize)), unit: "MiB/s"},
		{key: "raw.get1", label: fmt.Sprintf("GET %s objects, 1 stream", fmtBytes(cfg.objSize)), unit: "MiB/s"},
		{key: "raw.get8", label: fmt.Sprintf("GET %s objects, 8 streams", fmtBytes(cfg.objSize)), unit: "MiB/s"},
		{key: "raw.smallput1", label: fmt.Sprintf("PUT %s objects, 1 stream", fmtBytes(cfg.smallSize)), unit: "ops/s"},
		{key: "raw.smallput8", label: fmt.Sprintf("PUT %s objects, 8 streams", fmtBytes(cfg.smallSize)), unit: "ops/s"},
		{key: "raw.smallget1", label: fmt.Sprintf("GET %s objects, 1 stream", fmtBytes(cfg.smallSize)), unit: "ops/s"},
		{key: "raw.head1", label: "HEAD, 1 stream", unit: "ops/s"},
		{key: "raw.list", label: "LIST (1,000 keys a page)", unit: "keys/s"},
		{key: "raw.delete1", label: "DELETE, 1 stream", unit: "ops/s"},
		{key: "local.stat", label: "Local filesystem: stat, warm (the kernel's caches)", unit: "ops/s"},

		{key: "seqwrite", fs: true, label: "Sequential write " + size + " + fsync", unit: "MiB/s",
			raw: []string{"raw.put1", "raw.put8"}, rawLabel: "best raw PUT", target: ">= 0.8x raw PUT"},
		{key: "coldread", fs: true, label: "Cold sequential read " + size, unit: "MiB/s",
			raw: []string{"raw.get1", "raw.get8"}, rawLabel: "best raw GET", target: ">= 0.8x raw GET"},
		{key: "par4read", fs: true, label: "4 readers of 4 files, cold", unit: "MiB/s",
			raw: []string{"raw.get8"}, rawLabel: "raw GET x8"},
		{key: "rand4k", fs: true, label: "Random 4KiB reads, cold", unit: "ops/s",
			raw: []string{"raw.smallget1"}, rawLabel: "raw small GET x1"},
		{key: "smallcreate", fs: true, label: fmt.Sprintf("Create+write+close %d x %s, + sync", cfg.files, fmtBytes(cfg.smallSize)), unit: "files/s",
			raw: []string{"raw.smallput1"}, rawLabel: "raw small PUT x1", target: ">= 3x s3fs, >= 0.5x raw PUT x1"},
		{key: "stat", fs: true, label: "stat (warm)", unit: "ops/s", raw: []string{"local.stat"}, rawLabel: "local fs, warm", target: kernelTarget},
		{key: "rename", fs: true, label: "rename in a dir, + sync", unit: "ops/s"},
		{key: "unlink", fs: true, label: "unlink, + sync", unit: "ops/s", raw: []string{"raw.delete1"}, rawLabel: "raw DELETE x1"},
	}
	for i, k := range cfg.lsSizes {
		ms = append(ms,
			metric{key: localLsKey(i), label: fmt.Sprintf("Local filesystem: ls -l %d entries, warm", k), unit: "ms", lowerBetter: true},
			metric{key: lsKey(i, "cold"), fs: true, label: fmt.Sprintf("ls -l %d entries, cold", k), unit: "ms", lowerBetter: true},
			metric{key: lsKey(i, "warm"), fs: true, label: fmt.Sprintf("ls -l %d entries, warm", k), unit: "ms", lowerBetter: true,
				raw: []string{localLsKey(i)}, rawLabel: "local fs, warm", target: kernelTarget})
	}
	ms = append(ms,
		metric{key: "untar", fs: true, label: "untar " + shortPath(cfg.untarSrc) + ", + sync", unit: "entries/s"},
		metric{key: "visibility", fs: true, label: "write on A visible on B", unit: "ms", lowerBetter: true},
	)
	for _, m := range ms {
		metricByKey[m.key] = m
	}
	return &results{cfg: cfg, metrics: ms, cells: map[string]map[string]cell{}, status: map[string]string{}, started: time.Now()}
}

func shortPath(p string) string {
	if i := strings.Index(p, "/src"); i >= 0 {
		return "GOROOT" + p[i:]
	}
	return p
}

func (r *results) set(target, key string, c cell) {
	if r.cells[target] == nil {
		r.cells[target] = map[string]cell{}
	}
	r.cells[target][key] = c
}

// setRaw records a raw figure, keeping the better of two passes.
func (r *results) setRaw(key string, c cell) {
	old, ok := r.cells["raw"][key]
	switch {
	case !ok:
	case c.err != "" && old.err == "":
		return
	case old.err == "" && c.err == "":
		better := c.value > old.value
		if metricByKey[key].lowerBetter {
			better = c.value < old.value
		}
		if !better {
			return
		}
	}
	r.set("raw", key, c)
}

func (r *results) get(target, key string) (cell, bool) {
	c, ok := r.cells[target][key]
	return c, ok && c.err == ""
}

func (r *results) unavailable(target, why string) {
	r.status[target] = "unavailable: " + why
	logf("%s: %s", target, r.status[target])
}

func (r *results) fail(target string, err error) {
	r.status[target] = "stopped early: " + err.Error()
}

// rawFor is the raw figure metric m is compared with: the best of its raw
// metrics.
func (r *results) rawFor(m metric) (float64, bool) {
	best, ok := 0.0, false
	for _, k := range m.raw {
		c, found := r.get("raw", k)
		if found && c.value > 0 && (!ok || (c.value > best) != m.lowerBetter) {
			best, ok = c.value, true
		}
	}
	return best, ok
}

// ratio is how many times faster s3gfs is than other on m (> 1: s3gfs is faster).
func ratio(m metric, s3gfs, other float64) float64 {
	if s3gfs <= 0 || other <= 0 {
		return 0
	}
	if m.lowerBetter {
		return other / s3gfs
	}
	return s3gfs / other
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtRatio(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v < 0.1:
		return fmt.Sprintf("%.3fx", v)
	}
	return fmt.Sprintf("%.2fx", v)
}

// check evaluates m's target: "met", "missed" or "" (no target, or not measurable).
func (r *results) check(m metric) string {
	s, ok := r.get("s3gfs", m.key)
	if !ok || m.target == "" {
		return ""
	}
	raw, rawOK := r.rawFor(m)
	verdict := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**missed**"
	}
	if m.target == kernelTarget {
		return "judge by the ratio"
	}
	switch m.key {
	case "seqwrite", "coldread":
		if !rawOK {
			return "no raw figure"
		}
		return verdict(s.value >= 0.8*raw)
	case "smallcreate":
		var parts []string
		good := true
		if f, ok := r.get("s3fs", m.key); ok {
			good = good && s.value >= 3*f.value
			parts = append(parts, fmt.Sprintf("%s vs s3fs", fmtRatio(ratio(m, s.value, f.value))))
		} else {
			parts = append(parts, "no s3fs figure")
		}
		if rawOK {
			good = good && s.value >= 0.5*raw
			parts = append(parts, fmt.Sprintf("%s vs raw", fmtRatio(ratio(m, s.value, raw))))
		} else {
			parts = append(parts, "no raw figure")
		}
		return verdict(good) + " (" + strings.Join(parts, ", ") + ")"
	}
	return ""
}

func cmdOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// write writes the markdown table and the PNG chart.
func (r *results) write() error {
	if err := os.MkdirAll(r.cfg.out, 0o755); err != nil {
		return err
	}
	host, _ := os.Hostname()
	base := r.started.UTC().Format("2006-01-02") + "-" + host
	if r.cfg.label != "" {
		base += "-" + r.cfg.label
	}
	md := filepath.Join(r.cfg.out, base+".md")
	pngPath := filepath.Join(r.cfg.out, base+".png")
	var b bytes.Buffer
	r.markdown(&b, filepath.Base(pngPath))
	if err := os.WriteFile(md, b.Bytes(), 0o644); err != nil {
		return err
	}
	if err := r.chart(pngPath); err != nil {
		return err
	}
	logf("wrote %s and %s", md, pngPath)
	return nil
}

func (r *results) markdown(b *bytes.Buffer, chart string) {
	cfg := r.cfg
	host, _ := os.Hostname()
	fmt.Fprintf(b, "# s3gfs benchmark: %s on %s\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"), host)
	if cfg.smoke {
		b.WriteString("> **SMOKE RUN.** A small configuration run to prove the harness works end to end, " +
			"on a busy 2-core machine shared with other jobs. The figures are noisy and are **not** a " +
			"performance claim; the full run (`make bench` without BENCH_SMOKE) is for a quiet machine.\n\n")
	}
	if cfg.label != "" && cfg.label != "smoke" {
		fmt.Fprintf(b, "Run label: **%s**.\n\n", cfg.label)
	}
	load := strings.TrimSpace(readFirst("/proc/loadavg"))
	fmt.Fprintf(b, "Machine: %d CPUs, kernel %s, load average at the end `%s`. Run took %s.\n\n",
		runtime.NumCPU(), cmdOutput("uname", "-r"), load, r.elapsed.Round(time.Second))
	fmt.Fprintf(b, "Versions: s3gfs `%s`, versitygw `%s`, s3fs `%s`, rclone `%s`.\n\n",
		envOr("BENCH_S3GFS_VERSION", "?"), envOr("BENCH_S3_SERVER", "?"), cmdOutput("s3fs", "--version"), cmdOutput("rclone", "version"))
	fmt.Fprintf(b, "Configuration: file size %s, raw large objects %s, small files/objects %d x %s, "+
		"ls -l directories %v, %d random reads, untar of `%s`, %d visibility rounds (timeout %s). "+
		"Each target has a bucket of its own on one local versitygw (loopback); every request of every "+
		"target, raw included, goes through a counting proxy in the harness. The raw figures are measured "+
		"twice, first and last in the run, and each keeps the better pass.\n\n",
		fmtBytes(cfg.size), fmtBytes(cfg.objSize), cfg.files, fmtBytes(cfg.smallSize), cfg.lsSizes,
		cfg.randReads, shortPath(cfg.untarSrc), cfg.visRounds, cfg.visTimeout)
	b.WriteString("Peers: s3fs-fuse and rclone mount from Debian, default options (rclone: `--vfs-cache-mode off`, so a " +
		"close returns once the object is stored; rclone runs without `AWS_CA_BUNDLE`, which rclone 1.60 cannot load). " +
		"Every write workload ends with syncfs(2) of the mount inside the timed part, so write caches do not flatter anyone.\n\n")
	for _, t := range append([]string{"raw"}, fsTargets...) {
		if s, ok := r.status[t]; ok {
			fmt.Fprintf(b, "- **%s**: %s\n", t, s)
		}
	}
	if len(r.status) > 0 {
		b.WriteString("\n")
	}

	b.WriteString("## Raw S3 (aws-sdk-go-v2, s3gfs's own s3store) and the local filesystem\n\n| Operation | Figure | Requests |\n| --- | ---: | ---: |\n")
	for _, m := range r.metrics {
		if m.fs {
			continue
		}
		c, found := r.cells["raw"][m.key]
		fmt.Fprintf(b, "| %s | %s | %s |\n", m.label, r.cellText(c, found, m.unit), reqText(c, found, 1))
	}

	b.WriteString("\n## Filesystems\n\nRatios are how many times faster s3gfs is (above 1: s3gfs is faster; for times, the inverse ratio).\n\n")
	b.WriteString("| Workload | Unit | Raw S3 or local fs | s3gfs | s3fs | rclone | s3gfs ÷ raw/local | s3gfs ÷ s3fs | s3gfs ÷ rclone | Target | Met? |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n")
	for _, m := range r.metrics {
		if !m.fs {
			continue
		}
		raw, rawOK := r.rawFor(m)
		rawText := "—"
		if rawOK {
			rawText = fmtNum(raw) + " (" + m.rawLabel + ")"
		}
		row := []string{m.label, m.unit, rawText}
		for _, t := range fsTargets {
			c, found := r.cells[t][m.key]
			row = append(row, r.cellText(c, found, ""))
		}
		s, sOK := r.get("s3gfs", m.key)
		rt := func(other float64, ok bool) string {
			if !sOK || !ok {
				return "—"
			}
			return fmtRatio(ratio(m, s.value, other))
		}
		row = append(row, rt(raw, rawOK))
		for _, t := range fsTargets[1:] {
			c, ok := r.get(t, m.key)
			row = append(row, rt(c.value, ok))
		}
		row = append(row, orDash(m.target), orDash(r.check(m)))
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}

	b.WriteString("\n## Peak RSS of the mount process (MiB)\n\nVmHWM, reset before each workload (clear_refs) or by a fresh mount. Target: s3gfs under 300 MiB for every workload (default buffer size).\n\n")
	b.WriteString("| Workload | s3gfs | s3fs | rclone | s3gfs < 300 MiB? |\n| --- | ---: | ---: | ---: | --- |\n")
	allMet, anyRSS := true, false
	for _, m := range r.metrics {
		if !m.fs {
			continue
		}
		row := []string{m.label}
		for _, t := range fsTargets {
			c, ok := r.cells[t][m.key]
			if ok && c.rss > 0 {
				row = append(row, fmt.Sprintf("%.0f", float64(c.rss)/(1<<20)))
			} else {
				row = append(row, "—")
			}
		}
		verdict := "—"
		if c, ok := r.cells["s3gfs"][m.key]; ok && c.rss > 0 {
			anyRSS = true
			if c.rss < rssTarget {
				verdict = "**met**"
			} else {
				verdict, allMet = "**missed**", false
			}
		}
		b.WriteString("| " + strings.Join(append(row, verdict), " | ") + " |\n")
	}
	if anyRSS {
		fmt.Fprintf(b, "\nPeak RSS target over all workloads: %s.\n", map[bool]string{true: "**met**", false: "**missed**"}[allMet])
	}

	b.WriteString("\n## S3 requests per operation\n\nRequests the target sent during the workload, divided by the operations it did " +
		"(one file written or read, one small file, one stat, one listing, one tar entry, one visibility round), " +
		"with the breakdown by kind. Background requests (s3gfs's pings every second, peers' own polling) are included.\n\n")
	b.WriteString("| Workload | s3gfs | s3fs | rclone |\n| --- | --- | --- | --- |\n")
	for _, m := range r.metrics {
		if !m.fs {
			continue
		}
		row := []string{m.label}
		for _, t := range fsTargets {
			c, ok := r.cells[t][m.key]
			row = append(row, reqText(c, ok, c.ops))
		}
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}

	var notes []string
	for _, t := range append([]string{"raw"}, fsTargets...) {
		for _, m := range r.metrics {
			c, ok := r.cells[t][m.key]
			if !ok {
				continue
			}
			if c.err != "" {
				notes = append(notes, fmt.Sprintf("- %s, %s: **failed**: %s", t, m.label, c.err))
			} else if c.note != "" {
				notes = append(notes, fmt.Sprintf("- %s, %s: %s", t, m.label, c.note))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n## Notes\n\n" + strings.Join(notes, "\n") + "\n")
	}
	fmt.Fprintf(b, "\n![chart](%s)\n", chart)
}

func readFirst(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func (r *results) cellText(c cell, found bool, unit string) string {
	switch {
	case !found:
		return "—"
	case c.err != "":
		return "failed"
	case unit != "":
		return fmtNum(c.value) + " " + unit
	}
	return fmtNum(c.value)
}

// reqText is the requests per operation, with the breakdown.
func reqText(c cell, found bool, ops int64) string {
	if !found || c.err != "" || c.reqs.total() == 0 {
		return "—"
	}
	if ops <= 0 {
		ops = 1
	}
	var parts []string
	for i, n := range c.reqs {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", reqNames[i], fmtNum(float64(n)/float64(ops))))
		}
	}
	return fmt.Sprintf("%s (%s)", fmtNum(float64(c.reqs.total())/float64(ops)), strings.Join(parts, ", "))
}

// Chart colours, one per target.
var targetColor = map[string]color.RGBA{
	"raw":    {0x88, 0x88, 0x88, 0xff},
	"local":  {0x9a, 0x6f, 0xc8, 0xff},
	"s3gfs":  {0x1f, 0x77, 0xb4, 0xff},
	"s3fs":   {0xff, 0x7f, 0x0e, 0xff},
	"rclone": {0x2c, 0xa0, 0x2c, 0xff},
}

// chart draws one panel per filesystem workload (plus peak RSS): a bar per
// target, scaled to the largest in the panel, labelled with its figure.
func (r *results) chart(path string) error {
	type bar struct {
		name  string
		value float64
		text  string
	}
	type panel struct {
		title string
		bars  []bar
	}
	var panels []panel
	for _, m := range r.metrics {
		if !m.fs {
			continue
		}
		p := panel{title: m.label + " (" + m.unit + ")"}
		if m.lowerBetter {
			p.title = m.label + " (" + m.unit + ", lower is better)"
		}
		if raw, ok := r.rawFor(m); ok {
			name := "raw"
			if strings.HasPrefix(m.raw[0], "local.") {
				name = "local"
			}
			p.bars = append(p.bars, bar{name, raw, fmtNum(raw)})
		}
		for _, t := range fsTargets {
			c, ok := r.cells[t][m.key]
			switch {
			case !ok:
				continue
			case c.err != "":
				p.bars = append(p.bars, bar{t, 0, "failed"})
			default:
				p.bars = append(p.bars, bar{t, c.value, fmtNum(c.value)})
			}
		}
		panels = append(panels, p)
	}
	rss := panel{title: "Peak RSS, max over workloads (MiB, lower is better)"}
	for _, t := range fsTargets {
		var peak int64
		for _, c := range r.cells[t] {
			peak = max(peak, c.rss)
		}
		if peak > 0 {
			rss.bars = append(rss.bars, bar{t, float64(peak) / (1 << 20), fmt.Sprintf("%.0f", float64(peak)/(1<<20))})
		}
	}
	panels = append(panels, rss)

	const (
		cols   = 3
		pw     = 560 // panel width
		barH   = 18
		gap    = 6
		labelW = 80
		margin = 16
	)
	ph := 40 + 5*(barH+gap) // title + up to 5 bars
	rows := (len(panels) + cols - 1) / cols
	header := 70
	w, h := cols*pw+2*margin, header+rows*ph+margin
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	black := color.RGBA{0x20, 0x20, 0x20, 0xff}
	title := "s3gfs benchmark " + r.started.UTC().Format("2006-01-02")
	if r.cfg.smoke {
		title += " - SMOKE RUN, NOISY FIGURES"
	}
	drawText(img, margin, margin, title, 3, black)
	x := margin
	for _, t := range append([]string{"raw", "local"}, fsTargets...) {
		fill(img, x, 50, 14, 14, targetColor[t])
		drawText(img, x+20, 50, t, 2, black)
		x += 20 + textWidth(t, 2) + 30
	}
	for i, p := range panels {
		px, py := margin+(i%cols)*pw, header+(i/cols)*ph
		t := p.title
		for textWidth(t, 1) > pw-20 {
			t = t[:len(t)-1]
		}
		drawText(img, px, py+8, t, 1, black)
		maxV := 0.0
		for _, b := range p.bars {
			maxV = math.Max(maxV, b.value)
		}
		for j, b := range p.bars {
			by := py + 24 + j*(barH+gap)
			drawText(img, px, by+2, b.name, 2, black)
			bw := 0
			if maxV > 0 {
				bw = int(b.value / maxV * float64(pw-labelW-110))
			}
			fill(img, px+labelW, by, max(bw, 1), barH, targetColor[b.name])
			drawText(img, px+labelW+bw+6, by+2, b.text, 2, black)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fill(img *image.RGBA, x, y, w, h int, c color.Color) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), image.NewUniform(c), image.Point{}, draw.Src)
}
