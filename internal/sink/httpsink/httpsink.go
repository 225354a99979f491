// Package httpsink is the HTTP sink: it POSTs spool records to a receiver's
// URL as CloudEvents in structured mode (docs/ENVELOPE.md, envelope.Structured:
// the attributes as JSON members, the validated body byte for byte under
// "data").
//
// # Requests
//
// Batch mode (the default) sends one POST per up to Options.MaxBatch records
// (a Send of more records makes several POSTs, in order), with
// Content-Type: application/cloudevents-batch+json and a JSON array of
// structured events as the body. Single mode sends one POST per record with
// Content-Type: application/cloudevents+json and one structured event. Within
// a Send, POSTs go one after the other, so the receiver sees records in spool
// order; single mode therefore costs one round trip per record.
//
// Every request carries Options.Headers (e.g. Authorization; their values are
// never logged and are scrubbed from error messages), User-Agent: trackd
// (unless Headers sets it) and an Idempotency-Key:
//
//   - single mode: the record ID;
//   - batch mode: the lower-case hex SHA-256 of the batch's record IDs joined
//     by "\n" (BatchKey), so a resend of the same batch (a retry after a
//     timeout) carries the same key.
//
// A batch key only matches when the batch is made of exactly the same
// records, which is not always so after a crash (the forwarder may cut its
// batches elsewhere) or when a rejected batch is split (below). Every
// structured event carries its record ID as "id", the same on every resend:
// a receiver that needs exactly-once deduplicates events by "id" (the
// CloudEvents spec's own rule: source + id is unique), and may use the
// Idempotency-Key as a fast path for whole resent requests.
//
// Redirects are not followed (a 301/302 would turn the POST into a GET):
// point the URL at the final address. HTTP_PROXY, HTTPS_PROXY and NO_PROXY
// are honoured. Logs and errors show the URL without its password and with
// its query values replaced by "redacted" (a query may carry an API key).
//
// # Responses
//
// Each POST's outcome applies to every record it carried:
//
//   - 2xx: acknowledged, all of them. A receiver must not answer 2xx unless it
//     has durably accepted every event of the request; per-item results
//     (a 207 body) are not read.
//   - 408, 409, 425, 429, 5xx, a timeout (Options.Timeout per request) or a
//     connection error: transient; the forwarder retries.
//   - Misconfiguration: 3xx, 401, 403, 404, 405, 407, 410, 414, 415, 421 and
//     431 describe the endpoint or the credentials, not a record: they are
//     transient too, so nothing is quarantined while an operator fixes the
//     URL or the token, and are logged at error level once per burst (until
//     the next 2xx).
//   - Any other 4xx (400, 413, 422, ...): the receiver refused the content for
//     good. A request of one record gets sink.Permanent (the forwarder
//     quarantines it). A request of several is split in halves, each sent
//     again (depth first, in order) until the refused records are isolated,
//     so one bad record never quarantines the good ones beside it; a receiver
//     that refuses everything costs 2n-1 POSTs for n records, then all n
//     are quarantined.
//
// After the first transient failure a Send makes no more POSTs and reports
// the records not sent as transient (errNotSent), so a retry keeps the
// spool's order.
//
// # Retry-After
//
// A non-2xx response with Retry-After (delay-seconds or an HTTP date) pauses
// the sink until then, capped at MaxRetryAfter: no POST leaves before. A Send
// during a pause waits for its end when ctx allows (no deadline, or a
// deadline after the pause ends) and then POSTs; otherwise it returns at
// once, without contacting the receiver, a *RetryAfterError (transient) for
// every record. With the forwarder's defaults (SendTimeout 30s) pauses under
// 30s are waited out inside Send; longer ones make Sends fail fast until the
// pause ends, while the forwarder backs off.
package httpsink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

// Modes of Options.Mode.
const (
	ModeBatch  = "batch"
	ModeSingle = "single"
)

// Content types of the request bodies.
const (
	ContentTypeBatch  = "application/cloudevents-batch+json"
	ContentTypeSingle = "application/cloudevents+json"
)

// Defaults of Options, and the cap on Retry-After.
const (
	DefaultName     = "http"
	DefaultTimeout  = 10 * time.Second
	DefaultMaxBatch = 500
	// MaxRetryAfter caps the pause a receiver's Retry-After can impose.
	MaxRetryAfter = 5 * time.Minute
)

// Options configure a Sink. Zero values are the documented defaults.
type Options struct {
	// URL receives the POSTs: http or https. Required.
	URL string
	// Name names the sink and its spool cursor; default DefaultName. Must
	// match [a-z0-9_-]{1,64}.
	Name string
	// Mode is ModeBatch (default) or ModeSingle; see the package comment.
	Mode string
	// Headers are sent with every request, e.g. Authorization. Values are
	// never logged. Content-Type, Content-Length, Idempotency-Key, Host,
	// Transfer-Encoding and Connection are the sink's own and refused here.
	Headers map[string]string
	// Timeout bounds each request (connect, send, response, body);
	// default DefaultTimeout.
	Timeout time.Duration
	// MaxBatch is the most records per POST in batch mode; default
	// DefaultMaxBatch.
	MaxBatch int
	// TLSCAFile verifies the receiver's certificate against this PEM bundle
	// instead of the system roots (https only).
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and key for
	// receivers that require mutual TLS (https only). Both or neither.
	TLSCertFile, TLSKeyFile string
	// Logger receives misconfiguration and Retry-After notices; nil
	// discards.
	Logger *slog.Logger
}

// reserved are the headers the sink sets itself.
var reserved = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Idempotency-Key": true,
	"Host": true, "Transfer-Encoding": true, "Connection": true,
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Mode == "" {
		o.Mode = ModeBatch
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// validate reports every problem with o at once; on success it returns the
// parsed URL, the headers to send and the TLS configuration (nil for the
// transport's default).
func (o *Options) validate() (*url.URL, http.Header, *tls.Config, error) {
	var errs []error
	u, err := url.Parse(o.URL)
	switch {
	case o.URL == "":
		errs = append(errs, errors.New("no URL"))
	case err != nil:
		errs = append(errs, fmt.Errorf("URL: %w", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("URL %s: scheme must be http or https", redactURL(u)))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("URL %s: no host", redactURL(u)))
	}
	if !spool.ValidCursorName(o.Name) {
		errs = append(errs, fmt.Errorf("sink name %q does not match [a-z0-9_-]{1,64}", o.Name))
	}
	if o.Mode != ModeBatch && o.Mode != ModeSingle {
		errs = append(errs, fmt.Errorf("mode %q: want %q or %q", o.Mode, ModeBatch, ModeSingle))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", o.Timeout))
	}
	if o.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("max batch %d is negative", o.MaxBatch))
	}
	h := make(http.Header, len(o.Headers)+1)
	seen := make(map[string]bool, len(o.Headers))
	for k, v := range o.Headers {
		ck := http.CanonicalHeaderKey(k)
		switch {
		case !validHeaderName(k):
			errs = append(errs, fmt.Errorf("header name %q is not a valid token", k))
		case seen[ck]:
			errs = append(errs, fmt.Errorf("header %s is given twice (names are case-insensitive)", ck))
		case reserved[ck]:
			errs = append(errs, fmt.Errorf("header %s is set by the sink", ck))
		case !validHeaderValue(v):
			// The value itself is never shown: it may be a secret.
			errs = append(errs, fmt.Errorf("header %s: value has a control character", ck))
		default:
			h.Set(ck, v)
		}
		seen[ck] = true
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", "trackd")
	}
	tlsConf, tlsErrs := o.tlsConfig(u != nil && u.Scheme == "https")
	errs = append(errs, tlsErrs...)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, nil, fmt.Errorf("httpsink: options: %w", err)
	}
	return u, h, tlsConf, nil
}

// tlsConfig loads the TLS files; https says whether the URL uses TLS.
func (o *Options) tlsConfig(https bool) (*tls.Config, []error) {
	if o.TLSCAFile == "" && o.TLSCertFile == "" && o.TLSKeyFile == "" {
		return nil, nil
	}
	var errs []error
	if !https {
		errs = append(errs, errors.New("TLS files given but the URL is not https"))
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("TLS CA file: %w", err))
		} else {
			conf.RootCAs = x509.NewCertPool()
			if !conf.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("TLS CA file %s: no PEM certificate", o.TLSCAFile))
			}
		}
	}
	switch {
	case (o.TLSCertFile == "") != (o.TLSKeyFile == ""):
		errs = append(errs, errors.New("TLS client certificate and key go together"))
	case o.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("TLS client certificate: %w", err))
		} else {
			conf.Certificates = []tls.Certificate{cert}
		}
	}
	return conf, errs
}

// redactURL shows u without secrets: the password and the query's values
// (a query may carry an API key) are replaced by "redacted".
func redactURL(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{"redacted"}
		}
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validHeaderValue refuses control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("httpsink: sink closed")

// errNotSent marks the records of a Send left unsent after an earlier POST
// failed transiently (so that a retry keeps their order).
var errNotSent = errors.New("httpsink: not sent: an earlier request of the batch failed")

// Sink POSTs records to a receiver. It is safe for concurrent use.
type Sink struct {
	name     string
	url      string // as given, for requests
	redacted string // for logs and errors
	single   bool
	maxBatch int
	timeout  time.Duration
	header   http.Header // sent on every request; never logged
	secrets  []string    // header values scrubbed from error messages
	log      *slog.Logger
	client   *http.Client

	done  context.Context // cancelled by Close
	close context.CancelFunc

	mu         sync.Mutex // guards the fields below
	notBefore  time.Time  // no POST before this (Retry-After)
	misconfig  int        // status of the current misconfiguration burst, 0 if none
	pauseNoted bool       // a Retry-After pause was logged since the last 2xx

	requests, acked, transient, permanent, splits atomic.Uint64
}

var _ sink.Sink = (*Sink)(nil)

// New checks opts, reporting every problem at once, and returns a Sink. It
// does not contact the receiver.
func New(opts Options) (*Sink, error) {
	opts.setDefaults()
	u, header, tlsConf, err := opts.validate()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	if tlsConf != nil {
		tr.TLSClientConfig = tlsConf
	}
	var secrets []string
	for _, v := range opts.Headers {
		if v = strings.TrimSpace(v); len(v) >= 4 {
			secrets = append(secrets, v)
		}
		// Also the token alone, for "Bearer <token>" and "Basic <b64>".
		if _, tok, ok := strings.Cut(strings.TrimSpace(v), " "); ok && len(tok) >= 4 {
			secrets = append(secrets, tok)
		}
	}
	done, cancel := context.WithCancel(context.Background())
	return &Sink{
		name:     opts.Name,
		url:      u.String(),
		redacted: redactURL(u),
		single:   opts.Mode == ModeSingle,
		maxBatch: opts.MaxBatch,
		timeout:  opts.Timeout,
		header:   header,
		secrets:  secrets,
		log:      opts.Logger.With("sink", opts.Name, "url", redactURL(u)),
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		done:  done,
		close: cancel,
	}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Name implements sink.Sink.
func (s *Sink) Name() string { return s.name }

// Close aborts the requests in progress and releases idle connections;
// later Sends return ErrClosed. Safe to call more than once.
func (s *Sink) Close() error {
	s.close()
	s.client.CloseIdleConnections()
	return nil
}

// Stats count the sink's work since New.
type Stats struct {
	// Requests is POSTs sent (answered or not).
	Requests uint64
	// Acknowledged, Transient and Permanent count records by Send outcome.
	Acknowledged, Transient, Permanent uint64
	// Splits counts requests refused for good that were split to isolate
	// the refused records.
	Splits uint64
}

// Stats returns the counts so far, for metrics.
func (s *Sink) Stats() Stats {
	return Stats{
		Requests:     s.requests.Load(),
		Acknowledged: s.acked.Load(),
		Transient:    s.transient.Load(),
		Permanent:    s.permanent.Load(),
		Splits:       s.splits.Load(),
	}
}

// BatchKey is the Idempotency-Key of a batch-mode request: the lower-case
// hex SHA-256 of the record IDs joined by "\n".
func BatchKey(recs []spool.Record) string {
	h := sha256.New()
	for i := range recs {
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		io.WriteString(h, recs[i].ID)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Send implements sink.Sink; see the package comment for what it sends and
// how it maps responses to the per-record results.
func (s *Sink) Send(ctx context.Context, recs []spool.Record) []error {
	errs := make([]error, len(recs))
	if len(recs) == 0 {
		return errs
	}
	if s.done.Err() != nil {
		return sink.Fill(len(recs), ErrClosed)
	}
	// Records without an ID have no dedup key: refused for good. The rest
	// go out in order, remembering where each came from.
	idx := make([]int, 0, len(recs))
	for i := range recs {
		if recs[i].ID == "" {
			errs[i] = sink.Permanent(errors.New("httpsink: record has no ID (the dedup key)"))
			continue
		}
		idx = append(idx, i)
	}
	send := recs
	if len(idx) < len(recs) {
		send = make([]spool.Record, len(idx))
		for j, i := range idx {
			send[j] = recs[i]
		}
	}
	out := make([]error, len(send))
	size := s.maxBatch
	if s.single {
		size = 1
	}
	for start := 0; start < len(send); start += size {
		end := min(start+size, len(send))
		if !s.sendChunk(ctx, send[start:end], out[start:end]) {
			for i := end; i < len(out); i++ {
				out[i] = errNotSent
			}
			break
		}
	}
	for j, i := range idx {
		errs[i] = out[j]
	}
	for _, err := range errs {
		switch {
		case err == nil:
			s.acked.Add(1)
		case sink.IsPermanent(err):
			s.permanent.Add(1)
		default:
			s.transient.Add(1)
		}
	}
	return errs
}

// sendChunk POSTs recs as one request and fills errs (one per record). A
// refusal for good of several records splits them (see the package
// comment). It returns false after a transient failure: the caller sends
// nothing more.
func (s *Sink) sendChunk(ctx context.Context, recs []spool.Record, errs []error) bool {
	err := s.post(ctx, recs)
	switch {
	case err == nil:
		return true
	case !sink.IsPermanent(err):
		for i := range errs {
			errs[i] = err
		}
		return false
	case len(recs) == 1:
		errs[0] = err
		return true
	}
	s.splits.Add(1)
	h := len(recs) / 2
	if !s.sendChunk(ctx, recs[:h], errs[:h]) {
		for i := h; i < len(errs); i++ {
			errs[i] = errNotSent
		}
		return false
	}
	return s.sendChunk(ctx, recs[h:], errs[h:])
}

// post sends one request carrying recs and classifies the outcome: nil
// (acknowledged), a sink.Permanent error, or a transient one.
func (s *Sink) post(ctx context.Context, recs []spool.Record) error {
	if err := s.waitPause(ctx); err != nil {
		return err
	}
	body, contentType, key := s.encode(recs)
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	stop := context.AfterFunc(s.done, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return sink.Permanent(fmt.Errorf("httpsink: new request: %w", err))
	}
	req.Header = s.header.Clone()
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Idempotency-Key", key)
	s.requests.Add(1)
	resp, err := s.client.Do(req)
	if err != nil {
		return s.transportError(ctx, rctx, err)
	}
	// Keep the start of the body for the error message, and read the rest
	// (up to a limit) so the connection can be reused.
	excerpt, rerr := readExcerpt(resp.Body)
	resp.Body.Close()
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		if rerr != nil {
			// The status is the receiver's answer; a body cut short by the
			// timeout does not undo it.
			s.log.Debug("httpsink: reading a 2xx response body", "err", rerr)
		}
		s.succeeded()
		return nil
	}
	s.notePause(resp.Header.Get("Retry-After"), code)
	err = &StatusError{Code: code, Status: resp.Status, URL: s.redacted, Body: s.scrub(excerpt), Records: len(recs)}
	switch classify(code) {
	case permanent:
		return sink.Permanent(err)
	case misconfigured:
		s.noteMisconfig(code, resp.Header.Get("Location"))
	}
	return err
}

// transportError wraps a failed request (no response) as a transient
// error, saying whether the sink's timeout, the caller's context or Close
// ended it.
func (s *Sink) transportError(ctx, rctx context.Context, err error) error {
	switch {
	case s.done.Err() != nil:
		return ErrClosed
	case ctx.Err() != nil:
		return fmt.Errorf("httpsink: POST %s: %w", s.redacted, ctx.Err())
	case rctx.Err() != nil:
		return fmt.Errorf("httpsink: POST %s: no answer within %s: %w", s.redacted, s.timeout, context.DeadlineExceeded)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the URL, unredacted
	}
	return fmt.Errorf("httpsink: POST %s: %w", s.redacted, err)
}

// encode returns the request body, its content type and Idempotency-Key.
func (s *Sink) encode(recs []spool.Record) (body []byte, contentType, key string) {
	if s.single {
		return envelope.Structured(&recs[0]), ContentTypeSingle, recs[0].ID
	}
	n := 2
	for i := range recs {
		n += 320 + len(recs[i].Body)
	}
	body = make([]byte, 0, n)
	body = append(body, '[')
	for i := range recs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, envelope.Structured(&recs[i])...)
	}
	body = append(body, ']')
	return body, ContentTypeBatch, BatchKey(recs)
}

const (
	excerptLen  = 256
	maxDrainLen = 64 << 10
)

// readExcerpt returns up to excerptLen bytes of r and discards the rest, up
// to maxDrainLen.
func readExcerpt(r io.Reader) ([]byte, error) {
	b := make([]byte, excerptLen)
	n, err := io.ReadFull(r, b)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return b[:n], nil
	}
	if err != nil {
		return b[:n], err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(r, maxDrainLen))
	return b[:n], err
}

// scrub makes a response excerpt safe to show: valid UTF-8, no control
// characters, and no header value of ours (a receiver may echo them).
func (s *Sink) scrub(b []byte) string {
	t := strings.ToValidUTF8(string(b), "\uFFFD")
	t = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, t)
	for _, v := range s.secrets {
		t = strings.ReplaceAll(t, v, "[redacted]")
	}
	if len(b) == excerptLen {
		t += "…"
	}
	return strings.TrimSpace(t)
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Code    int
	Status  string // e.g. "503 Service Unavailable"
	URL     string // redacted
	Body    string // the start of the response body, scrubbed
	Records int    // how many records the request carried
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "httpsink: POST %s (%d records): %s", e.URL, e.Records, e.Status)
	if e.Body != "" {
		b.WriteString(": ")
		b.WriteString(e.Body)
	}
	return b.String()
}

type class int

const (
	transient class = iota
	misconfigured
	permanent
)

// classify maps a non-2xx status to what it says about the records (see
// the package comment).
func classify(code int) class {
	switch {
	case code >= 300 && code < 400:
		return misconfigured
	case code >= 400 && code < 500:
		switch code {
		case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
			return transient
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
			http.StatusMethodNotAllowed, http.StatusProxyAuthRequired, http.StatusGone,
			http.StatusRequestURITooLong, http.StatusUnsupportedMediaType,
			http.StatusMisdirectedRequest, http.StatusRequestHeaderFieldsTooLarge:
			return misconfigured
		}
		return permanent
	}
	return transient // 5xx and anything unexpected
}

// succeeded ends a misconfiguration burst and a pause notice.
func (s *Sink) succeeded() {
	s.mu.Lock()
	code := s.misconfig
	s.misconfig, s.pauseNoted = 0, false
	s.mu.Unlock()
	if code != 0 {
		s.log.Info("httpsink: receiver accepts requests again", "after_status", code)
	}
}

// noteMisconfig logs a misconfiguration status once per burst (and again if
// the status changes).
func (s *Sink) noteMisconfig(code int, location string) {
	s.mu.Lock()
	first := s.misconfig != code
	s.misconfig = code
	s.mu.Unlock()
	if !first {
		return
	}
	attrs := []any{"status", code, "hint", hint(code)}
	if location != "" {
		if u, err := url.Parse(location); err == nil {
			attrs = append(attrs, "location", redactURL(u))
		}
	}
	s.log.Error("httpsink: the receiver refuses trackd's requests; records wait in the spool until the configuration is fixed", attrs...)
}

func hint(code int) string {
	switch {
	case code >= 300 && code < 400:
		return "redirects are not followed: set the URL to the final address"
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusProxyAuthRequired:
		return "check the credentials in the sink's headers"
	case code == http.StatusUnsupportedMediaType:
		return "check the sink's mode (batch or single) against what the receiver accepts"
	}
	return "check the sink's URL"
}
