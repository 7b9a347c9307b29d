package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/s3gfs/s3gfs/pkg/reaper"
)

func runFsck(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("fsck", "[flags] s3://BUCKET/PREFIX",
		`Checks the volume without changing it: every object decodes and its
checksum matches, every extent a version names exists and matches the
length and CRC-32C recorded for it, every directory delta chain is
complete, and every directory entry (now, at every snapshot and at the
reaper's horizon) names an inode that exists. Reports damage, orphans (no
path reaches them) and unreferenced extents. Exit status 0: healthy;
1: damage found.`, stderr)
	var sf storeFlags
	sf.register(fs)
	skipData := fs.Bool("skip-data", false, "do not read extents (only check that they exist)")
	verbose := fs.Bool("v", false, "list every orphan and warning")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: want exactly one volume URL", errUsage)
	}
	u, err := parseVolumeArg(pos[0])
	if err != nil {
		return err
	}
	store, err := sf.open(ctx, u)
	if err != nil {
		return err
	}
	vol, err := openVolumeRO(ctx, store, u)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	prog := newProgress(stderr)
	start := time.Now()
	r, err := reaper.Check(ctx, vol, reaper.CheckOptions{SkipData: *skipData, Progress: prog.update})
	prog.done()
	if err != nil {
		return err
	}
	out := os.Stdout
	fmt.Fprintf(out, "volume %s: %d inodes, %d versions, %d extents checked in %s\n", u, r.Inodes, r.Versions, r.Extents, time.Since(start).Round(time.Millisecond))
	for _, d := range r.Damage {
		fmt.Fprintf(out, "DAMAGE: %s\n", d)
	}
	for i, w := range r.Warnings {
		if i == 20 && !*verbose {
			fmt.Fprintf(out, "warning: ... %d more (-v lists all)\n", len(r.Warnings)-20)
			break
		}
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	if len(r.Orphans) > 0 {
		fmt.Fprintf(out, "orphans (no path reaches them; the reaper removes old ones): %d\n", len(r.Orphans))
		for i, id := range r.Orphans {
			if i == 20 && !*verbose {
				fmt.Fprintf(out, "  ... (-v lists all)\n")
				break
			}
			fmt.Fprintf(out, "  inode %016x\n", id)
		}
	}
	if r.Unreferenced > 0 {
		fmt.Fprintf(out, "unreferenced extents (the reaper removes old ones): %d\n", r.Unreferenced)
	}
	if !r.Healthy() {
		return fmt.Errorf("%d problems found", len(r.Damage))
	}
	fmt.Fprintln(out, "healthy")
	return nil
}

func runRetention(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("retention", "[set] [flags] s3://BUCKET/PREFIX [DURATION]",
		`Shows the volume's retention window (how far back every instant stays
mountable), or with "set" changes it (e.g. s3gfs retention set URL 7d).
The reaper uses the newest setting from its next pass on. Shrinking it
lets the reaper delete what only the longer window kept.`, stderr)
	var sf storeFlags
	sf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	set := len(pos) > 0 && pos[0] == "set"
	if set {
		pos = pos[1:]
	}
	if (set && len(pos) != 2) || (!set && len(pos) != 1) {
		fs.Usage()
		return fmt.Errorf("%w: want: retention URL, or retention set URL DURATION", errUsage)
	}
	u, err := parseVolumeArg(pos[0])
	if err != nil {
		return err
	}
	var d durationFlag
	if set {
		if err := d.Set(pos[1]); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	store, err := sf.open(ctx, u)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vol, err := openVolumeRO(ctx, store, u)
	if err != nil {
		return err
	}
	if set {
		if err := reaper.SetRetention(ctx, vol, time.Duration(d)); err != nil {
			return err
		}
	}
	r, err := reaper.Retention(ctx, vol)
	if err != nil {
		return err
	}
	fmt.Printf("retention %s\n", r)
	return nil
}
