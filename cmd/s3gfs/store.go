package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// storeFlags select and reach the object store.
type storeFlags struct {
	endpoint string
	region   string
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.endpoint, "endpoint", "", "S3 endpoint URL, e.g. http://127.0.0.1:7070 (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)")
	fs.StringVar(&s.region, "region", "", "S3 region (default: the AWS SDK chain, else us-east-1)")
}

func (s *storeFlags) open(ctx context.Context, u volume.URL) (*s3store.Store, error) {
	st, err := s3store.New(ctx, s3store.Config{Bucket: u.Bucket, Endpoint: s.endpoint, Region: s.region})
	if err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	return st, nil
}

// parseVolumeArg parses a volume URL argument.
func parseVolumeArg(arg string) (volume.URL, error) {
	u, err := volume.ParseURL(arg)
	if err != nil {
		return volume.URL{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	return u, nil
}
