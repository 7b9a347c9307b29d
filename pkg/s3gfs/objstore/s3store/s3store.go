// Package s3store implements objstore.Store over Amazon S3 and S3-compatible
// servers (versitygw, MinIO, ...) with aws-sdk-go-v2.
//
// It is the only place in s3gfs that speaks the S3 protocol. It turns the
// SDK's errors into the objstore sentinels, retries transient failures with
// exponential backoff and jitter, bounds the number of requests in flight,
// and reports every object's time as the store's own Last-Modified.
//
// Times: S3 sends Last-Modified with one-second resolution in HTTP headers
// (HEAD, GET) but some servers (MinIO) send milliseconds in listings. So that
// one object reports the same time from every method, s3store truncates
// every LastModified to whole seconds, in UTC.
package s3store

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/smithy-go"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Defaults applied to a zero Config field.
const (
	DefaultMaxInFlight = 32
	DefaultRetries     = 9 // 10 attempts in all
	DefaultMaxBackoff  = 5 * time.Second
	DefaultRegion      = "us-east-1"
)

// listPageSize is S3's own maximum for one ListObjectsV2 or DeleteObjects
// request.
const listPageSize = 1000

// Config says which bucket to reach and how.
type Config struct {
	// Bucket is the bucket every key lives in. Required.
	Bucket string

	// Endpoint is the S3 endpoint URL, e.g. "http://127.0.0.1:7070". Empty
	// leaves the choice to the SDK: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
	// endpoint_url in the shared config file, else AWS's own endpoint for
	// Region.
	Endpoint string

	// Region is the signing region. Empty means the SDK default chain
	// (AWS_REGION, the shared config file), and us-east-1 if that has none.
	Region string

	// AccessKey and SecretKey are static credentials. Leave both empty to use
	// the SDK's default credential chain (environment, shared files, IMDS...).
	AccessKey string
	SecretKey string

	// PathStyle forces path-style (true) or virtual-hosted (false)
	// addressing. Nil means path-style exactly when a custom endpoint is in
	// use (from Endpoint or the environment), which is what S3-compatible
	// servers expect.
	PathStyle *bool

	// MaxInFlight bounds the requests this Store has in flight at once
	// (including their retries and backoff). Zero means DefaultMaxInFlight.
	MaxInFlight int

	// Retries is how many times a transient failure (throttling, 5xx,
	// dropped or refused connection) is retried. Zero means DefaultRetries
	// (or AWS_MAX_ATTEMPTS if set); negative means no retries.
	Retries int

	// MaxBackoff caps the delay between two attempts. Zero means
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// Store is an objstore.Store (and objstore.BucketCreator) for one S3 bucket.
// Its methods are safe for concurrent use.
type Store struct {
	client      *s3.Client
	bucket      string
	region      string
	sem         chan struct{} // one token per request in flight
	maxAttempts int           // for retries s3store does itself (body reads)
	retryer     aws.Retryer   // the SDK's retryer, for its backoff delays
	skew        *clockSkew    // the store's clock minus this host's, in ns (deadline.go)
	presign     *s3.PresignClient
	putSigner   *putSigner // (putsign.go) per bucket
}

var (
	_ objstore.Store          = (*Store)(nil)
	_ objstore.BucketCreator  = (*Store)(nil)
	_ objstore.BucketSwitcher = (*Store)(nil)
)

// ForBucket returns a Store for another bucket of the same server, with the
// same client, credentials, in-flight bound and estimate of the server's
// clock.
func (s *Store) ForBucket(bucket string) objstore.Store {
	t := *s
	t.bucket = bucket
	t.putSigner = &putSigner{}
	return &t
}

// New returns a Store for cfg.Bucket. It does not contact the server; use
// objstore.Probe or EnsureBucket to check the store is usable.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3store: Config.Bucket is empty")
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, errors.New("s3store: set both AccessKey and SecretKey, or neither")
	}
	maxInFlight := cfg.MaxInFlight
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxInFlight
	}
	retries := cfg.Retries
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}
	maxBackoff := cfg.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = DefaultMaxBackoff
	}

	// The SDK's standard retryer already retries exactly what the contract
	// asks for: throttling codes (SlowDown, ...) and 429, 500/502/503/504,
	// refused/reset connections. It never retries a 412 or 409, so a lost
	// conditional put comes back at once. Its backoff is full-jitter
	// exponential (50 ms base, 1 s for throttling). The retry quota is
	// disabled: MaxInFlight already bounds the load, and a shared quota
	// would make one request fail because unrelated ones were retried.
	newRetryer := func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = retries + 1
			o.MaxBackoff = maxBackoff
			o.RateLimiter = ratelimit.None
		})
	}

	// A BuildableClient, not a plain http.Client: the SDK can only apply
	// AWS_CA_BUNDLE to its own client type, and fails to load otherwise.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 2 * maxInFlight
		t.MaxIdleConnsPerHost = maxInFlight
		dialBodyConns(t)
	})

	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(newRetryer),
		config.WithAppID("s3gfs"),
		// Only send and check checksums where S3 requires them: S3-compatible
		// servers (versitygw, older MinIO) do not all support the newer
		// trailing CRC checksums, and GETs of objects stored without one
		// would log "checksum validation skipped" warnings.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3store: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}

	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		// By now o.BaseEndpoint holds any endpoint the environment or the
		// shared config named; Config.Endpoint overrides it.
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = o.BaseEndpoint != nil
		if cfg.PathStyle != nil {
			o.UsePathStyle = *cfg.PathStyle
		}
		if cfg.Retries != 0 {
			// Config.Retries wins over AWS_MAX_ATTEMPTS.
			o.RetryMaxAttempts = 0
		}
		o.DisableLogOutputChecksumValidationSkipped = true
		o.APIOptions = append(o.APIOptions, unsignedPutPayload)
	})

	skew := new(clockSkew)
	return &Store{
		client:      client,
		bucket:      cfg.Bucket,
		region:      awsCfg.Region,
		sem:         make(chan struct{}, maxInFlight),
		maxAttempts: retries + 1,
		retryer:     newRetryer(),
		skew:        skew,
		presign:     newPresignClient(client, skew),
		putSigner:   &putSigner{},
	}, nil
}

// Bucket names the bucket this store addresses.
func (s *Store) Bucket() string { return s.bucket }

// Client returns the underlying SDK client, for tools and tests that need
// an S3 call the Store does not offer.
func (s *Store) Client() *s3.Client { return s.client }

// acquire takes one in-flight slot, or gives up when ctx ends.
func (s *Store) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) release() { <-s.sem }

// PutIfAbsent creates key with body unless it exists (objstore.ErrExists).
//
// It sends If-None-Match: *. S3 answers 412 PreconditionFailed when the key
// exists and 409 ConditionalRequestConflict when it loses a race with a
// concurrent write; both become ErrExists.
//
// One ambiguity is resolved here: when an attempt fails in transit (a
// dropped connection, a 5xx) the object may have been written anyway, and
// the SDK's retry then meets its own object and gets 412. So after a
// retried request ends in 412, PutIfAbsent compares the stored ETag with
// the MD5 of body and reports success if they match. (A racing writer with
// byte-identical content is indistinguishable; s3gfs's conditional objects
// carry writer-unique content.)
//
// Any error other than ErrExists leaves open whether the object was
// written (as with every remote write whose response is lost).
//
// It is sent as a presigned request (as PutIfAbsentWithin, with an expiry
// far beyond any retry: putExpiry) through the Store's HTTP client, not
// through the SDK's PutObject: the request skips the SDK's middleware
// stack (tens of µs of CPU a request), and its body goes out in one write
// from the caller's slice (bodyConn), not copied through a 32 KiB buffer
// with a write each as net/http does (and does for the SDK's requests).
//
// Keys with a character outside RFC 3986's unreserved set and '/' (never
// s3gfs's own: its keys are hex under a checked prefix) go through the
// SDK's PutObject: stores differ in how they check a presigned URL's
// escaped path (versitygw refuses a space in it).
func (s *Store) PutIfAbsent(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	const op = "put-if-absent"
	if plainKey(key) {
		return s.putIfAbsentUntil(ctx, op, key, body, time.Now().Add(putExpiry))
	}
	var attempts atomic.Int32
	out, err := s.putObject(ctx, key, body, true, "", &attempts)
	if err != nil {
		if errors.Is(err, objstore.ErrExists) && attempts.Load() > 1 {
			info, err2 := s.ownWrite(ctx, key, body)
			switch {
			case err2 == nil:
				return info, nil
			case !errors.Is(err2, errPreconditionFailed) && !errors.Is(err2, objstore.ErrNotFound):
				// Cannot tell whose object it is: report that, not ErrExists.
				err = fmt.Errorf("an earlier attempt may have written it; checking failed: %w", err2)
			}
		}
		return objstore.ObjectInfo{}, s.wrap(op, key, err)
	}
	return s.infoAfterPut(ctx, op, key, body, out)
}

// plainKey reports whether key has only RFC 3986 unreserved characters
// and '/': a presigned URL carries it unescaped.
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
			return false
		}
	}
	return key != ""
}

// putExpiry is how long a PutIfAbsent request stays valid: long enough
// for every retry, so that it never expires in practice.
const putExpiry = time.Hour

// Put creates or replaces key with body.
//
// The returned LastModified is the server's clock at its response (see
// infoAfterPut).
func (s *Store) Put(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	const op = "put"
	out, err := s.putObject(ctx, key, body, false, "", nil)
	if err != nil {
		return objstore.ObjectInfo{}, s.wrap(op, key, err)
	}
	return s.infoAfterPut(ctx, op, key, body, out)
}

// PutIfMatch replaces key with body if its current ETag is etag.
//
// It sends If-Match. S3 answers 412 PreconditionFailed when the ETag
// differs and 409 ConditionalRequestConflict on a race; both become
// objstore.ErrPrecondition. A missing key is objstore.ErrNotFound (AWS
// answers 404; a store answering 412 gives ErrPrecondition). As with
// PutIfAbsent, a retried request that ends in 412 may have met its own
// earlier attempt: if the stored object is byte for byte body (by its MD5
// ETag), the put succeeded.
func (s *Store) PutIfMatch(ctx context.Context, key string, body []byte, etag string) (objstore.ObjectInfo, error) {
	const op = "put-if-match"
	var attempts atomic.Int32
	out, err := s.putObject(ctx, key, body, false, etag, &attempts)
	if err != nil {
		if errors.Is(err, objstore.ErrExists) {
			if attempts.Load() > 1 {
				if info, err2 := s.ownWrite(ctx, key, body); err2 == nil {
					return info, nil
				}
			}
			// Not ErrExists: the key exists, but is not the expected object.
			err = fmt.Errorf("%w: %v", objstore.ErrPrecondition, err)
		}
		return objstore.ObjectInfo{}, s.wrap(op, key, err)
	}
	return s.infoAfterPut(ctx, op, key, body, out)
}

// putObject sends one PutObject (with its retries). When attempts is not
// nil it counts the HTTP attempts made. The error is classified but not yet
// wrapped with op and key.
func (s *Store) putObject(ctx context.Context, key string, body []byte, ifAbsent bool, ifMatch string, attempts *atomic.Int32) (*s3.PutObjectOutput, error) {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	if ifMatch != "" {
		in.IfMatch = aws.String(`"` + ifMatch + `"`)
	}
	var optFns []func(*s3.Options)
	if attempts != nil {
		optFns = append(optFns, countAttempts(attempts))
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	out, err := s.client.PutObject(ctx, in, optFns...)
	if err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// infoAfterPut builds the ObjectInfo of a successful put. S3's PUT response
// carries no Last-Modified, so the time is the server's clock when it
// answered (the Date header), to the second: the same clock LastModified
// comes from, at most a second apart. An exact value would cost a HEAD per
// write, doubling the latency of every commit; no caller needs it.
func (s *Store) infoAfterPut(ctx context.Context, op, key string, body []byte, out *s3.PutObjectOutput) (objstore.ObjectInfo, error) {
	etag := trimETag(aws.ToString(out.ETag))
	t := responseDate(out.ResultMetadata)
	if !t.IsZero() {
		s.noteServerDate(t)
	}
	if t.IsZero() {
		// No Date header (not seen from real stores): ask the store, never
		// the local clock.
		if info, err := s.head(ctx, key, etag); err == nil {
			return info, nil
		}
		return objstore.ObjectInfo{}, s.wrap(op, key, errors.New("written, but the store reported no time for it"))
	}
	return objstore.ObjectInfo{Key: key, Size: int64(len(body)), LastModified: t, ETag: etag}, nil
}

// ownWrite returns key's info if it holds exactly body (by its MD5 ETag),
// and errPreconditionFailed if it holds something else.
func (s *Store) ownWrite(ctx context.Context, key string, body []byte) (objstore.ObjectInfo, error) {
	sum := md5.Sum(body)
	return s.head(ctx, key, hex.EncodeToString(sum[:]))
}

// Get returns the whole object.
func (s *Store) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	data, info, err := s.getObject(ctx, key, "", -1, nil)
	if err != nil {
		return nil, objstore.ObjectInfo{}, s.wrap("get", key, err)
	}
	return data, info, nil
}

// GetRange returns length bytes of key starting at off; fewer if the object
// ends sooner, none if off is at or past its end.
func (s *Store) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	return s.GetRangeInto(ctx, key, off, length, nil)
}

// GetRangeInto is GetRange reading the body into buf when it fits
// (objstore.RangeReaderInto): a caller that reuses its buffers saves the
// clearing of a fresh one (a 4 MiB extent's costs as much CPU as reading
// it from the socket, measured).
func (s *Store) GetRangeInto(ctx context.Context, key string, off, length int64, buf []byte) ([]byte, error) {
	const op = "get-range"
	if off < 0 || length < 0 {
		return nil, s.wrap(op, key, fmt.Errorf("invalid range: offset %d, length %d", off, length))
	}
	if length == 0 {
		// S3 has no empty range; still report a missing key.
		if _, err := s.head(ctx, key, ""); err != nil {
			return nil, s.wrap(op, key, err)
		}
		return []byte{}, nil
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+length-1)
	if off+length-1 < off { // overflow: "to the end"
		rng = fmt.Sprintf("bytes=%d-", off)
	}
	data, _, err := s.getObject(ctx, key, rng, length, buf)
	if errors.Is(err, errInvalidRange) {
		// 416: the range starts at or past the end (or the object is empty).
		return []byte{}, nil
	}
	if err != nil {
		return nil, s.wrap(op, key, err)
	}
	return data, nil
}

// getObject fetches key (or a byte range of it) and reads the body. The SDK
// retries a request that fails before its response arrives, but not a body
// that breaks off mid-read; getObject retries those itself, with the same
// budget. The error is classified but not wrapped. limit (unless negative)
// is the most bytes the body may hold: the length of the range asked for.
// A store that answers a range with more (a hostile or broken server, or
// one that ignores Range) is refused before its body is read, so a small
// bounded read can never make the host read a huge body.
func (s *Store) getObject(ctx context.Context, key, rng string, limit int64, buf []byte) ([]byte, objstore.ObjectInfo, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	if err := s.acquire(ctx); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	defer s.release()

	for attempt := 1; ; attempt++ {
		out, err := s.client.GetObject(ctx, in)
		if err != nil {
			return nil, objstore.ObjectInfo{}, classify(err)
		}
		data, err := readBodyInto(out.Body, aws.ToInt64(out.ContentLength), limit, buf)
		if errors.Is(err, errBodyOverLimit) {
			return nil, objstore.ObjectInfo{}, fmt.Errorf("range %s: %w", rng, err)
		}
		if err == nil {
			return data, objstore.ObjectInfo{
				Key:          key,
				Size:         objectSize(out),
				LastModified: storeTime(out.LastModified),
				ETag:         trimETag(aws.ToString(out.ETag)),
			}, nil
		}
		if ctx.Err() != nil {
			return nil, objstore.ObjectInfo{}, ctx.Err()
		}
		if attempt >= s.maxAttempts {
			return nil, objstore.ObjectInfo{}, fmt.Errorf("%w: reading body: %w", objstore.ErrUnavailable, err)
		}
		if err := s.sleepBackoff(ctx, attempt, err); err != nil {
			return nil, objstore.ObjectInfo{}, err
		}
	}
}

// readBody reads and closes an object body of the announced size.
//
// A body of known size is read into a buffer of exactly that size: the
// caller keeps it (the extent cache holds it for as long as the extent
// stays cached), and bytes.Buffer.ReadFrom would grow a full buffer to
// twice its size when it looks for the end of the body, so every 4 MiB
// extent would hold 8 MiB and cost a second copy.
func readBody(body io.ReadCloser, size, limit int64) ([]byte, error) {
	return readBodyInto(body, size, limit, nil)
}

// readBodyInto is readBody into buf[:size] when the announced size fits in
// buf.
func readBodyInto(body io.ReadCloser, size, limit int64, into []byte) ([]byte, error) {
	defer body.Close()
	if limit >= 0 && size > limit {
		return nil, fmt.Errorf("%w: %d bytes announced, at most %d asked for", errBodyOverLimit, size, limit)
	}
	if size < 0 || size > 1<<30 {
		size = 0 // unknown or implausible: let the buffer grow
	}
	if size == 0 {
		var buf bytes.Buffer
		r := io.Reader(body)
		if limit >= 0 {
			r = io.LimitReader(body, limit+1)
		}
		if _, err := buf.ReadFrom(r); err != nil {
			return nil, err
		}
		if limit >= 0 && int64(buf.Len()) > limit {
			return nil, fmt.Errorf("%w: more than the %d bytes asked for", errBodyOverLimit, limit)
		}
		return buf.Bytes(), nil
	}
	var buf []byte
	if size <= int64(len(into)) {
		buf = into[:size]
	} else {
		buf = make([]byte, size)
	}
	if n, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("short body: got %d of %d bytes", n, size)
		}
		return nil, err
	}
	var more [1]byte
	if n, _ := io.ReadFull(body, more[:]); n > 0 {
		return nil, fmt.Errorf("body longer than the announced %d bytes", size)
	}
	return buf, nil
}

// errBodyOverLimit: a response body longer than the range asked for.
var errBodyOverLimit = errors.New("response body longer than the range asked for")

// objectSize is the whole object's size from a GET response: Content-Range
// holds it for a range request, Content-Length otherwise.
func objectSize(out *s3.GetObjectOutput) int64 {
	if cr := aws.ToString(out.ContentRange); cr != "" {
		// "bytes 0-9/1234"
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			var n int64
			if _, err := fmt.Sscan(cr[i+1:], &n); err == nil {
				return n
			}
		}
	}
	return aws.ToInt64(out.ContentLength)
}

// sleepBackoff waits after failed attempt number attempt (1-based), as
// long as the SDK's retryer would.
func (s *Store) sleepBackoff(ctx context.Context, attempt int, cause error) error {
	delay, err := s.retryer.RetryDelay(attempt, cause)
	if err != nil {
		delay = 100 * time.Millisecond
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Head returns the object's metadata.
//
// A HEAD response has no body, so S3 cannot say whether the key or the
// bucket is missing: both report objstore.ErrNotFound here.
func (s *Store) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	info, err := s.head(ctx, key, "")
	if err != nil {
		return objstore.ObjectInfo{}, s.wrap("head", key, err)
	}
	return info, nil
}

// head sends HeadObject, If-Match ifMatch when that is not empty. The
// error is classified but not wrapped; a failed If-Match is
// errPreconditionFailed.
func (s *Store) head(ctx context.Context, key, ifMatch string) (objstore.ObjectInfo, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}
	if ifMatch != "" {
		in.IfMatch = aws.String(`"` + ifMatch + `"`)
	}
	if err := s.acquire(ctx); err != nil {
		return objstore.ObjectInfo{}, err
	}
	defer s.release()
	out, err := s.client.HeadObject(ctx, in)
	if err != nil {
		if ifMatch != "" && httpStatus(err) == http.StatusPreconditionFailed {
			return objstore.ObjectInfo{}, errPreconditionFailed
		}
		return objstore.ObjectInfo{}, classify(err)
	}
	return objstore.ObjectInfo{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		LastModified: storeTime(out.LastModified),
		ETag:         trimETag(aws.ToString(out.ETag)),
	}, nil
}

// List lists keys under prefix strictly after startAfter, in ascending byte
// order, at most max of them (0 or more than 1000 means S3's page size of
// 1000).
func (s *Store) List(ctx context.Context, prefix, startAfter string, max int) (objstore.ListPage, error) {
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(prefix),
	}
	if startAfter != "" {
		in.StartAfter = aws.String(startAfter)
	}
	if max <= 0 || max > listPageSize {
		max = listPageSize
	}
	in.MaxKeys = aws.Int32(int32(max))
	if err := s.acquire(ctx); err != nil {
		return objstore.ListPage{}, s.wrap("list", prefix, err)
	}
	defer s.release()
	var out *s3.ListObjectsV2Output
	for attempt := 1; ; attempt++ {
		var err error
		out, err = s.client.ListObjectsV2(ctx, in)
		if err == nil {
			break
		}
		// A 200 whose XML body was cut off mid-stream fails to decode; the
		// SDK does not retry that, so retry here like a cut GET body.
		var de *smithy.DeserializationError
		if !errors.As(err, &de) || ctx.Err() != nil || attempt >= s.maxAttempts {
			return objstore.ListPage{}, s.wrap("list", prefix, classify(err))
		}
		if err := s.sleepBackoff(ctx, attempt, err); err != nil {
			return objstore.ListPage{}, s.wrap("list", prefix, err)
		}
	}
	page := objstore.ListPage{
		Objects:   make([]objstore.ObjectInfo, 0, len(out.Contents)),
		Truncated: aws.ToBool(out.IsTruncated),
	}
	for _, o := range out.Contents {
		page.Objects = append(page.Objects, objstore.ObjectInfo{
			Key:          aws.ToString(o.Key),
			Size:         aws.ToInt64(o.Size),
			LastModified: storeTime(o.LastModified),
			ETag:         trimETag(aws.ToString(o.ETag)),
		})
	}
	return page, nil
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.acquire(ctx); err != nil {
		return s.wrap("delete", key, err)
	}
	defer s.release()
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		err = classify(err)
		if errors.Is(err, objstore.ErrNotFound) {
			return nil // S3 answers 204 anyway; some servers say 404
		}
		return s.wrap("delete", key, err)
	}
	return nil
}

// DeleteMany removes keys with DeleteObjects, 1000 keys per request, one
// request after the other. Missing keys are not errors. Keys the server
// refuses to delete are reported together in a *DeleteManyError, after all
// batches have been tried; a request that fails as a whole stops at once.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	var failed []KeyError
	for start := 0; start < len(keys); start += listPageSize {
		batch := keys[start:min(start+listPageSize, len(keys))]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := s.deleteObjects(ctx, ids)
		if err != nil {
			return s.wrap("delete-many", batch[0], err)
		}
		for _, e := range out.Errors {
			code := aws.ToString(e.Code)
			if code == "NoSuchKey" {
				continue
			}
			failed = append(failed, KeyError{
				Key:     aws.ToString(e.Key),
				Code:    code,
				Message: aws.ToString(e.Message),
			})
		}
	}
	if len(failed) > 0 {
		return &DeleteManyError{Bucket: s.bucket, Failed: failed}
	}
	return nil
}

func (s *Store) deleteObjects(ctx context.Context, ids []types.ObjectIdentifier) (*s3.DeleteObjectsOutput, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: aws.String(s.bucket),
		Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
	})
	if err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// EnsureBucket creates the bucket unless this account already owns it.
// Outside us-east-1 it asks for the bucket in the store's region.
func (s *Store) EnsureBucket(ctx context.Context) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	if s.region != DefaultRegion {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(s.region),
		}
	}
	if err := s.acquire(ctx); err != nil {
		return s.wrap("create-bucket", "", err)
	}
	defer s.release()
	_, err := s.client.CreateBucket(ctx, in)
	if err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil
		}
		return s.wrap("create-bucket", "", classify(err))
	}
	return nil
}

// wrap adds the operation, bucket and key to err.
func (s *Store) wrap(op, key string, err error) error {
	return fmt.Errorf("s3 %s %s/%s: %w", op, s.bucket, key, err)
}

// unsignedPutPayload makes PutObject send X-Amz-Content-Sha256:
// UNSIGNED-PAYLOAD instead of the SHA-256 of its body. The SDK does that
// by itself over HTTPS only; over plain HTTP it hashed every payload, which
// was a third of a mount's CPU while writing. Against damage the hash adds
// nothing: every object s3gfs writes carries its own CRC-32C (docs/FORMAT.md,
// the envelope), checked on every read. Against a party on the network path
// it only ever covered PUT bodies: over plain HTTP such a party could read
// everything and alter every GET response anyway (docs/guarantees.md, what
// is not guaranteed: use HTTPS). The headers (key, conditions, length) stay
// signed. Requests whose body S3 requires a checksum of (DeleteObjects:
// Content-MD5 or a CRC) keep it: this touches PutObject's payload hash only.
func unsignedPutPayload(st *middleware.Stack) error {
	if st.ID() != "PutObject" {
		return nil
	}
	if _, ok := st.Finalize.Get((&v4.ComputePayloadSHA256{}).ID()); !ok {
		return nil
	}
	return v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware(st)
}

// countAttempts returns a per-call option that counts the HTTP attempts the
// SDK makes: the middleware sits inside the retry loop.
func countAttempts(n *atomic.Int32) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("s3gfsCountAttempts",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					n.Add(1)
					return next.HandleFinalize(ctx, in)
				}), "Retry", middleware.After)
		})
	}
}

// storeTime normalises a time the store reported: UTC, whole seconds (see
// the package comment).
func storeTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Second)
}

// responseDate is the server's Date header of a response, or the zero time.
func responseDate(md middleware.Metadata) time.Time {
	raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	if !ok || raw == nil {
		return time.Time{}
	}
	t, err := http.ParseTime(raw.Header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return storeTime(&t)
}

// trimETag drops the quotes S3 puts around an ETag.
func trimETag(etag string) string { return strings.Trim(etag, `"`) }

// Now returns the server's clock, read from the Date header of a
// HeadBucket response.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	if err := s.acquire(ctx); err != nil {
		return time.Time{}, s.wrap("head-bucket", "", err)
	}
	defer s.release()
	out, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		return time.Time{}, s.wrap("head-bucket", "", classify(err))
	}
	t := responseDate(out.ResultMetadata)
	if t.IsZero() {
		return time.Time{}, s.wrap("head-bucket", "", errors.New("response carries no Date header"))
	}
	s.noteServerDate(t)
	return t, nil
}

var _ objstore.Clock = (*Store)(nil)
