package httpsink

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"300", 5 * time.Minute, true},
		{"301", MaxRetryAfter, true},
		{"86400", MaxRetryAfter, true},
		{"99999999999999999999999", MaxRetryAfter, true},
		{now.Add(45 * time.Second).Format(http.TimeFormat), 45 * time.Second, true},
		{now.Add(time.Hour).Format(http.TimeFormat), MaxRetryAfter, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Saturday, 01-Mar-25 12:00:30 GMT", 30 * time.Second, true}, // RFC 850
		{"Sat Mar  1 12:00:10 2025", 10 * time.Second, true},         // asctime
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"10s", 0, false},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// synctestSink returns a sink whose requests rc serves in memory, for a
// synctest bubble (the fake clock only advances while every goroutine of
// the bubble waits, which loopback network I/O is not).
func synctestSink(t *testing.T, rc *receiver, opts Options) *Sink {
	s := newSink(t, "http://receiver.test/events", opts)
	s.client.Transport = handlerTransport{rc}
	return s
}

// TestRetryAfterPausesTheSink: after a Retry-After, no request leaves
// before the pause ends; a Send waits for it when its context allows, and
// otherwise fails at once without contacting the receiver.
func TestRetryAfterPausesTheSink(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter func(now time.Time) string
		pause      time.Duration
	}{
		{"seconds", func(time.Time) string { return "30" }, 30 * time.Second},
		{"HTTP date", func(now time.Time) string { return now.Add(45 * time.Second).UTC().Format(http.TimeFormat) }, 45 * time.Second},
		{"capped", func(time.Time) string { return "86400" }, MaxRetryAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				rc := &receiver{answer: func(w http.ResponseWriter, n int, _ request) int {
					if n == 0 {
						w.Header().Set("Retry-After", tc.retryAfter(start))
						return http.StatusTooManyRequests
					}
					return http.StatusOK
				}}
				s := synctestSink(t, rc, Options{})
				recs := testRecords(0, 3)

				if errs := s.Send(context.Background(), recs); outcome(errs[0]) != "transient" {
					t.Fatalf("429: %v", errs[0])
				}
				// A context that ends before the pause does: nothing sent,
				// at once.
				ctx, cancel := context.WithTimeout(context.Background(), tc.pause-time.Second)
				errs := s.Send(ctx, recs)
				cancel()
				var ra *RetryAfterError
				if !errors.As(errs[2], &ra) || ra.RetryAfter() != tc.pause || outcome(errs[2]) != "transient" {
					t.Fatalf("during the pause: %v, want a RetryAfterError of %s", errs[2], tc.pause)
				}
				if n := len(rc.requests()); n != 1 || time.Since(start) != 0 {
					t.Fatalf("during the pause: %d requests after %s, want 1 at once", n, time.Since(start))
				}
				// A context that can wait: the POST leaves when the pause
				// ends.
				if errs := s.Send(context.Background(), recs); !allNil(errs) {
					t.Fatalf("after the pause: %v", errs)
				}
				if d := time.Since(start); d != tc.pause {
					t.Errorf("sent after %s, want %s", d, tc.pause)
				}
				if n := len(rc.requests()); n != 2 {
					t.Errorf("%d requests, want 2", n)
				}
			})
		})
	}
}

func TestRetryAfterZeroAndInvalidDoNotPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		values := []string{"0", "soon", "-1"}
		rc := &receiver{answer: func(w http.ResponseWriter, n int, _ request) int {
			if n < len(values) {
				w.Header().Set("Retry-After", values[n])
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		}}
		var logs logBuffer
		s := synctestSink(t, rc, Options{Logger: logs.logger()})
		start := time.Now()
		for i := range values {
			if errs := s.Send(context.Background(), testRecords(0, 1)); outcome(errs[0]) != "transient" {
				t.Fatalf("Retry-After %q: %v", values[i], errs[0])
			}
		}
		if errs := s.Send(context.Background(), testRecords(0, 1)); errs[0] != nil {
			t.Fatal(errs[0])
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("waited %s", d)
		}
		if n := len(logs.lines("WARN")); n != 2 {
			t.Errorf("%d warnings, want 2 (the invalid values)\n%s", n, logs.String())
		}
	})
}

func TestCloseEndsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := &receiver{answer: func(w http.ResponseWriter, _ int, _ request) int {
			w.Header().Set("Retry-After", "60")
			return http.StatusServiceUnavailable
		}}
		s := synctestSink(t, rc, Options{})
		s.Send(context.Background(), testRecords(0, 1))
		done := make(chan []error)
		go func() { done <- s.Send(context.Background(), testRecords(0, 2)) }()
		synctest.Wait() // the Send waits out the pause
		s.Close()
		if errs := <-done; !errors.Is(errs[0], ErrClosed) || !errors.Is(errs[1], ErrClosed) {
			t.Errorf("errs %v", errs)
		}
		if n := len(rc.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

// TestTimeoutBoundsEachRequest: a receiver that never answers costs exactly
// one Timeout per Send (the first request fails; the rest are not sent).
func TestTimeoutBoundsEachRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSink(t, "http://receiver.test/events", Options{MaxBatch: 2, Timeout: 10 * time.Second})
		s.client.Transport = blockingTransport{}
		start := time.Now()
		errs := s.Send(context.Background(), testRecords(0, 4))
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("Send returned after %s, want 10s", d)
		}
		if !errors.Is(errs[0], context.DeadlineExceeded) || !errors.Is(errs[2], errNotSent) {
			t.Errorf("errs %v", errs)
		}
	})
}

// blockingTransport never answers: it waits for the request's context.
type blockingTransport struct{}

func (blockingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	<-req.Context().Done()
	return nil, req.Context().Err()
}
