package crash

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// File contents are made of 32-byte records that name the file, the
// generation (one per rewrite) and their own offset, so that any byte
// read back after a crash can be traced to the write that put it there:
// a record that is neither zeros nor one this file's acknowledged or
// in-flight generations put at that offset is wrong data.
const recSize = 32

// content is generation gen of file fid: a length drawn from (fid, gen),
// mostly small (inline), some spanning several extents.
func content(fid, gen int) []byte {
	h := uint64(fid)*0x9e3779b97f4a7c15 ^ uint64(gen)*0xbf58476d1ce4e5b9
	h ^= h >> 31
	var n int
	switch h % 10 {
	case 0, 1, 2, 3:
		n = int(h>>8%128) * recSize // up to 4 KiB: inline
	case 4, 5, 6, 7:
		n = 4096 + int(h>>8%2048)*recSize // up to 68 KiB: one or two extents
	default:
		n = 64<<10 + int(h>>8%6144)*recSize // up to 256 KiB: several extents
	}
	b := make([]byte, 0, n)
	for off := 0; off < n; off += recSize {
		r := fmt.Sprintf("F%07d G%06d O%010d", fid, gen, off)
		for len(r) < recSize-1 {
			r += "."
		}
		b = append(b, r...)
		b = append(b, '\n')
	}
	return b
}

// file is the test's model of one file owned by one worker.
type file struct {
	fid int
	ino uint64 // st_ino (the s3gfs inode id, the same on every mount); 0 until known
	// paths are the names the file may have now (relative to the mount):
	// one when its namespace state is known; two while a rename's
	// outcome is unknown (old or new name; both only when bothOK).
	paths     []string
	bothOK    bool // both names may show (no rename leaves both since FORMAT §5.5: always false)
	mayBeGone bool // a create, unlink, or a rename over it is in flight
	// deferred: created by open(O_CREAT|O_TRUNC), which s3gfs decides by
	// the first fsync or close (a deferred create, docs/guarantees.md):
	// in flight until then.
	deferred bool
	want     []byte // the acknowledged content (by fsync or close)
	pending  []int  // generations written after the last acknowledgement
	gen      int    // the last generation written
	fd       *os.File
	inflight string // the operation in flight when the mount died
}

func (f *file) String() string {
	return fmt.Sprintf("file %d (ino %016x, %v)", f.fid, f.ino, f.paths)
}

// determinate reports whether everything about f was acknowledged.
func (f *file) determinate() bool {
	return len(f.paths) == 1 && !f.mayBeGone && len(f.pending) == 0 && f.inflight == ""
}

// checkContent judges data read back for f after a crash.
func (f *file) checkContent(data []byte) error {
	if len(f.pending) == 0 {
		if !bytes.Equal(data, f.want) {
			return fmt.Errorf("acknowledged content lost: read %d bytes, want %d (%s)", len(data), len(f.want), firstDiff(data, f.want))
		}
		return nil
	}
	cands := [][]byte{f.want}
	maxLen := len(f.want)
	for _, g := range f.pending {
		c := content(f.fid, g)
		cands = append(cands, c)
		maxLen = max(maxLen, len(c))
	}
	if len(data) > maxLen {
		return fmt.Errorf("read %d bytes, longer than any write (at most %d)", len(data), maxLen)
	}
	for off := 0; off < len(data); off += recSize {
		rec := data[off:min(off+recSize, len(data))]
		ok := allZero(rec)
		for _, c := range cands {
			ok = ok || (off+len(rec) <= len(c) && bytes.Equal(rec, c[off:off+len(rec)]))
		}
		if !ok {
			return fmt.Errorf("wrong data at offset %d: %q is from no write of this file (pending generations %v)", off, rec, f.pending)
		}
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func firstDiff(a, b []byte) string {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			lo := i / recSize * recSize
			return fmt.Sprintf("first difference at %d: %q vs %q", i, a[lo:min(lo+recSize, len(a))], b[lo:min(lo+recSize, len(b))])
		}
	}
	return "one is a prefix of the other"
}

// entry is what a mount shows at one path.
type entry struct {
	kind  byte // 'f' file, 'd' directory, '?' other, '!' lstat failed
	ino   uint64
	nlink uint64
	data  []byte
	err   string
}

// walk reads a whole tree: every name readdir lists must lstat (no
// dangling entry), every file must read.
func walk(root string) (map[string]entry, error) {
	out := map[string]entry{}
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
				out[p] = entry{kind: '!', err: err.Error()}
				continue
			}
			n := entry{ino: st.Ino, nlink: uint64(st.Nlink)}
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				n.kind = 'd'
				out[p] = n
				if err := visit(p); err != nil {
					return err
				}
				continue
			case syscall.S_IFREG:
				n.kind = 'f'
				if n.data, err = os.ReadFile(full); err != nil {
					n.kind, n.err = '!', "read: "+err.Error()
				}
			default:
				n.kind = '?'
			}
			out[p] = n
		}
		return nil
	}
	return out, visit("")
}

func sortedPaths(m map[string]entry) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
