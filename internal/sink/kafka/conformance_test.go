package kafka

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

// TestConformance runs the shared sink suite against a kfake cluster.
func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) *sinktest.Backend {
		c := newCluster(t)
		brokers := c.ListenAddrs()
		// The operator's topic: 3 partitions, messages up to 64 KiB (the
		// poison record is over it).
		createTopic(t, brokers, DefaultTopic, 3, map[string]string{"max.message.bytes": "65536"})
		return &sinktest.Backend{
			NewSink: func(t *testing.T) sink.Sink {
				// A short produce timeout: during the outage each Send
				// fails within it, and the suite sees the retries soon.
				return newSink(t, brokers, Options{ProduceTimeout: time.Second})
			},
			Received: func(t *testing.T) []sinktest.Message { return received(t, brokers) },
			Outage: func(t *testing.T) (restore func()) {
				// Every produce is refused with a retriable error, as by a
				// partition that lost its in-sync replicas; fetches work.
				f := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
				return f.Remove
			},
			Poison: func() spool.Record {
				// Over the topic's max.message.bytes: never storable.
				return spool.Record{
					ID: "01JD00000000000000POISON00", Workspace: "site0", Op: "v1.event",
					ReceivedAt: time.Unix(1_700_000_000, 0).UnixNano(),
					Meta:       []spool.KV{{Key: "region", Value: "us"}, {Key: "identifier", Value: "person-1"}},
					Body:       fmt.Appendf(nil, `{"name":%q}`, strings.Repeat("x", 100<<10)),
				}
			},
		}
	})
}

// received reads the topic as a consumer would, deduplicating by ce_id:
// Kafka stores a resend again (see the package comment), and the
// documented consumer-side dedup keeps the first copy. The raw count is
// logged.
func received(t *testing.T, brokers []string) []sinktest.Message {
	raw := readTopic(t, brokers, DefaultTopic)
	seen := make(map[string]bool, len(raw))
	var msgs []sinktest.Message
	for _, r := range raw {
		attr := map[string]string{}
		for _, h := range r.Headers {
			if name, ok := strings.CutPrefix(h.Key, "ce_"); ok {
				attr[name] = string(h.Value)
			}
		}
		id := attr["id"]
		if seen[id] {
			continue
		}
		seen[id] = true
		msgs = append(msgs, sinktest.Message{ID: id, Key: string(r.Key), Body: r.Value, Attr: attr})
	}
	t.Logf("topic holds %d records, %d after dedup by ce_id", len(raw), len(msgs))
	return msgs
}
