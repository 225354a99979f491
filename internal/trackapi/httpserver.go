package trackapi

import (
	"log/slog"
	"net/http"
	"time"
)

// Timeouts for the API listener's http.Server. Zero values are the defaults
// shown.
type Timeouts struct {
	ReadHeader     time.Duration // request line and headers: 5s
	Read           time.Duration // whole request incl. body: 30s (the handler's BodyTimeout answers 408 first)
	Write          time.Duration // 30s
	Idle           time.Duration // keep-alive idle: 120s
	MaxHeaderBytes int           // 64 KiB
}

// NewHTTPServer returns an http.Server serving h with every timeout and the
// header size limit set. Serve it on WrapListener(ln): a client trickling
// its headers past ReadHeader then gets 408 and its connection closed (plain
// net/http closes it without an answer); one trickling its body gets 408
// from the handler. Other connections are unaffected.
func NewHTTPServer(addr string, h http.Handler, t Timeouts, log *slog.Logger) *http.Server {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&t.ReadHeader, 5*time.Second)
	def(&t.Read, 30*time.Second)
	def(&t.Write, 30*time.Second)
	def(&t.Idle, 120*time.Second)
	if t.MaxHeaderBytes <= 0 {
		t.MaxHeaderBytes = 64 << 10
	}
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Addr:              addr,
		Handler:           markHandling(h),
		ConnContext:       connContext,
		ConnState:         connState,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
