package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// openVolumeRO opens a volume's header for reading.
func openVolumeRO(ctx context.Context, store objstore.Store, u volume.URL) (*volume.Volume, error) {
	return volume.Open(ctx, store, u, false)
}

func runVersions(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("versions", "[flags] s3://BUCKET/PREFIX PATH",
		`Lists the stored versions of the file or directory at PATH (as the volume
is now), newest first: version number, the store's time, kind, size (for
a directory: its entries), the writing host and the object's size.`, stderr)
	var sf storeFlags
	sf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("%w: want a volume URL and a path", errUsage)
	}
	u, err := parseVolumeArg(pos[0])
	if err != nil {
		return err
	}
	store, err := sf.open(ctx, u)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	vol, err := openVolumeRO(ctx, store, u)
	if err != nil {
		return err
	}
	id, err := reaper.Resolve(ctx, vol, pos[1])
	if err != nil {
		return err
	}
	vs, err := reaper.Versions(ctx, vol, id)
	if err != nil {
		return err
	}
	fmt.Printf("%s: inode %016x, %d versions\n", pos[1], id, len(vs))
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tTIME\tKIND\tSIZE\tWRITER\tOBJECT")
	for _, v := range vs {
		if v.Err != nil {
			fmt.Fprintf(w, "%d\t%s\tunreadable\t-\t-\t%d\t%v\n", v.Version, v.Time.Format(time.RFC3339), v.Bytes, v.Err)
			continue
		}
		size := fmt.Sprint(v.Size)
		if v.Kind == format.KindDir {
			size = fmt.Sprintf("%d entries", v.Entries)
			if v.Entries < 0 {
				size = "? entries"
			}
		}
		where := ""
		if v.Level > 0 {
			where = fmt.Sprintf(" (in the clone's source, level %d)", v.Level)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%016x\t%d%s\n", v.Version, v.Time.Format(time.RFC3339), v.Kind, size, v.Writer, v.Bytes, where)
	}
	return w.Flush()
}
