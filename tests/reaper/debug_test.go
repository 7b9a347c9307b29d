package reaper

import (
	"fmt"
	"strings"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// describe dumps the stored versions of directory dir (as now) and of
// every inode its versions name as child, for failure messages.
func (f *fixture) describe(dir string, at time.Time) string {
	ctx := f.t.Context()
	var b strings.Builder
	id, err := reaper.Resolve(ctx, f.vol, dir)
	if err != nil {
		return err.Error()
	}
	fmt.Fprintf(&b, "view at %s; directory %s = %016x:\n", at.Format(time.RFC3339), dir, id)
	children := map[uint64]bool{}
	page, _ := f.store.List(ctx, f.vol.Keys.InodeDir(id), "", 1000)
	for _, o := range page.Objects {
		obj, _, err := f.store.Get(ctx, o.Key)
		if err != nil {
			fmt.Fprintf(&b, "  %s %s: %v\n", o.Key, o.LastModified.Format(time.RFC3339), err)
			continue
		}
		n, err := format.DecodeInode(obj, f.vol.Header.ExtentSize)
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", o.Key, err)
			continue
		}
		var es []string
		for _, e := range n.Entries {
			es = append(es, fmt.Sprintf("%d:%s->%016x", e.Op, e.Name, e.Child))
			if e.Child != 0 {
				children[e.Child] = true
			}
		}
		fmt.Fprintf(&b, "  v%d %s base %d %v\n", n.Version, o.LastModified.Format(time.RFC3339), n.Base, es)
	}
	for c := range children {
		page, _ := f.store.List(ctx, f.vol.Keys.InodeDir(c), "", 1000)
		var vs []string
		for _, o := range page.Objects {
			_, v, _ := f.vol.Keys.ParseInode(o.Key)
			kind := "?"
			if obj, _, err := f.store.Get(ctx, o.Key); err == nil {
				if n, err := format.DecodeInode(obj, f.vol.Header.ExtentSize); err == nil {
					kind = n.Kind.String()
				}
			}
			vs = append(vs, fmt.Sprintf("v%d %s %s", v, o.LastModified.Format("15:04:05"), kind))
		}
		fmt.Fprintf(&b, "  child %016x: %v\n", c, vs)
	}
	return b.String()
}
