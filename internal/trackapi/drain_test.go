package trackapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDrainClosesKeepAliveConnectionsAfterAnAnswer: a client on a
// keep-alive connection keeps getting answers while the server drains; the
// next answer says "Connection: close", the connection ends after it, and
// Drain returns without waiting for its (hour-long) grace period. A request
// in flight when draining begins finishes and gets its answer.
func TestDrainClosesKeepAliveConnectionsAfterAnAnswer(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := NewHTTPServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "{}")
	}), Timeouts{}, nil)
	var d Drainer
	d.Wrap(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(WrapListener(ln)) }()

	idle := dialHTTP(t, ln.Addr().String())
	if resp := idle.do(t, "/"); resp.Close {
		t.Fatal("answer before draining closes the connection")
	}
	slow := dialHTTP(t, ln.Addr().String())
	slowResp := make(chan *http.Response, 1)
	go func() { slowResp <- slow.do(t, "/slow") }()
	<-entered
	released := false
	defer func() {
		if !released {
			close(release)
			<-slowResp
		}
	}()

	d.Begin(ln)
	drained := make(chan error, 1)
	go func() { drained <- d.Drain(context.Background(), srv, time.Hour) }()
	resp := idle.do(t, "/")
	if !resp.Close {
		t.Fatal("answer while draining does not say Connection: close")
	}
	if _, err := idle.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("connection after the close answer: %v, want EOF", err)
	}
	close(release)
	released = true
	if r := <-slowResp; r.StatusCode != 200 {
		t.Fatalf("in-flight request: %d", r.StatusCode)
	}
	// The slow connection got its answer before draining saw it; it is idle
	// now and is closed by Shutdown once the grace period... which is an
	// hour: so close it from the client side, as a client does.
	slow.c.Close()
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := <-served; err == nil {
		t.Fatal("Serve returned nil")
	}
	if n := d.Open(); n != 0 {
		t.Fatalf("%d connections still counted open", n)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("dial after drain succeeded; the listener should be closed")
	}
}

// TestDrainGraceClosesIdleConnections: a connection that sends nothing more
// is closed by the server once the grace period ends.
func TestDrainGraceClosesIdleConnections(t *testing.T) {
	srv := NewHTTPServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }), Timeouts{}, nil)
	var d Drainer
	d.Wrap(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	idle := dialHTTP(t, ln.Addr().String())
	idle.do(t, "/")
	if err := d.Drain(context.Background(), srv, time.Millisecond, ln); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if _, err := idle.r.ReadByte(); err == nil {
		t.Fatal("idle connection still open after the grace period")
	}
}

type httpConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialHTTP(t *testing.T, addr string) *httpConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &httpConn{c, bufio.NewReader(c)}
}

func (h *httpConn) do(t *testing.T, path string) *http.Response {
	if _, err := fmt.Fprintf(h.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Error(err)
		return &http.Response{}
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		t.Error(err)
		return &http.Response{}
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "{}") {
		t.Errorf("body %q", b)
	}
	return resp
}

// TestDrainClosesSilentConnections: a connection that was accepted but has
// sent nothing does not hold the drain (net/http's Shutdown waits up to 5 s
// for such a one); one in the middle of its request headers is left alone.
func TestDrainClosesSilentConnections(t *testing.T) {
	srv := NewHTTPServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }), Timeouts{}, nil)
	var d Drainer
	d.Wrap(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(WrapListener(ln))
	silent := dialHTTP(t, ln.Addr().String())
	// A request on another connection shows the server has accepted and
	// is serving; the silent one was accepted before it (same listener,
	// in order).
	other := dialHTTP(t, ln.Addr().String())
	other.do(t, "/")
	other.c.Close()
	// Age the silent connection past silentAge in the Drainer's books.
	d.mu.Lock()
	for c := range d.fresh {
		d.fresh[c] = time.Now().Add(-2 * silentAge)
	}
	d.mu.Unlock()
	// Shutdown alone would wait until the connection is 5 s old; with
	// closeSilent it does not wait at all. The 3 s bound is for the test.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := d.Drain(ctx, srv, 0, ln); err != nil {
		t.Fatalf("Drain: %v (the silent connection held it)", err)
	}
	silent.c.SetReadDeadline(time.Now().Add(10 * time.Second)) // only a bound for the test
	if _, err := silent.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection after the drain: %v, want closed (EOF)", err)
	}
}
