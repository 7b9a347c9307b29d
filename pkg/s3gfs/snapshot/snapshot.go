// Package snapshot creates, reads, lists and deletes snapshot pins, and
// decides which points in time a volume can be mounted at (FORMAT.md §13).
//
// A snapshot is a pin object s/<name>, created once with a conditional
// create and never changed. The instant it shows is the store's
// LastModified of that object (protocol invariant 6): the payload only
// carries the name, who made it and a free-form label. The reaper keeps
// every version visible at every pin until the pin is deleted, so a pinned
// instant is always mountable (`s3gfs mount --as-of NAME`).
//
// Everything here needs only an objstore.Store and the volume's keys; the
// CSI driver calls Create, Get, List and Delete.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Errors for callers to test with errors.Is.
var (
	// ErrExists: a snapshot of that name exists already. Create returns
	// the existing pin along with it, so a caller wanting idempotent
	// creation compares the pin and goes on.
	ErrExists = errors.New("snapshot already exists")
	// ErrNotFound: no snapshot of that name.
	ErrNotFound = errors.New("no such snapshot")
	// ErrBadName: the name is not a valid snapshot name.
	ErrBadName = format.ErrBadSnapshotName
	// ErrCorrupt: the pin object exists but cannot be read (its pin time
	// is still valid: the reaper honours it).
	ErrCorrupt = errors.New("snapshot pin object is corrupt")
)

// Pin is one snapshot.
type Pin struct {
	Name string
	// Time is the instant the snapshot shows: the store's LastModified of
	// the pin object.
	Time    time.Time
	Creator string    // who created it, for people
	Label   string    // the creator's free-form label
	Created time.Time // the creator's clock, informational
	Key     string    // the pin object's key
}

// Options are optional fields of a new pin.
type Options struct {
	Creator string // default: this machine's host name
	Label   string // at most 1024 bytes
}

// ValidateName checks a snapshot name: 1 to 253 characters from A-Z a-z
// 0-9 '.' '_' '-', not starting with '.' or '-', without "..". The error
// wraps ErrBadName and says what is wrong.
func ValidateName(name string) error { return format.ValidateSnapshotName(name) }

// Create pins the volume's present state under name. If the name is taken
// it returns the existing pin and an error wrapping ErrExists.
func Create(ctx context.Context, store objstore.Store, keys format.Keys, name string) (Pin, error) {
	return CreateWith(ctx, store, keys, name, Options{})
}

// CreateWith is Create with a creator and label recorded in the pin.
func CreateWith(ctx context.Context, store objstore.Store, keys format.Keys, name string, o Options) (Pin, error) {
	if err := ValidateName(name); err != nil {
		return Pin{}, err
	}
	if o.Creator == "" {
		o.Creator, _ = os.Hostname()
	}
	if len(o.Creator) > format.MaxOwnerLen {
		o.Creator = o.Creator[:format.MaxOwnerLen]
	}
	if len(o.Label) > format.MaxLabelLen {
		return Pin{}, fmt.Errorf("snapshot %q: label of %d bytes exceeds %d", name, len(o.Label), format.MaxLabelLen)
	}
	p := &format.SnapshotPin{Name: name, Created: time.Now().UTC(), Creator: o.Creator, Label: o.Label}
	obj, err := format.EncodeSnapshotPin(p)
	if err != nil {
		return Pin{}, err
	}
	key := keys.Snapshot(name)
	if _, err := store.PutIfAbsent(ctx, key, obj); err != nil {
		if errors.Is(err, objstore.ErrExists) {
			old, gerr := Get(ctx, store, keys, name)
			if gerr != nil && !errors.Is(gerr, ErrCorrupt) {
				return Pin{}, fmt.Errorf("snapshot %q: %w (and reading it: %v)", name, ErrExists, gerr)
			}
			return old, fmt.Errorf("snapshot %q: %w (taken at %s)", name, ErrExists, old.Time.Format(time.RFC3339))
		}
		return Pin{}, fmt.Errorf("create snapshot %q: %w", name, err)
	}
	// The PUT's response time may differ from LastModified; the pin time is
	// what every later reader sees, so read it back.
	info, err := store.Head(ctx, key)
	if err != nil {
		return Pin{}, fmt.Errorf("snapshot %q created, but reading its time failed: %w", name, err)
	}
	return Pin{Name: name, Time: info.LastModified, Creator: p.Creator, Label: p.Label, Created: p.Created, Key: key}, nil
}

// Get reads one snapshot. A missing one is ErrNotFound. A pin whose object
// is corrupt is returned with its name and time and an error wrapping
// ErrCorrupt.
func Get(ctx context.Context, store objstore.Store, keys format.Keys, name string) (Pin, error) {
	if err := ValidateName(name); err != nil {
		return Pin{}, err
	}
	key := keys.Snapshot(name)
	obj, info, err := store.Get(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return Pin{}, fmt.Errorf("snapshot %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Pin{}, fmt.Errorf("read snapshot %q: %w", name, err)
	}
	return decode(key, name, obj, info.LastModified)
}

func decode(key, name string, obj []byte, t time.Time) (Pin, error) {
	pin := Pin{Name: name, Time: t, Key: key}
	p, err := format.DecodeSnapshotPin(obj)
	if err == nil && p.Name != name {
		err = fmt.Errorf("pin names %q", p.Name)
	}
	if err != nil {
		return pin, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
	}
	pin.Creator, pin.Label, pin.Created = p.Creator, p.Label, p.Created
	return pin, nil
}

// List returns every snapshot, oldest pin first (then by name). Pins
// whose objects are corrupt are listed with their name and time, and
// reported together in the error (wrapping ErrCorrupt); the list is
// complete either way. Objects under s/ whose names are not valid snapshot
// names are skipped and reported the same way.
func List(ctx context.Context, store objstore.Store, keys format.Keys) ([]Pin, error) {
	infos, err := ListKeys(ctx, store, keys)
	if err != nil {
		return nil, err
	}
	var out []Pin
	var errs []error
	for _, o := range infos {
		name, err := keys.ParseSnapshot(o.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %v", ErrCorrupt, err))
			continue
		}
		obj, info, err := store.Get(ctx, o.Key)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read snapshot %q: %w", name, err)
		}
		pin, err := decode(o.Key, name, obj, info.LastModified)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, pin)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Name < out[j].Name
	})
	return out, errors.Join(errs...)
}

// ListKeys lists every object under the volume's s/ prefix, whatever its
// name or content: the reaper honours each as a pin at its LastModified.
func ListKeys(ctx context.Context, store objstore.Store, keys format.Keys) ([]objstore.ObjectInfo, error) {
	var out []objstore.ObjectInfo
	after := ""
	for {
		page, err := store.List(ctx, keys.SnapshotsPrefix(), after, 0)
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		out = append(out, page.Objects...)
		if !page.Truncated || len(page.Objects) == 0 {
			return out, nil
		}
		after = page.Objects[len(page.Objects)-1].Key
	}
}

// Delete removes a snapshot; deleting a missing one succeeds. The reaper
// frees what only it kept at its next pass.
func Delete(ctx context.Context, store objstore.Store, keys format.Keys, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := store.Delete(ctx, keys.Snapshot(name)); err != nil {
		return fmt.Errorf("delete snapshot %q: %w", name, err)
	}
	return nil
}
