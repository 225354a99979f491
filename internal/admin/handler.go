package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trackd/trackd/internal/auth"
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
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if opts.User == "" {
		open.Handle("/", mux)
	} else {
		open.Handle("/", requireBasicAuth(opts.User, opts.Password, "trackd admin", mux))
	}
	return open
}

// requireBasicAuth answers 401 unless the request carries user:password
// as HTTP Basic credentials (standard or URL-safe base64). Both are
// compared in constant time over SHA-256 digests, so neither their content
// nor their length leaks through timing.
func requireBasicAuth(user, password, realm string, next http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	challenge := `Basic realm="` + realm + `", charset="UTF-8"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := auth.ParseBasic(r.Header.Get("Authorization"))
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) & subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
