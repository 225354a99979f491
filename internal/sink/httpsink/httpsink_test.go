package httpsink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

const token = "Bearer s3cr3t-t0ken-value"

func TestNewReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts Options
		want []string // substrings of the error, all of them
	}{
		{"no URL", Options{}, []string{"no URL"}},
		{"scheme", Options{URL: "ftp://user:hunter2@example.com/x?key=abc"}, []string{"scheme must be http or https", "key=redacted"}},
		{"no host", Options{URL: "http:///x"}, []string{"no host"}},
		{"everything at once", Options{
			URL: "http://user:hunter2@example.com/x", Name: "Bad Name", Mode: "stream",
			Timeout: -time.Second, MaxBatch: -1,
			Headers: map[string]string{"Bad Header": "x", "content-type": "text/plain", "X-Token": "abc\r\ndef",
				"X-Dup": "1", "x-dup": "2"},
			TLSCAFile: filepath.Join(dir, "missing.pem"), TLSCertFile: "cert.pem",
		}, []string{
			`sink name "Bad Name"`, `mode "stream"`, "timeout -1s is negative", "max batch -1 is negative",
			`header name "Bad Header"`, "header Content-Type is set by the sink", "header X-Token: value has a control character",
			"TLS files given but the URL is not https", "header X-Dup is given twice", "TLS CA file", "TLS client certificate and key go together",
		}},
		{"CA file without certificates", Options{URL: "https://example.com", TLSCAFile: notPEM}, []string{"no PEM certificate"}},
		{"bad key pair", Options{URL: "https://example.com", TLSCertFile: notPEM, TLSKeyFile: notPEM}, []string{"TLS client certificate:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, secret := range []string{"hunter2", "abc", "def"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret %q", err, secret)
				}
			}
		})
	}
	s, err := New(Options{URL: "https://example.com/events"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Name() != DefaultName || s.single || s.maxBatch != DefaultMaxBatch || s.timeout != DefaultTimeout {
		t.Errorf("defaults: name %q single %v max batch %d timeout %s", s.Name(), s.single, s.maxBatch, s.timeout)
	}
}

func TestBatchRequests(t *testing.T) {
	rc := &receiver{}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{Headers: map[string]string{"Authorization": token, "X-Tenant": "acme"}})
	recs := testRecords(0, 5)
	for range 2 { // a resend of the same batch
		if errs := s.Send(testCtx(t), recs); !allNil(errs) {
			t.Fatalf("Send: %v", errs)
		}
	}
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	sum := sha256.Sum256([]byte(strings.Join(ids(recs), "\n")))
	wantKey := hex.EncodeToString(sum[:])
	wantBody := "["
	for i := range recs {
		if i > 0 {
			wantBody += ","
		}
		wantBody += string(envelope.Structured(&recs[i]))
	}
	wantBody += "]"
	for i, r := range reqs {
		got := map[string]string{}
		for _, h := range []string{"Content-Type", "Idempotency-Key", "Authorization", "X-Tenant", "User-Agent"} {
			got[h] = r.Header.Get(h)
		}
		want := map[string]string{
			"Content-Type": ContentTypeBatch, "Idempotency-Key": wantKey,
			"Authorization": token, "X-Tenant": "acme", "User-Agent": "trackd",
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("request %d headers (-want +got):\n%s", i, d)
		}
		if string(r.Body) != wantBody {
			t.Errorf("request %d body:\n%s\nwant:\n%s", i, r.Body, wantBody)
		}
	}
	if got := BatchKey(recs); got != wantKey {
		t.Errorf("BatchKey = %s, want %s", got, wantKey)
	}
	// The receiver deduplicated the resend by event id.
	if d := cmp.Diff(ids(recs), rc.receivedIDs()); d != "" {
		t.Errorf("received (-want +got):\n%s", d)
	}
}

func TestSingleRequests(t *testing.T) {
	rc := &receiver{}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{Mode: ModeSingle, Headers: map[string]string{"Authorization": token}})
	recs := testRecords(0, 3)
	recs[1].Body = nil // a bodyless operation
	recs[1].Op = "v1.delete"
	if errs := s.Send(testCtx(t), recs); !allNil(errs) {
		t.Fatalf("Send: %v", errs)
	}
	reqs := rc.requests()
	if len(reqs) != len(recs) {
		t.Fatalf("%d requests, want %d", len(reqs), len(recs))
	}
	for i, r := range reqs {
		if ct, key, auth := r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"), r.Header.Get("Authorization"); ct != ContentTypeSingle || key != recs[i].ID || auth != token {
			t.Errorf("request %d: Content-Type %q, Idempotency-Key %q, Authorization %q", i, ct, key, auth)
		}
		if want := envelope.Structured(&recs[i]); string(r.Body) != string(want) {
			t.Errorf("request %d body:\n%s\nwant:\n%s", i, r.Body, want)
		}
	}
	for i, m := range rc.received() {
		if string(m.Body) != string(recs[i].Body) {
			t.Errorf("event %d data %q, want %q", i, m.Body, recs[i].Body)
		}
	}
}

func TestLargeSendIsSplitInOrder(t *testing.T) {
	rc := &receiver{}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{MaxBatch: 3})
	recs := testRecords(0, 10)
	if errs := s.Send(testCtx(t), recs); !allNil(errs) {
		t.Fatalf("Send: %v", errs)
	}
	var got [][]string
	for _, r := range rc.requests() {
		got = append(got, r.IDs())
		if want := BatchKey(recs[len(got)*3-3 : min(len(got)*3, len(recs))]); r.Header.Get("Idempotency-Key") != want {
			t.Errorf("request %d: Idempotency-Key %s, want %s", len(got)-1, r.Header.Get("Idempotency-Key"), want)
		}
	}
	want := [][]string{ids(recs[0:3]), ids(recs[3:6]), ids(recs[6:9]), ids(recs[9:10])}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}

// outcome is how a test sees one record's result.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ack"
	case sink.IsPermanent(err):
		return "permanent"
	}
	return "transient"
}

func TestStatusClasses(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{
		{200, "ack"}, {201, "ack"}, {202, "ack"}, {204, "ack"},
		{400, "permanent"}, {413, "permanent"}, {422, "permanent"}, {411, "permanent"},
		// Misconfiguration: nothing quarantined while an operator fixes it.
		{301, "transient"}, {302, "transient"}, {307, "transient"}, {308, "transient"},
		{401, "transient"}, {403, "transient"}, {404, "transient"}, {405, "transient"}, {415, "transient"},
		{408, "transient"}, {409, "transient"}, {425, "transient"}, {429, "transient"},
		{500, "transient"}, {502, "transient"}, {503, "transient"}, {504, "transient"},
	} {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			rc := &receiver{}
			srv := rc.start(t)
			rc.answer = func(w http.ResponseWriter, n int, _ request) int {
				if n == 0 {
					w.Header().Set("Location", srv.URL+"/elsewhere")
					return tc.code
				}
				return http.StatusOK // a followed redirect would land here
			}
			s := newSink(t, srv.URL, Options{})
			errs := s.Send(testCtx(t), testRecords(0, 1))
			if got := outcome(errs[0]); got != tc.want {
				t.Errorf("status %d: %s (%v), want %s", tc.code, got, errs[0], tc.want)
			}
			if n := len(rc.requests()); n != 1 {
				t.Errorf("status %d: %d requests, want 1 (redirects are not followed, no retries inside Send)", tc.code, n)
			}
			var se *StatusError
			if tc.want != "ack" && (!errors.As(errs[0], &se) || se.Code != tc.code) {
				t.Errorf("status %d: error %v is not a StatusError with the code", tc.code, errs[0])
			}
		})
	}
}

func TestRefusedBatchIsSplitToIsolateTheBadRecords(t *testing.T) {
	recs := testRecords(0, 8)
	bad := map[string]bool{recs[2].ID: true, recs[5].ID: true}
	rc := &receiver{answer: func(_ http.ResponseWriter, _ int, req request) int {
		for _, id := range req.IDs() {
			if bad[id] {
				return http.StatusUnprocessableEntity
			}
		}
		return http.StatusOK
	}}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{})
	errs := s.Send(testCtx(t), recs)
	var got []string
	for _, err := range errs {
		got = append(got, outcome(err))
	}
	want := []string{"ack", "ack", "permanent", "ack", "ack", "permanent", "ack", "ack"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("outcomes (-want +got):\n%s", d)
	}
	if !strings.Contains(errs[2].Error(), "422") {
		t.Errorf("error %q does not name the status", errs[2])
	}
	wantIDs := ids(append(append(append([]spool.Record{}, recs[0:2]...), recs[3:5]...), recs[6:8]...))
	if d := cmp.Diff(wantIDs, rc.receivedIDs()); d != "" {
		t.Errorf("received (-want +got):\n%s", d)
	}
	// 8 → 4+4 → (2+2)+(2+2) → the two bad pairs split once more.
	if st := s.Stats(); st.Splits != 5 || st.Permanent != 2 || st.Acknowledged != 6 {
		t.Errorf("stats %+v", st)
	}
}

func TestTransientFailureStopsTheSend(t *testing.T) {
	rc := &receiver{answer: func(_ http.ResponseWriter, n int, _ request) int {
		if n == 1 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	}}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{MaxBatch: 2})
	errs := s.Send(testCtx(t), testRecords(0, 6))
	var got []string
	for _, err := range errs {
		got = append(got, outcome(err))
	}
	if d := cmp.Diff([]string{"ack", "ack", "transient", "transient", "transient", "transient"}, got); d != "" {
		t.Fatalf("outcomes (-want +got):\n%s", d)
	}
	if !errors.Is(errs[4], errNotSent) || !strings.Contains(errs[2].Error(), "502") {
		t.Errorf("errors %v", errs)
	}
	if n := len(rc.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestRecordWithoutIDIsPermanent(t *testing.T) {
	rc := &receiver{}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{})
	recs := testRecords(0, 3)
	recs[1].ID = ""
	errs := s.Send(testCtx(t), recs)
	if errs[0] != nil || !sink.IsPermanent(errs[1]) || errs[2] != nil {
		t.Fatalf("errs %v", errs)
	}
	if d := cmp.Diff([]string{recs[0].ID, recs[2].ID}, rc.receivedIDs()); d != "" {
		t.Errorf("received (-want +got):\n%s", d)
	}
}

func TestConnectionErrorsAreTransient(t *testing.T) {
	rc := &receiver{answer: func(w http.ResponseWriter, _ int, _ request) int {
		hangUp(w)
		return 0
	}}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{})
	if errs := s.Send(testCtx(t), testRecords(0, 2)); outcome(errs[0]) != "transient" || outcome(errs[1]) != "transient" {
		t.Errorf("hung up: %v", errs)
	}
	srv.Close()
	if errs := s.Send(testCtx(t), testRecords(0, 2)); outcome(errs[0]) != "transient" || outcome(errs[1]) != "transient" {
		t.Errorf("server gone: %v", errs)
	}
}

// TestSlowServerBoundedByTimeout: a receiver that never answers costs one
// Timeout, over a real connection.
func TestSlowServerBoundedByTimeout(t *testing.T) {
	release := make(chan struct{})
	rc := &receiver{answer: func(_ http.ResponseWriter, _ int, _ request) int {
		<-release
		return http.StatusOK
	}}
	srv := rc.start(t)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	s := newSink(t, srv.URL, Options{Timeout: 50 * time.Millisecond})
	errs := s.Send(testCtx(t), testRecords(0, 3))
	for i, err := range errs {
		if outcome(err) != "transient" || (i == 0 && !errors.Is(err, context.DeadlineExceeded)) {
			t.Errorf("record %d: %v, want a transient timeout", i, err)
		}
	}
	if !strings.Contains(errs[0].Error(), "no answer within 50ms") {
		t.Errorf("error %q does not say the timeout", errs[0])
	}
}

func TestSendAfterClose(t *testing.T) {
	rc := &receiver{}
	srv := rc.start(t)
	s := newSink(t, srv.URL, Options{})
	s.Close()
	s.Close()
	if errs := s.Send(testCtx(t), testRecords(0, 2)); !errors.Is(errs[0], ErrClosed) || !errors.Is(errs[1], ErrClosed) {
		t.Errorf("errs %v", errs)
	}
	if len(rc.requests()) != 0 {
		t.Error("a closed sink sent a request")
	}
}

// TestMisconfigurationLoggedOncePerBurst: 401/403/404 are logged at error
// level once per burst (again when the status changes), the end of the
// burst at info level; header values appear neither in logs nor in errors,
// even when the receiver echoes them.
func TestMisconfigurationLoggedOncePerBurst(t *testing.T) {
	codes := []int{401, 401, 401, 403, 403, 200, 404, 404, 400}
	rc := &receiver{answer: func(w http.ResponseWriter, n int, req request) int {
		if codes[n] >= 400 {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(codes[n])
			w.Write([]byte("refused; you sent Authorization: " + req.Header.Get("Authorization") + "\n"))
			return 0
		}
		return codes[n]
	}}
	srv := rc.start(t)
	var logs logBuffer
	s := newSink(t, srv.URL+"/events?api_key=querysecret", Options{Headers: map[string]string{"Authorization": token}, Logger: logs.logger()})
	var msgs []string
	for i := range codes {
		errs := s.Send(testCtx(t), testRecords(i, 1))
		if errs[0] != nil {
			msgs = append(msgs, errs[0].Error())
		}
	}
	var got []float64
	for _, l := range logs.lines("ERROR") {
		got = append(got, l["status"].(float64))
	}
	if d := cmp.Diff([]float64{401, 403, 404}, got); d != "" {
		t.Errorf("error logs by status (-want +got):\n%s\n%s", d, logs.String())
	}
	if n := len(logs.lines("INFO")); n != 1 {
		t.Errorf("%d info logs, want 1 (recovered)\n%s", n, logs.String())
	}
	all := logs.String() + strings.Join(msgs, "\n")
	if strings.Contains(all, "s3cr3t") || strings.Contains(all, "querysecret") {
		t.Errorf("a header value leaked:\n%s", all)
	}
	if !strings.Contains(msgs[len(msgs)-1], "[redacted]") || !strings.Contains(msgs[len(msgs)-1], "api_key=redacted") {
		t.Errorf("the echoed header was not scrubbed: %q", msgs[len(msgs)-1])
	}
}

func TestTLS(t *testing.T) {
	rc := &receiver{}
	srv := httptestTLS(t, rc)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if errs := newSink(t, srv.URL, Options{}).Send(testCtx(t), testRecords(0, 1)); outcome(errs[0]) != "transient" {
		t.Errorf("unknown CA: %v, want a transient failure", errs[0])
	}
	if errs := newSink(t, srv.URL, Options{TLSCAFile: ca}).Send(testCtx(t), testRecords(0, 1)); errs[0] != nil {
		t.Errorf("with the CA file: %v", errs[0])
	}
}

func allNil(errs []error) bool {
	for _, err := range errs {
		if err != nil {
			return false
		}
	}
	return true
}

func ids(recs []spool.Record) []string {
	out := make([]string, len(recs))
	for i := range recs {
		out[i] = recs[i].ID
	}
	return out
}
