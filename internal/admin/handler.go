package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trackd/trackd/internal/auth"
	"github.com/trackd/trackd/internal/ratelimit"
)

// HandlerOptions configure the admin handler.
type HandlerOptions struct {
	// Gatherer is the private registry served on /metrics.
	Gatherer prometheus.Gatherer
	// Ready reports why the node cannot accept and store requests now,
	// or nil when it can. /readyz answers 503 with the reason.
	Ready func() error
	// Status, if set, serves the status page on / and its data on
	// /status.json.
	Status *StatusOptions
	// Public, if set, serves the public status view under /public/.
	Public *PublicOptions
	// User and Password, when User is set, are the credentials (HTTP
	// Basic auth) every path requires except /healthz and /readyz (which
	// load balancers probe) and the public view under /public/ (safe to
	// expose). Empty User: no credentials required (loopback only; the
	// command refuses a non-loopback admin address without them).
	User, Password string
	// OnAuthFailure, if set, is called for each request refused for its
	// credentials (limited: refused without checking them, because its
	// client failed too often).
	OnAuthFailure func(limited bool)
	// Now is the clock of the failed-login limit; default time.Now.
	Now func() time.Time
}

// Handler serves the admin endpoints: /metrics, /healthz (alive), /readyz
// (can accept and store requests now), /debug/pprof/, and the status page
// and public view when configured.
func Handler(opts HandlerOptions) http.Handler {
	// Open paths are routed by the outer mux; everything else, including
	// paths that match nothing, goes through the credentials check to the
	// inner one. Routing decides what is open, not a path prefix test, so
	// an unclean or oddly encoded path cannot slip past the check.
	open := http.NewServeMux()
	open.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	open.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := opts.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if opts.Public != nil {
		PublicHandler(open, "/public/", *opts.Public)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	if opts.Status != nil {
		statusHandlers(mux, *opts.Status)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	// No /debug/pprof/cmdline: the command line holds secrets
	// (--workspace SITE:KEY, passwords).
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not served: the command line holds secrets", http.StatusNotFound)
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if opts.User == "" {
		open.Handle("/", mux)
	} else {
		open.Handle("/", requireBasicAuth(opts, "trackd admin", mux))
	}
	return open
}

// Failed logins allowed per client: a burst of authFailBurst, then one per
// authFailEvery. Past that, the client's requests are answered 429 without
// their credentials being checked, so guessing the password costs an
// attacker authFailEvery per guess; an operator who mistyped waits at most
// that long. A client is its IPv4 address or its IPv6 /64 (one host can use
// a whole /64). Loopback peers are not limited: they are this host, often a
// TLS proxy that every client goes through (limit there).
const (
	authFailBurst = 10
	authFailEvery = 5 * time.Second
	authFailKeys  = 10_000
)

// requireBasicAuth answers 401 unless the request carries opts.User and
// opts.Password as HTTP Basic credentials (standard or URL-safe base64).
// Both are compared in constant time over SHA-256 digests, so neither
// their content nor their length leaks through timing. A client that
// failed too often is answered 429 with Retry-After.
func requireBasicAuth(opts HandlerOptions, realm string, next http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(opts.User)), sha256.Sum256([]byte(opts.Password))
	challenge := `Basic realm="` + realm + `", charset="UTF-8"`
	now, failed := opts.Now, opts.OnAuthFailure
	if now == nil {
		now = time.Now
	}
	if failed == nil {
		failed = func(bool) {}
	}
	fails := ratelimit.New(float64(time.Second)/float64(authFailEvery), authFailBurst, authFailKeys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, limited := authClient(r.RemoteAddr)
		// The attempt is paid for before the check and refunded if it
		// succeeds: concurrent guesses cannot share one allowance.
		if limited {
			if ok, wait := fails.Allow(client, now()); !ok {
				failed(true)
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				http.Error(w, "too many failed logins; retry later", http.StatusTooManyRequests)
				return
			}
		}
		u, p, ok := auth.ParseBasic(r.Header.Get("Authorization"))
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) & subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || match != 1 {
			failed(false)
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if limited {
			fails.Refund(client)
		}
		next.ServeHTTP(w, r)
	})
}

// authClient returns the failed-login limit's key for a peer address
// (host:port): the IPv4 address, or the IPv6 /64; limited is false for
// loopback peers.
func authClient(remote string) (key string, limited bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host, true
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return "", false
	}
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String(), true
	}
	return ip.String(), true
}
