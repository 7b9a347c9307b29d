package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func runFormat(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("format", "[flags] s3://BUCKET/PREFIX",
		`Creates a new, empty volume at s3://BUCKET/PREFIX, creating the bucket if it
does not exist. It refuses to touch an existing volume, and refuses a store
that does not honour conditional writes (If-None-Match), which s3gfs needs to
keep concurrent hosts from overwriting each other.`, stderr)
	var sf storeFlags
	sf.register(fs)
	extent := sizeFlag(format.DefaultExtentSize)
	inline := sizeFlag(format.DefaultInlineLimit)
	var retention durationFlag
	fs.Var(&extent, "extent-size", "size of the data extents files are cut into (64KiB-64MiB, a multiple of 4KiB)")
	fs.Var(&inline, "inline-limit", "files up to this size are stored inside their inode object (at most 64KiB)")
	fs.Var(&retention, "retention", "how long superseded versions stay mountable with --as-of (e.g. 24h, 7d; 0 = none)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: want exactly one volume URL, got %d arguments", errUsage, len(pos))
	}
	u, err := parseVolumeArg(pos[0])
	if err != nil {
		return err
	}
	if extent < format.MinExtentSize || extent > format.MaxExtentSize || extent%4096 != 0 {
		return fmt.Errorf("%w: --extent-size %s must be a multiple of 4KiB between %s and %s", errUsage,
			formatSize(int64(extent)), formatSize(format.MinExtentSize), formatSize(format.MaxExtentSize))
	}
	if inline > format.MaxInlineLimit || inline > extent {
		return fmt.Errorf("%w: --inline-limit %s must be at most %s and at most the extent size", errUsage,
			formatSize(int64(inline)), formatSize(format.MaxInlineLimit))
	}
	if time.Duration(retention) > format.MaxRetention {
		return fmt.Errorf("%w: --retention %s exceeds %s", errUsage, time.Duration(retention), format.MaxRetention)
	}
	h := format.Volume{ExtentSize: uint32(extent), InlineLimit: uint32(inline), Retention: time.Duration(retention)}
	store, err := sf.open(ctx, u)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	v, err := volume.Format(ctx, store, u, volume.FormatOptions{ExtentSize: h.ExtentSize, InlineLimit: h.InlineLimit, Retention: h.Retention})
	if err != nil {
		return err
	}
	fmt.Printf("formatted %s (volume id %x, extent size %s, inline limit %s, retention %s)\n",
		u, v.Header.ID, formatSize(int64(v.Header.ExtentSize)), formatSize(int64(v.Header.InlineLimit)), v.Header.Retention)
	return nil
}
