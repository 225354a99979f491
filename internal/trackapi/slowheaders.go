package trackapi

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"io"
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
// most Options.MaxConns connections open. Past it, a new connection takes
// the place of the one that has waited longest, if that is a second or
// more, outside a request handler (idle between requests, silent since it
// was accepted, or trickling its request line): that one is closed, and a
// request it may just have sent is answered 503 without being stored, so a
// client's retry cannot store it twice. If no connection has waited that
// long, the new one is answered 503 (reason too_many_connections,
// Retry-After: 1) and closed.
func (s *Server) Listener(ln net.Listener) net.Listener {
	var lim *connLimit
	if s.maxConns > 0 {
		lim = &connLimit{max: s.maxConns, now: s.now}
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

var response503Conns = closingAnswer("HTTP/1.1 503 Service Unavailable", ReasonTooManyConnections, "Retry-After: 1\r\n", body503Conns)

// closingAnswer is a whole HTTP/1.1 answer written on the connection
// itself, outside net/http (it has not read a request, or has answered one
// in plain text): a JSON body with its reason, and the connection closed.
// extra is more header lines, each ending in CRLF.
func closingAnswer(statusLine, reason, extra, body string) []byte {
	return []byte(statusLine + "\r\n" +
		"Content-Type: application/json; charset=utf-8\r\n" +
		"X-Trackd-Reason: " + reason + "\r\n" +
		extra +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// connLimit counts a listener's open connections, and keeps those outside
// a request handler in the order they got there (accepted, or idle after
// an answer), so that the one waiting longest can make room in O(1).
type connLimit struct {
	max int
	now func() time.Time

	mu      sync.Mutex // guards the fields below and each connection's waitElem, waitSince and taken
	open    int
	waiting list.List // of *slowHeaderConn, oldest first
}

// admit counts c in, taking the place of the connection that has waited
// longest if the limit is reached and it has waited silentAge; it reports
// false when there is no room.
func (l *connLimit) admit(c *slowHeaderConn) bool {
	now := l.now()
	l.mu.Lock()
	var victim *slowHeaderConn
	if l.open >= l.max {
		front := l.waiting.Front()
		if front == nil || now.Sub(front.Value.(*slowHeaderConn).waitSince) < silentAge {
			l.mu.Unlock()
			return false
		}
		// Taken, under the lock: from now on its handler refuses to
		// store (enter), and its Close does not count it out again.
		victim = front.Value.(*slowHeaderConn)
		l.waiting.Remove(front)
		victim.waitElem, victim.taken = nil, true
		l.open--
	}
	l.open++
	c.waitSince, c.waitElem = now, l.waiting.PushBack(c)
	l.mu.Unlock()
	if victim != nil {
		victim.Close()
	}
	return true
}

// enter moves c out of the waiting connections as a handler takes a
// request; false means c was taken to make room, and the request must not
// be stored.
func (l *connLimit) enter(c *slowHeaderConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.taken {
		return false
	}
	if c.waitElem != nil {
		l.waiting.Remove(c.waitElem)
		c.waitElem = nil
	}
	return true
}

// wait puts c, idle after an answer, at the back of the waiting ones.
func (l *connLimit) wait(c *slowHeaderConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.taken || c.closed.Load() {
		return
	}
	if c.waitElem != nil {
		l.waiting.Remove(c.waitElem)
	}
	c.waitSince, c.waitElem = l.now(), l.waiting.PushBack(c)
}

// release counts c out as it closes (unless admit took it, and did).
func (l *connLimit) release(c *slowHeaderConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.taken {
		return
	}
	if c.waitElem != nil {
		l.waiting.Remove(c.waitElem)
		c.waitElem = nil
	}
	l.open--
}

// slowHeaderConn tracks whether a request is being read outside a handler.
type slowHeaderConn struct {
	net.Conn
	obs    Observer
	lim    *connLimit // nil: not counted
	closed atomic.Bool
	// Guarded by lim.mu.
	waitElem  *list.Element // in lim.waiting; nil while in a handler
	waitSince time.Time
	taken     bool        // closed by admit to make room
	inHandler atomic.Bool // a request was handed to a handler and the connection is not idle yet
	partial   atomic.Bool // bytes of a request not yet handed to a handler were read
	answered  atomic.Bool // the 408 was written
	// aborted: the last read deadline set was in the past, which is how
	// net/http cancels a pending read (after answering a request itself,
	// such as OPTIONS *), not a client being slow.
	aborted atomic.Bool
}

// SetReadDeadline notes whether net/http is cancelling a read (it sets a
// deadline long past, time.Unix(1, 0)) rather than bounding one.
func (c *slowHeaderConn) SetReadDeadline(t time.Time) error {
	c.aborted.Store(isCancel(t))
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and SetWriteDeadline.
func (c *slowHeaderConn) SetDeadline(t time.Time) error {
	c.aborted.Store(isCancel(t))
	return c.Conn.SetDeadline(t)
}

// isCancel reports whether a deadline is one set to cancel a read at once
// (years in the past) rather than to bound it; no clock read on this path,
// which every request takes several times.
func isCancel(t time.Time) bool { return !t.IsZero() && t.Before(cancelBefore) }

var cancelBefore = time.Unix(1_000_000_000, 0) // 2001

// RouteUnknown is the route label of a request answered before its
// request line and headers were read (a slow client's 408).
const RouteUnknown = "unknown"

const body408 = `{"meta":{"errors":["request headers were not received in time"]}}`

var response408 = closingAnswer("HTTP/1.1 408 Request Timeout", ReasonTimeout, "", body408)

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
	if err != nil && c.partial.Load() && isTimeout(err) && !c.aborted.Load() && c.answered.CompareAndSwap(false, true) {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.Conn.Write(response408)
		c.obs.Served(RouteUnknown, "", http.StatusRequestTimeout, -1) // counted, not timed
		c.obs.Rejected(RouteUnknown, "", ReasonTimeout)
	}
	return n, err
}

// netHTTPErrorHeaders ends the status line of the answers net/http writes
// itself to a request it cannot parse (a malformed request line or header,
// headers over MaxHeaderBytes, an unsupported transfer coding), before any
// handler; its plain-text body follows.
var netHTTPErrorHeaders = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")

// Write passes the connection's writes through, except net/http's own
// answers to requests no handler saw (outside a handler, status 4xx or
// 5xx): those are counted, like every answer, under route "unknown", and
// rewritten from plain text to the v1 JSON error shape with an
// X-Trackd-Reason, as DESIGN §2.2 wants every refusal.
func (c *slowHeaderConn) Write(p []byte) (int, error) {
	if c.inHandler.Load() || len(p) < 12 || string(p[:9]) != "HTTP/1.1 " {
		return c.Conn.Write(p)
	}
	code, err := strconv.Atoi(string(p[9:12]))
	if err != nil || code < 400 {
		return c.Conn.Write(p)
	}
	reason := ReasonBadRequest
	switch code {
	case http.StatusRequestHeaderFieldsTooLarge:
		reason = ReasonTooLarge
	case http.StatusNotImplemented:
		reason = ReasonUnsupportedEncoding
	}
	c.obs.Served(RouteUnknown, "", code, -1) // counted, not timed
	c.obs.Rejected(RouteUnknown, "", reason)
	// Rewrite only a whole answer: net/http's plain-text refusal (its text
	// is the message), or one without a body (417 to an unknown Expect).
	statusLine, text := "", ""
	if i := bytes.Index(p, netHTTPErrorHeaders); i > 0 {
		statusLine, text = string(p[:i]), string(p[i+len(netHTTPErrorHeaders):])
	} else if j, k := bytes.Index(p, []byte("\r\n")), bytes.Index(p, []byte("\r\n\r\n")); j > 0 && k == len(p)-4 &&
		bytes.Contains(p, []byte("\r\nContent-Length: 0\r\n")) {
		statusLine, text = string(p[:j]), strconv.Itoa(code)+" "+http.StatusText(code)
	} else {
		return c.Conn.Write(p)
	}
	msg, _ := json.Marshal(text)
	if _, err := c.Conn.Write(closingAnswer(statusLine, reason, "", `{"meta":{"errors":[`+string(msg)+`]}}`)); err != nil {
		return 0, err
	}
	return len(p), nil
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
			if sc.lim != nil && !sc.lim.enter(sc) {
				// Its connection was closed to make room for another as
				// this request came: not stored, so a retry is safe.
				w.Header().Set("Connection", "close")
				w.Header().Set("Retry-After", "1")
				w.Header().Set("X-Trackd-Reason", ReasonTooManyConnections)
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, body503Conns)
				sc.obs.Served(RouteUnknown, r.Method, http.StatusServiceUnavailable, -1)
				sc.obs.Rejected(RouteUnknown, "", ReasonTooManyConnections)
				return
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
			sc.lim.wait(sc)
		}
	}
}
