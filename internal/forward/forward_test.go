package forward_test

import (
	"context"
	"testing"
	"time"

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
