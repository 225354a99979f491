package kafka

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

// testCtx is bounded so that a hang fails the test instead of stalling the
// run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newCluster starts a one-broker kfake cluster, closed at the end of the
// test.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// adminClient is a plain client for setting up and inspecting topics.
func adminClient(t testing.TB, brokers []string, opts ...kgo.Opt) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// createTopic creates a topic as an operator would.
func createTopic(t testing.TB, brokers []string, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = &v
	}
	if _, err := adminClient(t, brokers).CreateTopic(testCtx(t), partitions, 1, cfg, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// newSink returns a sink on brokers with opts, closed at the end of the
// test.
func newSink(t testing.TB, brokers []string, opts Options) *Sink {
	t.Helper()
	opts.Brokers = brokers
	s, err := New(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readTopic returns every record the topic holds: each partition in
// offset order, partitions in turn. It reads from the start up to the end
// offsets listed when it starts.
func readTopic(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx := testCtx(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{} // partition -> end offset still to reach
	var parts []int32
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		parts = append(parts, o.Partition)
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	byPart := map[int32][]*kgo.Record{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		for _, e := range fs.Errors() {
			t.Fatalf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			byPart[r.Partition] = append(byPart[r.Partition], r)
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	slices.Sort(parts)
	var all []*kgo.Record
	for _, p := range parts {
		all = append(all, byPart[p]...)
	}
	return all
}

// header returns the value of the record's header k, and whether it has
// one.
func header(r *kgo.Record, k string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

// wantHeaders are the headers a record's Kafka record must carry, in
// order.
func wantHeaders(r *spool.Record) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	for _, a := range envelope.Attributes(r) {
		hs = append(hs, kgo.RecordHeader{Key: "ce_" + a.Name, Value: []byte(a.Value)})
	}
	if len(r.Body) > 0 {
		hs = append(hs, kgo.RecordHeader{Key: "content-type", Value: []byte("application/json")})
	}
	return hs
}

// sendAll sends recs and fails the test on any error.
func sendAll(t testing.TB, s *Sink, recs []spool.Record) {
	t.Helper()
	for i, err := range s.Send(testCtx(t), recs) {
		if err != nil {
			t.Fatalf("record %d (%s): %v", i, recs[i].ID, err)
		}
	}
}

// sendUntilDone sends recs as the forwarder does: after a transient
// failure it resends from the first failed record, up to 5 times. (The
// first Send after an outage may fail once: records of a Send that gave up
// during the outage are failed by the client when the broker returns, with
// the records queued behind them in their partition.)
func sendUntilDone(t testing.TB, s *Sink, recs []spool.Record) {
	t.Helper()
	for attempt := 1; len(recs) > 0; attempt++ {
		first := -1
		for i, err := range s.Send(testCtx(t), recs) {
			if err != nil {
				first = i
				if attempt == 5 {
					t.Fatalf("record %s: %v", recs[i].ID, err)
				}
				t.Logf("attempt %d: record %s: %v", attempt, recs[i].ID, err)
				break
			}
		}
		if first < 0 {
			return
		}
		recs = recs[first:]
	}
}

// testRecords returns the shared sink test records, with a user agent that
// starts and ends with spaces: Kafka headers keep them (NATS would not).
func testRecords(first, n int) []spool.Record {
	recs := sinktest.Records(first, n)
	for i := range recs {
		for j := range recs[i].Meta {
			if recs[i].Meta[j].Key == "user_agent" {
				recs[i].Meta[j].Value = " " + recs[i].Meta[j].Value + " "
			}
		}
	}
	return recs
}
