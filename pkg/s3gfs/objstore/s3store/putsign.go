package s3store

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/encoding/httpbinding"
)

// putSigner presigns the conditional PUTs of putWithin with the SDK's
// SigV4 signer directly, instead of through the SDK's presign client,
// whose per-request middleware stack (endpoint rules, ARN and bucket
// handling, checksum setup) cost a seventh of the mount's CPU while it
// created small files (two such PUTs a file). The request is the one the
// SDK would presign: its URL up to the key (scheme, host, and the bucket
// in the path or the host, as the client is configured) is learnt once
// from a request the SDK presigns for a sample key, the key is escaped as
// the SDK escapes it, and the signer is called as the SDK calls it
// (unsigned payload, the path escaped once: newS3Signer). When the sample's
// URL does not have that shape, or the client has no credentials, every
// request goes through the SDK (sdkPresignPut).
type putSigner struct {
	mu      sync.Mutex
	learned bool // the sample's URL was read (ok says whether it fits)
	ok      bool
	// scheme, host, path (escaped) up to the key, and any query the SDK
	// adds besides the signature's.
	scheme, host, prefix string
	region               string
	creds                aws.CredentialsProvider
	signer               *v4.Signer
}

// sampleKey is the key whose presigned URL shows where keys go.
const sampleKey = "s3gfs-sample-key"

// presignPut returns the URL and headers of a conditional PUT of key with
// a body of size bytes, valid for expires.
func (s *Store) presignPut(ctx context.Context, key string, size int, expires time.Duration) (string, http.Header, error) {
	p := s.putSigner
	p.mu.Lock()
	if !p.learned {
		s.learnPutURL(context.WithoutCancel(ctx), p)
	}
	ok := p.ok
	p.mu.Unlock()
	if !ok {
		return s.sdkPresignPut(ctx, key, size, expires)
	}
	creds, err := p.creds.Retrieve(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("credentials: %w", err)
	}
	q := url.Values{}
	q.Set("X-Amz-Expires", strconv.FormatInt(int64(expires/time.Second), 10))
	q.Set("x-id", "PutObject")
	u := &url.URL{Scheme: p.scheme, Host: p.host, Opaque: "//" + p.host + p.prefix + httpbinding.EscapePath(key, false), RawQuery: q.Encode()}
	req := &http.Request{Method: http.MethodPut, URL: u, Host: p.host, Header: http.Header{}, ContentLength: int64(size)}
	req.Header.Set("If-None-Match", "*")
	signed, hdr, err := p.signer.PresignHTTP(ctx, creds, req, "UNSIGNED-PAYLOAD", "s3", p.region,
		time.Now().Add(time.Duration(s.skew.Load())))
	if err != nil {
		return "", nil, fmt.Errorf("presign: %w", err)
	}
	return signed, hdr, nil
}

// learnPutURL presigns a PUT of sampleKey through the SDK and keeps what
// precedes the key in its URL; p.ok reports that the shape is understood.
// A failure to presign (credentials not available yet) is tried again by
// the next request. p.mu is held.
func (s *Store) learnPutURL(ctx context.Context, p *putSigner) {
	o := s.client.Options()
	if o.Credentials == nil {
		p.learned = true
		return
	}
	signed, _, err := s.sdkPresignPut(ctx, sampleKey, 1, time.Minute)
	if err != nil {
		return
	}
	p.learned = true
	u, err := url.Parse(signed)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return
	}
	path := u.EscapedPath()
	if !strings.HasSuffix(path, "/"+sampleKey) {
		return
	}
	for name := range u.Query() {
		if !strings.HasPrefix(name, "X-Amz-") && name != "x-id" {
			return // a query parameter this signer would not send
		}
	}
	p.scheme, p.host, p.prefix = u.Scheme, u.Host, strings.TrimSuffix(path, sampleKey)
	p.region, p.creds, p.signer = s.region, o.Credentials, newS3Signer()
	p.ok = true
}

// sdkPresignPut presigns a conditional PUT through the SDK's presign
// client.
func (s *Store) sdkPresignPut(ctx context.Context, key string, size int, expires time.Duration) (string, http.Header, error) {
	signed, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		IfNoneMatch:   aws.String("*"),
		ContentLength: aws.Int64(int64(size)),
	}, func(o *s3.PresignOptions) { o.Expires = expires })
	if err != nil {
		return "", nil, fmt.Errorf("presign: %w", err)
	}
	return signed.URL, signed.SignedHeader, nil
}
