// Package sinktest is the conformance suite every sink passes: records go
// from a real spool through a forward.Forwarder to the sink's back end, and
// the suite checks what the back end ends up holding: every record once,
// byte for byte, one person's records in order, resends deduplicated,
// outages survived, poison records quarantined, shutdown mid-batch resumed.
// It also provides Memory, a reference sink used to test the suite itself
// and the forwarder.
package sinktest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

// Message is one message as the back end holds it.
type Message struct {
	ID   string            // the record ID (the dedup key)
	Key  string            // what orders it: subject, partition key, ...
	Body []byte            // the event data
	Attr map[string]string // CloudEvents attributes (without ce- / ce_ prefixes)
}

// Backend is a back end under test.
type Backend struct {
	// NewSink returns a new sink writing to the back end.
	NewSink func(t *testing.T) sink.Sink
	// Received returns every message the back end holds, in its order.
	Received func(t *testing.T) []Message
	// Outage makes the back end unavailable (sends fail, transiently)
	// until restore is called.
	Outage func(t *testing.T) (restore func())
	// Poison, if set, returns a record the back end refuses for good.
	Poison func() spool.Record
}

// Run runs the conformance suite; newBackend returns a fresh, empty back end
// for each case.
func Run(t *testing.T, newBackend func(t *testing.T) *Backend) {
	t.Run("DeliversEveryRecordOnceInOrder", func(t *testing.T) {
		b := newBackend(t)
		env := newEnv(t, b.NewSink(t))
		want := env.appendRecords(t, 0, 1200)
		env.drain(t)
		checkReceived(t, b.Received(t), want)
	})
	t.Run("ResendAfterCrashIsDeduplicated", func(t *testing.T) {
		b := newBackend(t)
		env := newEnv(t, b.NewSink(t))
		want := env.appendRecords(t, 0, 300)
		env.drain(t)
		// A crash between send and cursor update: the cursor is gone, and
		// everything is sent again.
		if err := env.sp.RemoveCursor(env.sink.Name()); err != nil {
			t.Fatal(err)
		}
		env.drain(t)
		checkReceived(t, b.Received(t), want)
	})
	t.Run("OutageAndRecovery", func(t *testing.T) {
		b := newBackend(t)
		env := newEnv(t, b.NewSink(t))
		want := env.appendRecords(t, 0, 200)
		env.drain(t)
		restore := b.Outage(t)
		want = append(want, env.appendRecords(t, 200, 300)...)
		retrying := make(chan struct{}, 1)
		env.sleep = func(ctx context.Context, d time.Duration) error {
			select {
			case retrying <- struct{}{}:
			default:
			}
			return ctx.Err()
		}
		done := make(chan error, 1)
		go func() { done <- env.fwd(t).Drain(env.ctx) }()
		for range 2 { // the forwarder has seen the outage and is retrying
			select {
			case <-retrying:
			case err := <-done:
				t.Fatalf("drain returned during the outage (%v): it must retry until the back end returns", err)
			}
		}
		restore()
		if err := <-done; err != nil {
			t.Fatalf("drain after the outage: %v", err)
		}
		if n := len(env.quar.entries()); n != 0 {
			t.Fatalf("%d records quarantined during an outage", n)
		}
		checkReceived(t, b.Received(t), want)
	})
	t.Run("PoisonRecordIsQuarantined", func(t *testing.T) {
		b := newBackend(t)
		if b.Poison == nil {
			t.Skip("this back end refuses no record for good")
		}
		env := newEnv(t, b.NewSink(t))
		want := env.appendRecords(t, 0, 50)
		poison := b.Poison()
		if err := env.sp.Append(env.ctx, []spool.Record{poison}); err != nil {
			t.Fatal(err)
		}
		want = append(want, env.appendRecords(t, 50, 100)...)
		env.drain(t)
		q := env.quar.entries()
		if len(q) != 1 || q[0].Record == nil || q[0].Record.ID != poison.ID || q[0].Destination != env.sink.Name() || len(q[0].Attempts) == 0 {
			t.Fatalf("quarantine holds %+v, want the poison record with its attempts", q)
		}
		checkReceived(t, b.Received(t), want)
	})
	t.Run("ShutdownMidBatchResumes", func(t *testing.T) {
		b := newBackend(t)
		inner := b.NewSink(t)
		blocking := &blockingSink{Sink: inner, entered: make(chan struct{})}
		env := newEnv(t, blocking)
		want := env.appendRecords(t, 0, 400)
		ctx, cancel := context.WithCancel(env.ctx)
		done := make(chan error, 1)
		go func() { done <- env.fwd(t).Run(ctx) }()
		<-blocking.entered // a batch is being sent
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run on shutdown: %v", err)
		}
		blocking.release()
		env.drain(t)
		checkReceived(t, b.Received(t), want)
	})
}

// env is a spool, a sink and a quarantine wired to forwarders.
type env struct {
	ctx   context.Context
	sp    *spool.Spool
	sink  sink.Sink
	quar  *memQuarantine
	sleep func(context.Context, time.Duration) error
}

func newEnv(t *testing.T, s sink.Sink) *env {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	sp, err := spool.Open(t.TempDir(), spool.Options{Sync: spool.SyncNone, SegmentSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(); s.Close() })
	return &env{ctx: ctx, sp: sp, sink: s, quar: &memQuarantine{}}
}

func (e *env) fwd(t *testing.T) *forward.Forwarder {
	f, err := forward.New(forward.Options{
		Spool: e.sp, Sink: e.sink, Quarantine: e.quar, BatchSize: 64,
		MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 3,
		SendTimeout: 10 * time.Second, Sleep: e.sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (e *env) drain(t *testing.T) {
	t.Helper()
	if err := e.fwd(t).Drain(e.ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// appendRecords appends records from..to in groups of up to 3, spread over
// 3 workspaces and 7 persons each, and returns them in spool order.
func (e *env) appendRecords(t *testing.T, from, to int) []spool.Record {
	t.Helper()
	var all []spool.Record
	for i := from; i < to; {
		var g []spool.Record
		for j := 0; j < 1+i%3 && i < to; j, i = j+1, i+1 {
			ws := fmt.Sprintf("site%d", i%3)
			person := fmt.Sprintf("person-%d", i%7)
			body := fmt.Appendf(nil, `{"name":"event-%d","data":{"n":%d,"s":"\u00e9\u6f22 \"q\""}}`, i, i)
			g = append(g, spool.Record{
				ID: fmt.Sprintf("01JD0000000000000000%06d", i), Workspace: ws, Op: "v1.event",
				ReceivedAt: time.Unix(1_700_000_000, int64(i)).UnixNano(),
				Meta:       []spool.KV{{Key: "request_id", Value: fmt.Sprint("req-", i)}, {Key: "region", Value: "us"}, {Key: "identifier", Value: person}},
				Body:       body,
			})
		}
		if err := e.sp.Append(e.ctx, g); err != nil {
			t.Fatal(err)
		}
		all = append(all, g...)
	}
	return all
}

// checkReceived checks that the back end holds exactly want: each record
// once, byte for byte, with its envelope, and each person's in spool order.
func checkReceived(t *testing.T, got []Message, want []spool.Record) {
	t.Helper()
	byID := make(map[string]Message, len(got))
	for _, m := range got {
		if _, dup := byID[m.ID]; dup {
			t.Fatalf("record %s received twice", m.ID)
		}
		byID[m.ID] = m
	}
	if len(byID) != len(want) {
		t.Errorf("back end holds %d records, want %d", len(byID), len(want))
	}
	for i := range want {
		r := &want[i]
		m, ok := byID[r.ID]
		if !ok {
			t.Fatalf("record %s (%d of %d) not received", r.ID, i, len(want))
		}
		if string(m.Body) != string(r.Body) {
			t.Fatalf("record %s: body %q, want %q", r.ID, m.Body, r.Body)
		}
		for _, a := range envelope.Attributes(r) {
			if m.Attr != nil && m.Attr[a.Name] != a.Value {
				t.Fatalf("record %s: attribute %s = %q, want %q", r.ID, a.Name, m.Attr[a.Name], a.Value)
			}
		}
	}
	// Per person: the back end's order is the spool's order.
	pos := make(map[string]int, len(want))
	for i := range want {
		pos[want[i].ID] = i
	}
	last := map[string]int{}
	for _, m := range got {
		p := envelope.PartitionKey(&want[pos[m.ID]])
		if prev, ok := last[p]; ok && pos[m.ID] < prev {
			t.Fatalf("person %s: record %s arrived after a later one", p, m.ID)
		}
		last[p] = pos[m.ID]
	}
}

// memQuarantine is an in-memory forward.Quarantiner.
type memQuarantine struct {
	mu sync.Mutex
	es []quarantine.Entry
}

func (q *memQuarantine) Put(e quarantine.Entry) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.es = append(q.es, e)
	return fmt.Sprint(len(q.es)), nil
}

func (q *memQuarantine) entries() []quarantine.Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]quarantine.Entry(nil), q.es...)
}

// blockingSink blocks its first Send until ctx ends, to stop a forwarder in
// the middle of a batch; after release it passes through.
type blockingSink struct {
	sink.Sink
	once     sync.Once
	entered  chan struct{}
	mu       sync.Mutex
	released bool
}

func (b *blockingSink) Send(ctx context.Context, recs []spool.Record) []error {
	b.mu.Lock()
	released := b.released
	b.mu.Unlock()
	if released {
		return b.Sink.Send(ctx, recs)
	}
	// Send part of the batch for real first: the back end may hold some
	// of it when the shutdown comes.
	b.Sink.Send(ctx, recs[:len(recs)/2])
	b.once.Do(func() { close(b.entered) })
	<-ctx.Done()
	return sink.Fill(len(recs), ctx.Err())
}

func (b *blockingSink) release() {
	b.mu.Lock()
	b.released = true
	b.mu.Unlock()
}
