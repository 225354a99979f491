package httpsink

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

// TestConformance runs the shared sink suite against an httptest receiver
// that stores events deduplicated by their id, as a receiver honouring the
// sink's idempotency contract does. It runs in both modes.
func TestConformance(t *testing.T) {
	for _, mode := range []string{ModeBatch, ModeSingle} {
		t.Run(mode, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) *sinktest.Backend {
				b := &outageReceiver{}
				b.answer = b.decide
				srv := b.start(t)
				return &sinktest.Backend{
					NewSink: func(t *testing.T) sink.Sink {
						// MaxBatch below the forwarder's batch of 64: a Send
						// makes several POSTs.
						return newSink(t, srv.URL, Options{Mode: mode, MaxBatch: 20, Timeout: 5 * time.Second,
							Headers: map[string]string{"Authorization": "Bearer conformance-token"}})
					},
					Received: func(t *testing.T) []sinktest.Message { return b.received() },
					Outage: func(t *testing.T) func() {
						b.setDown(true)
						return func() { b.setDown(false) }
					},
					Poison: func() spool.Record {
						return spool.Record{
							ID: "01JD00000000000000POISON00", Workspace: "site0", Op: "poison",
							ReceivedAt: time.Unix(1_700_000_000, 0).UnixNano(),
							Meta:       []spool.KV{{Key: "region", Value: "us"}},
							Body:       []byte(`{"name":"poison"}`),
						}
					},
				}
			})
		})
	}
}

// outageReceiver is a receiver that can be down, and refuses (400) any
// request carrying an event of type io.customer.track.poison.
type outageReceiver struct {
	receiver
	mu   sync.Mutex // guards down, downN
	down bool
	// downN counts requests answered while down: they alternate between
	// a 503 with Retry-After: 1 and a connection closed without an answer.
	downN int
}

func (b *outageReceiver) setDown(v bool) {
	b.mu.Lock()
	b.down = v
	b.mu.Unlock()
}

func (b *outageReceiver) decide(w http.ResponseWriter, _ int, req request) int {
	b.mu.Lock()
	down, n := b.down, b.downN
	if down {
		b.downN++
	}
	b.mu.Unlock()
	if down {
		if n%2 == 1 {
			hangUp(w)
			return 0
		}
		w.Header().Set("Retry-After", "1")
		return http.StatusServiceUnavailable
	}
	if req.Header.Get("Authorization") != "Bearer conformance-token" {
		return http.StatusUnauthorized
	}
	for _, m := range req.Events {
		if m.Attr["type"] == envelope.TypePrefix+"poison" {
			return http.StatusBadRequest
		}
	}
	return http.StatusOK
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}
