package jetstream

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

// TestConformance runs the shared sink suite against an embedded server.
func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) *sinktest.Backend {
		b := &backend{dir: t.TempDir()}
		b.e = startEmbedded(t, b.dir, "")
		b.listen, b.url = b.e.Addr().String(), b.e.ClientURL()
		// The operator's stream takes messages up to 64 KiB: the poison
		// record is over it.
		if _, err := rawJS(t, b.url).CreateStream(testCtx(t), natsjs.StreamConfig{
			Name: DefaultStream, Subjects: []string{"trackd.>"}, MaxMsgSize: 64 << 10, Storage: natsjs.FileStorage,
		}); err != nil {
			t.Fatal(err)
		}
		return &sinktest.Backend{
			NewSink: func(t *testing.T) sink.Sink {
				s, err := New(testCtx(t), Options{URL: b.url})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Received: b.received,
			Outage:   b.outage,
			Poison: func() spool.Record {
				// Over the stream's max message size: never storable.
				return spool.Record{
					ID: "01JD00000000000000POISON00", Workspace: "site0", Op: "v1.event",
					ReceivedAt: time.Unix(1_700_000_000, 0).UnixNano(),
					Meta:       []spool.KV{{Key: "region", Value: "us"}},
					Body:       fmt.Appendf(nil, `{"name":%q}`, strings.Repeat("x", 100<<10)),
				}
			},
		}
	})
}

// backend is one embedded server, restartable on the same store and port.
type backend struct {
	dir, listen, url string

	mu sync.Mutex
	e  *Embedded // guarded by mu
}

func (b *backend) received(t *testing.T) []sinktest.Message {
	var msgs []sinktest.Message
	for _, m := range readStream(t, b.url, DefaultStream) {
		attr := map[string]string{}
		for k, v := range m.Header {
			if name, ok := strings.CutPrefix(k, "ce-"); ok {
				attr[name] = v[0]
			}
		}
		msgs = append(msgs, sinktest.Message{
			ID: m.Header.Get("Nats-Msg-Id"), Key: m.Subject, Body: m.Data, Attr: attr,
		})
	}
	return msgs
}

func (b *backend) outage(t *testing.T) (restore func()) {
	b.mu.Lock()
	b.e.Shutdown()
	b.mu.Unlock()
	return func() {
		e := startEmbedded(t, b.dir, b.listen)
		b.mu.Lock()
		b.e = e
		b.mu.Unlock()
	}
}
