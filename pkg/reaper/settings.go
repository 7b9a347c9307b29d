package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Retention returns the volume's retention window in force: that of its
// newest settings version, or the header's when it has none. A newest
// settings version that cannot be decoded is an error (the reaper then
// does nothing rather than guess).
func Retention(ctx context.Context, vol *volume.Volume) (time.Duration, error) {
	s, _, err := latestSettings(ctx, vol)
	if err != nil {
		return 0, err
	}
	if s == nil {
		return vol.Header.Retention, nil
	}
	return s.Retention, nil
}

func latestSettings(ctx context.Context, vol *volume.Volume) (*format.Settings, uint64, error) {
	// The newest version sorts first; a key of another shape (not s3gfs's,
	// FORMAT §15.4 G9) may sort anywhere and is passed over.
	var key string
	var v uint64
	after := ""
	for key == "" {
		page, err := vol.Store.List(ctx, vol.Keys.SettingsPrefix(), after, 100)
		if err != nil {
			return nil, 0, fmt.Errorf("list settings: %w", err)
		}
		for _, o := range page.Objects {
			if n, err := vol.Keys.ParseSettings(o.Key); err == nil {
				key, v = o.Key, n
				break
			}
		}
		if key == "" && (!page.Truncated || len(page.Objects) == 0) {
			return nil, 0, nil
		}
		if len(page.Objects) > 0 {
			after = page.Objects[len(page.Objects)-1].Key
		}
	}
	obj, _, err := vol.Store.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("read settings: %w", err)
	}
	s, err := format.DecodeSettings(obj)
	if err == nil && s.Version != v {
		err = fmt.Errorf("%w: object holds settings v%d", format.ErrCorrupt, s.Version)
	}
	if err != nil {
		return nil, v, fmt.Errorf("%s: %w", key, err)
	}
	return s, v, nil
}

// SetRetention writes a new settings version with the given retention
// (conditional create of the next version; retried on a race).
func SetRetention(ctx context.Context, vol *volume.Volume, retention time.Duration) error {
	if retention < 0 || retention > format.MaxRetention {
		return fmt.Errorf("retention %s must be between 0 and %s", retention, format.MaxRetention)
	}
	retention = retention.Truncate(time.Second)
	host, _ := os.Hostname()
	if len(host) > format.MaxOwnerLen {
		host = host[:format.MaxOwnerLen]
	}
	for range 10 {
		_, v, err := latestSettings(ctx, vol)
		if err != nil && v == 0 {
			return err
		}
		// A corrupt newest version is superseded by the next one.
		s := &format.Settings{Version: v + 1, Retention: retention, Changed: time.Now().UTC(), Writer: host}
		obj, err := format.EncodeSettings(s)
		if err != nil {
			return err
		}
		_, err = vol.Store.PutIfAbsent(ctx, vol.Keys.Settings(s.Version), obj)
		if errors.Is(err, objstore.ErrExists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write settings: %w", err)
		}
		return nil
	}
	return errors.New("write settings: too many concurrent changes")
}
