package torture

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRecheckReport re-judges the history and final tree kept in a
// torture report (the file a failed run names) with the current checker:
//
//	S3GFS_TORTURE_REPORT=/tmp/s3gfs-torture-....log go test -run TestRecheckReport -v ./tests/torture
//
// Skipped without S3GFS_TORTURE_REPORT.
func TestRecheckReport(t *testing.T) {
	path := os.Getenv("S3GFS_TORTURE_REPORT")
	if path == "" {
		t.Skip("set S3GFS_TORTURE_REPORT to a torture report to re-check it")
	}
	hist, final, err := parseReport(path)
	if err != nil {
		t.Fatal(err)
	}
	problems, stats := check(hist, final, staleWindow, probeDir)
	t.Logf("%d ops, %d final entries; checker: %v", len(hist), len(final), stats)
	for _, p := range problems {
		t.Errorf("%v", p)
	}
}

var (
	opLine = regexp.MustCompile(`^#(\d+) h(\d+) (\S+) (\S+)(?: -> (\S+))?(?: \[chunks (\d+)\+(\d+)\])? @([\d.]+)s\.\.([\d.]+)s (ok|failed|indeterminate)(?: ino=([0-9a-f]{16}))?(?: local=([0-9a-f]{16}))?(?: \((.*?)\))?(?: fstat=(\d+))?(?: read=(.*))?$`)
	runRe  = regexp.MustCompile(`^(?:#(\d+)@(\d+)×(\d+)|zeros@(\d+)×(\d+))$`)
)

func parseDur(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Second))
}

// parseRuns parses what runs.String printed (garbage runs are lost).
func parseRuns(s string) (runs, error) {
	if s == "empty" {
		return runs{}, nil
	}
	i, j := strings.IndexByte(s, '['), strings.LastIndexByte(s, ']')
	if i < 0 || j < i {
		return nil, fmt.Errorf("content %q", s)
	}
	var rs runs
	at := 0
	for _, f := range strings.Fields(s[i+1 : j]) {
		m := runRe.FindStringSubmatch(f)
		if m == nil {
			return nil, fmt.Errorf("run %q in %q", f, s)
		}
		if m[1] != "" {
			op, _ := strconv.Atoi(m[1])
			pos, _ := strconv.Atoi(m[2])
			n, _ := strconv.Atoi(m[3])
			rs = rs.add(run{op: op, pos: pos, n: n})
			at += n
		} else {
			n, _ := strconv.Atoi(m[5])
			rs = rs.add(run{op: 0, pos: at, n: n})
			at += n
		}
	}
	return rs, nil
}

func parseReport(path string) ([]*Op, tree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	kinds := map[string]Kind{}
	for k := range kindNames {
		kinds[kindNames[k]] = Kind(k)
	}
	statuses := map[string]Status{"ok": OK, "failed": Failed, "indeterminate": Indet}
	var hist []*Op
	final := tree{}
	section := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "FINAL TREE" || line == "HISTORY":
			section = line
			continue
		case strings.HasPrefix(line, "LOG OF HOST"):
			section = ""
			continue
		}
		switch section {
		case "FINAL TREE":
			fs := strings.SplitN(strings.TrimSpace(line), " ", 5)
			if len(fs) < 4 {
				continue
			}
			if p, ok := strings.CutSuffix(fs[0], ":"); ok {
				// Older reports: "path: file ino=X nlink=N content".
				fs[0], fs[1] = p, fs[1][:1]
				fs[2] = strings.TrimPrefix(fs[2], "ino=")
				fs[3] = strings.TrimPrefix(fs[3], "nlink=")
			}
			if fs[0] == probeDir || strings.HasPrefix(fs[0], probeDir+"/") {
				continue
			}
			ino, _ := strconv.ParseUint(fs[2], 16, 64)
			nlink, _ := strconv.ParseUint(fs[3], 10, 64)
			n := node{Kind: fs[1][0], Ino: ino, Nlink: nlink}
			if n.Kind == 'f' && len(fs) == 5 {
				rs, err := parseRuns(fs[4])
				if err != nil {
					return nil, nil, err
				}
				n.Data = rs.bytes()
				n.Size = int64(len(n.Data))
			}
			final[fs[0]] = n
		case "HISTORY":
			if line == "" {
				continue
			}
			m := opLine.FindStringSubmatch(line)
			if m == nil {
				return nil, nil, fmt.Errorf("history line %q", line)
			}
			op := &Op{Host: atoi(m[2]), Kind: kinds[m[3]], Path: m[4], Path2: m[5], Start: parseDur(m[8]), End: parseDur(m[9]), Status: statuses[m[10]], Err: m[13]}
			op.ID = atoi(m[1])
			if m[6] != "" {
				op.Off, op.N = atoi(m[6]), atoi(m[7])
			}
			if m[11] != "" {
				op.Ino, _ = strconv.ParseUint(m[11], 16, 64)
			}
			if m[12] != "" {
				op.Local, _ = strconv.ParseUint(m[12], 16, 64)
			}
			if m[14] != "" {
				op.Size = int64(atoi(m[14]))
			}
			if m[15] != "" {
				if op.Data, err = parseRuns(m[15]); err != nil {
					return nil, nil, err
				}
			}
			hist = append(hist, op)
		}
	}
	return hist, final, sc.Err()
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
