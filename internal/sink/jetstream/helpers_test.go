package jetstream

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/spool"
)

// testCtx is bounded so that a hang fails the test instead of stalling the
// run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startEmbedded starts a server on a random port (listen "") or on listen,
// storing under dir (a fresh one if ""), stopped at the end of the test.
func startEmbedded(t testing.TB, dir, listen string) *Embedded {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if listen == "" {
		listen = "127.0.0.1:-1"
	}
	e, err := StartEmbedded(EmbeddedOptions{Dir: dir, Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// newSink returns a sink on url with opts, closed at the end of the test.
func newSink(t testing.TB, url string, opts Options) *Sink {
	t.Helper()
	opts.URL = url
	s, err := New(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawJS is a plain client for setting up and inspecting streams.
func rawJS(t testing.TB, url string) natsjs.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// readStream returns every message the stream holds, in order.
func readStream(t testing.TB, url, stream string) []*natsjs.RawStreamMsg {
	t.Helper()
	ctx := testCtx(t)
	st, err := rawJS(t, url).Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*natsjs.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

var ops = []string{"v1.identify", "v1.event", "v2.person.event", "v1.delete", "v1.device.add"}

// testRecords returns n records numbered from first, over a few
// workspaces (one with characters NATS treats specially), operations and
// persons; v1.delete has no body.
func testRecords(first, n int) []spool.Record {
	recs := make([]spool.Record, 0, n)
	for i := first; i < first+n; i++ {
		op := ops[i%len(ops)]
		ws := []string{"46be54768e7d49ab2628", "site.two", "site three"}[i%3]
		r := spool.Record{
			ID:         fmt.Sprintf("01JD%022d", i),
			Workspace:  ws,
			Op:         op,
			ReceivedAt: time.Date(2025, 1, 2, 3, 4, 5, i, time.UTC).UnixNano(),
			Meta: []spool.KV{
				{Key: "region", Value: "us"},
				{Key: "api", Value: op[:2]},
				{Key: "identifier", Value: fmt.Sprintf("person-%d", i%7)},
				{Key: "request_id", Value: fmt.Sprintf("req-%d", i)},
				{Key: "user_agent", Value: "Customer.io Go Client/3.10.0 (+ tests)"},
				{Key: "client_ip", Value: "192.0.2.7"},
				{Key: "timestamp", Value: "1735787045"},
			},
		}
		if op != "v1.delete" {
			// Pad to ~300 bytes, with whitespace and escapes kept as sent.
			pad := strings.Repeat("x", 180)
			r.Body = fmt.Appendf(nil, "{\"name\": \"event-%d\",\n \"data\":{\"n\":%d,\"s\":\"\\u00e9\u6f22 \\\"q\\\" <&>\",\"pad\":%q}}", i, i, pad)
		}
		recs = append(recs, r)
	}
	return recs
}

// wantHeader is the header a record's message must carry.
func wantHeader(r *spool.Record) nats.Header {
	h := nats.Header{"Nats-Msg-Id": {r.ID}}
	for _, a := range envelope.Attributes(r) {
		h["ce-"+a.Name] = []string{a.Value}
	}
	if len(r.Body) > 0 {
		h["Content-Type"] = []string{"application/json"}
	}
	return h
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
