package trackapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Drainer stops an http.Server without failing a request on a keep-alive
// connection. http.Server.Shutdown closes idle connections at once, and a
// client that wrote its next request on one at that moment gets a reset or
// an EOF instead of an answer (Go's client does not retry a POST then).
// Draining instead:
//
//  1. stops accepting (the listeners close; with the socket handed to a new
//     process, or kept by systemd, the kernel queues new connections);
//  2. answers every further request with "Connection: close", so a busy
//     client closes each connection itself after its answer;
//  3. waits until every connection is closed, or the grace period ends;
//  4. then shuts the server down: connections still idle after the grace
//     period are closed, and so are connections that have sent nothing
//     since they were accepted (net/http would wait up to 5 s for those);
//     requests in flight finish and get their answers.
//
// Wrap a server before it serves; Drain once.
type Drainer struct {
	draining atomic.Bool

	mu    sync.Mutex // guards open, zero, fresh
	open  int
	zero  chan struct{}          // closed when open drops to 0 while draining
	fresh map[net.Conn]time.Time // connections that have not begun a request: when accepted
}

// Wrap installs the Drainer's handler and connection-state hooks on s,
// keeping s's own.
func (d *Drainer) Wrap(s *http.Server) {
	h := s.Handler
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	prev := s.ConnState
	s.ConnState = func(c net.Conn, st http.ConnState) {
		if prev != nil {
			prev(c, st)
		}
		d.track(c, st)
	}
}

func (d *Drainer) track(c net.Conn, st http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch st {
	case http.StateNew:
		d.open++
		if d.fresh == nil {
			d.fresh = map[net.Conn]time.Time{}
		}
		d.fresh[c] = time.Now()
		return
	case http.StateActive, http.StateIdle:
		delete(d.fresh, c)
		return
	case http.StateClosed, http.StateHijacked:
		delete(d.fresh, c)
		d.open--
	}
	if d.open == 0 && d.zero != nil {
		close(d.zero)
		d.zero = nil
	}
}

// Open is the number of connections the server holds.
func (d *Drainer) Open() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open
}

// silentAge is how long a connection must have sent nothing for draining to
// close it before net/http would.
const silentAge = time.Second

// Begin starts draining: from now on every answer closes its connection,
// and lns (the listeners the server serves) are closed.
func (d *Drainer) Begin(lns ...net.Listener) {
	d.draining.Store(true)
	for _, ln := range lns {
		ln.Close()
	}
}

// Drain stops s as described on Drainer: it begins draining (closing lns),
// waits up to grace for the clients to close their connections, then calls
// s.Shutdown(ctx). It returns Shutdown's error (ctx ended with requests
// still in flight).
func (d *Drainer) Drain(ctx context.Context, s *http.Server, grace time.Duration, lns ...net.Listener) error {
	d.Begin(lns...)
	d.mu.Lock()
	var zero chan struct{}
	if d.open > 0 {
		zero = make(chan struct{})
		d.zero = zero
	}
	d.mu.Unlock()
	if zero != nil {
		t := time.NewTimer(grace)
		select {
		case <-zero:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	d.closeSilent()
	// Shutdown closes the listeners again and reports that a listener
	// Begin closed is closed (when Serve has not returned yet): not a
	// failure to drain.
	if err := s.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// closeSilent closes the connections that have not sent a byte in the
// second (at least) since they were accepted. One that has begun sending
// its request headers is left to finish them (ReadHeaderTimeout bounds
// that), and one just accepted may have its request on the way.
func (d *Drainer) closeSilent() {
	d.mu.Lock()
	var silent []net.Conn
	for c, at := range d.fresh {
		if sc, ok := c.(*slowHeaderConn); ok && !sc.partial.Load() && time.Since(at) >= silentAge {
			silent = append(silent, c)
		}
	}
	d.mu.Unlock()
	for _, c := range silent {
		c.Close()
	}
}
