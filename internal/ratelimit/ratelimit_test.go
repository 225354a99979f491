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

// TestEmptyBucketsSurviveEviction: a client whose bucket is empty cannot
// clear it by filling the limiter with other keys.
func TestEmptyBucketsSurviveEviction(t *testing.T) {
	l := New(1, 3, 10)
	t0 := time.Unix(1000, 0)
	for range 3 {
		l.Allow("attacker", t0)
	}
	for i := range 1000 {
		l.Allow(fmt.Sprint("other", i), t0) // one token each: fuller than the attacker's
	}
	if ok, _ := l.Allow("attacker", t0); ok {
		t.Fatal("the empty bucket was evicted")
	}
}

func TestRefund(t *testing.T) {
	l := New(1, 2, 0)
	t0 := time.Unix(1000, 0)
	l.Allow("a", t0)
	l.Allow("a", t0)
	l.Refund("a")
	l.Refund("a")
	l.Refund("a") // not past the burst
	for i := range 2 {
		if ok, _ := l.Allow("a", t0); !ok {
			t.Fatalf("token %d refunded but refused", i)
		}
	}
	if ok, _ := l.Allow("a", t0); ok {
		t.Fatal("refunds went past the burst")
	}
}
