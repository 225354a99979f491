package trackapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
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
func WrapListener(ln net.Listener) net.Listener { return slowHeaderListener{ln, nopObserver{}} }

// Listener is WrapListener whose 408s are also counted by s's Observer
// (route "unknown": no route was read; reason timeout).
func (s *Server) Listener(ln net.Listener) net.Listener { return slowHeaderListener{ln, s.obs} }

type slowHeaderListener struct {
	net.Listener
	obs Observer
}

func (l slowHeaderListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &slowHeaderConn{Conn: c, obs: l.obs}, nil
}

// slowHeaderConn tracks whether a request is being read outside a handler.
type slowHeaderConn struct {
	net.Conn
	obs       Observer
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
		}
		h.ServeHTTP(w, r)
	})
}

// connState notices a connection waiting for its next request.
func connState(c net.Conn, st http.ConnState) {
	if sc, ok := c.(*slowHeaderConn); ok && st == http.StateIdle {
		sc.partial.Store(false)
		sc.inHandler.Store(false)
	}
}
