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
	h := format.Volume{ExtentSize: uint32(extent), InlineLimit: uint32(inline), Retention: time.Duration(retention)}
	if int64(extent) != int64(h.ExtentSize) || int64(inline) != int64(h.InlineLimit) {
		return fmt.Errorf("%w: --extent-size or --inline-limit out of range", errUsage)
	}
	if err := h.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
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
