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
// A sink that can pipeline (sink.Pipeliner, e.g. JetStream) gets up to
// Options.Window batches in flight: the forwarder reads and publishes the
// next batches while the oldest waits for its acks. Batches settle in spool
// order, and the cursor moves only over settled batches (every record
// acknowledged or quarantined), so it never passes a record the back end
// has not taken. When a record fails transiently, the pipeline publishes
// nothing after it (the sink.Pipeline order rule); the forwarder waits for
// the batches behind it and resends everything from the failed record, one
// batch at a time, before it pipelines again.
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
	// Window is how many batches may be in flight at once when the sink is
	// a sink.Pipeliner (JetStream): the next batches are read and
	// published while earlier ones wait for their acks. Default 8. Other
	// sinks get one batch at a time. The cursor moves only over batches
	// whose every record is acknowledged or quarantined, in spool order.
	Window int
	// SendTimeout bounds one Send, and one batch in flight from its
	// publication to its last ack. Default 30s.
	SendTimeout time.Duration
	// CursorInterval is how often the cursor is made durable while
	// records flow. Default 200ms; a crash resends at most that much.
	CursorInterval time.Duration
	// CursorHoldback, for a destination that acknowledges a record before
	// it is written (the embedded JetStream in async persist mode, which
	// writes within milliseconds), keeps the durable cursor behind every
	// record acknowledged less than this long ago, so that a crash of the
	// process before the destination wrote them resends them. A crash
	// then resends up to CursorInterval + CursorHoldback of records; the
	// sink must drop those it stored (the JetStream sink's resume check).
	// Default 0: the cursor moves over each acknowledged record.
	CursorHoldback time.Duration
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
	if opts.Window <= 0 {
		opts.Window = 8
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
	hold := holdback{d: f.opts.CursorHoldback}
	save := func() error {
		pos := hold.durable(f.opts.Now(), acked, saved)
		if pos == saved {
			return nil
		}
		if err := sp.SetCursor(f.name, pos); err != nil {
			return err
		}
		saved, lastSave = pos, f.opts.Now()
		return nil
	}
	defer func() {
		if err := save(); err != nil {
			f.log.Error("forward: cannot save the cursor on stop; records since it will be sent again", "err", err)
		}
	}()
	f.update(func(s *Stats) { s.Cursor = acked })

	// The window: batches published and not yet settled, oldest first.
	// The cursor moves only over settled batches, in spool order, so it
	// never passes a record that is not acknowledged or quarantined.
	var (
		window   = 1
		inflight []*batch
		free     []*batch
		pl       = f.pipeline()
	)
	if _, ok := f.opts.Sink.(sink.Pipeliner); ok {
		window = f.opts.Window
	}
	// Whatever is still in flight when run returns is abandoned (its
	// records are sent again by the next run); every Pending is waited for.
	defer func() {
		for _, b := range inflight {
			b.cancel()
			b.pending.Wait()
		}
	}()
	settled := func(b *batch) error {
		acked = b.end
		hold.settled(f.opts.Now(), acked)
		last := b.recs[len(b.recs)-1].ReceivedAt
		f.update(func(s *Stats) { s.Cursor, s.LastDeliveredAt = acked, last })
		b.recs = b.recs[:0]
		free = append(free, b)
		if f.opts.Now().Sub(lastSave) >= f.opts.CursorInterval {
			return save()
		}
		return nil
	}
	for {
		if len(inflight) < window {
			var b *batch
			if n := len(free); n > 0 {
				b, free = free[n-1], free[:n-1]
			} else {
				b = &batch{recs: make([]spool.Record, 0, f.opts.BatchSize)}
			}
			// Block for the first record only when nothing is in flight,
			// then take what is already there.
			rec, err := r.TryNext()
			if errors.Is(err, spool.ErrNoMore) && len(inflight) == 0 {
				if untilIdle {
					if err := save(); err != nil {
						return err
					}
					return nil
				}
				f.update(func(s *Stats) { s.Waiting = true })
				// Caught up. Saving the cursor at every such moment cost a
				// file write, fsync, rename and directory fsync per small
				// batch while records trickle in (17 % of trackd's CPU at
				// 11k req/s): save when the interval is up, now or after
				// waiting that long for the next record.
				wait := f.opts.CursorInterval - f.opts.Now().Sub(lastSave)
				wait = max(wait, hold.pending(f.opts.Now())) // until all may be saved
				if acked != saved && wait > 0 {
					wctx, cancel := context.WithTimeout(ctx, wait)
					rec, err = r.Next(wctx)
					cancel()
					if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
						err = spool.ErrNoMore // the interval is up
					}
				}
				if acked == saved || wait <= 0 || errors.Is(err, spool.ErrNoMore) {
					if err := save(); err != nil {
						return err
					}
					rec, err = r.Next(ctx)
				}
				f.update(func(s *Stats) { s.Waiting = false })
			}
			for err == nil {
				if d, ok := rec.Get(MetaDestination); ok && d != f.name {
					// Aimed at another destination: nothing to send, but the
					// cursor may move past it with the record before it.
					switch {
					case len(b.recs) > 0:
						b.end = r.Pos()
					case len(inflight) > 0:
						inflight[len(inflight)-1].end = r.Pos()
					default:
						acked = r.Pos()
					}
					rec, err = r.TryNext()
					continue
				}
				b.recs = append(b.recs, rec)
				b.end = r.Pos()
				if len(b.recs) == f.opts.BatchSize {
					break
				}
				rec, err = r.TryNext()
			}
			var ce *spool.CorruptionError
			switch {
			case err == nil, errors.Is(err, spool.ErrNoMore):
			case ctx.Err() != nil || errors.Is(err, spool.ErrClosed):
				if len(b.recs) == 0 {
					return nil
				}
			case errors.As(err, &ce):
				// Unreadable spool bytes: reported by the spool's recovery and
				// verify; skip to the next segment so the rest flows.
				f.log.Error("forward: spool damage; skipping past it (to the next segment, or to where this process began appending)", "err", err)
				r.SkipSegment()
			default:
				return fmt.Errorf("forward %s: read spool: %w", f.name, err)
			}
			if len(b.recs) > 0 {
				var bctx context.Context
				bctx, b.cancel = context.WithTimeout(ctx, f.opts.SendTimeout)
				b.pending = pl.Publish(bctx, b.recs)
				inflight = append(inflight, b)
				continue
			}
			free = append(free, b)
			if len(inflight) == 0 {
				continue
			}
		}

		// Settle the oldest batch.
		b := inflight[0]
		inflight = inflight[1:]
		errs := b.pending.Wait()
		b.cancel()
		if ctx.Err() != nil {
			return nil // resent from acked next time
		}
		if !failedTransiently(b.recs, errs) {
			f.deliver(ctx, b.recs, errs) // counts, quarantines what was refused
			if err := settled(b); err != nil {
				return err
			}
			continue
		}
		// A record failed and the pipeline stopped there: the batches
		// behind it may hold records published before the failure was
		// known. Wait for them, then resend everything from the failure,
		// one batch at a time and in order (records already stored are
		// deduplicated by the sink), and start a new pipeline.
		later := inflight
		inflight = nil
		for _, l := range later {
			l.pending.Wait()
			l.cancel()
		}
		if !f.deliver(ctx, b.recs, errs) {
			return nil
		}
		if err := settled(b); err != nil {
			return err
		}
		for _, l := range later {
			if !f.deliver(ctx, l.recs, nil) {
				return nil
			}
			if err := settled(l); err != nil {
				return err
			}
		}
		pl = f.pipeline()
	}
}

// batch is records published together.
type batch struct {
	recs    []spool.Record
	end     spool.Position // the cursor once the batch is settled
	pending sink.Pending
	cancel  context.CancelFunc
}

// pipeline returns a new pipeline on the sink.
func (f *Forwarder) pipeline() sink.Pipeline {
	if p, ok := f.opts.Sink.(sink.Pipeliner); ok {
		return p.Pipeline()
	}
	return sink.SendPipeline(f.opts.Sink)
}

// failedTransiently reports whether a batch's results need a resend.
func failedTransiently(recs []spool.Record, errs []error) bool {
	if len(errs) != len(recs) {
		return true
	}
	for _, err := range errs {
		if err != nil && !sink.IsPermanent(err) {
			return true
		}
	}
	return false
}

// deliver settles recs: errs, if not nil, are the results of a first
// send; deliver then sends what is left until each record is acknowledged
// or quarantined. It returns false if ctx ended first.
func (f *Forwarder) deliver(ctx context.Context, recs []spool.Record, errs []error) bool {
	var (
		attempts []int                  // per record, allocated at the first failure
		history  [][]quarantine.Attempt // per record, likewise
	)
	addAttempt := func(idx int, now time.Time, err error) {
		if history == nil {
			attempts, history = make([]int, len(recs)), make([][]quarantine.Attempt, len(recs))
		}
		history[idx] = append(history[idx], quarantine.Attempt{Time: now, Error: err.Error()})
	}
	pending := recs
	offset := 0 // index in recs of pending[0]
	outages := 0
	for len(pending) > 0 {
		if errs == nil {
			sctx, cancel := context.WithTimeout(ctx, f.opts.SendTimeout)
			errs = f.opts.Sink.Send(sctx, pending)
			cancel()
			if ctx.Err() != nil {
				return false
			}
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
					addAttempt(idx, now, err)
					f.quarantine(&recs[idx], "refused by the destination: "+err.Error(), history[idx])
					quarantined++
				} else {
					failed++
				}
			default:
				failed++
				addAttempt(idx, now, err)
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
		errs = nil
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

// holdback keeps the positions a forwarder settled, with when, so that its
// durable cursor stays behind those settled less than d ago
// (Options.CursorHoldback).
type holdback struct {
	d     time.Duration
	marks []holdMark // oldest first
}

type holdMark struct {
	at  time.Time
	pos spool.Position
}

// settled records that everything before pos was acknowledged at at.
func (h *holdback) settled(at time.Time, pos spool.Position) {
	if h.d > 0 {
		h.marks = append(h.marks, holdMark{at, pos})
	}
}

// durable returns the position the cursor may be saved at now: acked
// without a holdback, else the newest position settled at least d ago, or
// saved if none was. A position acked reached after the last mark by
// skipping records meant for other destinations needs no holdback:
// nothing was sent.
func (h *holdback) durable(now time.Time, acked, saved spool.Position) spool.Position {
	if h.d <= 0 || len(h.marks) == 0 {
		return acked
	}
	cut := now.Add(-h.d)
	if !h.marks[len(h.marks)-1].at.After(cut) {
		h.marks = h.marks[:0]
		return acked
	}
	i := 0
	for i < len(h.marks) && !h.marks[i].at.After(cut) {
		i++
	}
	if i == 0 {
		return saved
	}
	pos := h.marks[i-1].pos
	h.marks = append(h.marks[:0], h.marks[i:]...)
	return pos
}

// pending returns how long until every settled position may be saved.
func (h *holdback) pending(now time.Time) time.Duration {
	if len(h.marks) == 0 {
		return 0
	}
	return h.marks[len(h.marks)-1].at.Add(h.d).Sub(now)
}
