package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

// checkStream checks that the stream holds exactly want, in order, each
// message byte for byte as the package comment describes.
func checkStream(t *testing.T, url, stream, prefix string, want []spool.Record) {
	t.Helper()
	got := readStream(t, url, stream)
	if len(got) != len(want) {
		t.Fatalf("stream holds %d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		r := &want[i]
		if wantSubj := envelope.NATSSubject(prefix, r); m.Subject != wantSubj {
			t.Errorf("message %d: subject %q, want %q", i, m.Subject, wantSubj)
		}
		if diff := cmp.Diff(wantHeader(r), m.Header); diff != "" {
			t.Errorf("message %d (%s): header (-want +got):\n%s", i, r.ID, diff)
		}
		if !bytes.Equal(m.Data, r.Body) {
			t.Errorf("message %d (%s): data %q, want %q", i, r.ID, m.Data, r.Body)
		}
	}
}

func TestSendBatch(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	recs := testRecords(0, 500)
	sendAll(t, s, recs)
	checkStream(t, e.ClientURL(), DefaultStream, DefaultSubjectPrefix, recs)

	// The subjects look as documented.
	got := readStream(t, e.ClientURL(), DefaultStream)
	for i, want := range []string{
		"trackd.us.46be54768e7d49ab2628.v1.identify",
		"trackd.us.site_two.v1.event",
		"trackd.us.site_three.v2.person.event",
	} {
		if got[i].Subject != want {
			t.Errorf("subject %d = %q, want %q", i, got[i].Subject, want)
		}
	}

	// The stream was created as documented.
	st, err := rawJS(t, e.ClientURL()).Stream(testCtx(t), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !cmp.Equal(cfg.Subjects, []string{"trackd.>"}) || cfg.Storage != natsjs.FileStorage || cfg.Replicas != 1 ||
		cfg.Duplicates != DefaultDuplicateWindow || cfg.MaxAge != DefaultMaxAge || cfg.MaxBytes != -1 {
		t.Errorf("stream config %+v", cfg)
	}
}

func TestSendEmpty(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	if errs := s.Send(testCtx(t), nil); len(errs) != 0 {
		t.Fatalf("Send(nil) = %v", errs)
	}
}

func TestSendOptions(t *testing.T) {
	e := startEmbedded(t, "", "")
	// A small pending window, several concurrent Sends, another stream and
	// prefix.
	opts := Options{Stream: "EVENTS", SubjectPrefix: "acme.track", MaxPending: 7, Name: "js-eu"}
	s := newSink(t, e.ClientURL(), opts)
	if s.Name() != "js-eu" {
		t.Errorf("Name = %q", s.Name())
	}
	recs := testRecords(0, 400)
	done := make(chan []error, 4)
	for g := 0; g < 4; g++ {
		go func() { done <- s.Send(testCtx(t), recs[g*100:(g+1)*100]) }()
	}
	for g := 0; g < 4; g++ {
		for i, err := range <-done {
			if err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}
	got := readStream(t, e.ClientURL(), "EVENTS")
	if len(got) != len(recs) {
		t.Fatalf("stream holds %d messages, want %d", len(got), len(recs))
	}
	for _, m := range got {
		if !strings.HasPrefix(m.Subject, "acme.track.us.") {
			t.Fatalf("subject %q", m.Subject)
		}
	}
}

func TestSendDedup(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	recs := testRecords(0, 200)
	sendAll(t, s, recs[:150])
	// A resend of everything, as after a crash between send and cursor
	// update: the duplicates are acknowledged (success) and not stored.
	sendAll(t, s, recs)
	sendAll(t, s, recs[100:])
	checkStream(t, e.ClientURL(), DefaultStream, DefaultSubjectPrefix, recs)
	if got, want := s.Stats(), (Stats{Stored: 200, Duplicates: 250}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestSendOutage(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, "")
	listen := e.Addr().String()
	url := e.ClientURL()
	s := newSink(t, url, Options{})
	recs := testRecords(0, 300)
	sendAll(t, s, recs[:100])

	// The server goes away.
	down := s.nc.StatusChanged(nats.RECONNECTING)
	e.Shutdown()
	<-down

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, err := range s.Send(ctx, recs[100:200]) {
		switch {
		case err == nil:
			t.Fatalf("record %d acknowledged with the server down", i)
		case sink.IsPermanent(err):
			t.Fatalf("record %d: permanent error during an outage: %v", i, err)
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("record %d: waited for the deadline instead of failing at once: %v", i, err)
		}
	}

	// It comes back on the same store and port.
	up := s.nc.StatusChanged(nats.CONNECTED)
	startEmbedded(t, dir, listen)
	select {
	case <-up:
	case <-ctx.Done():
		t.Fatal("the sink did not reconnect")
	}
	sendAll(t, s, recs[100:])
	sendAll(t, s, recs) // resends are deduplicated, across the restart too
	checkStream(t, url, DefaultStream, DefaultSubjectPrefix, recs)
}

// TestSendInFlightOutage shuts the server down while publishes await their
// acks: every record is reported as acknowledged or transiently failed, and
// after the restart a resend of the failed ones leaves each record stored
// once.
func TestSendInFlightOutage(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, "")
	listen, url := e.Addr().String(), e.ClientURL()
	s := newSink(t, url, Options{})
	recs := testRecords(0, 3000)

	// Shut the server down once messages flow: when a subscriber sees the
	// first one.
	watcher, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	flowing := make(chan *nats.Msg, 1)
	if _, err := watcher.ChanSubscribe("trackd.>", flowing); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	result := make(chan []error, 1)
	go func() { result <- s.Send(testCtx(t), recs) }()
	<-flowing
	t0 := time.Now()
	e.Shutdown()
	t.Logf("shutdown took %s", time.Since(t0))
	errs := <-result
	t.Logf("send returned after %s", time.Since(t0))
	var failed []spool.Record
	for i, err := range errs {
		if err != nil {
			if sink.IsPermanent(err) {
				t.Fatalf("record %d: permanent error during an outage: %v", i, err)
			}
			failed = append(failed, recs[i])
		}
	}
	t.Logf("%d of %d records failed in the outage; first error: %v", len(failed), len(recs), firstErr(errs))
	up := s.nc.StatusChanged(nats.CONNECTED)
	t0 = time.Now()
	startEmbedded(t, dir, listen)
	t.Logf("restart took %s", time.Since(t0))
	<-up
	t.Logf("reconnect after %s", time.Since(t0))
	sendAll(t, s, failed)
	checkStream(t, url, DefaultStream, DefaultSubjectPrefix, recs)
}

func TestSendContextEnds(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, err := range s.Send(ctx, testRecords(0, 10)) {
		if err == nil || sink.IsPermanent(err) || !errors.Is(err, context.Canceled) {
			t.Fatalf("record %d: %v, want a transient context error", i, err)
		}
	}
}

func TestSendClosed(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	s.Close()
	s.Close()
	for _, err := range s.Send(testCtx(t), testRecords(0, 3)) {
		if !errors.Is(err, ErrClosed) || sink.IsPermanent(err) {
			t.Fatalf("Send after Close: %v", err)
		}
	}
}

func TestSendPermanent(t *testing.T) {
	e := startEmbedded(t, "", "")
	url := e.ClientURL()
	// The operator's stream refuses messages over 4 KiB.
	_, err := rawJS(t, url).CreateStream(testCtx(t), natsjs.StreamConfig{
		Name: DefaultStream, Subjects: []string{"trackd.>"}, MaxMsgSize: 4096, Storage: natsjs.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, url, Options{})

	recs := testRecords(0, 8)
	big := func(n int) []byte { return fmt.Appendf(nil, `{"pad":%q}`, strings.Repeat("x", n)) }
	recs[1].Body = big(8 << 10) // over the stream's max message size
	recs[3].Body = big(2 << 20) // over the server's max payload (1 MiB)
	recs[5].Op = "v1.bad op"    // not a valid subject
	recs[6].Op = "v1.*"         // a wildcard
	recs[7].ID = ""             // no dedup key
	wantPermanent := map[int]bool{1: true, 3: true, 5: true, 6: true, 7: true}

	errs := s.Send(testCtx(t), recs)
	var stored []spool.Record
	for i, err := range errs {
		switch {
		case wantPermanent[i] && !sink.IsPermanent(err):
			t.Errorf("record %d: %v, want a permanent error", i, err)
		case !wantPermanent[i] && err != nil:
			t.Errorf("record %d: %v", i, err)
		case err == nil:
			stored = append(stored, recs[i])
		}
	}
	// A poison record does not hold back the others.
	checkStream(t, url, DefaultStream, DefaultSubjectPrefix, stored)
	if got, want := s.Stats(), (Stats{Stored: 3, Permanent: 5}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestNewExistingStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     natsjs.StreamConfig
		opts    Options
		wantErr string // "" for success
	}{
		{
			name: "compatible",
			cfg:  natsjs.StreamConfig{Subjects: []string{"other.>", "trackd.>"}, MaxAge: time.Hour, Duplicates: time.Minute},
		},
		{
			name: "wider subject",
			cfg:  natsjs.StreamConfig{Subjects: []string{"trackd.*.>"}},
		},
		{
			name:    "other subjects",
			cfg:     natsjs.StreamConfig{Subjects: []string{"events.>"}},
			wantErr: `do not capture trackd.<region>.<workspace>.<operation>`,
		},
		{
			name:    "narrower subjects",
			cfg:     natsjs.StreamConfig{Subjects: []string{"trackd.us.>"}},
			wantErr: `do not capture`,
		},
		{
			name:    "fewer replicas",
			cfg:     natsjs.StreamConfig{Subjects: []string{"trackd.>"}},
			opts:    Options{Replicas: 3},
			wantErr: "it has 1 replicas, fewer than the 3 configured",
		},
		{
			name: "several problems",
			cfg:  natsjs.StreamConfig{Subjects: []string{"x.>"}, NoAck: true},
			opts: Options{Replicas: 3},
			wantErr: "do not capture trackd.<region>.<workspace>.<operation>, where trackd publishes\n" +
				"it does not acknowledge publishes (no_ack)\nit has 1 replicas",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEmbedded(t, "", "")
			tc.cfg.Name = DefaultStream
			if _, err := rawJS(t, e.ClientURL()).CreateStream(testCtx(t), tc.cfg); err != nil {
				t.Fatal(err)
			}
			tc.opts.URL = e.ClientURL()
			s, err := New(testCtx(t), tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("New accepted the stream")
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "stream TRACKD exists but does not fit trackd") {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestAsyncPersist: with AsyncPersist, New creates the stream in async
// persist mode; an existing stream keeps its mode (it cannot change).
func TestAsyncPersist(t *testing.T) {
	e := startEmbedded(t, "", "")
	if s := newSink(t, e.ClientURL(), Options{AsyncPersist: true}); !s.AsyncPersist() {
		t.Fatal("the sink does not report the stream's async mode")
	}
	js := rawJS(t, e.ClientURL())
	st, err := js.Stream(testCtx(t), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.CachedInfo().Config.PersistMode; m != natsjs.AsyncPersistMode {
		t.Fatalf("persist mode %v, want async", m)
	}
	if s := newSink(t, e.ClientURL(), Options{}); !s.AsyncPersist() { // accepted, with a warning
		t.Fatal("an existing async stream is not reported as such")
	}
	if s := newSink(t, startEmbedded(t, "", "").ClientURL(), Options{}); s.AsyncPersist() {
		t.Fatal("a default stream is reported async")
	}
}

// TestShrinkDuplicateWindow: with ShrinkDuplicateWindow (the embedded
// server), an existing stream's longer duplicate window is shortened to the
// configured one; without it, or when it is shorter, it is left alone.
func TestShrinkDuplicateWindow(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing time.Duration
		shrink   bool
		want     time.Duration
	}{
		{"longer, shrink", 2 * time.Minute, true, time.Second},
		{"longer, external", 2 * time.Minute, false, 2 * time.Minute},
		{"shorter", 500 * time.Millisecond, true, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEmbedded(t, "", "")
			js := rawJS(t, e.ClientURL())
			if _, err := js.CreateStream(testCtx(t), natsjs.StreamConfig{Name: DefaultStream, Subjects: []string{"trackd.>"}, Duplicates: tc.existing}); err != nil {
				t.Fatal(err)
			}
			newSink(t, e.ClientURL(), Options{DuplicateWindow: time.Second, ShrinkDuplicateWindow: tc.shrink})
			st, err := js.Stream(testCtx(t), DefaultStream)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.CachedInfo().Config.Duplicates; got != tc.want {
				t.Fatalf("duplicate window %v, want %v", got, tc.want)
			}
		})
	}
}

// TestApplyLimits: an existing stream's max age and max bytes follow the
// options where ApplyMaxAge / ApplyMaxBytes say so (0 bytes: no cap), and
// are left alone otherwise.
func TestApplyLimits(t *testing.T) {
	const existingAge, existingBytes = 48 * time.Hour, 1 << 30
	for _, tc := range []struct {
		name      string
		opts      Options
		wantAge   time.Duration
		wantBytes int64
	}{
		{"not applied", Options{MaxAge: time.Hour, MaxBytes: 64 << 20}, existingAge, existingBytes},
		{"both", Options{MaxAge: time.Hour, MaxBytes: 64 << 20, ApplyMaxAge: true, ApplyMaxBytes: true}, time.Hour, 64 << 20},
		{"age only", Options{MaxAge: time.Hour, MaxBytes: 64 << 20, ApplyMaxAge: true}, time.Hour, existingBytes},
		{"defaults", Options{ApplyMaxAge: true, ApplyMaxBytes: true}, DefaultMaxAge, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEmbedded(t, "", "")
			js := rawJS(t, e.ClientURL())
			if _, err := js.CreateStream(testCtx(t), natsjs.StreamConfig{Name: DefaultStream, Subjects: []string{"trackd.>"},
				Duplicates: time.Minute, MaxAge: existingAge, MaxBytes: existingBytes}); err != nil {
				t.Fatal(err)
			}
			newSink(t, e.ClientURL(), tc.opts)
			st, err := js.Stream(testCtx(t), DefaultStream)
			if err != nil {
				t.Fatal(err)
			}
			if c := st.CachedInfo().Config; c.MaxAge != tc.wantAge || c.MaxBytes != tc.wantBytes {
				t.Fatalf("max age %v, max bytes %d; want %v, %d", c.MaxAge, c.MaxBytes, tc.wantAge, tc.wantBytes)
			}
		})
	}
}

func TestVerifyStream(t *testing.T) {
	ok := natsjs.StreamConfig{Subjects: []string{"trackd.>"}, Duplicates: time.Minute, Replicas: 1}
	for _, tc := range []struct {
		name    string
		mod     func(*natsjs.StreamConfig)
		wantErr string
	}{
		{"ok", func(*natsjs.StreamConfig) {}, ""},
		{"more replicas", func(c *natsjs.StreamConfig) { c.Replicas = 3 }, ""},
		{"memory", func(c *natsjs.StreamConfig) { c.Storage = natsjs.MemoryStorage }, ""},
		{"all subjects", func(c *natsjs.StreamConfig) { c.Subjects = []string{">"} }, ""},
		{"no dedup", func(c *natsjs.StreamConfig) { c.Duplicates = 0 }, "no duplicate window"},
		{"sealed", func(c *natsjs.StreamConfig) { c.Sealed = true }, "sealed"},
		{"mirror", func(c *natsjs.StreamConfig) { c.Mirror = &natsjs.StreamSource{Name: "X"} }, "mirror"},
		{"no ack", func(c *natsjs.StreamConfig) { c.NoAck = true }, "no_ack"},
		{"no subjects", func(c *natsjs.StreamConfig) { c.Subjects = nil }, "do not capture"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			o := Options{URL: "x"}
			o.setDefaults()
			err := verifyStream(cfg, &o)
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("verifyStream = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"trackd.>", "trackd.*.*.>", true},
		{">", "trackd.*.*.>", true},
		{"*.>", "trackd.*.*.>", true},
		{"trackd.*.>", "trackd.*.*.>", true},
		{"trackd.*.*.>", "trackd.*.*.>", true},
		{"trackd.*.*.*.>", "trackd.*.*.>", false},
		{"trackd.us.>", "trackd.*.*.>", false},
		{"trackd", "trackd.*.*.>", false},
		{"other.>", "trackd.*.*.>", false},
		{"trackd.*", "trackd.*.*.>", false},
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.>", "a", false},
	} {
		if got := covers(tc.p, tc.s); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

func TestCheckLiteralSubject(t *testing.T) {
	for s, ok := range map[string]bool{
		"trackd.us.ws.v1.identify": true,
		"a":                        true,
		"a*b.c>":                   true,
		"":                         false,
		"a..b":                     false,
		".a":                       false,
		"a.":                       false,
		"a.*.b":                    false,
		"a.>":                      false,
		"a b":                      false,
		"a\tb":                     false,
		"a\x00b":                   false,
	} {
		if err := checkLiteralSubject(s); (err == nil) != ok {
			t.Errorf("checkLiteralSubject(%q) = %v", s, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{Name: "Bad Name", Stream: "a.b", SubjectPrefix: "x.*", Replicas: 9, MaxPending: -1,
		DuplicateWindow: time.Hour, MaxAge: time.Minute, ConnOptions: ConnOptions{TLSCertFile: "c"}}
	o.setDefaults()
	err := o.validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"no NATS URL", "sink name", "stream name", "subject prefix", "replicas 9",
		"max pending", "exceeds max age", "certificate and key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestNewUnreachable(t *testing.T) {
	e := startEmbedded(t, "", "")
	url := e.ClientURL()
	e.Shutdown()
	_, err := New(testCtx(t), Options{URL: url, ConnOptions: ConnOptions{ConnectTimeout: time.Second}})
	if err == nil || !strings.Contains(err.Error(), "connect to "+url) {
		t.Fatalf("New = %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	got := redactURL("nats://u:secret@h1:4222,nats://tok@h2:4222,h3:4222")
	if strings.Contains(got, "secret") || strings.Contains(got, "tok") || got != "nats://redacted@h1:4222,nats://redacted@h2:4222,h3:4222" {
		t.Errorf("redactURL = %q", got)
	}
}

// TestAuth checks that credentials reach the server: user/password and
// token. (A creds file and TLS are passed the same way, to
// nats.UserCredentials, nats.RootCAs and nats.ClientCert.)
func TestAuth(t *testing.T) {
	for _, tc := range []struct {
		name       string
		server     server.Options
		good, none ConnOptions
	}{
		{"user", server.Options{Username: "trackd", Password: "pw"},
			ConnOptions{User: "trackd", Password: "pw"}, ConnOptions{User: "trackd", Password: "wrong"}},
		{"token", server.Options{Authorization: "s3cret"}, ConnOptions{Token: "s3cret"}, ConnOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			so := tc.server
			so.Host, so.Port, so.JetStream, so.StoreDir, so.NoSigs, so.NoLog = "127.0.0.1", -1, true, t.TempDir(), true, true
			srv, err := server.NewServer(&so)
			if err != nil {
				t.Fatal(err)
			}
			srv.Start()
			t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
			if !srv.ReadyForConnections(10 * time.Second) {
				t.Fatal("server not ready")
			}
			bad := Options{URL: srv.ClientURL(), ConnOptions: tc.none}
			if s, err := New(testCtx(t), bad); err == nil {
				s.Close()
				t.Fatal("connected without the right credentials")
			} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("error %q does not say why", err)
			}
			s := newSink(t, srv.ClientURL(), Options{ConnOptions: tc.good})
			sendAll(t, s, testRecords(0, 5))

			var out bytes.Buffer
			if err := Tail(testCtx(t), srv.ClientURL(), TailOptions{ConnOptions: tc.good, All: true, Count: 5}, &out); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(out.String(), "\n"); n != 5 {
				t.Errorf("tail printed %d lines", n)
			}
		})
	}
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
