package driver

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/format"
)

// StorageClass parameters (CreateVolumeRequest.parameters). docs/csi.md
// has them as a table; keep the two in step.
const (
	ParamBucket          = "bucket"
	ParamBucketPerVolume = "bucketPerVolume"
	ParamPrefix          = "prefix"
	ParamEndpoint        = "endpoint"
	ParamRegion          = "region"
	ParamExtentSize      = "extentSize"
	ParamInlineLimit     = "inlineLimit"
	ParamRetention       = "retention"
	ParamOnDelete        = "onDelete"
	// Mount-time settings, passed to every node in the volume context.
	ParamCacheSize    = "cacheSize"
	ParamSyncInterval = "syncInterval"
)

// Secret keys (the CSI secrets of every call).
const (
	SecretAccessKeyID     = "accessKeyID"
	SecretSecretAccessKey = "secretAccessKey"
	SecretEndpoint        = "endpoint"
	SecretRegion          = "region"
)

// Volume context keys (CreateVolumeResponse.volume.volume_context). They
// hold no secret.
const (
	CtxBucket       = "bucket"
	CtxPrefix       = "prefix"
	CtxEndpoint     = "endpoint"
	CtxRegion       = "region"
	CtxAsOf         = "asOf"         // mount this point in time (read-only)
	CtxSourcePrefix = "sourcePrefix" // with asOf: the volume whose past is shown
	CtxSnapshot     = "snapshot"     // with asOf: the snapshot pin mounted (kept by the reaper)
	CtxSourceBucket = "sourceBucket" // with asOf: the source's bucket, when not the volume's
	CtxCacheSize    = "cacheSize"
	CtxSyncInterval = "syncInterval"
)

// kubernetesParamPrefix marks parameters the external-provisioner adds
// (PV and PVC names with --extra-create-metadata); they are ignored.
const kubernetesParamPrefix = "csi.storage.k8s.io/"

// volParams are the validated StorageClass parameters of one CreateVolume.
type volParams struct {
	Bucket          string
	BucketPerVolume bool
	Prefix          string
	Endpoint        string
	Region          string
	ExtentSize      uint32
	InlineLimit     uint32
	Retention       time.Duration
	Retain          bool // onDelete=retain: DeleteVolume keeps the objects
	CacheSize       int64
	SyncInterval    time.Duration
}

// parseParams validates every parameter; an unknown one is refused so that
// a typo in a StorageClass is not silently ignored.
func parseParams(p map[string]string) (volParams, error) {
	v := volParams{ExtentSize: format.DefaultExtentSize, InlineLimit: format.DefaultInlineLimit}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := p[k]
		field := "parameter " + k
		var err error
		switch k {
		case ParamBucket:
			v.Bucket = val
		case ParamBucketPerVolume:
			v.BucketPerVolume, err = strconv.ParseBool(val)
			if err != nil {
				return v, invalid(field, "%q is not true or false", clip(val))
			}
		case ParamPrefix:
			v.Prefix = val
			err = validatePrefix(field, val)
		case ParamEndpoint:
			v.Endpoint = val
			err = validateEndpoint(field, val)
		case ParamRegion:
			v.Region = val
			err = validateRegion(field, val)
		case ParamExtentSize:
			n, perr := parseSize(val)
			if perr != nil || n < format.MinExtentSize || n > format.MaxExtentSize || n%4096 != 0 {
				return v, invalid(field, "%q must be a multiple of 4KiB between 64KiB and 64MiB, e.g. 4MiB", clip(val))
			}
			v.ExtentSize = uint32(n)
		case ParamInlineLimit:
			n, perr := parseSize(val)
			if perr != nil || n > format.MaxInlineLimit {
				return v, invalid(field, "%q must be a size of at most 64KiB, e.g. 4KiB", clip(val))
			}
			v.InlineLimit = uint32(n)
		case ParamRetention:
			d, perr := parseDuration(val)
			if perr != nil || d > format.MaxRetention {
				return v, invalid(field, "%q must be a duration such as 24h or 7d, at most %s", clip(val), format.MaxRetention)
			}
			v.Retention = d
		case ParamOnDelete:
			switch val {
			case "delete":
			case "retain":
				v.Retain = true
			default:
				return v, invalid(field, "%q must be delete or retain", clip(val))
			}
		case ParamCacheSize:
			n, perr := parseSize(val)
			if perr != nil || n < 1<<20 {
				return v, invalid(field, "%q must be a size of at least 1MiB, e.g. 256MiB", clip(val))
			}
			v.CacheSize = n
		case ParamSyncInterval:
			d, perr := parseDuration(val)
			if perr != nil || d < 10*time.Millisecond || d > time.Hour {
				return v, invalid(field, "%q must be a duration between 10ms and 1h", clip(val))
			}
			v.SyncInterval = d
		default:
			if strings.HasPrefix(k, kubernetesParamPrefix) {
				continue
			}
			return v, invalid(field, "unknown parameter (known: %s)", strings.Join(knownParams, ", "))
		}
		if err != nil {
			return v, err
		}
	}
	if v.Bucket == "" {
		return v, invalid("parameter "+ParamBucket, "missing: name the bucket (or, with bucketPerVolume, the bucket name prefix)")
	}
	if v.InlineLimit > v.ExtentSize {
		return v, invalid("parameter "+ParamInlineLimit, "larger than the extent size")
	}
	if v.BucketPerVolume {
		if v.Prefix != "" {
			return v, invalid("parameter "+ParamPrefix, "not allowed with bucketPerVolume (the volume has the whole bucket)")
		}
		if len(v.Bucket) > 30 || !bucketStemRE.MatchString(v.Bucket) {
			return v, invalid("parameter "+ParamBucket, "%q: with bucketPerVolume it is a bucket name prefix of 2-30 lowercase letters, digits and '-'", clip(v.Bucket))
		}
	} else if err := (loc{Bucket: v.Bucket}).validate("parameter " + ParamBucket); err != nil {
		return v, err
	}
	return v, nil
}

var bucketStemRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,29}$`)

var knownParams = []string{ParamBucket, ParamBucketPerVolume, ParamPrefix, ParamEndpoint, ParamRegion,
	ParamExtentSize, ParamInlineLimit, ParamRetention, ParamOnDelete, ParamCacheSize, ParamSyncInterval}

// parseSize parses a byte count: 1048576, 4MiB, 4Mi, 4M (binary), 4MB (decimal).
func parseSize(v string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"ki", 1 << 10}, {"mi", 1 << 20}, {"gi", 1 << 30},
		{"kb", 1000}, {"mb", 1e6}, {"gb", 1e9}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, u.s) {
			mult, t = u.m, strings.TrimSpace(t[:len(t)-len(u.s)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return n * mult, nil
}

// parseDuration parses a Go duration or a whole number of days ("7d").
func parseDuration(v string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseUint(d, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q", v)
	}
	return d, nil
}
