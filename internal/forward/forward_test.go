package forward_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

type nopQuarantine struct{}

func (nopQuarantine) Put(quarantine.Entry) (string, error) { return "1", nil }

// TestDestinationFilter checks that a record aimed at one destination (a
// replay) is delivered by that destination's forwarder only, and that the
// cursor still moves past records aimed elsewhere.
func TestDestinationFilter(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{Sync: spool.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx := context.Background()
	mk := func(id, dest string) spool.Record {
		r := spool.Record{ID: id, Workspace: "w", Op: "v1.event", Body: []byte(`{}`)}
		if dest != "" {
			r.Meta = []spool.KV{{Key: forward.MetaDestination, Value: dest}}
		}
		return r
	}
	for _, r := range []spool.Record{mk("a", ""), mk("b", "other"), mk("c", "memory"), mk("d", "other")} {
		if err := sp.Append(ctx, []spool.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	mem := sinktest.NewMemory()
	b := mem.Backend(t)
	f, err := forward.New(forward.Options{Spool: sp, Sink: b.NewSink(t), Quarantine: nopQuarantine{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range b.Received(t) {
		got = append(got, m.ID)
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "c" {
		t.Fatalf("delivered %v, want [a c]", got)
	}
	if cur, _ := sp.Cursor("memory"); cur != sp.Stats().Tail {
		t.Fatalf("cursor %v, want the tail %v", cur, sp.Stats().Tail)
	}
}

type retryAfterErr struct{}

func (retryAfterErr) Error() string             { return "busy" }
func (retryAfterErr) RetryAfter() time.Duration { return 7 * time.Second }
func (s *busyOnceSink) Name() string            { return "busy" }
func (s *busyOnceSink) Close() error            { return nil }

// busyOnceSink answers "retry after 7s" once, then accepts.
type busyOnceSink struct{ calls int }

func (s *busyOnceSink) Send(_ context.Context, recs []spool.Record) []error {
	s.calls++
	if s.calls == 1 {
		return sink.Fill(len(recs), retryAfterErr{})
	}
	return make([]error, len(recs))
}

// TestRetryAfterIsHonoured checks that the forwarder waits at least as long
// as the back end asked before it retries.
func TestRetryAfterIsHonoured(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{Sync: spool.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx := context.Background()
	if err := sp.Append(ctx, []spool.Record{{ID: "a", Workspace: "w", Op: "v1.event"}}); err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	s := &busyOnceSink{}
	f, err := forward.New(forward.Options{Spool: sp, Sink: s, Quarantine: nopQuarantine{},
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if len(slept) != 1 || slept[0] < 7*time.Second || s.calls != 2 {
		t.Fatalf("slept %v over %d sends, want one wait of at least 7s", slept, s.calls)
	}
}

// pipeSink is a sink.Pipeliner over an in-memory back end that stores each
// record once (by ID), at publication, in publication order. fail decides,
// at publication, that a record fails transiently (it is then not stored);
// the failure is only reported by Wait, as a real back end reports it with
// the ack, so batches published behind it are stored already.
type pipeSink struct {
	fail func(id string, attempt int) bool // nil: nothing fails
	// hold, if set, is called by Wait of batch n (0-based, over all
	// pipelines) before it returns: a test blocks acks there.
	hold func(ctx context.Context, n int) error

	mu             sync.Mutex
	stored         []string
	seen           map[string]bool
	attempts       map[string]int
	batches        int // published so far
	outstanding    int // published, not yet waited for
	maxOutstanding int
}

func newPipeSink() *pipeSink {
	return &pipeSink{seen: map[string]bool{}, attempts: map[string]int{}}
}

func (s *pipeSink) Name() string { return "pipe" }
func (s *pipeSink) Close() error { return nil }

// publish stores recs unless a record fails: from the first failure on, a
// record is not stored (failed, or not sent).
func (s *pipeSink) publish(recs []spool.Record, stopped *bool) []error {
	errs := make([]error, len(recs))
	for i := range recs {
		id := recs[i].ID
		if *stopped {
			errs[i] = sink.ErrNotSent
			continue
		}
		s.attempts[id]++
		if s.fail != nil && s.fail(id, s.attempts[id]) {
			errs[i] = errors.New("transient")
			*stopped = true
			continue
		}
		if !s.seen[id] {
			s.seen[id] = true
			s.stored = append(s.stored, id)
		}
	}
	return errs
}

func (s *pipeSink) Send(_ context.Context, recs []spool.Record) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stopped := false
	return s.publish(recs, &stopped)
}

func (s *pipeSink) Pipeline() sink.Pipeline { return &pipe{s: s} }

type pipe struct {
	s       *pipeSink
	stopped bool // a record failed: publish no more (the order rule)
}

type pipeBatch struct {
	s    *pipeSink
	ctx  context.Context
	n    int
	errs []error
}

func (p *pipe) Publish(ctx context.Context, recs []spool.Record) sink.Pending {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &pipeBatch{s: s, ctx: ctx, n: s.batches, errs: s.publish(recs, &p.stopped)}
	s.batches++
	s.outstanding++
	s.maxOutstanding = max(s.maxOutstanding, s.outstanding)
	return b
}

func (b *pipeBatch) Wait() []error {
	defer func() {
		b.s.mu.Lock()
		b.s.outstanding--
		b.s.mu.Unlock()
	}()
	if b.s.hold != nil {
		if err := b.s.hold(b.ctx, b.n); err != nil {
			return sink.Fill(len(b.errs), err)
		}
	}
	return b.errs
}

func (s *pipeSink) storedIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.stored...)
}

// appendN appends records from..from+n-1, with IDs r0000.., in groups of 7.
func appendN(t *testing.T, sp *spool.Spool, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; {
		var g []spool.Record
		for ; i < from+n && len(g) < 7; i++ {
			id := fmt.Sprintf("r%04d", i)
			ids = append(ids, id)
			g = append(g, spool.Record{ID: id, Workspace: "w", Op: "v1.event", Body: []byte(`{}`)})
		}
		if err := sp.Append(context.Background(), g); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func openSpool(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Options{Sync: spool.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// TestWindow checks that a pipelining sink gets up to Window batches in
// flight, never more, and that everything arrives once, in order.
func TestWindow(t *testing.T) {
	sp := openSpool(t)
	want := appendN(t, sp, 0, 200)
	s := newPipeSink()
	f, err := forward.New(forward.Options{Spool: sp, Sink: s, Quarantine: nopQuarantine{}, BatchSize: 10, Window: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, s.storedIDs()); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if s.maxOutstanding != 3 {
		t.Errorf("at most %d batches in flight, want 3", s.maxOutstanding)
	}
	if got := f.Stats().Delivered; got != 200 {
		t.Errorf("Delivered = %d, want 200", got)
	}
	if cur, _ := sp.Cursor("pipe"); cur != sp.Stats().Tail {
		t.Errorf("cursor %v, want the tail %v", cur, sp.Stats().Tail)
	}
}

// TestPipelineFailure makes records fail transiently while batches behind
// them are in flight: the forwarder resends from the failure, in order,
// and everything is stored once.
func TestPipelineFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(id string, attempt int) bool
	}{
		{"once", func(id string, attempt int) bool { return id == "r0015" && attempt == 1 }},
		{"several times", func(id string, attempt int) bool { return id == "r0042" && attempt <= 3 }},
		{"several records", func(id string, attempt int) bool {
			return (id == "r0003" || id == "r0050" || id == "r0051" || id == "r0099") && attempt == 1
		}},
		{"last record", func(id string, attempt int) bool { return id == "r0099" && attempt == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := openSpool(t)
			want := appendN(t, sp, 0, 100)
			s := newPipeSink()
			s.fail = tc.fail
			f, err := forward.New(forward.Options{Spool: sp, Sink: s, Quarantine: nopQuarantine{}, BatchSize: 10, Window: 4,
				Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := s.storedIDs()
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
			if st := f.Stats(); st.Delivered != 100 || st.Quarantined != 0 {
				t.Errorf("Delivered %d, Quarantined %d; want 100, 0", st.Delivered, st.Quarantined)
			}
			if cur, _ := sp.Cursor("pipe"); cur != sp.Stats().Tail {
				t.Errorf("cursor %v, want the tail %v", cur, sp.Stats().Tail)
			}
		})
	}
}

// TestCursorStopsAtUnacknowledged stops a forwarder while the oldest batch
// in flight has no ack and the ones behind it have: the cursor must not
// move past the unacknowledged batch (a crash then resends it), and the
// next run delivers everything.
func TestCursorStopsAtUnacknowledged(t *testing.T) {
	sp := openSpool(t)
	want := appendN(t, sp, 0, 10) // the first batch, acknowledged
	first := sp.Stats().Tail
	want = append(want, appendN(t, sp, 10, 30)...)
	s := newPipeSink()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.hold = func(bctx context.Context, n int) error {
		if n == 1 { // the second batch: its ack never comes
			cancel()
			<-bctx.Done()
			return bctx.Err()
		}
		return nil
	}
	f, err := forward.New(forward.Options{Spool: sp, Sink: s, Quarantine: nopQuarantine{}, BatchSize: 10, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if s.batches != 4 {
		t.Fatalf("%d batches published, want 4 (the window)", s.batches)
	}
	if cur, _ := sp.Cursor("pipe"); cur != first {
		t.Fatalf("cursor %v after a stop with the second batch unacknowledged, want %v (the end of the first)", cur, first)
	}
	s.hold = nil
	if err := f.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, s.storedIDs()); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if cur, _ := sp.Cursor("pipe"); cur != sp.Stats().Tail {
		t.Errorf("cursor %v, want the tail %v", cur, sp.Stats().Tail)
	}
}
