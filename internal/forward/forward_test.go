package forward_test

import (
	"context"
	"testing"

	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/quarantine"
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
