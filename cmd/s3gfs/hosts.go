package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/hosts"
)

func runHosts(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("hosts", "[flags] s3://BUCKET/PREFIX",
		`Lists the hosts that mount the volume, from their ping objects: live hosts
(whose last ping is younger than their host expiry) first, then lapsed ones.
Times are the object store's.`, stderr)
	var sf storeFlags
	sf.register(fs)
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
	keys, err := format.NewKeys(u.Prefix)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	now, err := hosts.ServerNow(ctx, store)
	if err != nil {
		return fmt.Errorf("read the store's clock: %w", err)
	}
	list, err := hosts.List(ctx, store, keys, now)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HOST\tNODE\tSTATE\tLAST PING\tMODE\tMOUNTED\tOLDEST VERSION HELD")
	for _, h := range list {
		if h.Stray {
			continue // not a ping (a store's temporary file, or not s3gfs's)
		}
		if h.Err != nil {
			fmt.Fprintf(w, "%s\t-\tunreadable\t%s ago\t-\t-\t%v\n", h.Key, h.Age.Round(time.Second), h.Err)
			continue
		}
		state, mode, oldest := "lapsed", "rw", "-"
		if h.Live {
			state = "live"
		}
		if h.Ping.ReadOnly {
			mode = "ro"
		}
		if !h.Ping.Oldest.IsZero() {
			oldest = h.Ping.Oldest.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%016x\t%s\t%s\t%s ago\t%s\t%s\t%s\n", h.Ping.HostID, h.Ping.Node, state,
			h.Age.Round(time.Second), mode, h.Ping.Start.Format(time.RFC3339), oldest)
	}
	return w.Flush()
}
