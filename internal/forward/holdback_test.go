package forward

import (
	"testing"
	"time"

	"github.com/trackd/trackd/internal/spool"
)

func TestHoldback(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := func(off int64) spool.Position { return spool.Position{Seq: 1, Offset: off} }
	none := holdback{}
	none.settled(t0, p(10))
	if got := none.durable(t0, p(10), p(0)); got != p(10) {
		t.Fatalf("no holdback: %v, want the acked position", got)
	}

	h := holdback{d: time.Second}
	h.settled(t0, p(10))
	h.settled(t0.Add(300*time.Millisecond), p(20))
	h.settled(t0.Add(600*time.Millisecond), p(30))
	if got := h.durable(t0.Add(900*time.Millisecond), p(30), p(0)); got != p(0) {
		t.Fatalf("nothing a second old: %v, want the saved position", got)
	}
	if w := h.pending(t0.Add(900 * time.Millisecond)); w != 700*time.Millisecond {
		t.Fatalf("pending %v, want 700ms", w)
	}
	if got := h.durable(t0.Add(1400*time.Millisecond), p(30), p(0)); got != p(20) {
		t.Fatalf("after 1.4s: %v, want the position settled 1.1s ago", got)
	}
	// Skipping records for other destinations moved acked past the last
	// mark: once every mark is old enough, acked itself is durable.
	if got := h.durable(t0.Add(2*time.Second), p(45), p(20)); got != p(45) {
		t.Fatalf("after 2s: %v, want acked", got)
	}
	if w := h.pending(t0.Add(2 * time.Second)); w != 0 {
		t.Fatalf("pending %v with nothing held", w)
	}
}
