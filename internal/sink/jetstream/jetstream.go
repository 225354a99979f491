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
// # Dedup window and resends
//
// JetStream remembers message IDs for the stream's duplicate window and
// acknowledges a resend within it as a duplicate without storing it again.
// Every remembered ID costs the server ~130 bytes of heap (its map entry,
// the ID string and a window slot), so the memory is the publish rate times
// the window: draining a backlog at 140k messages/s with a 2-minute window
// holds up to 17 M IDs (~2 GB), which is why an in-process (embedded)
// server uses a short window (EmbeddedDuplicateWindow). DefaultDuplicateWindow
// (nats-server's default) suits a server with its own memory.
//
// Resends come from three places:
//
//   - A forwarder retry after a transient failure: the records behind the
//     failed one that were published before the failure was known, resent
//     after the backoff (100 ms at first). The window must cover this.
//   - A crash between a publish and the forwarder's cursor update: after
//     the restart the forwarder resends what it had published since it
//     last saved its cursor (its CursorInterval, 200 ms of records, plus
//     its window of batches in flight, plus its CursorHoldback, 250 ms for
//     a stream in async persist mode). New reads the record IDs
//     of the stream's newest Options.ResumeCheck messages (headers only)
//     and Send acknowledges the records found there without publishing them
//     again, so these resends are dropped however long the restart took,
//     window or not, as long as ResumeCheck covers them (the default,
//     65 536, covers 200 ms of a 300k/s drain, or 450 ms of a 145k/s one
//     with the holdback).
//   - `trackd replay` of an older time range: outside both by design, and
//     stored again; consumers that need exactly-once across replays
//     deduplicate on ce-id.
//
// # Pipelining
//
// Sink is a sink.Pipeliner: the forwarder keeps several batches in flight,
// each message published with its own reply subject and acknowledged
// asynchronously (up to Options.MaxPending awaiting acks), so the server is
// never idle while the forwarder reads and encodes the next batch. Order
// holds as sink.Pipeline describes: after the first transient failure a
// pipeline publishes nothing more, and it also stops when the connection was
// re-established since it started, so that no message on a new connection
// overtakes one the old connection may have lost. Publishes awaiting an ack
// fail at once when the connection is lost.
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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"regexp"
	"strconv"
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
	// EmbeddedDuplicateWindow is the duplicate window for a stream on the
	// embedded server, which shares trackd's memory: it covers a
	// forwarder's retries (crash resends are covered by ResumeCheck) and
	// bounds the remembered IDs to 1 s of publishes (~20 MB at 150k/s).
	// See the package comment.
	EmbeddedDuplicateWindow = time.Second
	DefaultMaxAge           = 7 * 24 * time.Hour
	DefaultMaxPending       = 2048
	DefaultAckTimeout       = 30 * time.Second
	DefaultResumeCheck      = 1 << 16
	DefaultConnectTimeout   = 5 * time.Second
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
	// resends, when New creates the stream; default DefaultDuplicateWindow
	// (use EmbeddedDuplicateWindow for the embedded server). See the
	// package comment.
	DuplicateWindow time.Duration
	// ShrinkDuplicateWindow, for a server whose memory is trackd's (the
	// embedded one), makes New shorten an existing stream's duplicate
	// window to DuplicateWindow when it is longer: the server keeps every
	// message ID of the window in memory, so a stream created with a long
	// window (by an older trackd, say) would make the process's memory
	// grow with the publish rate.
	ShrinkDuplicateWindow bool
	// AsyncPersist creates the stream in JetStream's async persist mode:
	// the server acknowledges a message once it is in its write cache and
	// writes the cache within milliseconds (~10 % less CPU per message,
	// BENCHMARKS.md §5.5). A crash of the server's process can lose what it
	// acknowledged in its last milliseconds (a forwarder's
	// CursorHoldback covers that), but a failed write (disk full, I/O
	// error) drops acknowledged messages without the publisher learning
	// of it, so trackd does not set it. A stream's persist mode cannot
	// change once it exists; Sink.AsyncPersist reports it.
	AsyncPersist bool
	// MaxAge is how long the stream keeps messages; default DefaultMaxAge
	// (7 days). Consumers must read within it.
	MaxAge time.Duration
	// MaxBytes caps the stream's size; 0 is unlimited (bounded by the
	// server's JetStream storage limit). At the cap the oldest messages
	// are discarded (limits retention).
	MaxBytes int64
	// ApplyMaxAge and ApplyMaxBytes make New set an existing stream's
	// MaxAge or MaxBytes to the configured one when it differs (the
	// operator changed it); otherwise both apply only to a stream New
	// creates.
	ApplyMaxAge, ApplyMaxBytes bool
	// MaxPending bounds the publishes awaiting an ack, over all Sends;
	// default DefaultMaxPending.
	MaxPending int
	// ResumeCheck is how many of the stream's newest messages New reads,
	// headers only, to learn which records are stored already: a record
	// found there is acknowledged without being published again, until a
	// Send or a pipelined batch finds none. After a crash, the forwarder
	// resends what it had published since it last saved its cursor (up to
	// its CursorInterval of records, plus its window): this check drops
	// those resends however long the restart took, where the duplicate
	// window only drops them within the window. 0 means
	// DefaultResumeCheck; -1 turns the check off. See the package comment.
	ResumeCheck int
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
	if o.ResumeCheck == 0 {
		o.ResumeCheck = DefaultResumeCheck
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
	if o.ResumeCheck < -1 {
		errs = append(errs, fmt.Errorf("resume check %d: want -1 (off), 0 (default) or a count", o.ResumeCheck))
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
	var ue *neturl.Error
	if errors.As(err, &ue) {
		// Its text quotes the URL, credentials included.
		return nil, fmt.Errorf("jetstream: connect to %s: the URL does not parse", redactURL(url))
	}
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

// errNotSent marks the records left unpublished after an earlier record
// failed transiently (so that a resend keeps their order).
var errNotSent = fmt.Errorf("jetstream: %w", sink.ErrNotSent)

// Sink publishes records to a JetStream stream. It is safe for concurrent
// use.
type Sink struct {
	name   string
	prefix string
	stream string
	async  bool // the stream is in async persist mode
	log    *slog.Logger
	nc     *nats.Conn
	js     natsjs.JetStream

	// Publishes wait for their acks on a subscription to replyPrefix+"*";
	// each has its own reply subject, replyPrefix + a number.
	replyPrefix string
	ackTimeout  time.Duration

	// slots bounds the publishes awaiting an ack over all pipelines: a
	// publish puts a token in before it is made, and resolveLocked takes
	// it out.
	slots chan struct{}

	mu     sync.Mutex        // guards acks, nextID and the pubBatches they point to
	acks   map[uint64]ackRef // publishes awaiting their ack, by reply number
	nextID uint64

	// known holds the record IDs of the stream's newest messages when
	// New ran (Options.ResumeCheck), until a batch finds none of them.
	knownMu sync.Mutex // guards known
	known   map[string]struct{}

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	watchDone chan struct{} // closed when watch returns

	stored, duplicates, transient, permanent atomic.Uint64
}

// Stats counts Send's outcomes per record since New.
type Stats struct {
	// Stored is records acknowledged as newly stored.
	Stored uint64
	// Duplicates is records acknowledged as already stored: resends
	// within the duplicate window, and records found by the resume check
	// (Options.ResumeCheck).
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
	js, err := natsjs.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	async, err := ensureStream(ctx, js, &opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s := &Sink{
		name:        opts.Name,
		prefix:      opts.SubjectPrefix,
		stream:      opts.Stream,
		log:         opts.Logger,
		nc:          nc,
		js:          js,
		replyPrefix: nc.NewInbox() + ".",
		ackTimeout:  opts.AckTimeout,
		slots:       make(chan struct{}, opts.MaxPending),
		acks:        make(map[uint64]ackRef, opts.MaxPending),
		closed:      make(chan struct{}),
		watchDone:   make(chan struct{}),
		async:       async,
	}
	if opts.ResumeCheck > 0 {
		if err := s.loadKnown(ctx, opts.ResumeCheck); err != nil {
			s.log.Warn("jetstream: cannot read the stream's newest messages; resends after a crash are dropped only within the duplicate window",
				"stream", s.stream, "err", err)
		}
	}
	// Registered before the first publish: a connection lost from now on
	// fails the publishes awaiting acks at once.
	status := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	if _, err := nc.Subscribe(s.replyPrefix+"*", s.onAck); err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: subscribe to acks: %w", err)
	}
	go s.watch(status)
	return s, nil
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
		<-s.watchDone
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
	mode := natsjs.DefaultPersistMode
	if o.AsyncPersist {
		mode = natsjs.AsyncPersistMode
	}
	return natsjs.StreamConfig{
		PersistMode: mode,
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
// ensureStream creates the stream if absent, or verifies it; it reports
// whether the stream is in async persist mode.
func ensureStream(ctx context.Context, js natsjs.JetStream, o *Options) (async bool, _ error) {
	st, err := js.Stream(ctx, o.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		cfg := streamConfig(o)
		st, err = js.CreateStream(ctx, cfg)
		if err == nil {
			o.Logger.Info("created jetstream stream", "stream", o.Stream,
				"subjects", o.SubjectPrefix+".>", "replicas", o.Replicas,
				"duplicate_window", o.DuplicateWindow, "max_age", o.MaxAge, "persist_mode", cfg.PersistMode.String())
			return cfg.PersistMode == natsjs.AsyncPersistMode, nil
		}
		if !errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			return false, fmt.Errorf("jetstream: create stream %s: %w", o.Stream, err)
		}
		// Another node created it meanwhile, differently: verify theirs.
		st, err = js.Stream(ctx, o.Stream)
	}
	if err != nil {
		return false, fmt.Errorf("jetstream: look up stream %s: %w", o.Stream, err)
	}
	cfg := st.CachedInfo().Config
	if err := verifyStream(cfg, o); err != nil {
		return false, err
	}
	async = cfg.PersistMode == natsjs.AsyncPersistMode
	if async && !o.AsyncPersist {
		o.Logger.Warn("jetstream stream is in async persist mode, which cannot change: the server acknowledges a message before it writes it, "+
			"and a failed write (disk full) loses acknowledged messages; recreate the stream to change it",
			"stream", o.Stream)
	}
	if o.ShrinkDuplicateWindow && cfg.Duplicates > o.DuplicateWindow {
		was := cfg.Duplicates
		cfg.Duplicates = o.DuplicateWindow
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			// Memory grows with the window, but nothing is lost.
			o.Logger.Warn("jetstream: cannot shorten the stream's duplicate window", "stream", o.Stream,
				"duplicate_window", was, "wanted", o.DuplicateWindow, "err", err)
			cfg.Duplicates = was
		} else {
			o.Logger.Info("jetstream: shortened the stream's duplicate window (its message IDs are kept in memory)",
				"stream", o.Stream, "was", was, "now", o.DuplicateWindow)
		}
	}
	if err := applyLimits(ctx, js, cfg, o); err != nil {
		var apiErr *natsjs.APIError
		if !errors.As(err, &apiErr) {
			return async, err // a timeout, no leader...: set up again
		}
		// The server refuses the change; the stream works as it is:
		// forward into it, and say why the configured retention is not in
		// force.
		o.Logger.Warn("jetstream: the stream keeps its own limits", "stream", o.Stream, "err", err)
	}
	return async, nil
}

// applyLimits sets an existing stream's MaxAge and MaxBytes to the
// configured ones where Options.ApplyMaxAge / ApplyMaxBytes ask for it.
func applyLimits(ctx context.Context, js natsjs.JetStream, cfg natsjs.StreamConfig, o *Options) error {
	want := streamConfig(o)
	was := cfg
	if o.ApplyMaxAge {
		cfg.MaxAge = want.MaxAge
	}
	if o.ApplyMaxBytes {
		cfg.MaxBytes = want.MaxBytes
	}
	if cfg.MaxAge == was.MaxAge && cfg.MaxBytes == was.MaxBytes {
		return nil
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("jetstream: set stream %s's limits (max age %s, max bytes %d): %w", o.Stream, cfg.MaxAge, cfg.MaxBytes, err)
	}
	o.Logger.Info("jetstream: changed the stream's limits", "stream", o.Stream,
		"max_age", cfg.MaxAge.String(), "was_max_age", was.MaxAge.String(), "max_bytes", cfg.MaxBytes, "was_max_bytes", was.MaxBytes)
	return nil
}

// AsyncPersist reports whether the stream is in async persist mode (see
// Options.AsyncPersist): its forwarder then wants a CursorHoldback.
func (s *Sink) AsyncPersist() bool { return s.async }

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
	case "region":
		return "ce-region"
	case "apiversion":
		return "ce-apiversion"
	case "requestid":
		return "ce-requestid"
	case "useragent":
		return "ce-useragent"
	case "clientip":
		return "ce-clientip"
	case "clienttimestamp":
		return "ce-clienttimestamp"
	case "identifier":
		return "ce-identifier"
	case "identifiers":
		return "ce-identifiers"
	case "batchindex":
		return "ce-batchindex"
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
	if len(recs) == 0 {
		return []error{}
	}
	return s.Pipeline().Publish(ctx, recs).Wait()
}

// Pipeline implements sink.Pipeliner: batches published on it follow each
// other on the connection without waiting for acks in between. It stops
// publishing at the first transient failure, and also when the connection
// was re-established since the pipeline started (a message published on the
// new connection must not overtake one the old connection may have lost).
func (s *Sink) Pipeline() sink.Pipeline {
	return &pipeline{s: s, reconnects: s.nc.Stats().Reconnects, hdr: make(nats.Header, 24)}
}

var _ sink.Pipeliner = (*Sink)(nil)

// pipeline is one sequence of publishes. It is used by one goroutine; the
// ack handler and the connection watcher only touch failed (atomic) and
// the batches (under Sink.mu).
type pipeline struct {
	s          *Sink
	reconnects uint64      // the connection's reconnect count at the start
	failed     atomic.Bool // a record failed transiently: publish no more

	// Reused for every message (nats.Conn.PublishMsg encodes them before
	// it returns and keeps no reference).
	attrs []envelope.Attr
	hdr   nats.Header
	vals  []string
	msg   nats.Msg
	reply []byte
}

// errReconnected is the error of records not published because the
// connection was re-established during the pipeline.
var errReconnected = fmt.Errorf("jetstream: the connection was re-established: %w", sink.ErrNotSent)

// Publish implements sink.Pipeline.
func (p *pipeline) Publish(ctx context.Context, recs []spool.Record) sink.Pending {
	s := p.s
	b := &pubBatch{s: s, p: p, ctx: ctx, errs: make([]error, len(recs)), ids: make([]uint64, len(recs)), done: make(chan struct{})}
	var stop error // set: no record of this batch is published
	select {
	case <-s.closed:
		stop = ErrClosed
	default:
		switch {
		case ctx.Err() != nil:
			stop = fmt.Errorf("jetstream: %w", ctx.Err())
		case !s.nc.IsConnected():
			stop = fmt.Errorf("jetstream: publish: %w (%s)", nats.ErrDisconnected, s.nc.Status())
		}
	}
	if stop != nil {
		p.failed.Store(true)
	}
	checkKnown, hits := s.checkKnown(), 0
	for i := range recs {
		if stop != nil {
			b.errs[i] = stop
			continue
		}
		if p.failed.Load() {
			b.errs[i] = errNotSent
			continue
		}
		r := &recs[i]
		subject := envelope.NATSSubject(s.prefix, r)
		if err := checkLiteralSubject(subject); err != nil {
			b.errs[i] = sink.Permanent(fmt.Errorf("jetstream: record %s: %w", r.ID, err))
			continue
		}
		if r.ID == "" {
			b.errs[i] = sink.Permanent(errors.New("jetstream: record has no ID (the dedup key)"))
			continue
		}
		if checkKnown && s.isKnown(r.ID) {
			hits++
			s.duplicates.Add(1)
			continue // acknowledged
		}
		if s.nc.Stats().Reconnects != p.reconnects {
			b.errs[i] = errReconnected
			p.failed.Store(true)
			continue
		}
		if err := s.acquire(ctx); err != nil {
			b.errs[i] = err
			p.failed.Store(true)
			continue
		}
		s.mu.Lock()
		s.nextID++
		id := s.nextID
		s.acks[id] = ackRef{b, i}
		b.ids[i] = id
		b.outstanding++
		s.mu.Unlock()
		p.reply = strconv.AppendUint(append(p.reply[:0], s.replyPrefix...), id, 10)
		p.setHeader(r)
		p.msg = nats.Msg{Subject: subject, Reply: string(p.reply), Header: p.hdr, Data: r.Body}
		if err := s.nc.PublishMsg(&p.msg); err != nil {
			s.mu.Lock()
			if ref, ok := s.acks[id]; ok {
				s.resolveLocked(id, ref, classify(err))
			}
			s.mu.Unlock()
		}
	}
	if checkKnown && hits == 0 && stop == nil {
		s.forgetKnown()
	}
	b.deadline = time.Now().Add(s.ackTimeout)
	s.mu.Lock()
	b.sealed = true
	if b.outstanding == 0 {
		close(b.done)
	}
	s.mu.Unlock()
	return b
}

// setHeader fills p.hdr with r's headers (see the package comment).
func (p *pipeline) setHeader(r *spool.Record) {
	clear(p.hdr)
	p.vals = p.vals[:0]
	set := func(k, v string) {
		p.vals = append(p.vals, v)
		p.hdr[k] = p.vals[len(p.vals)-1 : len(p.vals) : len(p.vals)]
	}
	p.attrs = envelope.AppendAttributes(p.attrs[:0], r)
	for _, a := range p.attrs {
		set(ceHeader(a.Name), a.Value)
	}
	set(natsjs.MsgIDHeader, r.ID)
	if len(r.Body) > 0 {
		set("Content-Type", "application/json")
	}
}

// acquire takes a slot for one publish awaiting its ack. Slots come back
// as acks arrive, so it waits at most until the oldest publish is
// acknowledged or times out.
func (s *Sink) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(s.ackTimeout)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jetstream: waiting to publish: %w", ctx.Err())
	case <-s.closed:
		return ErrClosed
	case <-t.C:
		return fmt.Errorf("jetstream: waiting to publish: %d publishes got no ack within %s", cap(s.slots), s.ackTimeout)
	}
}

// ackRef says where an ack goes: record i of batch b.
type ackRef struct {
	b *pubBatch
	i int
}

// pubBatch is one Publish: a sink.Pending.
type pubBatch struct {
	s        *Sink
	p        *pipeline
	ctx      context.Context
	errs     []error
	deadline time.Time // for the last ack
	waited   bool

	// Guarded by Sink.mu:
	ids         []uint64 // the reply ID of each record awaiting its ack, else 0
	outstanding int      // records awaiting their ack
	sealed      bool     // Publish has returned
	done        chan struct{}
}

// Wait implements sink.Pending.
func (b *pubBatch) Wait() []error {
	if b.waited {
		return b.errs
	}
	b.waited = true
	select { // outcomes that are already there win over ctx
	case <-b.done:
	default:
		t := time.NewTimer(time.Until(b.deadline))
		select {
		case <-b.done:
		case <-b.ctx.Done():
			b.abandon(fmt.Errorf("jetstream: waiting for ack: %w", b.ctx.Err()))
		case <-b.s.closed:
			b.abandon(ErrClosed)
		case <-t.C:
			b.abandon(fmt.Errorf("jetstream: publish: %w", natsjs.ErrAsyncPublishTimeout))
		}
		t.Stop()
	}
	for _, err := range b.errs {
		switch {
		case err == nil:
		case sink.IsPermanent(err):
			b.s.permanent.Add(1)
		default:
			b.s.transient.Add(1)
		}
	}
	return b.errs
}

// abandon gives every record still awaiting its ack the error err.
func (b *pubBatch) abandon(err error) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range b.ids {
		if ref, ok := s.acks[id]; ok {
			s.resolveLocked(id, ref, err)
		}
	}
}

// resolveLocked records the outcome of the publish awaiting ack id, and
// frees its slot.
func (s *Sink) resolveLocked(id uint64, ref ackRef, err error) {
	delete(s.acks, id)
	<-s.slots
	b := ref.b
	b.ids[ref.i] = 0
	b.errs[ref.i] = err
	if err != nil && !sink.IsPermanent(err) {
		b.p.failed.Store(true)
	}
	b.outstanding--
	if b.outstanding == 0 && b.sealed {
		close(b.done)
	}
}

// onAck handles a reply to a publish: a PubAck, a JetStream error, or "no
// responders" (no stream captures the subject, or it has no leader).
func (s *Sink) onAck(m *nats.Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, s.replyPrefix), 10, 64)
	if err != nil {
		return
	}
	dup, err := parseAck(m)
	if err != nil {
		err = classify(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.acks[id]
	if !ok {
		return // given up on already
	}
	// Count before resolving: a waiter woken by it may read the counts.
	switch {
	case err != nil:
	case dup:
		s.duplicates.Add(1)
	default:
		s.stored.Add(1)
	}
	s.resolveLocked(id, ref, err)
}

var (
	ackStream    = []byte(`{"stream":`)
	ackError     = []byte(`"error"`)
	ackDuplicate = []byte(`"duplicate"`)
)

// parseAck reads a publish's reply: whether the message is stored (and
// was already), or the error. The common reply, {"stream":..,"seq":..},
// is recognised without decoding JSON.
func parseAck(m *nats.Msg) (duplicate bool, err error) {
	d := m.Data
	if len(d) == 0 {
		if m.Header.Get("Status") == "503" {
			return false, natsjs.ErrNoStreamResponse
		}
		return false, natsjs.ErrInvalidJSAck
	}
	if bytes.HasPrefix(d, ackStream) && !bytes.Contains(d, ackError) && !bytes.Contains(d, ackDuplicate) {
		return false, nil
	}
	var resp struct {
		Error     *natsjs.APIError `json:"error"`
		Stream    string           `json:"stream"`
		Duplicate bool             `json:"duplicate"`
	}
	if err := json.Unmarshal(d, &resp); err != nil {
		return false, natsjs.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return false, resp.Error
	}
	if resp.Stream == "" {
		return false, natsjs.ErrInvalidJSAck
	}
	return resp.Duplicate, nil
}

// watch fails every publish awaiting its ack when the connection is lost:
// its ack will not come (the server may or may not have stored it; a resend
// is deduplicated). It runs until Close.
func (s *Sink) watch(status chan nats.Status) {
	defer close(s.watchDone)
	for {
		select {
		case <-status:
			s.failAll(fmt.Errorf("jetstream: connection lost before the ack: %w", nats.ErrDisconnected))
		case <-s.closed:
			s.nc.RemoveStatusListener(status)
			return
		}
	}
}

func (s *Sink) failAll(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ref := range s.acks {
		s.resolveLocked(id, ref, err)
	}
}

// loadKnown reads the record IDs of the stream's newest n messages into
// s.known (Options.ResumeCheck).
func (s *Sink) loadKnown(ctx context.Context, n int) error {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return err
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 {
		return nil
	}
	first := state.FirstSeq
	if state.LastSeq >= uint64(n) {
		first = max(first, state.LastSeq-uint64(n)+1)
	}
	cons, err := st.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy, OptStartSeq: first,
		HeadersOnly: true, InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	ids := make(map[string]struct{}, min(uint64(n), state.LastSeq-first+1))
	for seq := first - 1; seq < state.LastSeq; {
		batch, err := cons.Fetch(int(min(state.LastSeq-seq, 1024)), natsjs.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			seq = md.Sequence.Stream
			if id := m.Headers().Get(natsjs.MsgIDHeader); id != "" {
				ids[id] = struct{}{}
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if got == 0 {
			break // the newest messages went away (age, limits) meanwhile
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	s.knownMu.Lock()
	s.known = ids
	s.knownMu.Unlock()
	s.log.Debug("jetstream: read the stream's newest record IDs", "stream", s.stream, "ids", len(ids))
	return nil
}

func (s *Sink) checkKnown() bool {
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	return s.known != nil
}

func (s *Sink) isKnown(id string) bool {
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	_, ok := s.known[id]
	return ok
}

func (s *Sink) forgetKnown() {
	s.knownMu.Lock()
	s.known = nil
	s.knownMu.Unlock()
}
