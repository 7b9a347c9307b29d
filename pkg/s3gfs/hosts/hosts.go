// Package hosts reads the pings of a volume's hosts and judges which are
// live, by the store's clock. The reaper, `s3gfs hosts` and the mounts'
// change feed use it; it needs only an object store.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Host is one host's latest ping and its standing.
type Host struct {
	Key     string
	Ping    *format.Ping // nil when Err is set
	Err     error        // the ping object could not be read or decoded
	Written time.Time    // the store's LastModified of the ping
	Age     time.Duration
	// Live: the ping is younger than the host's own expiry.
	Live bool
	// Stray: the key is not shaped like a ping's (FORMAT §2.2), so the
	// object is not s3gfs's: it is not read (Err says why) and holds
	// nothing (§15.4 G9).
	Stray bool
}

// ServerNow returns the store's current time, falling back to the local
// clock (with an error) for stores that cannot tell it.
func ServerNow(ctx context.Context, store objstore.Store) (time.Time, error) {
	c, ok := store.(objstore.Clock)
	if !ok {
		return time.Now(), errors.New("store cannot tell its time; using the local clock")
	}
	return c.Now(ctx)
}

// List reads every ping of the volume and judges each host at now (a
// store time), sorted live first, then by node name and host id.
func List(ctx context.Context, store objstore.Store, keys format.Keys, now time.Time) ([]Host, error) {
	var out []Host
	after := ""
	for {
		page, err := store.List(ctx, keys.PingsPrefix(), after, 0)
		if err != nil {
			return nil, fmt.Errorf("list pings: %w", err)
		}
		for _, o := range page.Objects {
			h := Host{Key: o.Key, Written: o.LastModified, Age: now.Sub(o.LastModified)}
			if _, err := keys.ParsePing(o.Key); err != nil {
				h.Stray, h.Err = true, errors.New("not an s3gfs key")
				out = append(out, h)
				continue
			}
			obj, _, err := store.Get(ctx, o.Key)
			if errors.Is(err, objstore.ErrNotFound) {
				continue // removed meanwhile (the reaper deletes stale pings)
			}
			if err == nil {
				h.Ping, err = format.DecodePing(obj)
			}
			if err != nil {
				h.Err = err
			} else {
				h.Live = h.Age < h.Ping.Expiry
			}
			out = append(out, h)
		}
		if !page.Truncated || len(page.Objects) == 0 {
			break
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Live != b.Live {
			return a.Live
		}
		if a.Ping != nil && b.Ping != nil && a.Ping.Node != b.Ping.Node {
			return a.Ping.Node < b.Ping.Node
		}
		return a.Key < b.Key
	})
	return out, nil
}
