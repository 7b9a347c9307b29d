package driver

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Volume and snapshot ids carry everything needed to find the volume again
// without a database: the bucket, the volume's key prefix and, when the
// StorageClass named them, the endpoint and region. They are versioned and
// canonical: parsing an id and encoding it again gives the same string, and
// every id is parsed and validated on every use, so a hostile id can name
// nothing but a well-formed bucket and prefix (no "..", no absolute or
// empty segments, no control characters, no ':').
//
//	volume id:   v1:<bucket>:<prefix>[:<region>:<endpoint>]
//	snapshot id: s1:<snapshot>:<bucket>:<prefix>[:<region>:<endpoint>]
//
// The prefix is "" for a volume that has a bucket of its own.
const (
	volumeIDTag   = "v1"
	snapshotIDTag = "s1"
)

// loc is where a volume lives.
type loc struct {
	Bucket   string
	Prefix   string // no leading or trailing slash; "" = the whole bucket
	Region   string // "" = the credentials' or the plugin's default
	Endpoint string // "" = the credentials' or the plugin's default
}

// URL is the volume URL `s3gfs mount` takes.
func (l loc) URL() volume.URL { return volume.URL{Bucket: l.Bucket, Prefix: l.Prefix} }

func (l loc) tail() string {
	s := l.Bucket + ":" + l.Prefix
	if l.Region != "" || l.Endpoint != "" {
		s += ":" + l.Region + ":" + l.Endpoint
	}
	return s
}

// VolumeID encodes l as a volume id.
func (l loc) VolumeID() string { return volumeIDTag + ":" + l.tail() }

// SnapshotID encodes the snapshot called name of the volume at l.
func (l loc) SnapshotID(name string) string { return snapshotIDTag + ":" + name + ":" + l.tail() }

// key is what the in-flight guard locks for operations on this volume.
func (l loc) key() string { return "vol:" + l.Bucket + "/" + l.Prefix }

var (
	// nameRE is what a volume or snapshot name, and every segment of a
	// StorageClass prefix, may look like: a key-safe path segment.
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// maxNameLen bounds volume and snapshot names (the CSI size limit for
// strings is 128 bytes).
const maxNameLen = 128

func validateName(field, name string) error {
	if name == "" {
		return invalid(field, "missing")
	}
	if len(name) > maxNameLen || !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return invalid(field, "%q must be 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'", name, maxNameLen)
	}
	return nil
}

// validatePrefix checks a volume prefix ("" allowed) or a StorageClass base
// prefix: segments as validateName, separated by single slashes.
func validatePrefix(field, p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 384 {
		return invalid(field, "longer than 384 bytes")
	}
	for _, seg := range strings.Split(p, "/") {
		if !nameRE.MatchString(seg) || strings.Contains(seg, "..") {
			return invalid(field, "%q: every '/'-separated segment must be letters, digits, '.', '_' or '-', starting with a letter or digit, without '..' (no leading, trailing or double slash)", p)
		}
	}
	if _, err := format.NewKeys(p); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func validateRegion(field, r string) error {
	if r != "" && !regionRE.MatchString(r) {
		return invalid(field, "%q is not a region name (lowercase letters, digits and '-')", r)
	}
	return nil
}

// validateEndpoint accepts an http(s) URL of a host, with an optional port
// and nothing else: no user, path, query or fragment.
func validateEndpoint(field, e string) error {
	if e == "" {
		return nil
	}
	if len(e) > 256 || strings.ContainsAny(e, " \t\r\n\x00") {
		return invalid(field, "not an endpoint URL such as https://s3.example.com or http://10.0.0.5:9000")
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return invalid(field, "%q is not an endpoint URL such as https://s3.example.com or http://10.0.0.5:9000", e)
	}
	return nil
}

func (l loc) validate(field string) error {
	if err := volume.ValidateBucket(l.Bucket); err != nil {
		return invalid(field, "%v", err)
	}
	if strings.HasSuffix(l.Bucket, "--x-s3") {
		return invalid(field, "bucket %q is an S3 Express directory bucket, which s3gfs does not support", l.Bucket)
	}
	if err := validatePrefix(field, l.Prefix); err != nil {
		return err
	}
	if err := validateRegion(field, l.Region); err != nil {
		return err
	}
	return validateEndpoint(field, l.Endpoint)
}

// parseLocTail parses "<bucket>:<prefix>[:<region>:<endpoint>]".
func parseLocTail(field, s string) (loc, error) {
	parts := strings.SplitN(s, ":", 4)
	var l loc
	switch len(parts) {
	case 2:
		l = loc{Bucket: parts[0], Prefix: parts[1]}
	case 4:
		l = loc{Bucket: parts[0], Prefix: parts[1], Region: parts[2], Endpoint: parts[3]}
		if l.Region == "" && l.Endpoint == "" {
			return loc{}, invalid(field, "not in canonical form")
		}
	default:
		return loc{}, invalid(field, "malformed")
	}
	if err := l.validate(field); err != nil {
		return loc{}, err
	}
	return l, nil
}

// parseVolumeID parses and validates a volume id.
func parseVolumeID(field, id string) (loc, error) {
	if id == "" {
		return loc{}, invalid(field, "missing")
	}
	rest, ok := strings.CutPrefix(id, volumeIDTag+":")
	if !ok {
		return loc{}, fmt.Errorf("%w: %s %q is not an s3gfs volume id (want %s:BUCKET:PREFIX)", ErrNotFound, field, clip(id), volumeIDTag)
	}
	l, err := parseLocTail(field, rest)
	if err != nil {
		return loc{}, err
	}
	if l.VolumeID() != id {
		return loc{}, invalid(field, "not in canonical form")
	}
	return l, nil
}

// parseSnapshotID parses and validates a snapshot id.
func parseSnapshotID(field, id string) (loc, string, error) {
	if id == "" {
		return loc{}, "", invalid(field, "missing")
	}
	rest, ok := strings.CutPrefix(id, snapshotIDTag+":")
	if !ok {
		return loc{}, "", fmt.Errorf("%w: %s %q is not an s3gfs snapshot id (want %s:NAME:BUCKET:PREFIX)", ErrNotFound, field, clip(id), snapshotIDTag)
	}
	name, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return loc{}, "", invalid(field, "malformed")
	}
	if err := validateName(field, name); err != nil {
		return loc{}, "", err
	}
	l, err := parseLocTail(field, rest)
	if err != nil {
		return loc{}, "", err
	}
	if l.SnapshotID(name) != id {
		return loc{}, "", invalid(field, "not in canonical form")
	}
	return l, name, nil
}

// clip shortens a hostile string before it goes into a message.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
