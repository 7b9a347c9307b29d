package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// checkBucket checks the volume in the bucket as fsck would: every inode
// whose newest version is not a tombstone is reachable from the root, no
// directory entry names a tombstone or an inode without a version (but a
// born put's new empty file), and every file's and symlink's link count
// equals the number of names it has.
func checkBucket(t *testing.T, m *mount) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Newest version of every inode in the store.
	newest := map[uint64]*format.Inode{}
	after := ""
	for {
		page, err := m.Store.List(ctx, m.Vol.Keys.InodesPrefix(), after, 1000)
		must(t, "list inodes", err)
		for _, o := range page.Objects {
			id, _, err := m.Vol.Keys.ParseInode(o.Key)
			must(t, "parse inode key", err)
			if newest[id] == nil { // newest versions sort first
				obj, _, err := m.Store.Get(ctx, o.Key)
				must(t, "get inode", err)
				n, err := format.DecodeInode(obj, m.Vol.Header.ExtentSize)
				must(t, "decode "+o.Key, err)
				newest[id] = n
			}
		}
		if !page.Truncated || len(page.Objects) == 0 {
			break
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
	// Names of every inode reachable from the root, through a fresh engine.
	vol, err := volume.Open(ctx, m.Store, m.URL, false)
	must(t, "open volume", err)
	e, err := vfs.New(vol, vfs.Options{ReadOnly: true, Logger: m.logger()})
	must(t, "vfs.New", err)
	defer e.Close(ctx)
	names := map[uint64]int{format.RootID: 1}
	var walk func(id uint64, path string)
	walk = func(id uint64, path string) {
		es, err := e.ReadDir(ctx, id)
		if err != nil {
			t.Errorf("bucket: readdir %s: %v", path, err)
			return
		}
		for _, de := range es {
			names[de.Ino]++
			n := newest[de.Ino]
			if n == nil {
				// A born put (FORMAT.md §5.4): a new empty file whose
				// version 1 is its entry; nothing else may lack a version.
				a, err := e.Lookup(ctx, id, de.Name)
				if err != nil || a.Version != 1 || a.Size != 0 || a.Mode&syscall.S_IFMT != syscall.S_IFREG || a.Nlink != 1 {
					t.Errorf("bucket: %s/%s names inode %016x, which has no version and is not a new empty file (%+v, %v)", path, de.Name, de.Ino, a, err)
				}
				continue
			}
			if n.Kind == format.KindTombstone {
				t.Errorf("bucket: %s/%s names inode %016x, which is deleted", path, de.Name, de.Ino)
				continue
			}
			if de.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				walk(de.Ino, path+"/"+de.Name)
			}
		}
	}
	walk(format.RootID, "")
	for id, n := range newest {
		switch {
		case n.Kind == format.KindTombstone:
		case names[id] == 0:
			t.Errorf("bucket: inode %016x (a live %v, version %d) is in no directory: leaked", id, n.Kind, n.Version)
		case n.Kind != format.KindDir && int(n.Nlink) != names[id]:
			t.Errorf("bucket: inode %016x (%v) has nlink %d but %d names", id, n.Kind, n.Nlink, names[id])
		}
	}
}
