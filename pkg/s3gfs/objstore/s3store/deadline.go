package s3store

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

var _ objstore.Deadliner = (*Store)(nil)

// PutIfAbsentWithin is PutIfAbsent with an expiry the store itself
// enforces (objstore.Deadliner): the request is a presigned URL whose
// X-Amz-Expires covers d (see presignExpiry), so a store that receives it
// later refuses it with 403 "Request has expired", whenever the network
// delivers it. The signing time is this host's clock moved by the
// store's clock offset, estimated from the Date of the store's responses
// (truncated to the second, so the estimate errs towards an earlier
// expiry, never a later one).
//
// Each attempt is presigned anew with the time that remains; transient
// failures are retried while some remains. Like PutIfAbsent, a retried
// request that meets its own first attempt (412 with our bytes) succeeds.
func (s *Store) PutIfAbsentWithin(ctx context.Context, key string, body []byte, d time.Duration) (objstore.ObjectInfo, error) {
	return s.putIfAbsentUntil(ctx, "put-if-absent-within", key, body, time.Now().Add(d))
}

// putIfAbsentUntil sends presigned conditional creates of key, each
// expiring at deadline, until one succeeds or fails for good (see
// PutIfAbsentWithin).
func (s *Store) putIfAbsentUntil(ctx context.Context, op, key string, body []byte, deadline time.Time) (objstore.ObjectInfo, error) {
	var last error
	for attempt := 1; attempt <= s.maxAttempts; attempt++ {
		left := time.Until(deadline)
		if left <= 0 && last != nil {
			return objstore.ObjectInfo{}, s.wrap(op, key, fmt.Errorf("%w (no time left to retry: %v)", objstore.ErrExpired, last))
		}
		info, retryable, err := s.putWithin(ctx, key, body, presignExpiry(left))
		if err == nil {
			return info, nil
		}
		if errors.Is(err, objstore.ErrExists) && attempt > 1 {
			info, oerr := s.ownWrite(ctx, key, body)
			switch {
			case oerr == nil:
				return info, nil
			case !errors.Is(oerr, errPreconditionFailed) && !errors.Is(oerr, objstore.ErrNotFound):
				// Cannot tell whose object it is: report that, not ErrExists.
				return objstore.ObjectInfo{}, s.wrap(op, key, fmt.Errorf("an earlier attempt may have written it; checking failed: %w", oerr))
			}
		}
		if !retryable {
			return objstore.ObjectInfo{}, s.wrap(op, key, err)
		}
		last = err
		if err := s.sleepBackoff(ctx, attempt, err); err != nil {
			return objstore.ObjectInfo{}, s.wrap(op, key, err)
		}
	}
	return objstore.ObjectInfo{}, s.wrap(op, key, fmt.Errorf("%w: %w", objstore.ErrUnavailable, last))
}

// putWithin sends one presigned conditional PUT that expires after
// expires. retryable reports a transient failure.
func (s *Store) putWithin(ctx context.Context, key string, body []byte, expires time.Duration) (objstore.ObjectInfo, bool, error) {
	if err := s.acquire(ctx); err != nil {
		return objstore.ObjectInfo{}, false, err
	}
	defer s.release()
	signedURL, signedHeader, err := s.presignPut(ctx, key, len(body), expires)
	if err != nil {
		return objstore.ObjectInfo{}, false, err
	}
	req, err := newUploadRequest(ctx, http.MethodPut, signedURL, body)
	if err != nil {
		return objstore.ObjectInfo{}, false, err
	}
	for k, vs := range signedHeader {
		if strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Length") {
			continue // net/http sets these from the URL and the body
		}
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.ContentLength = int64(len(body))
	resp, err := s.client.Options().HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return objstore.ObjectInfo{}, false, ctx.Err()
		}
		return objstore.ObjectInfo{}, true, fmt.Errorf("%w: %w", objstore.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	date, _ := http.ParseTime(resp.Header.Get("Date"))
	if !date.IsZero() {
		s.noteServerDate(date)
	}
	if resp.StatusCode/100 == 2 {
		t := storeTime(&date)
		if t.IsZero() {
			info, err := s.head(ctx, key, "")
			return info, false, err
		}
		return objstore.ObjectInfo{Key: key, Size: int64(len(body)), LastModified: t, ETag: trimETag(resp.Header.Get("ETag"))}, false, nil
	}
	var e struct{ Code, Message string }
	_ = xml.Unmarshal(raw, &e)
	detail := fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, e.Code, e.Message)
	switch {
	case resp.StatusCode == http.StatusPreconditionFailed || resp.StatusCode == http.StatusConflict || e.Code == "PreconditionFailed" || e.Code == "ConditionalRequestConflict":
		return objstore.ObjectInfo{}, false, fmt.Errorf("%w: %w", objstore.ErrExists, detail)
	case resp.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(e.Message), "expired"):
		return objstore.ObjectInfo{}, false, fmt.Errorf("%w: %w", objstore.ErrExpired, detail)
	case e.Code == "NoSuchBucket":
		return objstore.ObjectInfo{}, false, fmt.Errorf("%w: %w", objstore.ErrNoBucket, detail)
	case resp.StatusCode == http.StatusForbidden || accessDeniedCodes[e.Code]:
		return objstore.ObjectInfo{}, false, fmt.Errorf("%w: %w", objstore.ErrAccessDenied, detail)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || e.Code == "SlowDown":
		return objstore.ObjectInfo{}, true, fmt.Errorf("%w: %w", objstore.ErrUnavailable, detail)
	}
	return objstore.ObjectInfo{}, false, detail
}

// presignExpiry is the X-Amz-Expires for a request that must not take
// effect more than left from now. The store counts whole seconds: the
// signing time is written truncated to the second, and the clock offset
// it is corrected by is known to the second (from Date headers), so the
// signing time lies up to 2 s before the store's now. Rounding left up
// and adding one second keeps every request valid for at least left − 1 s
// and lets none take effect more than 2 s after left (the documented
// bound, docs/FORMAT.md §12 P3).
func presignExpiry(left time.Duration) time.Duration {
	if left < 0 {
		left = 0
	}
	return (left + time.Second - 1).Truncate(time.Second) + time.Second
}

// newPresignClient returns the presign client of a Store, built once: the
// expiry is set per request, and the signer reads the clock offset when it
// signs.
func newPresignClient(client *s3.Client, skew *clockSkew) *s3.PresignClient {
	return s3.NewPresignClient(client, func(o *s3.PresignOptions) {
		o.Presigner = skewedSigner{newS3Signer(), skew}
	})
}

// newS3Signer returns a SigV4 signer configured as the SDK's S3 client
// configures its own: S3 signs the path as sent, escaped once (the
// signer's default escapes it again, which S3 and compatible stores
// refuse for a key that needs escaping, such as one under a volume
// prefix with a space).
func newS3Signer() *v4.Signer {
	return v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
}

// skewedSigner signs with this host's clock moved onto the store's, by the
// offset estimated when it signs.
type skewedSigner struct {
	*v4.Signer
	skew *clockSkew
}

func (s skewedSigner) PresignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, signingTime time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return s.Signer.PresignHTTP(ctx, creds, r, payloadHash, service, region, signingTime.Add(time.Duration(s.skew.Load())), optFns...)
}

// noteServerDate records the store's clock offset from a response's Date
// (whole seconds: the offset is underestimated by up to a second, which
// only makes presigned requests expire earlier).
func (s *Store) noteServerDate(date time.Time) {
	s.skew.Store(int64(date.Sub(time.Now())))
}

// clockSkew is the store's clock minus this host's, as last estimated.
type clockSkew = atomic.Int64
