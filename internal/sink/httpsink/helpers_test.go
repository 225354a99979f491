package httpsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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

// testRecords returns records from..from+n-1 with small JSON bodies.
func testRecords(from, n int) []spool.Record {
	recs := make([]spool.Record, n)
	for i := range recs {
		k := from + i
		recs[i] = spool.Record{
			ID: fmt.Sprintf("01JD0000000000000000%06d", k), Workspace: "site1", Op: "v1.event",
			ReceivedAt: time.Unix(1_700_000_000, int64(k)).UnixNano(),
			Meta:       []spool.KV{{Key: "request_id", Value: fmt.Sprint("req-", k)}, {Key: "region", Value: "us"}, {Key: "identifier", Value: "person-1"}},
			Body:       fmt.Appendf(nil, `{"name":"event-%d","data":{"n":%d, "s":"\u00e9"}}`, k, k),
		}
	}
	return recs
}

// newSink returns a sink for url with opts, closed at the end of the test.
func newSink(t testing.TB, url string, opts Options) *Sink {
	t.Helper()
	opts.URL = url
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// request is one request as the receiver saw it.
type request struct {
	Header http.Header
	Body   []byte
	Events []sinktest.Message // decoded from Body; nil if it did not parse
}

// IDs returns the event IDs of the request.
func (r request) IDs() []string {
	var ids []string
	for _, m := range r.Events {
		ids = append(ids, m.ID)
	}
	return ids
}

// receiver is a fake HTTP receiver of CloudEvents. It stores the events of
// the requests it answers 2xx, deduplicated by event id, as a receiver
// honouring idempotency does (the "id" member is the dedup key the sink
// promises; a resend after a crash may be batched differently, so the
// Idempotency-Key alone would not catch it).
type receiver struct {
	// answer decides the response to the n-th request (0-based); nil
	// answers 200. It may write the response itself and return 0, or
	// block.
	answer func(w http.ResponseWriter, n int, req request) int

	mu     sync.Mutex // guards the fields below
	reqs   []request
	events []sinktest.Message
	seen   map[string]bool
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := request{Header: r.Header.Clone(), Body: body, Events: decodeEvents(r.Header.Get("Content-Type"), body)}
	rc.mu.Lock()
	n := len(rc.reqs)
	rc.reqs = append(rc.reqs, req)
	rc.mu.Unlock()
	code := http.StatusOK
	if rc.answer != nil {
		code = rc.answer(w, n, req)
	}
	if code == 0 {
		return // answered (or hung up) by answer
	}
	if code >= 200 && code < 300 {
		rc.mu.Lock()
		if rc.seen == nil {
			rc.seen = map[string]bool{}
		}
		for _, m := range req.Events {
			if !rc.seen[m.ID] {
				rc.seen[m.ID] = true
				rc.events = append(rc.events, m)
			}
		}
		rc.mu.Unlock()
	}
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"status":%d}`, code)
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

func (rc *receiver) received() []sinktest.Message {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]sinktest.Message(nil), rc.events...)
}

func (rc *receiver) receivedIDs() []string {
	var ids []string
	for _, m := range rc.received() {
		ids = append(ids, m.ID)
	}
	return ids
}

// start serves rc on a loopback httptest server, closed at the end of the
// test.
func (rc *receiver) start(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv
}

// decodeEvents parses a structured (single) or batch CloudEvents body.
func decodeEvents(contentType string, body []byte) []sinktest.Message {
	var objs []map[string]json.RawMessage
	switch contentType {
	case ContentTypeBatch:
		if json.Unmarshal(body, &objs) != nil {
			return nil
		}
	case ContentTypeSingle:
		var o map[string]json.RawMessage
		if json.Unmarshal(body, &o) != nil {
			return nil
		}
		objs = append(objs, o)
	default:
		return nil
	}
	msgs := make([]sinktest.Message, 0, len(objs))
	for _, o := range objs {
		m := sinktest.Message{Attr: map[string]string{}}
		for k, v := range o {
			if k == "data" {
				m.Body = []byte(v) // the raw JSON, byte for byte
				continue
			}
			var s string
			if json.Unmarshal(v, &s) == nil {
				m.Attr[k] = s
			}
		}
		m.ID, m.Key = m.Attr["id"], m.Attr["subject"]
		msgs = append(msgs, m)
	}
	return msgs
}

// handlerTransport serves requests with an http.Handler in the calling
// goroutine, without a network: for tests in a synctest bubble, where
// loopback I/O would keep the fake clock from advancing.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, req)
	if req.Body != nil {
		req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	return rec.Result(), nil
}

// logBuffer collects log output for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logger returns a JSON logger at debug level writing to b.
func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the log records at level.
func (b *logBuffer) lines(level string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["level"] == level {
			out = append(out, m)
		}
	}
	return out
}

// httptestTLS serves h over TLS with httptest's self-signed certificate.
func httptestTLS(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the unknown-CA handshake failure
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}
