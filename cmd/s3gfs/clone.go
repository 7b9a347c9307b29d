package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func runClone(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("clone", "[flags] s3://SOURCE-BUCKET/PREFIX s3://BUCKET/PREFIX",
		`Makes a writable clone of a volume at once, copying nothing: the new volume
reads every file it has not changed from the source as it was at one instant
(now, or the snapshot given with --snapshot), and stores only its own
changes (docs/FORMAT.md §16). Neither volume sees the other's later changes.
The instant is held by a pin in the source (a new snapshot called
clone-<random>, or the --snapshot given): keep it as long as the clone
exists, and delete the clone before it. Both volumes must be on the same
endpoint, reached with the same credentials.`, stderr)
	var sf storeFlags
	sf.register(fs)
	snap := fs.String("snapshot", "", "clone the source as of this snapshot (default: pin it now)")
	var retention durationFlag
	fs.Var(&retention, "retention", "the clone's retention: how long its superseded versions stay mountable with --as-of")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("%w: want a source volume URL and the clone's URL", errUsage)
	}
	su, err := parseVolumeArg(pos[0])
	if err != nil {
		return err
	}
	u, err := parseVolumeArg(pos[1])
	if err != nil {
		return err
	}
	if *snap != "" {
		if err := snapshot.ValidateName(*snap); err != nil {
			return fmt.Errorf("%w: --snapshot: %v", errUsage, err)
		}
	}
	if time.Duration(retention) > format.MaxRetention {
		return fmt.Errorf("%w: --retention %s exceeds %s", errUsage, time.Duration(retention), format.MaxRetention)
	}
	srcStore, err := sf.open(ctx, su)
	if err != nil {
		return err
	}
	store := srcStore.ForBucket(u.Bucket)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	src, err := volume.Open(ctx, srcStore, su, false)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	var pin snapshot.Pin
	if *snap != "" {
		if pin, err = snapshot.Get(ctx, srcStore, src.Keys, *snap); err != nil {
			return err
		}
	} else {
		var b [8]byte
		rand.Read(b[:])
		if pin, err = snapshot.CreateWith(ctx, srcStore, src.Keys, "clone-"+hex.EncodeToString(b[:]), snapshot.Options{Creator: "s3gfs clone", Label: "holds the source of clone " + u.String()}); err != nil {
			return err
		}
	}
	// The pin's second must be over: until then the source may still gain
	// versions stamped within it.
	for {
		now, err := hosts.ServerNow(ctx, srcStore)
		if err != nil {
			return fmt.Errorf("read the store's clock: %w", err)
		}
		if now.Truncate(time.Second).After(pin.Time.Truncate(time.Second)) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	v, err := volume.FormatClone(ctx, store, u, src, pin.Name, pin.Time, time.Duration(retention))
	if err != nil {
		return err
	}
	fmt.Printf("cloned %s as of %s into %s (volume id %x, depth %d); the source's pin %s holds it: delete the clone before that pin\n",
		su, pin.Time.Format(time.RFC3339), u, v.Header.ID, v.Header.Depth(), pin.Name)
	return nil
}
