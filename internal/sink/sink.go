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

// Pipeliner is a Sink that can have several batches in flight: the
// forwarder hands it the next batch before the previous one is
// acknowledged, so a back end that acknowledges each message (JetStream)
// is never idle while the forwarder reads and encodes the next batch.
// Sinks without it are driven one Send at a time.
type Pipeliner interface {
	Sink
	// Pipeline starts a new, empty sequence of batches.
	Pipeline() Pipeline
}

// Pipeline publishes batches in the order Publish is called, each record
// after every record published before it on the same pipeline. It is for
// one goroutine.
//
// The order rule that keeps one person's events in order: once a record
// has failed transiently, the pipeline publishes nothing more; every later
// record, in the same batch or a later one, fails with an error wrapping
// ErrNotSent. Records published before the failure was known may have
// been stored: they are resent (and deduplicated) with the failed one, and
// stay ahead of it in the back end; so a back end that can refuse a message
// for a while yet store the next ones from the same connection (a JetStream
// cluster changing leaders) can reorder within the messages in flight, as it
// could within one Send. After a transient failure the caller waits for
// every Pending and starts a new pipeline for the resend.
type Pipeline interface {
	// Publish starts delivering recs and returns without waiting for the
	// back end's acks (it may wait for room under the sink's own limit
	// of messages in flight, or for ctx). ctx bounds the batch until its
	// Wait returns. Every Pending must be waited for, in the order
	// published.
	Publish(ctx context.Context, recs []spool.Record) Pending
}

// Pending is a batch in flight.
type Pending interface {
	// Wait returns one error per record, as Send does. It returns when
	// every record has an outcome, or when the batch's ctx ends.
	Wait() []error
}

// ErrNotSent is wrapped by the errors of records a sink did not publish
// because an earlier record failed transiently (so that a resend keeps
// the spool's order). It is transient.
var ErrNotSent = errors.New("not sent: an earlier record failed")

// SendPipeline returns a Pipeline that delivers each batch with s.Send
// during Publish: no batches overlap, but the order rule above holds, so a
// forwarder can drive every sink the same way.
func SendPipeline(s Sink) Pipeline { return &sendPipeline{s: s} }

type sendPipeline struct {
	s      Sink
	failed bool
}

type sentBatch []error

func (b sentBatch) Wait() []error { return b }

func (p *sendPipeline) Publish(ctx context.Context, recs []spool.Record) Pending {
	if p.failed {
		return sentBatch(Fill(len(recs), ErrNotSent))
	}
	errs := p.s.Send(ctx, recs)
	if len(errs) != len(recs) {
		p.failed = true
		return sentBatch(errs) // the forwarder reports the mismatch
	}
	for _, err := range errs {
		if err != nil && !IsPermanent(err) {
			p.failed = true
			break
		}
	}
	return sentBatch(errs)
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
