package httpsink

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfterError is the transient error of a Send made while the receiver's
// Retry-After pause runs and ctx cannot wait for its end: nothing was sent.
type RetryAfterError struct {
	// Until is when the pause ends.
	Until time.Time
	// Delay is how long the pause still ran when the error was made.
	Delay time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("httpsink: not sent: the receiver asked to wait %s more (Retry-After)", e.Delay.Round(time.Millisecond))
}

// RetryAfter returns how long the receiver asked to wait, as of the error.
// A forwarder may wait at least that long before its next try.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.Delay }

// parseRetryAfter parses a Retry-After value, delay-seconds or an HTTP
// date, relative to now. It returns the delay, capped at MaxRetryAfter and
// never negative, and whether v was valid.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && allDigits(v) {
				return MaxRetryAfter, true
			}
			return 0, false
		}
		if n >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	return min(max(d, 0), MaxRetryAfter), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// notePause starts (or extends) a pause from a response's Retry-After.
func (s *Sink) notePause(v string, code int) {
	if v == "" {
		return
	}
	now := time.Now()
	d, ok := parseRetryAfter(v, now)
	if !ok {
		s.log.Warn("httpsink: ignoring an invalid Retry-After", "status", code, "retry_after", v)
		return
	}
	if d <= 0 {
		return
	}
	until := now.Add(d)
	s.mu.Lock()
	if until.After(s.notBefore) {
		s.notBefore = until
	}
	log := !s.pauseNoted
	s.pauseNoted = true
	s.mu.Unlock()
	if log {
		s.log.Warn("httpsink: the receiver asked trackd to wait (Retry-After); pausing", "status", code, "delay", d)
	}
}

// waitPause waits until the pause ends, if one runs and ctx allows (see the
// package comment); otherwise it returns a *RetryAfterError at once.
func (s *Sink) waitPause(ctx context.Context) error {
	s.mu.Lock()
	until := s.notBefore
	s.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
		return &RetryAfterError{Until: until, Delay: d}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.done, cancel)
	defer stop()
	if err := sleepCtx(wctx, d); err != nil {
		if s.done.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("httpsink: waiting out Retry-After: %w", err)
	}
	return nil
}
