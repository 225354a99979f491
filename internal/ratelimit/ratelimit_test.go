package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestAllowAndWait(t *testing.T) {
	l := New(2, 3, 0) // 2 per second, bursts of 3
	t0 := time.Unix(1000, 0)
	if w := l.Wait("a", t0); w != 0 {
		t.Fatalf("Wait on an unknown key = %v, want 0", w)
	}
	for i := range 3 {
		if ok, _ := l.Allow("a", t0); !ok {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: %v, %v; want refused, 500ms", ok, wait)
	}
	if w := l.Wait("a", t0.Add(200*time.Millisecond)); w != 300*time.Millisecond {
		t.Fatalf("Wait = %v, want 300ms", w)
	}
	if ok, _ := l.Allow("b", t0); !ok {
		t.Fatal("another key is limited too")
	}
	if ok, _ := l.Allow("a", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after the refill")
	}
}

// TestKeysBounded: made-up keys (client IPs) cannot grow the limiter past
// its bound, even when every bucket is in use.
func TestKeysBounded(t *testing.T) {
	l := New(1, 1, 100)
	t0 := time.Unix(1000, 0)
	for i := range 10_000 {
		l.Allow(fmt.Sprint("ip", i), t0) // each bucket now empty
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("%d buckets, bound 100", n)
	}
}
