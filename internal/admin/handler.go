package admin

import (
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
}

// Handler serves the admin endpoints: /metrics, /healthz (alive), /readyz
// (can accept and store requests now) and /debug/pprof/.
func Handler(opts HandlerOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := opts.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if opts.Status != nil {
		statusHandlers(mux, *opts.Status)
	}
	if opts.Public != nil {
		PublicHandler(mux, "/public/", *opts.Public)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
