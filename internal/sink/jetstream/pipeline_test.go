package jetstream

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/sink"
)

// TestPipelineStopsAfterFailure checks the order rule: once a record has
// failed transiently, the pipeline publishes nothing more, even when the
// back end would take it; a new pipeline resends in order.
func TestPipelineStopsAfterFailure(t *testing.T) {
	e := startEmbedded(t, "", "")
	url := e.ClientURL()
	// The operator's stream takes 10 messages and then refuses new ones.
	js := rawJS(t, url)
	cfg := natsjs.StreamConfig{Name: DefaultStream, Subjects: []string{"trackd.>"}, Storage: natsjs.FileStorage,
		MaxMsgs: 10, Discard: natsjs.DiscardNew}
	if _, err := js.CreateStream(testCtx(t), cfg); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, url, Options{})
	recs := testRecords(0, 30)
	p := s.Pipeline()
	errs := p.Publish(testCtx(t), recs[:20]).Wait()
	for i, err := range errs {
		switch {
		case i < 10 && err != nil:
			t.Fatalf("record %d: %v", i, err)
		case i >= 10 && (err == nil || sink.IsPermanent(err)):
			t.Fatalf("record %d over the stream's limit: %v, want a transient error", i, err)
		}
	}
	// The stream takes more now, but the pipeline has failed.
	cfg.MaxMsgs = -1
	if _, err := js.UpdateStream(testCtx(t), cfg); err != nil {
		t.Fatal(err)
	}
	for i, err := range p.Publish(testCtx(t), recs[20:]).Wait() {
		if !errors.Is(err, sink.ErrNotSent) || sink.IsPermanent(err) {
			t.Fatalf("record %d published on a failed pipeline: %v", 20+i, err)
		}
	}
	checkStream(t, url, DefaultStream, DefaultSubjectPrefix, recs[:10])
	// A new pipeline resends from the failure, in order.
	p = s.Pipeline()
	b1 := p.Publish(testCtx(t), recs[10:20])
	b2 := p.Publish(testCtx(t), recs[20:])
	for i, err := range append(b1.Wait(), b2.Wait()...) {
		if err != nil {
			t.Fatalf("record %d: %v", 10+i, err)
		}
	}
	checkStream(t, url, DefaultStream, DefaultSubjectPrefix, recs)
	if got, want := s.Stats(), (Stats{Stored: 30, Transient: 20}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// TestPipelineStopsAfterReconnect checks that a pipeline publishes nothing
// on a new connection: a message there could overtake one the old
// connection lost.
func TestPipelineStopsAfterReconnect(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, "")
	listen, url := e.Addr().String(), e.ClientURL()
	s := newSink(t, url, Options{})
	recs := testRecords(0, 30)
	p := s.Pipeline()
	for i, err := range p.Publish(testCtx(t), recs[:10]).Wait() {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	ctx := testCtx(t)
	down := s.nc.StatusChanged(nats.RECONNECTING)
	e.Shutdown()
	select {
	case <-down:
	case <-ctx.Done():
		t.Fatal("the sink did not see the server go")
	}
	up := s.nc.StatusChanged(nats.CONNECTED)
	startEmbedded(t, dir, listen)
	select {
	case <-up:
	case <-ctx.Done():
		t.Fatal("the sink did not reconnect")
	}
	for i, err := range p.Publish(testCtx(t), recs[10:20]).Wait() {
		if !errors.Is(err, sink.ErrNotSent) {
			t.Fatalf("record %d published on the old pipeline after a reconnect: %v", 10+i, err)
		}
	}
	p = s.Pipeline()
	for i, err := range p.Publish(testCtx(t), recs[10:]).Wait() {
		if err != nil {
			t.Fatalf("record %d: %v", 10+i, err)
		}
	}
	checkStream(t, url, DefaultStream, DefaultSubjectPrefix, recs)
}

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     *nats.Msg
		dup     bool
		errCode natsjs.ErrorCode // of an *natsjs.APIError
		err     error
	}{
		{name: "stored", msg: &nats.Msg{Data: []byte(`{"stream":"TRACKD","seq":7}`)}},
		{name: "stored with domain", msg: &nats.Msg{Data: []byte(`{"stream":"TRACKD","domain":"hub","seq":7}`)}},
		{name: "duplicate", msg: &nats.Msg{Data: []byte(`{"stream":"TRACKD","seq":7,"duplicate": true}`)}, dup: true},
		{name: "stream named error", msg: &nats.Msg{Data: []byte(`{"stream":"error","seq":7}`)}},
		{name: "error", msg: &nats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"TRACKD","seq":0}`)}, errCode: 10077},
		{name: "no responders", msg: &nats.Msg{Header: nats.Header{"Status": {"503"}}}, err: natsjs.ErrNoStreamResponse},
		{name: "empty", msg: &nats.Msg{}, err: natsjs.ErrInvalidJSAck},
		{name: "not JSON", msg: &nats.Msg{Data: []byte(`+OK`)}, err: natsjs.ErrInvalidJSAck},
		{name: "no stream", msg: &nats.Msg{Data: []byte(`{"seq":7}`)}, err: natsjs.ErrInvalidJSAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dup, err := parseAck(tc.msg)
			var apiErr *natsjs.APIError
			switch {
			case dup != tc.dup:
				t.Errorf("duplicate = %v, want %v", dup, tc.dup)
			case tc.errCode != 0:
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.errCode {
					t.Errorf("err = %v, want an API error %d", err, tc.errCode)
				}
			case !errors.Is(err, tc.err) || (tc.err == nil && err != nil):
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

// TestResumeCheck checks that a new sink acknowledges, without publishing
// them again, the records the stream's newest messages hold (the resends
// after a crash), and only as many as ResumeCheck reads.
func TestResumeCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		check   int
		skipped int // of recs[50:150], the first ones found in the stream
	}{
		{"default", 0, 50},
		{"last 20", 20, 20},
		{"off", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEmbedded(t, "", "")
			url := e.ClientURL()
			recs := testRecords(0, 160)
			sendAll(t, newSink(t, url, Options{}), recs[:100])

			s := newSink(t, url, Options{ResumeCheck: tc.check})
			out := s.nc.Stats().OutMsgs
			sendAll(t, s, recs[50:150])
			if got, want := s.nc.Stats().OutMsgs-out, uint64(100-tc.skipped); got != want {
				t.Errorf("published %d messages, want %d", got, want)
			}
			if got := s.Stats(); got.Stored != 50 || got.Duplicates != 50 {
				t.Errorf("Stats = %+v, want 50 stored and 50 duplicates", got)
			}
			// A batch without a known record ends the check.
			sendAll(t, s, recs[150:])
			out = s.nc.Stats().OutMsgs
			sendAll(t, s, recs[:10])
			if got := s.nc.Stats().OutMsgs - out; got != 10 {
				t.Errorf("after the check: published %d messages, want 10", got)
			}
			checkStream(t, url, DefaultStream, DefaultSubjectPrefix, recs)
		})
	}
}
