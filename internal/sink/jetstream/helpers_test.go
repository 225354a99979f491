package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

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

// testRecords returns the shared sink test records.
func testRecords(first, n int) []spool.Record { return sinktest.Records(first, n) }
