package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

func TestRecordMapping(t *testing.T) {
	base := spool.Record{
		ID: "01JD0000000000000000000042", Workspace: "46be54768e7d49ab2628", Op: "v1.identify",
		ReceivedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano(),
	}
	for _, tc := range []struct {
		name        string
		op          string
		meta        []spool.KV
		body        []byte
		wantKey     string
		wantHeaders []kgo.RecordHeader
	}{
		{
			name: "v1 person path",
			meta: []spool.KV{{Key: "region", Value: "eu"}, {Key: "api", Value: "v1"}, {Key: "identifier", Value: "cio_03000001"},
				{Key: "user_agent", Value: " ua\twith tabs "}, {Key: "client_ip", Value: "192.0.2.7"}},
			body:    []byte(`{"email": "a@example.com" }`),
			wantKey: "46be54768e7d49ab2628/cio_03000001",
			wantHeaders: []kgo.RecordHeader{
				{Key: "ce_id", Value: []byte("01JD0000000000000000000042")},
				{Key: "ce_source", Value: []byte("/trackd/eu/46be54768e7d49ab2628")},
				{Key: "ce_specversion", Value: []byte("1.0")},
				{Key: "ce_type", Value: []byte("io.customer.track.v1.identify")},
				{Key: "ce_time", Value: []byte("2025-01-02T03:04:05.000000006Z")},
				{Key: "ce_subject", Value: []byte("cio_03000001")},
				{Key: "ce_datacontenttype", Value: []byte("application/json")},
				{Key: "ce_workspace", Value: []byte("46be54768e7d49ab2628")},
				{Key: "ce_operation", Value: []byte("v1.identify")},
				{Key: "ce_region", Value: []byte("eu")},
				{Key: "ce_apiversion", Value: []byte("v1")},
				{Key: "ce_identifier", Value: []byte("cio_03000001")},
				{Key: "ce_useragent", Value: []byte(" ua\twith tabs ")}, // byte for byte
				{Key: "ce_clientip", Value: []byte("192.0.2.7")},
				{Key: "content-type", Value: []byte("application/json")},
			},
		},
		{
			name:    "v2 identifiers",
			op:      "v2.person.event",
			meta:    []spool.KV{{Key: "region", Value: "us"}, {Key: "identifiers", Value: `{"id":"u1"}`}, {Key: "batch_index", Value: "3"}},
			body:    []byte(`{"type":"person"}`),
			wantKey: `46be54768e7d49ab2628/{"id":"u1"}`,
			wantHeaders: []kgo.RecordHeader{
				{Key: "ce_id", Value: []byte("01JD0000000000000000000042")},
				{Key: "ce_source", Value: []byte("/trackd/us/46be54768e7d49ab2628")},
				{Key: "ce_specversion", Value: []byte("1.0")},
				{Key: "ce_type", Value: []byte("io.customer.track.v2.person.event")},
				{Key: "ce_time", Value: []byte("2025-01-02T03:04:05.000000006Z")},
				{Key: "ce_subject", Value: []byte(`{"id":"u1"}`)},
				{Key: "ce_datacontenttype", Value: []byte("application/json")},
				{Key: "ce_workspace", Value: []byte("46be54768e7d49ab2628")},
				{Key: "ce_operation", Value: []byte("v2.person.event")},
				{Key: "ce_region", Value: []byte("us")},
				{Key: "ce_identifiers", Value: []byte(`{"id":"u1"}`)},
				{Key: "ce_batchindex", Value: []byte("3")},
				{Key: "content-type", Value: []byte("application/json")},
			},
		},
		{
			name:    "no subject: keyed by record ID",
			op:      "v1.metric",
			meta:    []spool.KV{{Key: "region", Value: "us"}},
			body:    []byte(`{}`),
			wantKey: "46be54768e7d49ab2628/01JD0000000000000000000042",
			wantHeaders: []kgo.RecordHeader{
				{Key: "ce_id", Value: []byte("01JD0000000000000000000042")},
				{Key: "ce_source", Value: []byte("/trackd/us/46be54768e7d49ab2628")},
				{Key: "ce_specversion", Value: []byte("1.0")},
				{Key: "ce_type", Value: []byte("io.customer.track.v1.metric")},
				{Key: "ce_time", Value: []byte("2025-01-02T03:04:05.000000006Z")},
				{Key: "ce_datacontenttype", Value: []byte("application/json")},
				{Key: "ce_workspace", Value: []byte("46be54768e7d49ab2628")},
				{Key: "ce_operation", Value: []byte("v1.metric")},
				{Key: "ce_region", Value: []byte("us")},
				{Key: "content-type", Value: []byte("application/json")},
			},
		},
		{
			name:    "no body: empty value, no content type",
			op:      "v1.delete",
			meta:    []spool.KV{{Key: "region", Value: "us"}, {Key: "identifier", Value: "p1"}},
			wantKey: "46be54768e7d49ab2628/p1",
			wantHeaders: []kgo.RecordHeader{
				{Key: "ce_id", Value: []byte("01JD0000000000000000000042")},
				{Key: "ce_source", Value: []byte("/trackd/us/46be54768e7d49ab2628")},
				{Key: "ce_specversion", Value: []byte("1.0")},
				{Key: "ce_type", Value: []byte("io.customer.track.v1.delete")},
				{Key: "ce_time", Value: []byte("2025-01-02T03:04:05.000000006Z")},
				{Key: "ce_subject", Value: []byte("p1")},
				{Key: "ce_workspace", Value: []byte("46be54768e7d49ab2628")},
				{Key: "ce_operation", Value: []byte("v1.delete")},
				{Key: "ce_region", Value: []byte("us")},
				{Key: "ce_identifier", Value: []byte("p1")},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			if tc.op != "" {
				r.Op = tc.op
			}
			r.Meta, r.Body = tc.meta, tc.body
			kr := record("events", &r)
			if kr.Topic != "events" {
				t.Errorf("topic %q", kr.Topic)
			}
			if string(kr.Key) != tc.wantKey || string(kr.Key) != envelope.PartitionKey(&r) {
				t.Errorf("key %q, want %q", kr.Key, tc.wantKey)
			}
			if kr.Value == nil || !bytes.Equal(kr.Value, tc.body) {
				t.Errorf("value %q (nil: %v), want %q, never nil", kr.Value, kr.Value == nil, tc.body)
			}
			if diff := cmp.Diff(tc.wantHeaders, kr.Headers); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantHeaders(&r), kr.Headers); diff != "" {
				t.Errorf("headers differ from the envelope's attributes (-want +got):\n%s", diff)
			}
		})
	}
}

// checkTopic checks that the topic holds exactly want, each record byte for
// byte as the package comment describes, each key in one partition, each
// partition in the order of want, and each partition chosen by murmur2 of
// the key, as the Java client would.
func checkTopic(t *testing.T, brokers []string, topic string, partitions int, want []spool.Record) {
	t.Helper()
	got := readTopic(t, brokers, topic)
	if len(got) != len(want) {
		t.Fatalf("topic holds %d records, want %d", len(got), len(want))
	}
	pos := map[string]int{}
	for i := range want {
		pos[want[i].ID] = i
	}
	hasher := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	last := map[int32]int{}
	for _, m := range got {
		id, _ := header(m, "ce_id")
		i, ok := pos[id]
		if !ok {
			t.Fatalf("unexpected record %q", id)
		}
		r := &want[i]
		if string(m.Key) != envelope.PartitionKey(r) {
			t.Errorf("record %s: key %q, want %q", id, m.Key, envelope.PartitionKey(r))
		}
		if !bytes.Equal(m.Value, r.Body) {
			t.Errorf("record %s: value %q, want %q", id, m.Value, r.Body)
		}
		if diff := cmp.Diff(wantHeaders(r), m.Headers); diff != "" {
			t.Errorf("record %s: headers (-want +got):\n%s", id, diff)
		}
		if p := int32(hasher.Partition(m, partitions)); p != m.Partition {
			t.Errorf("record %s (key %q) in partition %d, murmur2 says %d", id, m.Key, m.Partition, p)
		}
		if prev, ok := last[m.Partition]; ok && i < prev {
			t.Errorf("partition %d: record %s after a later one", m.Partition, id)
		}
		last[m.Partition] = i
	}
}

func TestSendBatch(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	s := newSink(t, brokers, Options{CreateTopic: true, Partitions: 4})
	if s.partitions != 4 || s.MaxMessageBytes() != 1048588 {
		t.Errorf("partitions %d, max message bytes %d", s.partitions, s.MaxMessageBytes())
	}
	recs := testRecords(0, 500)
	sendAll(t, s, recs)
	checkTopic(t, brokers, DefaultTopic, 4, recs)
	if got, want := s.Stats(), (Stats{Stored: 500}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestSendEmpty(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, DefaultTopic))
	s := newSink(t, c.ListenAddrs(), Options{})
	if errs := s.Send(testCtx(t), nil); len(errs) != 0 {
		t.Fatalf("Send(nil) = %v", errs)
	}
}

// TestSendConcurrent runs several Sends at once on a small buffer, to
// another topic under another name.
func TestSendConcurrent(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(5, "acme.events"))
	brokers := c.ListenAddrs()
	s := newSink(t, brokers, Options{Topic: "acme.events", Name: "kafka-eu", MaxBufferedRecords: 7})
	if s.Name() != "kafka-eu" || s.Topic() != "acme.events" {
		t.Errorf("Name %q Topic %q", s.Name(), s.Topic())
	}
	recs := testRecords(0, 400)
	done := make(chan []error, 4)
	for g := range 4 {
		go func() { done <- s.Send(testCtx(t), recs[g*100:(g+1)*100]) }()
	}
	for range 4 {
		for i, err := range <-done {
			if err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}
	if got := readTopic(t, brokers, "acme.events"); len(got) != len(recs) {
		t.Fatalf("topic holds %d records, want %d", len(got), len(recs))
	}
}

// TestSendResend checks what the package comment says of dedup: Kafka
// stores a resend again, after the first copy in the same partition, so
// a consumer keeping the first copy of each ce_id sees every record once,
// in order.
func TestSendResend(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(3, DefaultTopic))
	brokers := c.ListenAddrs()
	s := newSink(t, brokers, Options{})
	recs := testRecords(0, 200)
	sendAll(t, s, recs[:150])
	sendAll(t, s, recs)
	raw := readTopic(t, brokers, DefaultTopic)
	if len(raw) != 350 {
		t.Fatalf("topic holds %d records, want 350", len(raw))
	}
	seen := map[string]bool{}
	var firsts []spool.Record
	pos := map[string]int{}
	for i := range recs {
		pos[recs[i].ID] = i
	}
	for _, m := range raw {
		id, _ := header(m, "ce_id")
		if !seen[id] {
			seen[id] = true
			firsts = append(firsts, recs[pos[id]])
		}
	}
	if len(firsts) != len(recs) {
		t.Fatalf("%d distinct records, want %d", len(firsts), len(recs))
	}
	// Per key, the first copies are in spool order.
	last := map[string]int{}
	for i := range firsts {
		k := envelope.PartitionKey(&firsts[i])
		if p, ok := last[k]; ok && pos[firsts[i].ID] < p {
			t.Fatalf("key %s: record %s after a later one", k, firsts[i].ID)
		}
		last[k] = pos[firsts[i].ID]
	}
}

func TestSendTooLarge(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	createTopic(t, brokers, DefaultTopic, 2, map[string]string{"max.message.bytes": "4096"})
	s := newSink(t, brokers, Options{})
	if s.MaxMessageBytes() != 4096 {
		t.Fatalf("MaxMessageBytes = %d, want the topic's 4096", s.MaxMessageBytes())
	}
	recs := testRecords(0, 30)
	big := recs[10]
	big.ID = "01JD0000000000000000BIG001"
	big.Body = fmt.Appendf(nil, `{"name":%q}`, strings.Repeat("x", 5000))
	recs = append(recs[:11], append([]spool.Record{big}, recs[11:]...)...)
	errs := s.Send(testCtx(t), recs)
	for i, err := range errs {
		switch {
		case i == 11:
			if !sink.IsPermanent(err) || !errors.Is(err, kerr.MessageTooLarge) {
				t.Errorf("record over max.message.bytes: %v, want permanent MESSAGE_TOO_LARGE", err)
			}
		case err != nil:
			t.Errorf("record %d (same key as the big one: %v): %v", i, envelope.PartitionKey(&recs[i]) == envelope.PartitionKey(&big), err)
		}
	}
	t.Log(errs[11])
	want := append(recs[:11:11], recs[12:]...)
	checkTopic(t, brokers, DefaultTopic, 2, want)
	if got := s.Stats(); got != (Stats{Stored: 30, Permanent: 1}) {
		t.Errorf("Stats = %+v", got)
	}
}

// TestSendBrokerTooLarge lowers the topic's limit under a running sink:
// the broker refuses a batch that fits the limit the sink knows. That is
// transient (a restart re-reads the limit; the forwarder's attempt limit
// quarantines a record the broker keeps refusing), never permanent for
// records that fit.
func TestSendBrokerTooLarge(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	createTopic(t, brokers, DefaultTopic, 1, map[string]string{"max.message.bytes": "65536"})
	s := newSink(t, brokers, Options{ProduceTimeout: 5 * time.Second})
	if _, err := adminClient(t, brokers).AlterTopicConfigs(testCtx(t),
		[]kadm.AlterConfig{{Name: "max.message.bytes", Value: ptr("2048")}}, DefaultTopic); err != nil {
		t.Fatal(err)
	}
	r := testRecords(0, 1)[0]
	r.Body = fmt.Appendf(nil, `{"name":%q}`, randomHex(t, 4000)) // incompressible
	err := s.Send(testCtx(t), []spool.Record{r})[0]
	if err == nil || sink.IsPermanent(err) || !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("Send = %v, want a transient MESSAGE_TOO_LARGE", err)
	}
}

func ptr[T any](v T) *T { return &v }

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestSendNoID(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, DefaultTopic))
	brokers := c.ListenAddrs()
	s := newSink(t, brokers, Options{})
	recs := testRecords(0, 3)
	recs[1].ID = ""
	errs := s.Send(testCtx(t), recs)
	if errs[0] != nil || !sink.IsPermanent(errs[1]) || errs[2] != nil {
		t.Fatalf("Send = %v", errs)
	}
	checkTopic(t, brokers, DefaultTopic, 1, []spool.Record{recs[0], recs[2]})
}

// TestSendInvalidRecord makes the broker refuse, with INVALID_RECORD, the
// batch of the partition holding one poison record, as Kafka does (the
// whole batch, atomically): only the poison is quarantined; the records
// batched with it are produced again, alone, and stored in their order.
func TestSendInvalidRecord(t *testing.T) {
	c, s, recs, p := invalidRecordSetup(t)
	brokers := c.ListenAddrs()
	f := c.Fault(invalidRecordFault(t, p, recs[poison].ID))
	defer f.Remove()
	errs := s.Send(testCtx(t), recs)
	for i, err := range errs {
		switch {
		case i == poison:
			if !sink.IsPermanent(err) || !errors.Is(err, kerr.InvalidRecord) {
				t.Errorf("poison record: %v, want permanent INVALID_RECORD", err)
			}
		case err != nil:
			t.Errorf("record %d: %v", i, err)
		}
	}
	t.Log(errs[poison])
	// The batch with the poison, then the poison alone.
	if h := f.Hits(); h < 2 {
		t.Errorf("the broker refused %d batches, want at least 2", h)
	}
	want := append(testRecords(100, 20), recs[:poison]...)
	want = append(want, recs[poison+1:]...)
	checkTopic(t, brokers, DefaultTopic, invalidPartitions, want)
	if got := s.Stats(); got != (Stats{Stored: 20 + 9, Permanent: 1}) {
		t.Errorf("Stats = %+v", got)
	}
}

// TestSendInvalidRecordTransient makes the first record produced again
// alone fail transiently (an authorization failure, which franz-go does not
// retry): the isolation stops there, the records after it are not sent,
// and the resend stores them in order.
func TestSendInvalidRecordTransient(t *testing.T) {
	c, s, recs, p := invalidRecordSetup(t)
	brokers := c.ListenAddrs()
	var same []int // the records batched with the poison
	for i := range recs {
		if i != poison && partitionOf(&recs[i]) == p {
			same = append(same, i)
		}
	}
	first := same[0]
	invalid := c.Fault(invalidRecordFault(t, p, recs[poison].ID))
	defer invalid.Remove()
	// Only when the poison is not in the batch: faults answer in the order
	// added.
	denied := c.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{p}, Err: kerr.TopicAuthorizationFailed, Count: -1,
		When: produceHas(t, p, recs[first].ID),
	})
	errs := s.Send(testCtx(t), recs)
	for i, err := range errs {
		switch {
		case i == first:
			if err == nil || sink.IsPermanent(err) || !errors.Is(err, kerr.TopicAuthorizationFailed) {
				t.Errorf("first record produced alone: %v, want a transient TOPIC_AUTHORIZATION_FAILED", err)
			}
		case i > first && (i == poison || partitionOf(&recs[i]) == p):
			// Not sent, or, when franz-go split the partition's records
			// over two requests and the first was denied, failed with it
			// before being sent: either way transient, for the resend.
			if err == nil || sink.IsPermanent(err) {
				t.Errorf("record %d after it: %v, want a transient failure", i, err)
			}
		case err != nil:
			t.Errorf("record %d: %v", i, err)
		}
	}
	if denied.Hits() != 1 {
		t.Errorf("the first record was produced alone %d times, want 1", denied.Hits())
	}
	denied.Remove()
	errs = s.Send(testCtx(t), recs[first:])
	for i, err := range errs {
		if i+first == poison {
			if !sink.IsPermanent(err) || !errors.Is(err, kerr.InvalidRecord) {
				t.Errorf("poison record: %v, want permanent INVALID_RECORD", err)
			}
		} else if err != nil {
			t.Errorf("resend: record %d: %v", i+first, err)
		}
	}
	want := append(testRecords(100, 20), recs[:poison]...)
	want = append(want, recs[poison+1:]...)
	checkFirstCopies(t, readTopic(t, brokers, DefaultTopic), want)
}

const (
	invalidPartitions = 3
	poison            = 4 // the poison's index in invalidRecordSetup's records
)

// partitionOf returns r's partition of invalidPartitions, as the sink's
// partitioner picks it.
func partitionOf(r *spool.Record) int32 {
	k := &kgo.Record{Key: []byte(envelope.PartitionKey(r))}
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(DefaultTopic).Partition(k, invalidPartitions))
}

// invalidRecordSetup returns a cluster, a sink that has already stored
// testRecords(100, 20), 10 records to send whose record poison is the
// poison, and the poison's partition, which holds other records of the 10
// before and after it.
func invalidRecordSetup(t *testing.T) (*kfake.Cluster, *Sink, []spool.Record, int32) {
	t.Helper()
	c := newCluster(t, kfake.SeedTopics(invalidPartitions, DefaultTopic))
	s := newSink(t, c.ListenAddrs(), Options{})
	sendAll(t, s, testRecords(100, 20)) // the client is past its start
	// Each produce answer comes 20ms late: Send has produced all its
	// records when the poison's batch is refused (after that it produces
	// no more, and the rest fails as not sent).
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.SleepControl(func() { time.Sleep(20 * time.Millisecond) })
		return nil, nil, false
	})
	recs := testRecords(0, 10)
	recs[poison].ID = "01JD000000000000000INVALID"
	p := partitionOf(&recs[poison])
	var before, after int
	for i := range recs {
		switch {
		case partitionOf(&recs[i]) != p:
		case i < poison:
			before++
		case i > poison:
			after++
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("partition %d holds %d records before the poison and %d after: want some of each", p, before, after)
	}
	return c, s, recs, p
}

// invalidRecordFault refuses with INVALID_RECORD partition p's batch when it
// holds the record id.
func invalidRecordFault(t *testing.T, p int32, id string) kfake.Fault {
	return kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{p}, Err: kerr.InvalidRecord, Count: -1,
		When: produceHas(t, p, id),
	}
}

// produceHas returns a fault's When matching a produce request whose batch
// for partition p holds the record id.
func produceHas(t *testing.T, p int32, id string) func(kmsg.Request) bool {
	return func(req kmsg.Request) bool {
		for _, rt := range req.(*kmsg.ProduceRequest).Topics {
			for _, rp := range rt.Partitions {
				if rp.Partition == p && batchHasID(t, rp.Records, id) {
					return true
				}
			}
		}
		return false
	}
}

// batchHasID reports whether the produced record batch holds a record
// with the header ce_id: id.
func batchHasID(t *testing.T, raw []byte, id string) bool {
	if len(raw) == 0 { // kfake may show a partition without records
		return false
	}
	var b kmsg.RecordBatch
	if err := b.ReadFrom(raw); err != nil {
		t.Errorf("record batch: %v", err)
		return false
	}
	data, err := kgo.DefaultDecompressor().Decompress(b.Records, kgo.CompressionCodecType(b.Attributes&0x07))
	if err != nil {
		t.Errorf("record batch: %v", err)
		return false
	}
	for range b.NumRecords {
		var r kmsg.Record
		if err := r.ReadFrom(data); err != nil {
			t.Errorf("record: %v", err)
			return false
		}
		for _, h := range r.Headers {
			if h.Key == "ce_id" && string(h.Value) == id {
				return true
			}
		}
		l, n := binary.Varint(data)
		data = data[n+int(l):]
	}
	return false
}

// checkTransient checks that every record failed, transiently.
func checkTransient(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err == nil || sink.IsPermanent(err) {
			t.Fatalf("record %d: %v, want a transient error", i, err)
		}
	}
}

// TestSendOutage makes the broker refuse produces (retriably): a Send
// bounded by a context returns by its deadline, one bounded by the produce
// timeout alone by that; every record failed transiently; after the outage
// everything is delivered, each key in order.
func TestSendOutage(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(3, DefaultTopic))
	brokers := c.ListenAddrs()
	s := newSink(t, brokers, Options{ProduceTimeout: time.Second})
	recs := testRecords(0, 300)
	sendAll(t, s, recs[:100])

	f := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	// Bounded by the produce timeout.
	start := time.Now()
	errs := s.Send(context.Background(), recs[100:200])
	checkTransient(t, errs)
	// The client's record timeout, or Send's own bound a second later.
	t.Logf("Send during the outage returned after %s: %v", time.Since(start), errs[0])

	// Bounded by ctx, shorter than the produce timeout.
	s2 := newSink(t, brokers, Options{ProduceTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	errs = s2.Send(ctx, recs[100:200])
	checkTransient(t, errs)
	if ctx.Err() == nil {
		t.Errorf("Send returned before its deadline with %v", errs[0])
	}
	if !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("first error %v, want the deadline", errs[0])
	}

	f.Remove()
	sendUntilDone(t, s, recs[100:])
	s2.Close() // flushes what s2 still held
	raw := readTopic(t, brokers, DefaultTopic)
	t.Logf("topic holds %d records for %d sent", len(raw), len(recs))
	checkFirstCopies(t, raw, recs)
}

// checkFirstCopies checks that the first copy of each record (by ce_id)
// is there, and that per key the first copies are in spool order.
func checkFirstCopies(t *testing.T, raw []*kgo.Record, want []spool.Record) {
	t.Helper()
	pos := map[string]int{}
	for i := range want {
		pos[want[i].ID] = i
	}
	seen := map[string]bool{}
	last := map[string]int{}
	for _, m := range raw {
		id, _ := header(m, "ce_id")
		i, ok := pos[id]
		if !ok {
			t.Fatalf("unexpected record %q", id)
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if !bytes.Equal(m.Value, want[i].Body) {
			t.Fatalf("record %s: value %q", id, m.Value)
		}
		k := string(m.Key)
		if p, ok := last[k]; ok && i < p {
			t.Fatalf("key %s: record %s after a later one", k, id)
		}
		last[k] = i
	}
	if len(seen) != len(want) {
		t.Fatalf("%d distinct records, want %d", len(seen), len(want))
	}
}

// TestSendClusterRestart stops the cluster (connections refused: Send
// fails within the produce timeout) and starts it again on the same port
// and data: the client reconnects, and nothing is lost.
func TestSendClusterRestart(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, kfake.DataDir(dir), kfake.SeedTopics(3, DefaultTopic))
	brokers := c.ListenAddrs()
	s := newSink(t, brokers, Options{ProduceTimeout: time.Second})
	recs := testRecords(0, 300)
	sendAll(t, s, recs[:100])
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	checkTransient(t, s.Send(ctx, recs[100:200]))
	if ctx.Err() != nil {
		t.Fatal("Send waited for its deadline instead of the produce timeout")
	}

	var port int
	if _, err := fmt.Sscanf(brokers[0][strings.LastIndexByte(brokers[0], ':')+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	newCluster(t, kfake.DataDir(dir), kfake.Ports(port))
	sendUntilDone(t, s, recs[100:])
	checkFirstCopies(t, readTopic(t, brokers, DefaultTopic), recs)
}

func TestClose(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, DefaultTopic))
	s := newSink(t, c.ListenAddrs(), Options{})
	sendAll(t, s, testRecords(0, 10))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, err := range s.Send(testCtx(t), testRecords(10, 3)) {
		if !errors.Is(err, ErrClosed) || sink.IsPermanent(err) {
			t.Fatalf("Send after Close = %v", err)
		}
	}
}

func TestNewTopic(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()

	t.Run("absent", func(t *testing.T) {
		_, err := New(testCtx(t), Options{Brokers: brokers, Topic: "absent"})
		if err == nil || !strings.Contains(err.Error(), "topic absent does not exist") {
			t.Fatalf("New = %v", err)
		}
	})
	t.Run("create", func(t *testing.T) {
		s := newSink(t, brokers, Options{Topic: "created", CreateTopic: true, Partitions: 6,
			TopicConfigs: map[string]string{"max.message.bytes": "200000", "retention.ms": "3600000"}})
		if s.partitions != 6 || s.MaxMessageBytes() != 200000 {
			t.Errorf("partitions %d, max message bytes %d", s.partitions, s.MaxMessageBytes())
		}
		rcs, err := adminClient(t, brokers).DescribeTopicConfigs(testCtx(t), "created")
		if err != nil {
			t.Fatal(err)
		}
		for _, cfg := range rcs[0].Configs {
			if cfg.Key == "retention.ms" && cfg.MaybeValue() != "3600000" {
				t.Errorf("retention.ms = %s", cfg.MaybeValue())
			}
		}
		// A second node finds it.
		s2 := newSink(t, brokers, Options{Topic: "created", CreateTopic: true, Partitions: 2})
		if s2.partitions != 6 || s2.MaxMessageBytes() != 200000 {
			t.Errorf("second sink: partitions %d, max message bytes %d", s2.partitions, s2.MaxMessageBytes())
		}
	})
	t.Run("compacted", func(t *testing.T) {
		createTopic(t, brokers, "compacted", 1, map[string]string{"cleanup.policy": "compact"})
		_, err := New(testCtx(t), Options{Brokers: brokers, Topic: "compacted"})
		if err == nil || !strings.Contains(err.Error(), "cleanup.policy=compact") {
			t.Fatalf("New = %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		c := newCluster(t)
		addr := c.ListenAddrs()
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := New(ctx, Options{Brokers: addr})
		if err == nil || !strings.Contains(err.Error(), "look up topic trackd on "+addr[0]) {
			t.Fatalf("New = %v", err)
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	o := Options{Brokers: []string{" "}, Name: "Bad Name", Topic: "a/b", ProduceTimeout: -1, MaxBufferedRecords: -1,
		Partitions: -2, ReplicationFactor: -1, TLS: TLSOptions{CertFile: "c"}, SASL: SASLOptions{Mechanism: "GSSAPI"}}
	o.setDefaults()
	err := o.validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"empty broker address", "sink name", "topic name", "produce timeout", "max buffered records",
		"partitions -2", "replication factor -1", "certificate and key", `SASL mechanism "GSSAPI"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	for name, o := range map[string]Options{
		"no brokers":         {},
		"sasl without user":  {Brokers: []string{"b:9092"}, SASL: SASLOptions{Mechanism: SASLPlain}},
		"user without mech":  {Brokers: []string{"b:9092"}, SASL: SASLOptions{User: "u"}},
		"topic dot":          {Brokers: []string{"b:9092"}, Topic: ".."},
		"topic too long":     {Brokers: []string{"b:9092"}, Topic: strings.Repeat("t", 250)},
		"missing ca file":    {Brokers: []string{"b:9092"}, TLS: TLSOptions{CAFile: "/nonexistent/ca.pem"}},
		"missing cert files": {Brokers: []string{"b:9092"}, TLS: TLSOptions{CertFile: "/nonexistent/c", KeyFile: "/nonexistent/k"}},
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := New(testCtx(t), o); err == nil {
				s.Close()
				t.Fatal("New succeeded")
			} else {
				t.Log(err)
			}
		})
	}
}

// TestSASL checks that each mechanism's credentials reach the broker.
func TestSASL(t *testing.T) {
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "trackd", "s3cret"))
			brokers := c.ListenAddrs()
			bad := Options{Brokers: brokers, SASL: SASLOptions{Mechanism: mech, User: "trackd", Password: "wrong"}, CreateTopic: true}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if s, err := New(ctx, bad); err == nil {
				s.Close()
				t.Fatal("connected with a wrong password")
			} else {
				t.Log(err)
			}
			s := newSink(t, brokers, Options{SASL: SASLOptions{Mechanism: mech, User: "trackd", Password: "s3cret"}, CreateTopic: true})
			sendAll(t, s, testRecords(0, 5))
		})
	}
}

// TestSendInvalidRecordKeepsOrder: one person's 500 records (one key, one
// partition, the forwarder's batch size), the fifth invalid, no broker
// delay. franz-go reports the refused batch after Send may have produced
// later records into a new batch, which can then be stored first; the
// refused records before such a record must not be stored after it. Per
// key, what the topic holds is in spool order, in every run, and every
// record is stored, quarantined (permanent), or stored by the resend.
func TestSendInvalidRecordKeepsOrder(t *testing.T) {
	for run := range 10 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			c := newCluster(t, kfake.SeedTopics(invalidPartitions, DefaultTopic))
			s := newSink(t, c.ListenAddrs(), Options{})
			warm := testRecords(100000, 20)
			sendAll(t, s, warm)
			recs := testRecords(0, 500)
			for i := range recs { // one person
				recs[i].Workspace = recs[0].Workspace
				for j := range recs[i].Meta {
					if recs[i].Meta[j].Key == "identifier" {
						recs[i].Meta[j].Value = "person-0"
					}
				}
			}
			const pz = 4
			recs[pz].ID = "01JD0000000000000004INVALI"
			f := c.Fault(invalidRecordFault(t, partitionOf(&recs[pz]), recs[pz].ID))
			defer f.Remove()
			final := s.Send(testCtx(t), recs)
			// The forwarder resends from the first transient failure.
			for i, err := range final {
				if err != nil && !sink.IsPermanent(err) {
					copy(final[i:], s.Send(testCtx(t), recs[i:]))
					break
				}
			}
			want := warm
			stored, refused := 0, 0
			for i, err := range final {
				switch {
				case err == nil:
					want = append(want, recs[i])
					stored++
				case sink.IsPermanent(err):
					refused++
				default:
					t.Fatalf("record %d still failing after the resend: %v", i, err)
				}
			}
			if !sink.IsPermanent(final[pz]) {
				t.Fatalf("the invalid record: %v, want permanent", final[pz])
			}
			t.Logf("%d stored, %d refused", stored, refused)
			checkFirstCopies(t, readTopic(t, c.ListenAddrs(), DefaultTopic), want)
		})
	}
}
