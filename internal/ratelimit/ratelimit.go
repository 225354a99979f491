// Package ratelimit is a set of token buckets, one per key (a workspace, a
// client IP). One key running dry never affects another, and the set's
// memory is bounded however many keys clients make up.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Limiter is a set of token buckets sharing one rate and burst. Its
// methods are safe for concurrent use.
type Limiter struct {
	rate    float64 // tokens per second
	burst   float64
	maxKeys int

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// DefaultMaxKeys bounds a Limiter's buckets when New is given 0.
const DefaultMaxKeys = 100_000

// New returns a limiter allowing rate tokens per second per key, with
// bursts of burst (0: one second's worth, at least 1). It keeps at most
// maxKeys buckets (0: DefaultMaxKeys): beyond that, buckets that have
// refilled are dropped first (a new bucket behaves the same), then
// arbitrary ones, which only makes the limiter more lenient for a moment.
func New(rate float64, burst, maxKeys int) *Limiter {
	b := float64(burst)
	if b <= 0 {
		b = math.Max(1, math.Ceil(rate))
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Limiter{rate: rate, burst: b, maxKeys: maxKeys, buckets: make(map[string]*bucket)}
}

// Allow takes one token from key's bucket. If none is left it returns
// false and how long until one is.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refillLocked(key, now, true)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, l.waitLocked(b)
}

// Wait returns how long until key's bucket holds a token (0: it holds one
// now), without taking it.
func (l *Limiter) Wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refillLocked(key, now, false)
	if b == nil || b.tokens >= 1 {
		return 0
	}
	return l.waitLocked(b)
}

func (l *Limiter) waitLocked(b *bucket) time.Duration {
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// refillLocked returns key's bucket brought up to now, creating it if
// create is set (else nil when it has none).
func (l *Limiter) refillLocked(key string, now time.Time, create bool) *bucket {
	b := l.buckets[key]
	if b == nil {
		if !create {
			return nil
		}
		if len(l.buckets) >= l.maxKeys {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(l.burst, b.tokens+dt*l.rate)
		b.last = now
	}
	return b
}

// pruneLocked makes room for one more bucket: it drops the buckets that
// have refilled completely, and if none had, the fullest one, so that a
// client cannot clear its own empty bucket by making up other keys.
func (l *Limiter) pruneLocked(now time.Time) {
	fullest, most := "", -1.0
	for k, b := range l.buckets {
		t := b.tokens + now.Sub(b.last).Seconds()*l.rate
		if t >= l.burst {
			delete(l.buckets, k)
		} else if t > most {
			fullest, most = k, t
		}
	}
	if len(l.buckets) >= l.maxKeys {
		delete(l.buckets, fullest)
	}
}

// Refund gives back a token Allow took (say the request it paid for
// turned out not to count), up to the burst.
func (l *Limiter) Refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[key]; b != nil {
		b.tokens = math.Min(l.burst, b.tokens+1)
	}
}

// Len returns how many buckets the limiter holds.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
