package objstore

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoConditionalWrites: the store accepted a conditional create of a key
// that already existed, so it cannot arbitrate between writers.
var ErrNoConditionalWrites = errors.New("object store does not honour conditional writes (If-None-Match); s3gfs refuses read-write use on it")

// Probe checks that store honours conditional creates, which s3gfs relies
// on for correctness: PutIfAbsent of key must succeed, and a second
// PutIfAbsent of it must fail with ErrExists. It deletes key afterwards.
//
// Use a key no one else writes. If key is left over from an earlier,
// interrupted probe, it is deleted and the probe starts again.
//
// Probe returns nil on success, an error wrapping ErrNoConditionalWrites if
// the second create succeeded, and otherwise the store's error (access
// denied, missing bucket, unreachable...).
func Probe(ctx context.Context, store Store, key string) (err error) {
	first := []byte("s3gfs conditional-write probe: first")
	_, err = store.PutIfAbsent(ctx, key, first)
	if errors.Is(err, ErrExists) {
		if err := store.Delete(ctx, key); err != nil {
			return fmt.Errorf("probe %s: removing a stale probe object: %w", store.Bucket(), err)
		}
		_, err = store.PutIfAbsent(ctx, key, first)
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", store.Bucket(), err)
	}
	defer func() {
		if derr := store.Delete(ctx, key); derr != nil && err == nil {
			err = fmt.Errorf("probe %s: cleaning up: %w", store.Bucket(), derr)
		}
	}()

	_, err = store.PutIfAbsent(ctx, key, []byte("s3gfs conditional-write probe: second"))
	switch {
	case err == nil:
		return fmt.Errorf("probe %s: second create of %s succeeded: %w", store.Bucket(), key, ErrNoConditionalWrites)
	case errors.Is(err, ErrExists):
		return nil
	default:
		return fmt.Errorf("probe %s: %w", store.Bucket(), err)
	}
}
