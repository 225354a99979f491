package trackapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// net/http closes a connection whose request headers do not arrive within
// ReadHeaderTimeout without answering. DESIGN §2.2 promises a slow client a
// 408 and a closed connection, so the listener's connections answer that
// themselves: when a read times out after part of a request was read and
// before a handler took it, the connection writes a 408 (v1 error shape,
// X-Trackd-Reason: timeout) before reporting the error to the server, which
// then closes it.

// WrapListener returns ln with connections that answer 408 to a client
// trickling its request headers. Serve it with a server from NewHTTPServer.
func WrapListener(ln net.Listener) net.Listener { return slowHeaderListener{ln, nopObserver{}, nil} }

// Listener is WrapListener whose 408s are also counted by s's Observer
// (route "unknown": no route was read; reason timeout), and which keeps at
// most Options.MaxConns connections open: past it, a new connection takes
// the place of one that is idle between requests, or has sent nothing for
// a second, which is closed; if there is none, the new one is answered 503
// (reason too_many_connections, Retry-After: 1) and closed.
func (s *Server) Listener(ln net.Listener) net.Listener {
	var lim *connLimit
	if s.maxConns > 0 {
		lim = &connLimit{max: s.maxConns, idle: map[*slowHeaderConn]time.Time{}}
	}
	return slowHeaderListener{ln, s.obs, lim}
}

type slowHeaderListener struct {
	net.Listener
	obs Observer
	lim *connLimit // nil: no bound
}

func (l slowHeaderListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		sc := &slowHeaderConn{Conn: c, obs: l.obs, lim: l.lim}
		if l.lim == nil || l.lim.admit(sc) {
			return sc, nil
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(response503Conns) // a fresh socket's buffer takes it at once
		c.Close()
		l.obs.Served(RouteUnknown, "", http.StatusServiceUnavailable, -1)
		l.obs.Rejected(RouteUnknown, "", ReasonTooManyConnections)
	}
}

const body503Conns = `{"meta":{"errors":["too many connections; retry"]}}`

var response503Conns = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json; charset=utf-8\r\n" +
	"X-Trackd-Reason: " + ReasonTooManyConnections + "\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(body503Conns)) + "\r\n\r\n" + body503Conns)

// connLimit counts a listener's open connections and knows which of them
// can be closed to make room: those idle between requests, and those that
// have sent nothing (since when, in idle).
type connLimit struct {
	max  int
	mu   sync.Mutex
	open int
	idle map[*slowHeaderConn]time.Time
}

// admit counts c in, closing an idle connection to make room if the limit
// is reached; it reports false when there is no room.
func (l *connLimit) admit(c *slowHeaderConn) bool {
	now := time.Now()
	l.mu.Lock()
	var victim *slowHeaderConn
	if l.open >= l.max {
		for v, since := range l.idle {
			if v.partial.Load() || (!v.inHandler.Load() && !v.served.Load() && now.Sub(since) < silentAge) {
				continue // reading a request, or just accepted
			}
			victim = v
			break
		}
		if victim == nil {
			l.mu.Unlock()
			return false
		}
		delete(l.idle, victim)
	}
	l.open++
	l.idle[c] = now // sent nothing yet
	l.mu.Unlock()
	if victim != nil {
		victim.Close() // counts itself out
	}
	return true
}

// setIdle records that c is between requests (idle) or serving one.
func (l *connLimit) setIdle(c *slowHeaderConn, idle bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed.Load() {
		return
	}
	if idle {
		l.idle[c] = time.Now()
	} else {
		delete(l.idle, c)
	}
}

func (l *connLimit) release(c *slowHeaderConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.idle, c)
	l.open--
}

// slowHeaderConn tracks whether a request is being read outside a handler.
type slowHeaderConn struct {
	net.Conn
	obs       Observer
	lim       *connLimit  // nil: not counted
	served    atomic.Bool // a request was handed to a handler
	closed    atomic.Bool
	inHandler atomic.Bool // a request was handed to a handler and the connection is not idle yet
	partial   atomic.Bool // bytes of a request not yet handed to a handler were read
	answered  atomic.Bool // the 408 was written
}

// RouteUnknown is the route label of a request answered before its
// request line and headers were read (a slow client's 408).
const RouteUnknown = "unknown"

const body408 = `{"meta":{"errors":["request headers were not received in time"]}}`

var response408 = []byte("HTTP/1.1 408 Request Timeout\r\n" +
	"Content-Type: application/json; charset=utf-8\r\n" +
	"X-Trackd-Reason: " + ReasonTimeout + "\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(body408)) + "\r\n\r\n" + body408)

// Close closes the connection once, counting it out of its limit.
func (c *slowHeaderConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.lim != nil {
		c.lim.release(c)
	}
	return c.Conn.Close()
}

func (c *slowHeaderConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.inHandler.Load() {
		return n, err
	}
	if n > 0 {
		c.partial.Store(true)
	}
	if err != nil && c.partial.Load() && isTimeout(err) && c.answered.CompareAndSwap(false, true) {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.Conn.Write(response408)
		c.obs.Served(RouteUnknown, "", http.StatusRequestTimeout, -1) // counted, not timed
		c.obs.Rejected(RouteUnknown, "", ReasonTimeout)
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

type slowHeaderConnKey struct{}

// connContext stores the connection so the handler wrapper can find it.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*slowHeaderConn); ok {
		return context.WithValue(ctx, slowHeaderConnKey{}, sc)
	}
	return ctx
}

// markHandling wraps h so the connection knows a handler owns it: reads
// then belong to the body (whose timeout the handler answers itself) or to
// the server draining it, until the connection goes idle again.
func markHandling(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sc, _ := r.Context().Value(slowHeaderConnKey{}).(*slowHeaderConn); sc != nil {
			sc.inHandler.Store(true)
			sc.served.Store(true)
			if sc.lim != nil {
				sc.lim.setIdle(sc, false)
			}
		}
		h.ServeHTTP(w, r)
	})
}

// connState notices a connection waiting for its next request.
func connState(c net.Conn, st http.ConnState) {
	if sc, ok := c.(*slowHeaderConn); ok && st == http.StateIdle {
		sc.partial.Store(false)
		sc.inHandler.Store(false)
		if sc.lim != nil {
			sc.lim.setIdle(sc, true)
		}
	}
}
