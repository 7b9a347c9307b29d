package driver

import (
	"errors"
	"fmt"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
	"github.com/s3gfs/s3gfs/pkg/volumeid"
)

// Volume and snapshot ids are encoded and parsed by package volumeid,
// which the reaper shares (it reads them back from PersistentVolumes and
// VolumeSnapshotContents):
//
//	volume id:   v1:<bucket>:<prefix>[:<region>:<endpoint>]
//	snapshot id: s1:<snapshot>:<bucket>:<prefix>[:<region>:<endpoint>]
//
// This file adapts it to the driver: its errors become the driver's
// ErrInvalid (a malformed id) and ErrNotFound (another driver's id).
const volumeIDTag = volumeid.VolumeTag

// loc is where a volume lives (volumeid.Loc, with the driver's methods).
type loc volumeid.Loc

// URL is the volume URL `s3gfs mount` takes.
func (l loc) URL() volume.URL { return volumeid.Loc(l).URL() }

// VolumeID encodes l as a volume id.
func (l loc) VolumeID() string { return volumeid.Loc(l).VolumeID() }

// SnapshotID encodes the snapshot called name of the volume at l.
func (l loc) SnapshotID(name string) string { return volumeid.Loc(l).SnapshotID(name) }

// key is what the in-flight guard locks for operations on this volume.
func (l loc) key() string { return "vol:" + l.Bucket + "/" + l.Prefix }

func (l loc) validate(field string) error { return idErr(volumeid.Loc(l).Validate(field)) }

// idErr maps an error of package volumeid to the driver's.
func idErr(err error) error {
	var e *volumeid.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e) && errors.Is(err, volumeid.ErrForeign):
		return fmt.Errorf("%w: %s", ErrNotFound, e.Msg)
	case errors.As(err, &e):
		return invalid(e.Field, "%s", e.Msg)
	}
	return err
}

func validateName(field, name string) error { return idErr(volumeid.ValidateName(field, name)) }

// validatePrefix checks a volume prefix ("" allowed) or a StorageClass base
// prefix: segments as validateName, separated by single slashes.
func validatePrefix(field, p string) error { return idErr(volumeid.ValidatePrefix(field, p)) }

func validateRegion(field, r string) error { return idErr(volumeid.ValidateRegion(field, r)) }

// validateEndpoint accepts an http(s) URL of a host, with an optional port
// and nothing else: no user, path, query or fragment.
func validateEndpoint(field, e string) error { return idErr(volumeid.ValidateEndpoint(field, e)) }

// parseVolumeID parses and validates a volume id.
func parseVolumeID(field, id string) (loc, error) {
	l, err := volumeid.ParseVolumeID(field, id)
	return loc(l), idErr(err)
}

// parseSnapshotID parses and validates a snapshot id.
func parseSnapshotID(field, id string) (loc, string, error) {
	l, name, err := volumeid.ParseSnapshotID(field, id)
	return loc(l), name, idErr(err)
}

// clip shortens a hostile string before it goes into a message.
func clip(s string) string { return volumeid.Clip(s) }
