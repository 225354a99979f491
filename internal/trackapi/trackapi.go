// Package trackapi serves the Customer.io Track API (v1 and v2): it
// authenticates each call, reads its body through a size limit, validates it,
// stores it through a Store (the spool) and answers only after the Store has
// returned. It owns the Track API's status codes, error body shapes and the
// stable machine-readable rejection reasons (header X-Trackd-Reason).
//
// Nothing empty, partial or invalid is ever stored: a request is either
// rejected as a whole, or (v2 batch) each invalid item is reported with its
// batch_index and only the valid items are stored, one record per item.
//
// Answers (error bodies in the path's shape: v1 {"meta":{"errors":[msg]}},
// merge {"meta":{"error":msg}}, v2 {"errors":[{reason,field,message}]}; 401
// is always {"meta":{"error":"Unauthorized request"}}):
//
//	200 {}                stored (X-Durability), or GET /auth, region
//	204                   forms submit, stored
//	207 v2 errors         batch: valid items stored, invalid listed by batch_index
//	400 empty_body        no body, whitespace only, chunked with no data
//	400 invalid_json, invalid_type, invalid_utf8, too_deep
//	400 field_too_long, too_many_attributes, missing_field, invalid_field,
//	    too_many_errors (a v2 batch entry standing for the item errors not listed)
//	400 truncated_body    body shorter than Content-Length (connection closed)
//	400 invalid_encoding  corrupt gzip; 400 read_error: other transport errors
//	400 bad_request       a request net/http could not parse (also 431 too_large, 501
//	                      unsupported_encoding): answered by the listener's connection
//	401 unauthorized
//	404 not_found, 405 method_not_allowed
//	408 timeout           body not received within Options.BodyTimeout (closed)
//	413 too_large         body (after gunzip) over the path's limit (closed)
//	415 unsupported_encoding
//	429 rate_limited      with Retry-After
//	500 internal_error    a contained panic (Options.OnPanic)
//	503 unavailable (or Options.Classify's reason) with Retry-After; never 502
package trackapi

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackd/trackd/internal/auth"
	"github.com/trackd/trackd/internal/ratelimit"
	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/ulid"
)

// Store durably stores records. Append returns nil only when every record is
// stored with the promised durability; the handler answers 2xx only then.
// Append must not modify recs; it may keep the records (their Body slices are
// not reused by the handler).
type Store interface {
	Append(ctx context.Context, recs []spool.Record) error
}

// Authenticator checks a request's credentials. *auth.Directory implements it.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Workspace, bool)
}

// Observer receives one Served call per request and one Rejected call per
// rejected request (reason is the X-Trackd-Reason code). Calls are made on the
// request goroutine and must be fast and safe for concurrent use.
type Observer interface {
	// Served is called once per answer, d after the request was read.
	// d < 0 means the answer is not to be timed: a slow client's 408,
	// whose wait is the client's doing, must not count as a slow answer
	// in the latency SLO.
	Served(route, method string, status int, d time.Duration)
	Rejected(route, workspace, reason string)
}

type nopObserver struct{}

func (nopObserver) Served(string, string, int, time.Duration) {}
func (nopObserver) Rejected(string, string, string)           {}

// PanicInfo describes a panic contained while serving a request.
type PanicInfo struct {
	Time      time.Time
	RequestID string
	Route     string // the operation name, e.g. "v1.identify"
	Workspace string // site ID when authenticated
	Method    string
	URI       string // the request URI as received
	Remote    string
	// Header is a copy of the request headers without Authorization,
	// Proxy-Authorization and Cookie.
	Header http.Header
	// Body is the part of the body read before the panic (decompressed),
	// at most PanicBodyCap bytes.
	Body  []byte
	Value any
	Stack []byte
}

// PanicBodyCap bounds PanicInfo.Body.
const PanicBodyCap = 64 << 10

// Limits bound what a request may contain. Zero values mean the defaults
// shown.
type Limits struct {
	Body           int64 // a v1 or /api/v2/entity body: 32 KiB
	Batch          int64 // a /api/v2/batch body: 500 KiB
	BatchItem      int64 // one batch item: 32 KiB
	Depth          int   // nested objects/arrays: 32
	Identifier     int   // person/object identifier, bytes: 150
	EventName      int   // event name, bytes: 100
	AttributeName  int   // bytes: 150
	AttributeValue int   // bytes (a string's decoded length, else its JSON): 1000
	EventData      int   // an event's data / attributes object, bytes of JSON: 100000
	Attributes     int   // attributes per call: 300
	SegmentIDs     int   // ids per segment call: 1000
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def64(&l.Body, 32<<10)
	def64(&l.Batch, 500<<10)
	def64(&l.BatchItem, 32<<10)
	def(&l.Depth, 32)
	def(&l.Identifier, 150)
	def(&l.EventName, 100)
	def(&l.AttributeName, 150)
	def(&l.AttributeValue, 1000)
	def(&l.EventData, 100000)
	def(&l.Attributes, 300)
	def(&l.SegmentIDs, 1000)
	return l
}

// Options configure a Server. Zero values are the documented defaults.
type Options struct {
	// Store receives the records of every accepted request. Required.
	Store Store
	// Auth checks credentials. Nil rejects every request that needs them.
	Auth Authenticator
	// Region is this node's region ("us", "eu"); default "us". A workspace
	// with an empty Region is homed here.
	Region string
	// RegionURLs maps a region to its public Track API base URL for
	// GET /api/v1/accounts/region. The defaults cover "us" and "eu".
	RegionURLs map[string]string
	// EnvironmentID derives environment_id for the region endpoint;
	// default: a stable positive 31-bit FNV-1a hash of the site ID.
	EnvironmentID func(auth.Workspace) int64
	// Now is the clock for ReceivedAt and rate limiting; default time.Now.
	Now func() time.Time
	// NewID returns a unique, time-ordered record ID (and generated request
	// IDs); default a monotonic ULID generator.
	NewID func() string
	// Limits bound bodies and fields.
	Limits Limits
	// RateLimit is the sustained requests per second allowed per workspace
	// (unauthenticated endpoints: per client IP); 0 disables rate limiting.
	RateLimit float64
	// RateBurst is the token bucket size; default max(1, ceil(RateLimit)).
	RateBurst int
	// BodyTimeout bounds reading one request body; a client that trickles
	// gets 408 and the connection is closed. Default 10s; negative disables
	// (the http.Server's ReadTimeout still applies).
	BodyTimeout time.Duration
	// Durability is the X-Durability value sent on stored 2xx; default
	// "fsync".
	Durability string
	// Classify maps a Store error to a status (5xx, never 502), a reason
	// code and a Retry-After. Default: 503 "unavailable", 1s.
	Classify func(error) (status int, reason string, retryAfter time.Duration)
	// ClientIP returns the client address recorded in the metadata; default
	// the host of r.RemoteAddr.
	ClientIP func(r *http.Request) string
	// Logger receives errors worth an operator's attention; default
	// slog.Default().
	Logger *slog.Logger
	// Observer counts requests and rejections; default no-op.
	Observer Observer
	// MaxConns bounds the connections the listener from Listener keeps
	// open (each costs memory and a file descriptor, which the spool also
	// needs); 0 means no bound. See Listener.
	MaxConns int
	// OnPanic is called after a panic while handling a request was
	// recovered (and answered 500). Default: log it at error level.
	OnPanic func(PanicInfo)
	// BeforeStore, if set, is called with the validated records just before
	// Store.Append. It exists for tests and tracing; a panic in it is
	// handled like any other handler panic.
	BeforeStore func(r *http.Request, recs []spool.Record)
}

// Server is the Track API HTTP handler. It is safe for concurrent use.
type Server struct {
	store       Store
	auth        Authenticator
	region      string
	regionURLs  map[string]string
	envID       func(auth.Workspace) int64
	now         func() time.Time
	newID       func() string
	lim         Limits
	rate        atomic.Pointer[ratelimit.Limiter] // nil: no limit; SetRateLimit replaces it
	bodyTimeout time.Duration
	durability  []string
	classify    func(error) (int, string, time.Duration)
	clientIP    func(*http.Request) string
	log         *slog.Logger
	obs         Observer
	onPanic     func(PanicInfo)
	beforeStore func(*http.Request, []spool.Record)
	maxConns    int

	mux  *http.ServeMux
	pool sync.Pool // *exchange
}

// New returns a Server serving every Track API route.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("trackapi: Options.Store is required")
	}
	if opts.RateLimit < 0 || opts.RateBurst < 0 {
		return nil, errors.New("trackapi: negative rate limit")
	}
	s := &Server{
		store:       opts.Store,
		auth:        opts.Auth,
		region:      opts.Region,
		envID:       opts.EnvironmentID,
		now:         opts.Now,
		newID:       opts.NewID,
		lim:         opts.Limits.withDefaults(),
		bodyTimeout: opts.BodyTimeout,
		classify:    opts.Classify,
		clientIP:    opts.ClientIP,
		log:         opts.Logger,
		obs:         opts.Observer,
		onPanic:     opts.OnPanic,
		beforeStore: opts.BeforeStore,
		maxConns:    opts.MaxConns,
	}
	if s.region == "" {
		s.region = "us"
	}
	s.regionURLs = map[string]string{"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
	for k, v := range opts.RegionURLs {
		s.regionURLs[k] = v
	}
	if s.envID == nil {
		s.envID = defaultEnvironmentID
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		g := ulid.NewGenerator(s.now, nil)
		s.newID = g.NewString
	}
	if s.bodyTimeout == 0 {
		s.bodyTimeout = 10 * time.Second
	}
	d := opts.Durability
	if d == "" {
		d = "fsync"
	}
	s.durability = []string{d}
	if s.classify == nil {
		s.classify = defaultClassify
	}
	if s.clientIP == nil {
		s.clientIP = remoteHost
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.onPanic == nil {
		s.onPanic = s.logPanic
	}
	s.SetRateLimit(opts.RateLimit, opts.RateBurst)
	s.pool.New = func() any { return new(exchange) }
	s.routes()
	return s, nil
}

func defaultClassify(error) (int, string, time.Duration) {
	return http.StatusServiceUnavailable, "unavailable", time.Second
}

func defaultEnvironmentID(w auth.Workspace) int64 {
	h := fnv.New32a()
	h.Write([]byte(w.SiteID))
	id := int64(h.Sum32() & 0x7fffffff)
	if id == 0 {
		id = 1
	}
	return id
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ServeHTTP implements http.Handler: it assigns the request ID, contains
// panics, routes, and reports the outcome to the Observer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := s.pool.Get().(*exchange)
	ex.begin(s, w, r)
	w.Header()["X-Request-Id"] = []string{ex.reqID}
	panicked := true
	defer func() {
		if panicked {
			s.recoverPanic(ex, recover())
		}
		s.obs.Served(ex.routeName(), r.Method, ex.status, time.Since(ex.start))
		if !panicked {
			ex.end()
			s.pool.Put(ex)
		}
	}()
	if !cleanPath(r.URL.EscapedPath()) {
		// The mux would redirect to the cleaned path, which names another
		// resource (".." in an identifier). Not a Track API path.
		ex.fail(&apiError{status: http.StatusNotFound, reason: ReasonNotFound, msg: "not found"})
	} else {
		s.mux.ServeHTTP(ex, r)
	}
	panicked = false
}

func (s *Server) recoverPanic(ex *exchange, v any) {
	if v == http.ErrAbortHandler {
		panic(v)
	}
	stack := debug.Stack()
	r := ex.r
	h := r.Header.Clone()
	for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
		h.Del(k)
	}
	body := ex.buf
	if len(body) > PanicBodyCap {
		body = body[:PanicBodyCap]
	}
	info := PanicInfo{
		Time:      s.now(),
		RequestID: ex.reqID,
		Route:     ex.routeName(),
		Workspace: ex.ws.SiteID,
		Method:    r.Method,
		URI:       r.RequestURI,
		Remote:    r.RemoteAddr,
		Header:    h,
		Body:      append([]byte(nil), body...),
		Value:     v,
		Stack:     stack,
	}
	if !ex.wroteHeader {
		ex.fail(&apiError{status: http.StatusInternalServerError, reason: "internal_error", msg: "internal error"})
	} else {
		ex.reason = "internal_error"
		s.obs.Rejected(ex.routeName(), ex.ws.SiteID, "internal_error")
	}
	func() {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("trackapi: OnPanic panicked", "panic", fmt.Sprint(v))
			}
		}()
		s.onPanic(info)
	}()
}

func (s *Server) logPanic(p PanicInfo) {
	s.log.Error("trackapi: panic serving request",
		"request_id", p.RequestID, "route", p.Route, "method", p.Method, "uri", p.URI,
		"workspace", p.Workspace, "panic", fmt.Sprint(p.Value), "stack", string(p.Stack))
}

// exchange is the per-request state, pooled. It is also the ResponseWriter
// handed to the mux, so route handlers find it with a type assertion and no
// context allocation.
type exchange struct {
	http.ResponseWriter
	s           *Server
	r           *http.Request
	rt          *route
	start       time.Time
	received    time.Time
	reqID       string
	status      int
	wroteHeader bool
	reason      string

	ws     auth.Workspace
	authed bool

	buf  []byte // body bytes read (decompressed); reused across requests
	body []byte // the validated body: trimmed view into buf

	src      bodyReader // counting reader over r.Body
	bodyDone bool       // readBody read the whole body

	partial []itemError // v2 batch: the invalid items of a 207
}

func (ex *exchange) begin(s *Server, w http.ResponseWriter, r *http.Request) {
	ex.ResponseWriter = w
	ex.s = s
	ex.r = r
	ex.start = time.Now()
	ex.status = http.StatusOK
	if id := r.Header.Get("X-Request-Id"); saneRequestID(id) {
		ex.reqID = id
	} else {
		ex.reqID = s.newID()
	}
}

const maxPooledBuf = 64 << 10

func (ex *exchange) end() {
	buf := ex.buf[:0]
	if cap(buf) > maxPooledBuf {
		buf = nil
	}
	*ex = exchange{buf: buf}
}

func (ex *exchange) routeName() string {
	if ex.rt == nil {
		return "unknown"
	}
	return ex.rt.name
}

func (ex *exchange) WriteHeader(code int) {
	if !ex.wroteHeader {
		ex.wroteHeader = true
		ex.status = code
	}
	ex.ResponseWriter.WriteHeader(code)
}

func (ex *exchange) Write(b []byte) (int, error) {
	if !ex.wroteHeader {
		ex.WriteHeader(http.StatusOK)
	}
	return ex.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (ex *exchange) Unwrap() http.ResponseWriter { return ex.ResponseWriter }

// cleanPath reports whether p is what the mux considers canonical.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c == p
}

// saneRequestID accepts a client's X-Request-Id of 1..64 printable ASCII
// characters without spaces.
func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] >= 0x7F {
			return false
		}
	}
	return true
}

// metaHost returns a clean value for metadata.
func metaClean(s string) string {
	if len(s) > 512 {
		s = s[:512]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// SetRateLimit sets the per-workspace (per client IP, unauthenticated)
// request rate and burst, as Options.RateLimit and RateBurst; 0 turns the
// limit off. Used on a configuration reload; the buckets start full.
func (s *Server) SetRateLimit(rate float64, burst int) {
	if rate <= 0 {
		s.rate.Store(nil)
		return
	}
	s.rate.Store(ratelimit.New(rate, burst, 0))
}
