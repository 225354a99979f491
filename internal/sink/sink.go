// Package sink defines what a back end looks like to the forwarder: a Sink
// delivers batches of spool records and says, per record, whether the back
// end acknowledged it durably, refused it for good, or may take it later.
// The implementations live in the sub-packages (jetstream, kafka, httpsink);
// sinktest is the conformance suite every one of them passes.
package sink

import (
	"context"
	"errors"
	"time"

	"github.com/trackd/trackd/internal/spool"
)

// Sink is one destination.
type Sink interface {
	// Name identifies the destination; it names the spool cursor, so it
	// must be a valid cursor name ([a-z0-9_-]{1,64}) and stable.
	Name() string
	// Send delivers recs, in order, and returns one error per record: nil
	// when the back end acknowledged it (durably, as far as the back end
	// promises), a Permanent error when it never will (the record goes to
	// quarantine), any other error when a retry may succeed. The same
	// record may be sent more than once (after a crash, or a retry after
	// a timeout): a Sink makes resends idempotent where its back end can
	// (the record ID as the dedup key). Send must return when ctx ends.
	Send(ctx context.Context, recs []spool.Record) []error
	// Close releases the sink's connections.
	Close() error
}

// permanentError marks an error retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err to say a retry cannot succeed (e.g. the back end
// rejected the record as invalid, HTTP 4xx).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Fill returns n copies of err: the result of a Send that failed as a
// whole.
func Fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// RetryAfterer is implemented by errors that say how long the back end asked
// to wait (HTTP Retry-After); the forwarder waits at least that long.
type RetryAfterer interface {
	RetryAfter() time.Duration
}
