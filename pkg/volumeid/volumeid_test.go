package volumeid

import (
	"errors"
	"testing"
)

func TestRoundTripAndRefusals(t *testing.T) {
	for _, l := range []Loc{
		{Bucket: "bkt", Prefix: "pvs/a"},
		{Bucket: "bkt-own"},
		{Bucket: "bkt", Prefix: "p", Region: "eu-west-1", Endpoint: "https://s3.example.com:9000"},
		{Bucket: "bkt", Prefix: "p", Endpoint: "http://10.0.0.5:9000"},
	} {
		got, err := ParseVolumeID("id", l.VolumeID())
		if err != nil || got != l {
			t.Errorf("ParseVolumeID(%q) = %+v, %v", l.VolumeID(), got, err)
		}
		got, name, err := ParseSnapshotID("id", l.SnapshotID("snap-1"))
		if err != nil || got != l || name != "snap-1" {
			t.Errorf("ParseSnapshotID(%q) = %+v, %q, %v", l.SnapshotID("snap-1"), got, name, err)
		}
	}
	for id, kind := range map[string]error{
		"":                              ErrInvalid,
		"vol-0123":                      ErrForeign,
		"v2:bkt:p":                      ErrForeign,
		"s1:n:bkt:p":                    ErrForeign, // a snapshot id is not a volume id
		"v1:bkt":                        ErrInvalid,
		"v1:bkt:../x":                   ErrInvalid,
		"v1:bkt:/abs":                   ErrInvalid,
		"v1:bkt:a//b":                   ErrInvalid,
		"v1:BKT:p":                      ErrInvalid,
		"v1:bkt:p::":                    ErrInvalid, // not canonical
		"v1:bkt:p:us-east-1:ftp://h":    ErrInvalid,
		"v1:bkt:p:us-east-1:http://u@h": ErrInvalid,
		"v1:bkt:p\x00":                  ErrInvalid,
		"v1:x--x-s3:p":                  ErrInvalid,
	} {
		_, err := ParseVolumeID("volumeHandle", id)
		var e *Error
		if !errors.Is(err, kind) || !errors.As(err, &e) || e.Field != "volumeHandle" {
			t.Errorf("ParseVolumeID(%q) = %v, want %v naming the field", id, err, kind)
		}
	}
	for id, kind := range map[string]error{
		"v1:bkt:p":      ErrForeign,
		"s1:bkt:p":      ErrInvalid,
		"s1:..:bkt:p":   ErrInvalid,
		"s1:n:bkt:../p": ErrInvalid,
	} {
		if _, _, err := ParseSnapshotID("snapshotHandle", id); !errors.Is(err, kind) {
			t.Errorf("ParseSnapshotID(%q) = %v, want %v", id, err, kind)
		}
	}
}
