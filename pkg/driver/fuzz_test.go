package driver

import (
	"strings"
	"testing"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// safeLoc checks what every accepted id must guarantee: a valid bucket and
// a prefix that names keys inside the bucket and nowhere else.
func safeLoc(t *testing.T, id string, l loc) {
	t.Helper()
	if volume.ValidateBucket(l.Bucket) != nil {
		t.Fatalf("%q accepted with bucket %q", id, l.Bucket)
	}
	if l.Prefix != "" {
		if strings.HasPrefix(l.Prefix, "/") || strings.HasSuffix(l.Prefix, "/") || strings.Contains(l.Prefix, "//") ||
			strings.Contains(l.Prefix, "..") || strings.ContainsAny(l.Prefix, ":\x00\n") || strings.HasPrefix(l.Prefix, ".") {
			t.Fatalf("%q accepted with prefix %q", id, l.Prefix)
		}
		if _, err := format.NewKeys(l.Prefix); err != nil {
			t.Fatalf("%q accepted with prefix %q: %v", id, l.Prefix, err)
		}
	}
}

func FuzzParseVolumeID(f *testing.F) {
	for _, s := range []string{"v1:bucket:vols/pvc-1", "v1:bucket:", "v1:bucket:p:us-east-1:http://h:9000", "v1:b:../x",
		"v1:bucket:a//b", "s1:snap:bucket:p", "v1:bucket:p::", "fake-vol-id", "v1:bucket:.s3gfs-csi/volumes"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if l, err := parseVolumeID("volume_id", id); err == nil {
			safeLoc(t, id, l)
			if l.VolumeID() != id {
				t.Fatalf("%q accepted but encodes as %q", id, l.VolumeID())
			}
		}
		if l, name, err := parseSnapshotID("snapshot_id", id); err == nil {
			safeLoc(t, id, l)
			if validateName("", name) != nil || l.SnapshotID(name) != id {
				t.Fatalf("%q accepted as snapshot %q of %v", id, name, l)
			}
		}
	})
}

func FuzzParseParams(f *testing.F) {
	f.Add("bucket", "b-1", "prefix", "a/b", "extentSize", "4MiB")
	f.Add("bucket", "b-1", "bucketPerVolume", "true", "retention", "7d")
	f.Add("bucket", "..", "prefix", "../x", "endpoint", "http://u:p@h")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		p, err := parseParams(map[string]string{k1: v1, k2: v2, k3: v3})
		if err != nil {
			if !strings.Contains(err.Error(), "parameter ") {
				t.Fatalf("error does not name the parameter: %v", err)
			}
			return
		}
		for _, name := range []string{"pvc-0e5f", "x"} {
			l := volumeLoc(p, name)
			if err := l.validate("name"); err == nil {
				safeLoc(t, name, l)
			}
		}
		if p.InlineLimit > p.ExtentSize || p.ExtentSize < format.MinExtentSize || p.Retention > format.MaxRetention {
			t.Fatalf("accepted %+v", p)
		}
	})
}
