// Package jetstream is the NATS JetStream sink, trackd's default back end
// (DESIGN §2.7): it publishes each spool record as one CloudEvents
// binary-mode message (docs/ENVELOPE.md) to a JetStream stream, with the
// record ID as Nats-Msg-Id so that resends are deduplicated. The same code
// serves the embedded server a single node starts (StartEmbedded) and an
// external NATS cluster (--nats-url). Tail prints what the stream holds,
// for `trackd tail`.
//
// # Messages
//
// Subject: envelope.NATSSubject, <prefix>.<region>.<workspace>.<operation>
// (e.g. trackd.us.46be54768e7d49ab2628.v1.identify). Headers: every
// CloudEvents attribute as ce-<name> (ce-id, ce-source, ce-specversion,
// ce-type, ce-time, ...), Nats-Msg-Id = the record ID, and Content-Type:
// application/json when there is a body. Data: the validated request body,
// byte for byte (empty for operations without one).
//
// # Stream
//
// New creates the stream if it is absent (file storage, limits retention,
// subjects "<prefix>.>", Options.Replicas replicas, the duplicate window
// and age limit of Options), and otherwise verifies it without changing it:
// the stream belongs to the operator once it exists. Verification fails,
// listing every problem, when the stream does not capture every trackd
// subject, does not deduplicate (no duplicate window), does not ack
// (no_ack), is sealed or a mirror, or has fewer replicas than Options asks
// for (more is fine: an operator may run R3 under a default R1 trackd).
// Memory storage and a duplicate window shorter than Options' are logged
// as warnings.
//
// # Dedup window
//
// JetStream remembers message IDs for the stream's duplicate window
// (default here 2 minutes, nats-server's default). A resend after a trackd
// crash comes within seconds of the restart, and a forwarder retry within
// its backoff, so 2 minutes covers both while bounding the memory JetStream
// spends on remembered IDs (one entry per message in the window: at 50k
// msg/s, 6 M entries). A replay of an older time range (`trackd replay`)
// is outside the window by design and is stored again; consumers that
// need exactly-once across replays dedup on ce-id.
//
// # Errors
//
// Send reports per record: nil on a PubAck (a duplicate ack too: the
// message is stored), a sink.Permanent error for what can never be stored
// (a message over the server's max payload or the stream's max message or
// header size, a record whose subject is not a valid publish subject, a
// record without an ID), and a transient error for everything else:
// timeouts, no responders (no stream leader, or the stream is gone), a
// lost connection, a full stream or account (backpressure: the backlog
// stays in the spool). After the first transient failure in a batch the
// rest of the batch is not published, so a resend keeps the spool's order.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

// Defaults of Options.
const (
	DefaultName            = "jetstream"
	DefaultStream          = "TRACKD"
	DefaultSubjectPrefix   = "trackd"
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultMaxPending      = 1024
	DefaultAckTimeout      = 30 * time.Second
	DefaultConnectTimeout  = 5 * time.Second
)

// ConnOptions are how to reach and authenticate to a NATS server; they are
// passed to nats.Connect. All are optional (the embedded server needs none).
type ConnOptions struct {
	// CredsFile is a NATS credentials file (JWT + NKey seed).
	CredsFile string
	// User and Password authenticate with user/password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLSCAFile verifies the server's certificate against this CA bundle.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and key, for
	// servers that require mutual TLS. Both or neither.
	TLSCertFile, TLSKeyFile string
	// ConnectTimeout bounds each connection attempt (dial and handshake);
	// default DefaultConnectTimeout. After the first connection the client
	// reconnects forever.
	ConnectTimeout time.Duration
}

// Options configures a Sink. Zero values are the documented defaults.
type Options struct {
	// URL is the NATS server: the embedded server's ClientURL, or an
	// external --nats-url (comma-separated for several seeds). Required.
	URL string
	ConnOptions
	// Name is the sink's name, which names its spool cursor; default
	// DefaultName. Must match [a-z0-9_-]{1,64}.
	Name string
	// Stream is the JetStream stream; default DefaultStream.
	Stream string
	// SubjectPrefix starts every subject; default DefaultSubjectPrefix.
	// The stream's subjects are "<prefix>.>".
	SubjectPrefix string
	// Replicas is the stream's replica count when New creates it, and the
	// minimum it accepts in an existing one; default 1 (a single server;
	// use 3 for a cluster).
	Replicas int
	// DuplicateWindow is how long JetStream remembers message IDs to drop
	// resends; default DefaultDuplicateWindow. See the package comment.
	DuplicateWindow time.Duration
	// MaxAge is how long the stream keeps messages; default DefaultMaxAge
	// (7 days). Consumers must read within it.
	MaxAge time.Duration
	// MaxBytes caps the stream's size; 0 is unlimited (bounded by the
	// server's JetStream storage limit). At the cap the oldest messages
	// are discarded (limits retention).
	MaxBytes int64
	// MaxPending bounds the publishes awaiting an ack, over all Sends;
	// default DefaultMaxPending.
	MaxPending int
	// AckTimeout is how long a publish waits for its ack before it fails
	// (transiently), even when the Send's context has no deadline; default
	// DefaultAckTimeout.
	AckTimeout time.Duration
	// Logger receives connection events and stream warnings; nil discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

var (
	streamRE = regexp.MustCompile(`^[^\s.*>/\\]{1,255}$`)
)

// validate reports every problem with o at once.
func (o *Options) validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, errors.New("no NATS URL"))
	}
	if !spool.ValidCursorName(o.Name) {
		errs = append(errs, fmt.Errorf("sink name %q does not match [a-z0-9_-]{1,64}", o.Name))
	}
	if !streamRE.MatchString(o.Stream) {
		errs = append(errs, fmt.Errorf("stream name %q: no spaces, '.', '*', '>', '/' or '\\'", o.Stream))
	}
	if err := checkLiteralSubject(o.SubjectPrefix); err != nil {
		errs = append(errs, fmt.Errorf("subject prefix: %w", err))
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: want 1 to 5", o.Replicas))
	}
	if o.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("duplicate window %s is negative", o.DuplicateWindow))
	}
	if o.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age %s is negative", o.MaxAge))
	}
	if o.MaxAge > 0 && o.DuplicateWindow > o.MaxAge {
		errs = append(errs, fmt.Errorf("duplicate window %s exceeds max age %s", o.DuplicateWindow, o.MaxAge))
	}
	if o.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max bytes %d is negative", o.MaxBytes))
	}
	if o.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("max pending %d: want at least 1", o.MaxPending))
	}
	if o.AckTimeout < 0 {
		errs = append(errs, fmt.Errorf("ack timeout %s is negative", o.AckTimeout))
	}
	if err := o.ConnOptions.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("jetstream: options: %w", err)
	}
	return nil
}

func (c *ConnOptions) validate() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("TLS client certificate and key go together")
	}
	if c.ConnectTimeout < 0 {
		return fmt.Errorf("connect timeout %s is negative", c.ConnectTimeout)
	}
	return nil
}

// connect opens a connection that reconnects forever. Publishes made
// while disconnected fail at once (no reconnect buffer): the spool is the
// buffer, and Send reports the outage promptly.
func connect(url string, c ConnOptions, name string, log *slog.Logger) (*nats.Conn, error) {
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "url", nc.ConnectedUrlRedacted(), "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats error", "err", err)
		}),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.User != "" || c.Password != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLSCAFile))
	}
	if c.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLSCertFile, c.TLSKeyFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: connect to %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// redactURL hides passwords and tokens in URLs for messages.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			parts[i] = scheme + "://redacted@" + rest[at+1:]
		}
	}
	return strings.Join(parts, ",")
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("jetstream: sink closed")

// errNotSent marks the records of a batch left unpublished after an
// earlier record failed transiently (so that a resend keeps their order).
var errNotSent = errors.New("jetstream: not sent: an earlier record of the batch failed")

// Sink publishes records to a JetStream stream. It is safe for concurrent
// use.
type Sink struct {
	name   string
	prefix string
	stream string
	log    *slog.Logger
	nc     *nats.Conn
	js     natsjs.JetStream

	// slots bounds the publishes awaiting an ack over all Sends: a Send
	// puts a token in before publishing and takes one out when it is done
	// with the publish's future.
	slots chan struct{}

	closeOnce sync.Once
	closed    chan struct{} // closed by Close

	stored, duplicates, transient, permanent atomic.Uint64
}

// Stats counts Send's outcomes per record since New.
type Stats struct {
	// Stored is records acknowledged as newly stored.
	Stored uint64
	// Duplicates is records acknowledged as already stored (resends
	// within the duplicate window).
	Duplicates uint64
	// Transient and Permanent count records that failed.
	Transient, Permanent uint64
}

// Stats returns the counts so far, for metrics.
func (s *Sink) Stats() Stats {
	return Stats{
		Stored:     s.stored.Load(),
		Duplicates: s.duplicates.Load(),
		Transient:  s.transient.Load(),
		Permanent:  s.permanent.Load(),
	}
}

var _ sink.Sink = (*Sink)(nil)

// New connects to opts.URL, creates or verifies the stream (see the
// package comment) and returns a Sink. ctx bounds the stream calls; each
// connection attempt is bounded by opts.ConnectTimeout. It fails, with a
// message naming the problem, when the server cannot be reached, has no
// JetStream, or the existing stream does not fit trackd.
func New(ctx context.Context, opts Options) (*Sink, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	nc, err := connect(opts.URL, opts.ConnOptions, "trackd sink "+opts.Name, opts.Logger)
	if err != nil {
		return nil, err
	}
	js, err := natsjs.New(nc,
		// The slots keep us within MaxPending; the library's own cap is
		// a backstop that also counts publishes a Send gave up waiting for
		// (they stay pending until AckTimeout).
		natsjs.WithPublishAsyncMaxPending(4*opts.MaxPending),
		natsjs.WithPublishAsyncTimeout(opts.AckTimeout),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := ensureStream(ctx, js, &opts); err != nil {
		nc.Close()
		return nil, err
	}
	return &Sink{
		name:   opts.Name,
		prefix: opts.SubjectPrefix,
		stream: opts.Stream,
		log:    opts.Logger,
		nc:     nc,
		js:     js,
		slots:  make(chan struct{}, opts.MaxPending),
		closed: make(chan struct{}),
	}, nil
}

// Name implements sink.Sink.
func (s *Sink) Name() string { return s.name }

// Stream returns the stream's name.
func (s *Sink) Stream() string { return s.stream }

// Close closes the connection. Sends in progress return ErrClosed for the
// records not yet acknowledged. Safe to call more than once.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.nc.Close()
	})
	return nil
}

// streamConfig is the stream New creates.
func streamConfig(o *Options) natsjs.StreamConfig {
	maxBytes := o.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return natsjs.StreamConfig{
		Name:        o.Stream,
		Description: "trackd: Customer.io Track API calls as CloudEvents (binary mode); see docs/ENVELOPE.md",
		Subjects:    []string{o.SubjectPrefix + ".>"},
		Retention:   natsjs.LimitsPolicy,
		Storage:     natsjs.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
		MaxAge:      o.MaxAge,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
		Discard:     natsjs.DiscardOld,
	}
}

// ensureStream creates the stream if absent, or verifies it.
func ensureStream(ctx context.Context, js natsjs.JetStream, o *Options) error {
	st, err := js.Stream(ctx, o.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, streamConfig(o))
		if err == nil {
			o.Logger.Info("created jetstream stream", "stream", o.Stream,
				"subjects", o.SubjectPrefix+".>", "replicas", o.Replicas,
				"duplicate_window", o.DuplicateWindow, "max_age", o.MaxAge)
			return nil
		}
		if !errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("jetstream: create stream %s: %w", o.Stream, err)
		}
		// Another node created it meanwhile, differently: verify theirs.
		st, err = js.Stream(ctx, o.Stream)
	}
	if err != nil {
		return fmt.Errorf("jetstream: look up stream %s: %w", o.Stream, err)
	}
	return verifyStream(st.CachedInfo().Config, o)
}

// verifyStream reports, all at once, how an existing stream's
// configuration breaks trackd, and logs what merely weakens it.
func verifyStream(cfg natsjs.StreamConfig, o *Options) error {
	// What trackd publishes: <prefix>.<region>.<workspace>.<operation>,
	// the operation being one token or more.
	want := o.SubjectPrefix + ".*.*.>"
	var errs []error
	if !coversAny(cfg.Subjects, want) {
		errs = append(errs, fmt.Errorf("its subjects %q do not capture %s.<region>.<workspace>.<operation>, where trackd publishes",
			cfg.Subjects, o.SubjectPrefix))
	}
	if cfg.Duplicates <= 0 {
		errs = append(errs, errors.New("it has no duplicate window, so resends would be stored twice"))
	}
	if cfg.NoAck {
		errs = append(errs, errors.New("it does not acknowledge publishes (no_ack)"))
	}
	if cfg.Sealed {
		errs = append(errs, errors.New("it is sealed"))
	}
	if cfg.Mirror != nil {
		errs = append(errs, errors.New("it is a mirror, which accepts no publishes"))
	}
	if cfg.Replicas < o.Replicas {
		errs = append(errs, fmt.Errorf("it has %d replicas, fewer than the %d configured (raise the stream's replicas, or configure %d)",
			cfg.Replicas, o.Replicas, cfg.Replicas))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("jetstream: stream %s exists but does not fit trackd: %w", o.Stream, err)
	}
	if cfg.Duplicates < o.DuplicateWindow {
		o.Logger.Warn("jetstream stream's duplicate window is shorter than configured; resends after it are stored twice",
			"stream", o.Stream, "duplicate_window", cfg.Duplicates, "configured", o.DuplicateWindow)
	}
	if cfg.Storage == natsjs.MemoryStorage {
		o.Logger.Warn("jetstream stream uses memory storage; its messages are lost when the server restarts", "stream", o.Stream)
	}
	if cfg.Replicas > o.Replicas {
		o.Logger.Info("jetstream stream has more replicas than configured", "stream", o.Stream,
			"replicas", cfg.Replicas, "configured", o.Replicas)
	}
	return nil
}

// coversAny reports whether one of the patterns matches every subject the
// pattern subj matches.
func coversAny(patterns []string, subj string) bool {
	for _, p := range patterns {
		if covers(p, subj) {
			return true
		}
	}
	return false
}

// covers reports whether NATS subject pattern p matches every subject that
// pattern s matches.
func covers(p, s string) bool {
	pt, st := strings.Split(p, "."), strings.Split(s, ".")
	for i, tok := range pt {
		if tok == ">" {
			return i < len(st) // '>' needs at least one token
		}
		if i >= len(st) {
			return false
		}
		switch {
		case st[i] == ">":
			return false // s matches more tokens than p can
		case tok == "*":
		case tok != st[i]:
			return false
		}
	}
	return len(pt) == len(st)
}

// checkLiteralSubject reports whether s can be published to: non-empty
// tokens, no wildcards, no whitespace or control characters.
func checkLiteralSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			c := s[i]
			if c <= ' ' || c == 0x7f {
				return fmt.Errorf("subject %q has whitespace or a control character", s)
			}
			if c != '.' {
				continue
			}
		}
		tok := s[start:i]
		if tok == "" {
			return fmt.Errorf("subject %q has an empty token", s)
		}
		if tok == "*" || tok == ">" {
			return fmt.Errorf("subject %q has a wildcard", s)
		}
		start = i + 1
	}
	return nil
}

// message builds the NATS message for r (see the package comment).
func message(subject string, r *spool.Record) *nats.Msg {
	attrs := envelope.Attributes(r)
	h := make(nats.Header, len(attrs)+2)
	vals := make([]string, 0, len(attrs)+2) // one backing array for every value
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for _, a := range attrs {
		set(ceHeader(a.Name), a.Value)
	}
	set(natsjs.MsgIDHeader, r.ID)
	if len(r.Body) > 0 {
		set("Content-Type", "application/json")
	}
	return &nats.Msg{Subject: subject, Header: h, Data: r.Body}
}

// ceHeader returns "ce-" + name, without allocating for the attributes
// every message has.
func ceHeader(name string) string {
	switch name {
	case "id":
		return "ce-id"
	case "source":
		return "ce-source"
	case "specversion":
		return "ce-specversion"
	case "type":
		return "ce-type"
	case "time":
		return "ce-time"
	case "subject":
		return "ce-subject"
	case "datacontenttype":
		return "ce-datacontenttype"
	case "workspace":
		return "ce-workspace"
	case "operation":
		return "ce-operation"
	}
	return "ce-" + name
}

// classify maps a publish error to the sink's contract: Permanent when no
// retry can succeed, otherwise transient.
func classify(err error) error {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrBadHeaderMsg) {
		return sink.Permanent(fmt.Errorf("jetstream: publish: %w", err))
	}
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case natsjs.JSErrCodeStreamMessageExceedsMaximum, errCodeHeaderExceedsMaximum:
			return sink.Permanent(fmt.Errorf("jetstream: publish: %w", err))
		}
	}
	return fmt.Errorf("jetstream: publish: %w", err)
}

// errCodeHeaderExceedsMaximum is nats-server's JSStreamHeaderExceedsMaximumErr
// ("header size exceeds maximum allowed of 64k"), which nats.go names not.
const errCodeHeaderExceedsMaximum natsjs.ErrorCode = 10097

// Send implements sink.Sink: it publishes recs in order, pipelined (up to
// MaxPending awaiting acks), and waits for every ack or for ctx.
func (s *Sink) Send(ctx context.Context, recs []spool.Record) []error {
	errs := make([]error, len(recs))
	if len(recs) == 0 {
		return errs
	}
	select {
	case <-s.closed:
		return sink.Fill(len(recs), ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return sink.Fill(len(recs), fmt.Errorf("jetstream: %w", err))
	}
	if !s.nc.IsConnected() {
		return sink.Fill(len(recs), fmt.Errorf("jetstream: publish: %w (%s)", nats.ErrDisconnected, s.nc.Status()))
	}

	b := batch{s: s, ctx: ctx, errs: errs, futs: make([]natsjs.PubAckFuture, len(recs))}
	for i := range recs {
		if b.failed {
			errs[i] = errNotSent
			continue
		}
		r := &recs[i]
		subject := envelope.NATSSubject(s.prefix, r)
		if err := checkLiteralSubject(subject); err != nil {
			errs[i] = sink.Permanent(fmt.Errorf("jetstream: record %s: %w", r.ID, err))
			continue
		}
		if r.ID == "" {
			errs[i] = sink.Permanent(errors.New("jetstream: record has no ID (the dedup key)"))
			continue
		}
		if err := b.acquire(i); err != nil {
			errs[i] = err
			b.failed = true
			continue
		}
		// No retries on "no responders" inside the client: they would
		// republish this message after later ones. The caller retries the
		// batch, in order.
		f, err := s.js.PublishMsgAsync(message(subject, r), natsjs.WithRetryAttempts(0))
		if err != nil {
			<-s.slots
			errs[i] = classify(err)
			if !sink.IsPermanent(errs[i]) {
				b.failed = true
			}
			continue
		}
		b.futs[i] = f
	}
	for b.next < len(recs) {
		b.awaitNext()
	}
	for _, err := range errs {
		switch {
		case err == nil:
		case sink.IsPermanent(err):
			s.permanent.Add(1)
		default:
			s.transient.Add(1)
		}
	}
	return errs
}

// batch is the state of one Send.
type batch struct {
	s      *Sink
	ctx    context.Context
	errs   []error
	futs   []natsjs.PubAckFuture // nil where nothing was published
	next   int                   // the first index not yet awaited
	failed bool                  // a record failed transiently: publish no more
}

// acquire takes a pending slot for record i, waiting for this batch's own
// oldest publishes first when all slots are taken.
func (b *batch) acquire(i int) error {
	for {
		select {
		case b.s.slots <- struct{}{}:
			return nil
		default:
		}
		if b.next < i {
			b.awaitNext()
			continue
		}
		select {
		case b.s.slots <- struct{}{}:
			return nil
		case <-b.ctx.Done():
			return fmt.Errorf("jetstream: waiting to publish: %w", b.ctx.Err())
		case <-b.s.closed:
			return ErrClosed
		}
	}
}

// awaitNext waits for the ack of record b.next, records its outcome, frees
// its slot and advances b.next.
func (b *batch) awaitNext() {
	i := b.next
	b.next++
	f := b.futs[i]
	if f == nil {
		return
	}
	b.futs[i] = nil
	defer func() { <-b.s.slots }()
	ok, errc := f.Ok(), f.Err()
	select { // an outcome that is already there wins over ctx
	case ack := <-ok:
		b.acked(ack)
		return
	case err := <-errc:
		b.errs[i] = classify(err)
	default:
		select {
		case ack := <-ok:
			b.acked(ack)
			return
		case err := <-errc:
			b.errs[i] = classify(err)
		case <-b.ctx.Done():
			b.errs[i] = fmt.Errorf("jetstream: waiting for ack: %w", b.ctx.Err())
		case <-b.s.closed:
			b.errs[i] = ErrClosed
		}
	}
	if !sink.IsPermanent(b.errs[i]) {
		b.failed = true
	}
}

// acked counts an ack: stored, or already stored (a resend within the
// duplicate window); success either way.
func (b *batch) acked(ack *natsjs.PubAck) {
	if ack.Duplicate {
		b.s.duplicates.Add(1)
	} else {
		b.s.stored.Add(1)
	}
}
