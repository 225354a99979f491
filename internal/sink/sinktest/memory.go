package sinktest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

// Memory is a reference back end in memory: it deduplicates by record ID
// like JetStream, can be taken down, and refuses records whose operation is
// "poison".
type Memory struct {
	mu   sync.Mutex // guards the fields below
	msgs []Message
	seen map[string]bool
	down bool
}

// NewMemory returns an empty Memory back end.
func NewMemory() *Memory { return &Memory{seen: map[string]bool{}} }

// Backend returns the suite's view of m.
func (m *Memory) Backend(t *testing.T) *Backend {
	return &Backend{
		NewSink: func(t *testing.T) sink.Sink { return memorySink{m} },
		Received: func(t *testing.T) []Message {
			m.mu.Lock()
			defer m.mu.Unlock()
			return append([]Message(nil), m.msgs...)
		},
		Outage: func(t *testing.T) func() {
			m.setDown(true)
			return func() { m.setDown(false) }
		},
		Poison: func() spool.Record {
			return spool.Record{ID: "01JDPOISON0000000000000000", Workspace: "site0", Op: "poison", Body: []byte(`{}`)}
		},
	}
}

func (m *Memory) setDown(v bool) {
	m.mu.Lock()
	m.down = v
	m.mu.Unlock()
}

// errDown is the transient error of a Memory back end that is down.
var errDown = errors.New("memory back end is down")

type memorySink struct{ m *Memory }

func (s memorySink) Name() string { return "memory" }
func (s memorySink) Close() error { return nil }

func (s memorySink) Send(ctx context.Context, recs []spool.Record) []error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	errs := make([]error, len(recs))
	for i := range recs {
		r := &recs[i]
		switch {
		case ctx.Err() != nil:
			errs[i] = ctx.Err()
		case m.down:
			errs[i] = errDown
		case r.Op == "poison":
			errs[i] = sink.Permanent(errors.New("poison record"))
		case m.seen[r.ID]:
			// A resend: deduplicated, acknowledged.
		default:
			m.seen[r.ID] = true
			attr := map[string]string{}
			for _, a := range envelope.Attributes(r) {
				attr[a.Name] = a.Value
			}
			m.msgs = append(m.msgs, Message{ID: r.ID, Key: envelope.PartitionKey(r), Body: append([]byte(nil), r.Body...), Attr: attr})
		}
	}
	return errs
}
