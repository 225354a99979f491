package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is the embedded server's default client address (DESIGN
// §2.8 --nats-listen).
const DefaultListen = "127.0.0.1:4222"

// DefaultSyncInterval is how often the embedded JetStream fsyncs its files
// when SyncAlways is off: nats-server's own default, stated here because
// trackd's spool retention depends on it (see EmbeddedOptions).
const DefaultSyncInterval = 2 * time.Minute

// EmbeddedOptions configures the in-process NATS server. The zero value is
// not usable: Dir is required.
type EmbeddedOptions struct {
	// Dir is where JetStream keeps its files (trackd passes
	// <data-dir>/jetstream). It is created if absent.
	Dir string
	// Listen is the client address, host:port; default DefaultListen.
	// Port -1 or 0 picks a free port (tests); ClientURL reports it.
	Listen string
	// SyncAlways makes JetStream fsync every write before it acks it
	// (DESIGN §2.1, "a mode that makes the embedded JetStream fsync every
	// write"). It costs throughput: every publish batch waits for the disk.
	//
	// Off (the default), JetStream acks a message once it is written to
	// the OS and fsyncs every SyncInterval. A process crash loses nothing
	// (the page cache survives it); a machine or power failure can lose up
	// to SyncInterval of acknowledged messages. trackd covers that window
	// with its spool: acknowledged records stay in the spool for the
	// retention window (15 minutes by default, well above the 2 minute
	// sync interval), and `trackd replay --since` resends them. Keep the
	// spool retention above SyncInterval.
	SyncAlways bool
	// SyncInterval is the background fsync period when SyncAlways is off;
	// default DefaultSyncInterval (nats-server's default).
	SyncInterval time.Duration
	// MaxStore caps the bytes JetStream may keep on disk for all streams;
	// 0 leaves nats-server's default (derived from the free disk space).
	// At the cap, publishes fail (transiently, for the sink), so the
	// backlog stays in the spool: backpressure, not loss.
	MaxStore int64
	// Logger receives the server's log; nil discards it. Its notices (a
	// banner of some 20 lines at start, client connections) are logged at
	// Debug, so that at Info only its warnings and errors show; its debug
	// output is enabled when Logger is enabled at Debug, trace never.
	Logger *slog.Logger
	// StartTimeout bounds how long Start waits for the server to accept
	// connections; default 10s.
	StartTimeout time.Duration
}

// Embedded is an in-process nats-server with JetStream enabled: the default
// back end of a single node (DESIGN §2.7), which a consumer can subscribe
// to at once.
type Embedded struct {
	srv  *server.Server
	opts EmbeddedOptions
	log  *serverLogger
}

// StartEmbedded starts the server and returns once it accepts client
// connections. It fails, with the address in the message, if the client
// port cannot be bound (e.g. another process holds it), and if JetStream
// cannot use Dir.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.Dir == "" {
		return nil, errors.New("jetstream: embedded server needs a storage directory")
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	host, portStr, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("jetstream: embedded listen address %q: %w", opts.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return nil, fmt.Errorf("jetstream: embedded listen address %q: bad port", opts.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	sopts := &server.Options{
		ServerName:   "trackd",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     opts.Dir,
		SyncAlways:   opts.SyncAlways,
		SyncInterval: opts.SyncInterval,
		// trackd owns the process's signals (SIGHUP reload, SIGUSR2
		// upgrade): the embedded server must not install handlers.
		NoSigs: true,
		NoLog:  true,
	}
	if opts.MaxStore > 0 {
		sopts.JetStreamMaxStore = opts.MaxStore
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("jetstream: embedded server: %w", err)
	}
	lg := &serverLogger{log: opts.Logger}
	debug := opts.Logger != nil && opts.Logger.Enabled(context.Background(), slog.LevelDebug)
	srv.SetLoggerV2(lg, debug, false, false)

	// Start runs until the client listener is up, or returns early after
	// a fatal error (listen failure, JetStream failure), which the server
	// reports through the logger rather than as an error.
	srv.Start()
	if srv.Addr() == nil || !srv.ReadyForConnections(opts.StartTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		cause := lg.fatal()
		if cause == "" {
			cause = "not ready for connections after " + opts.StartTimeout.String()
		}
		return nil, fmt.Errorf("jetstream: start embedded server on %s: %s", opts.Listen, cause)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("jetstream: start embedded server: jetstream not enabled: %s", lg.fatal())
	}
	return &Embedded{srv: srv, opts: opts, log: lg}, nil
}

// ClientURL is the URL local clients connect to, e.g.
// nats://127.0.0.1:4222: the actual port when a random one was asked for,
// and the loopback address when the server listens on all addresses.
func (e *Embedded) ClientURL() string {
	a, ok := e.srv.Addr().(*net.TCPAddr)
	if !ok {
		return e.srv.ClientURL()
	}
	ip := a.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if h, _, _ := net.SplitHostPort(e.opts.Listen); strings.Contains(h, ":") {
			ip = net.IPv6loopback // listening on "[::]:port"
		}
	}
	return "nats://" + net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

// Addr is the client listener's address.
func (e *Embedded) Addr() net.Addr { return e.srv.Addr() }

// Server returns the nats-server, for callers that need more (e.g. an
// in-process connection, its varz for metrics).
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped: client
// connections are closed, JetStream flushes and closes its files. Safe
// to call more than once.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger routes nats-server's log to slog, and remembers the first
// fatal message (nats-server's own logger would exit the process; trackd
// reports it from StartEmbedded instead).
type serverLogger struct {
	log *slog.Logger

	mu        sync.Mutex
	fatalText string // the first Fatalf message; guarded by mu
}

func (l *serverLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalText
}

func (l *serverLogger) emit(level slog.Level, format string, v []any) {
	if l.log == nil {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}

func (l *serverLogger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug-1, format, v) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug-4, format, v) }

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatalText == "" {
		l.fatalText = msg
	}
	l.mu.Unlock()
	l.emit(slog.LevelError, "%s", []any{msg})
}
