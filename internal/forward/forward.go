// Package forward moves spooled records to one destination: a Forwarder
// reads the spool from its destination's durable cursor, sends batches to a
// sink, retries with exponential backoff and jitter, quarantines what the
// destination refuses for good, and advances the cursor only after the
// destination acknowledged. One Forwarder per destination, each with its own
// cursor, so a destination that is down or slow never delays another.
//
// Delivery is at least once: a crash between a send and the cursor update
// resends, and sinks make resends idempotent by the record ID.
//
// A record whose metadata has MetaDestination set (a replay aimed at one
// destination) is delivered only by that destination's forwarder.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

// MetaDestination is the metadata key that aims a record at one
// destination only.
const MetaDestination = "destination"

// Quarantiner keeps a record that cannot be delivered. *quarantine.Store
// implements it.
type Quarantiner interface {
	Put(e quarantine.Entry) (string, error)
}

// Options configure a Forwarder. Zero values are the documented defaults.
type Options struct {
	// Spool is read from; its cursor named Sink.Name() is advanced.
	Spool *spool.Spool
	// Sink is the destination.
	Sink sink.Sink
	// Quarantine keeps records the destination refuses. Required: a
	// record is never dropped silently.
	Quarantine Quarantiner
	// BatchSize is the most records per Send. Default 500.
	BatchSize int
	// MinBackoff and MaxBackoff bound the retry delay, which doubles per
	// failed attempt, with full jitter. Defaults 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts is how many times a record the destination keeps
	// refusing (while it accepts others) is tried before it goes to
	// quarantine. Default 10. When every record of a batch fails, the
	// destination is down: nothing is quarantined, retries go on.
	MaxAttempts int
	// SendTimeout bounds one Send. Default 30s.
	SendTimeout time.Duration
	// CursorInterval is how often the cursor is made durable while
	// records flow. Default 200ms; a crash resends at most that much.
	CursorInterval time.Duration
	// Logger; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Sleep waits for d or until ctx ends; default a timer. Tests replace
	// it to run retries without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Stats describe a Forwarder's progress.
type Stats struct {
	Destination string
	Delivered   uint64 // records acknowledged by the destination
	Retries     uint64 // records re-sent after a failure
	Quarantined uint64
	Batches     uint64
	Failures    uint64 // failed Send results
	// Cursor is the position up to which everything was acknowledged.
	Cursor spool.Position
	// LastDeliveredAt is the received-at time of the last record
	// acknowledged (Unix ns); lag in time is now minus this while records
	// wait.
	LastDeliveredAt int64
	// Waiting is true while the forwarder has delivered everything
	// committed so far.
	Waiting   bool
	LastError string
}

// Forwarder forwards one destination. Run it in one goroutine.
type Forwarder struct {
	opts Options
	name string
	log  *slog.Logger

	mu    sync.Mutex // guards stats
	stats Stats
}

// New checks opts and returns a Forwarder.
func New(opts Options) (*Forwarder, error) {
	if opts.Spool == nil || opts.Sink == nil || opts.Quarantine == nil {
		return nil, errors.New("forward: Spool, Sink and Quarantine are required")
	}
	name := opts.Sink.Name()
	if !spool.ValidCursorName(name) {
		return nil, fmt.Errorf("forward: sink name %q is not a valid cursor name", name)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	if opts.CursorInterval <= 0 {
		opts.CursorInterval = 200 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	f := &Forwarder{opts: opts, name: name, log: opts.Logger.With("destination", name)}
	f.stats.Destination = name
	return f, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns a snapshot of the forwarder's progress.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *Forwarder) update(fn func(*Stats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}

// Run forwards until ctx ends, then makes the cursor durable at the last
// acknowledged record and returns nil. A batch being sent when ctx ends is
// abandoned (the sink's Send returns); its records are sent again by the
// next Run. Run returns an error only if the spool fails under it.
func (f *Forwarder) Run(ctx context.Context) error { return f.run(ctx, false) }

// Drain forwards everything committed to the spool when it is called (and
// whatever arrives meanwhile) and returns once it has caught up, with the
// cursor durable. It returns ctx's error if ctx ends first.
func (f *Forwarder) Drain(ctx context.Context) error {
	if err := f.run(ctx, true); err != nil {
		return err
	}
	return ctx.Err()
}

func (f *Forwarder) run(ctx context.Context, untilIdle bool) error {
	sp := f.opts.Spool
	start, ok := sp.Cursor(f.name)
	r := sp.NewReader(start)
	defer r.Close()
	if !ok {
		// A new destination: its cursor holds back retention from now on,
		// so nothing it has not acknowledged is deleted.
		if err := sp.SetCursor(f.name, r.Pos()); err != nil {
			return fmt.Errorf("forward %s: create cursor: %w", f.name, err)
		}
	}
	acked := r.Pos()
	saved := acked
	lastSave := f.opts.Now()
	save := func() error {
		if acked == saved {
			return nil
		}
		if err := sp.SetCursor(f.name, acked); err != nil {
			return err
		}
		saved, lastSave = acked, f.opts.Now()
		return nil
	}
	defer func() {
		if err := save(); err != nil {
			f.log.Error("forward: cannot save the cursor on stop; records since it will be sent again", "err", err)
		}
	}()
	f.update(func(s *Stats) { s.Cursor = acked })

	recs := make([]spool.Record, 0, f.opts.BatchSize)
	ends := make([]spool.Position, 0, f.opts.BatchSize)
	for {
		recs, ends = recs[:0], ends[:0]
		// Block for the first record, then take what is already there.
		rec, err := r.TryNext()
		if errors.Is(err, spool.ErrNoMore) {
			if err := save(); err != nil {
				return err
			}
			if untilIdle {
				return nil
			}
			f.update(func(s *Stats) { s.Waiting = true })
			rec, err = r.Next(ctx)
			f.update(func(s *Stats) { s.Waiting = false })
		}
		for err == nil {
			if d, ok := rec.Get(MetaDestination); ok && d != f.name {
				// Aimed at another destination: nothing to send, but the
				// cursor may move past it.
				if len(recs) == 0 {
					acked = r.Pos()
				} else {
					ends[len(ends)-1] = r.Pos()
				}
				rec, err = r.TryNext()
				continue
			}
			recs = append(recs, rec)
			ends = append(ends, r.Pos())
			if len(recs) == f.opts.BatchSize {
				break
			}
			rec, err = r.TryNext()
		}
		var ce *spool.CorruptionError
		switch {
		case err == nil, errors.Is(err, spool.ErrNoMore):
		case ctx.Err() != nil || errors.Is(err, spool.ErrClosed):
			if len(recs) == 0 {
				return nil
			}
		case errors.As(err, &ce):
			// Unreadable spool bytes: reported by the spool's recovery and
			// verify; skip to the next segment so the rest flows.
			f.log.Error("forward: spool damage; skipping the rest of the segment", "err", err)
			r.SkipSegment()
		default:
			return fmt.Errorf("forward %s: read spool: %w", f.name, err)
		}
		if len(recs) == 0 {
			continue
		}
		if !f.deliver(ctx, recs) {
			return nil // ctx ended mid-batch: resend from acked next time
		}
		acked = ends[len(ends)-1]
		last := recs[len(recs)-1].ReceivedAt
		f.update(func(s *Stats) { s.Cursor, s.LastDeliveredAt = acked, last })
		if f.opts.Now().Sub(lastSave) >= f.opts.CursorInterval {
			if err := save(); err != nil {
				return err
			}
		}
	}
}

// deliver sends recs until each is acknowledged or quarantined. It returns
// false if ctx ended first.
func (f *Forwarder) deliver(ctx context.Context, recs []spool.Record) bool {
	attempts := make([]int, len(recs))
	history := make([][]quarantine.Attempt, len(recs))
	pending := recs
	offset := 0 // index in recs of pending[0]
	outages := 0
	for len(pending) > 0 {
		sctx, cancel := context.WithTimeout(ctx, f.opts.SendTimeout)
		errs := f.opts.Sink.Send(sctx, pending)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if len(errs) != len(pending) {
			errs = sink.Fill(len(pending), fmt.Errorf("sink returned %d results for %d records", len(errs), len(pending)))
		}
		// Everything before the first transient failure is done
		// (acknowledged or quarantined); from there on, resend in order so
		// one person's events keep their order (the sink dedups what was
		// acknowledged already).
		firstFail := -1
		failed, delivered, quarantined := 0, 0, 0
		now := f.opts.Now()
		for i, err := range errs {
			idx := offset + i
			switch {
			case err == nil:
				if firstFail < 0 {
					delivered++
				}
			case sink.IsPermanent(err):
				if firstFail < 0 {
					history[idx] = append(history[idx], quarantine.Attempt{Time: now, Error: err.Error()})
					f.quarantine(&recs[idx], "refused by the destination: "+err.Error(), history[idx])
					quarantined++
				} else {
					failed++
				}
			default:
				failed++
				history[idx] = append(history[idx], quarantine.Attempt{Time: now, Error: err.Error()})
				if firstFail < 0 {
					firstFail = i
				}
			}
		}
		f.update(func(s *Stats) {
			s.Batches++
			s.Delivered += uint64(delivered)
			s.Quarantined += uint64(quarantined)
			if failed > 0 {
				s.Failures += uint64(failed)
				s.LastError = errs[firstFail].Error()
			}
		})
		if firstFail < 0 {
			return true
		}
		allFailed := failed == len(errs)
		if allFailed {
			// The destination is down (or refusing everything): wait and
			// retry, quarantining nothing.
			outages++
			if outages == 1 || outages%10 == 0 {
				f.log.Warn("forward: destination unavailable; retrying", "err", errs[firstFail], "attempt", outages)
			}
		} else {
			outages = 0
			idx := offset + firstFail
			attempts[idx]++
			if attempts[idx] >= f.opts.MaxAttempts {
				f.quarantine(&recs[idx], fmt.Sprintf("not accepted after %d attempts: %v", attempts[idx], errs[firstFail]), history[idx])
				f.update(func(s *Stats) { s.Quarantined++ })
				firstFail++
			}
		}
		offset += firstFail
		pending = recs[offset:]
		f.update(func(s *Stats) { s.Retries += uint64(len(pending)) })
		if len(pending) == 0 {
			return true
		}
		d := f.backoff(max(outages, attempts[offset]))
		var ra sink.RetryAfterer
		if errors.As(errs[firstFail], &ra) {
			d = max(d, ra.RetryAfter())
		}
		if err := f.opts.Sleep(ctx, d); err != nil {
			return false
		}
	}
	return true
}

// backoff returns the delay before retry n (1-based): exponential, capped,
// with full jitter.
func (f *Forwarder) backoff(n int) time.Duration {
	d := f.opts.MinBackoff
	for i := 1; i < n && d < f.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, f.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// quarantine keeps rec with its history. If the quarantine cannot take it,
// the forwarder must not lose it either: it logs loudly and keeps the record
// only in the spool (replay can resend it while retention holds it).
func (f *Forwarder) quarantine(rec *spool.Record, reason string, history []quarantine.Attempt) {
	q := &quarantine.Record{ID: rec.ID, Workspace: rec.Workspace, Op: rec.Op, ReceivedAt: rec.ReceivedAt}
	for _, kv := range rec.Meta {
		q.Meta = append(q.Meta, [2]string{kv.Key, kv.Value})
	}
	if utf8.Valid(rec.Body) {
		q.BodyText = string(rec.Body)
	} else {
		q.Body = rec.Body
	}
	id, err := f.opts.Quarantine.Put(quarantine.Entry{
		Kind: quarantine.KindRecord, Reason: reason, Workspace: rec.Workspace,
		Destination: f.name, Attempts: history, Record: q,
	})
	if err != nil {
		f.log.Error("forward: record refused and NOT quarantined; it stays in the spool until retention, use `trackd replay`", "record", rec.ID, "workspace", rec.Workspace, "reason", reason, "err", err)
		return
	}
	f.log.Warn("forward: record quarantined", "record", rec.ID, "workspace", rec.Workspace, "reason", reason, "quarantine_id", id)
}
