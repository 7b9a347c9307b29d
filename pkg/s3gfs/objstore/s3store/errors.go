package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
)

// Internal outcomes that callers inside this package handle themselves.
var (
	// errPreconditionFailed: an If-Match HEAD found a different object.
	errPreconditionFailed = errors.New("precondition failed")
	// errInvalidRange: a GET range starts at or past the object's end.
	errInvalidRange = errors.New("range not satisfiable")
)

// accessDeniedCodes are S3 error codes meaning the credentials were refused
// or lack permission.
var accessDeniedCodes = map[string]bool{
	"AccessDenied":          true,
	"AllAccessDisabled":     true,
	"InvalidAccessKeyId":    true,
	"SignatureDoesNotMatch": true,
	"ExpiredToken":          true,
	"InvalidToken":          true,
	"TokenRefreshRequired":  true,
	"AccountProblem":        true,
	"Forbidden":             true, // HEAD responses have no body, only the status
	// versitygw answers an unknown access key with 404 and this code
	// (AWS: 403 InvalidAccessKeyId).
	"XAdminUserNotFound": true,
}

// classify returns err joined with the objstore sentinel it stands for, so
// errors.Is finds the sentinel and errors.As still finds the SDK error. An
// error with no sentinel (including a cancelled context) is returned as is.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if s := sentinel(err); s != nil {
		return fmt.Errorf("%w: %w", s, err)
	}
	return err
}

func sentinel(err error) error {
	var code string
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	status := httpStatus(err)
	switch {
	case code == "NoSuchBucket":
		return objstore.ErrNoBucket
	case accessDeniedCodes[code]: // before the status: see XAdminUserNotFound
		return objstore.ErrAccessDenied
	case code == "NoSuchKey" || code == "NotFound" || status == 404:
		return objstore.ErrNotFound
	case code == "PreconditionFailed" || code == "ConditionalRequestConflict" || status == 412:
		return objstore.ErrExists
	case code == "InvalidRange" || status == 416:
		return errInvalidRange
	case status == 403:
		return objstore.ErrAccessDenied
	case status >= 500 || status == 429 || code == "SlowDown":
		// Still failing after the SDK's retries.
		return objstore.ErrUnavailable
	case status == 0 && unreachable(err):
		return objstore.ErrUnavailable
	}
	return nil
}

// httpStatus is the HTTP status of the response an SDK error came with, or
// 0 when there was no response.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// unreachable reports whether err means no usable response came back: a
// refused, reset or timed-out connection, a failed DNS lookup, a response
// cut short, or the SDK giving up after its retries.
func unreachable(err error) bool {
	var maxErr *retry.MaxAttemptsError
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &maxErr), errors.As(err, &opErr), errors.As(err, &dnsErr):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	}
	return retry.RetryableConnectionError{}.IsErrorRetryable(err).Bool()
}

// KeyError is one key DeleteMany could not delete, as the server reported it.
type KeyError struct {
	Key     string
	Code    string // S3 error code, e.g. "AccessDenied"
	Message string
}

// DeleteManyError lists the keys a DeleteMany call could not delete; the
// others were deleted. errors.Is matches the objstore sentinel of any
// failed key's code (e.g. objstore.ErrAccessDenied).
type DeleteManyError struct {
	Bucket string
	Failed []KeyError
}

func (e *DeleteManyError) Error() string {
	const show = 3
	var b strings.Builder
	fmt.Fprintf(&b, "s3 delete-many %s: %d keys not deleted:", e.Bucket, len(e.Failed))
	for i, f := range e.Failed {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(e.Failed)-show)
			break
		}
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %q: %s: %s", f.Key, f.Code, f.Message)
	}
	return b.String()
}

// Unwrap returns the distinct sentinels of the failed keys' codes.
func (e *DeleteManyError) Unwrap() []error {
	var errs []error
	seen := map[error]bool{}
	for _, f := range e.Failed {
		s := sentinel(&smithy.GenericAPIError{Code: f.Code, Message: f.Message})
		if s != nil && !seen[s] {
			seen[s] = true
			errs = append(errs, s)
		}
	}
	return errs
}
