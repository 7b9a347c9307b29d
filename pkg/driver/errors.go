package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// Sentinel errors of the driver. Handlers wrap them (fmt.Errorf("...: %w"))
// and code() maps them to gRPC codes in one place.
var (
	// ErrInvalid: a request field or parameter is missing or malformed.
	// The message names the field or parameter.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the volume, snapshot or path does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the name is taken by a volume or snapshot with other
	// parameters or another source.
	ErrExists = errors.New("already exists with other parameters")
	// ErrInFlight: an operation on the same volume or snapshot is running.
	ErrInFlight = errors.New("an operation on it is already in progress")
	// ErrPrecondition: the request cannot be served in the current state
	// (for example a prefix holding objects this driver did not create).
	ErrPrecondition = errors.New("failed precondition")
	// ErrOutOfRange: a capacity the driver cannot give.
	ErrOutOfRange = errors.New("out of range")
	// ErrUnimplemented: an RPC or option this driver does not offer.
	ErrUnimplemented = errors.New("not implemented")
)

// errBadToken: a list's starting_token is not one the driver returned
// (the spec's answer is Aborted).
var errBadToken = errors.New("invalid starting_token")

// invalid builds an ErrInvalid naming the field or parameter.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// code maps an error to its gRPC code. This is the one place that does.
func code(err error) codes.Code {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code()
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, errMounterDown):
		return codes.Unavailable
	case errors.Is(err, ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, ErrInFlight), errors.Is(err, errBadToken):
		return codes.Aborted
	case errors.Is(err, ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, snapshot.ErrBadName):
		return codes.InvalidArgument
	case errors.Is(err, ErrNotFound), errors.Is(err, volume.ErrNoVolume), errors.Is(err, objstore.ErrNoBucket), errors.Is(err, snapshot.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrPrecondition), errors.Is(err, volume.ErrExists):
		return codes.FailedPrecondition
	case errors.Is(err, ErrOutOfRange):
		return codes.OutOfRange
	case errors.Is(err, ErrUnimplemented):
		return codes.Unimplemented
	case errors.Is(err, objstore.ErrAccessDenied):
		return codes.PermissionDenied
	case errors.Is(err, objstore.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// toStatus turns a handler's error into a gRPC status error, removing every
// secret value of the request from its message.
func toStatus(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		msg = s.Message()
	}
	return status.Error(code(err), scrub(msg, secrets))
}

// scrub replaces every occurrence of a secret value in s.
func scrub(s string, secrets []string) string {
	for _, v := range secrets {
		if len(v) >= 4 { // shorter values would redact ordinary words
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	return s
}

const redacted = "***stripped***"
