package driver

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	MajMin     string // device of the mounted filesystem: shared by a FUSE mount and its bind mounts
	Root       string
	MountPoint string
	Options    string // per-mount options (ro, rw, ...)
	FSType     string // "fuse.s3gfs" for s3gfs
	Source     string // s3://BUCKET/PREFIX for s3gfs
}

// fuseType is the filesystem type s3gfs mounts show in mountinfo.
const fuseType = "fuse.s3gfs"

// readMounts parses /proc/self/mountinfo.
func readMounts() ([]mountEntry, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mountEntry
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{
			MajMin: f[2], Root: unescapeMount(f[3]), MountPoint: unescapeMount(f[4]), Options: f[5],
			FSType: f[sep+1], Source: unescapeMount(f[sep+2]),
		})
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space...) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountAt returns the topmost mount at path, if any.
func mountAt(path string) (mountEntry, bool, error) {
	ms, err := readMounts()
	if err != nil {
		return mountEntry{}, false, err
	}
	var found mountEntry
	ok := false
	for _, m := range ms {
		if m.MountPoint == path {
			found, ok = m, true // later lines are mounted on top of earlier ones
		}
	}
	return found, ok, nil
}

func (m mountEntry) readOnly() bool {
	for _, o := range strings.Split(m.Options, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// healthy reports whether the filesystem at path answers: a FUSE mount
// whose server died answers ENOTCONN ("transport endpoint is not
// connected").
func healthy(path string) error {
	var st syscall.Statfs_t
	err := syscall.Statfs(path, &st)
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		return err
	}
	return nil
}
