package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
)

func runSnapshot(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("snapshot", "create|list|delete [flags] s3://BUCKET/PREFIX [NAME]",
		`Manages snapshots: pins of the volume at the store's present time. The
reaper keeps everything a pinned instant needs until the snapshot is
deleted; mount one with s3gfs mount --as-of NAME. Names are 1-253
characters from A-Z a-z 0-9 . _ - (not starting with . or -).`, stderr)
	var sf storeFlags
	sf.register(fs)
	label := fs.String("label", "", "free-form text stored with a new snapshot")
	force := fs.Bool("force", false, "delete a pin that holds the source of a clone (clone-*, csi-clone-*): that clone then no longer mounts")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		fs.Usage()
		return fmt.Errorf("%w: want create, list or delete, and a volume URL", errUsage)
	}
	verb := pos[0]
	want := map[string]int{"create": 3, "delete": 3, "list": 2}[verb]
	if want == 0 || len(pos) != want {
		fs.Usage()
		return fmt.Errorf("%w: want: snapshot create|delete URL NAME, or snapshot list URL", errUsage)
	}
	u, err := parseVolumeArg(pos[1])
	if err != nil {
		return err
	}
	var name string
	if want == 3 {
		name = pos[2]
		if err := snapshot.ValidateName(name); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
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
	switch verb {
	case "create":
		p, err := snapshot.CreateWith(ctx, store, vol.Keys, name, snapshot.Options{Label: *label})
		if err != nil {
			return err
		}
		fmt.Printf("snapshot %s pins %s at %s\n", p.Name, u, p.Time.Format(time.RFC3339))
	case "delete":
		if (strings.HasPrefix(name, "clone-") || strings.HasPrefix(name, "csi-clone-")) && !*force {
			p, err := snapshot.Get(ctx, store, vol.Keys, name)
			if err == nil {
				return fmt.Errorf("%w: snapshot %s holds the source of a clone (%s): delete the clone first, or pass --force", errUsage, name, p.Label)
			}
		}
		if err := snapshot.Delete(ctx, store, vol.Keys, name); err != nil {
			return err
		}
		fmt.Printf("snapshot %s deleted; the reaper frees what only it kept\n", name)
	case "list":
		pins, lerr := snapshot.List(ctx, store, vol.Keys)
		if pins == nil && lerr != nil {
			return lerr
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tTIME\tCREATOR\tLABEL")
		for _, p := range pins {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Time.Format(time.RFC3339), p.Creator, p.Label)
		}
		w.Flush()
		if lerr != nil {
			if errors.Is(lerr, snapshot.ErrCorrupt) {
				return fmt.Errorf("some pins are unreadable (their times still hold): %w", lerr)
			}
			return lerr
		}
	}
	return nil
}
