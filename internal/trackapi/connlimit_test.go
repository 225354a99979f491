package trackapi_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/trackapi"
)

// TestConnLimit: with MaxConns 2, a third connection is refused (503
// too_many_connections) while the two open ones have waited less than a
// second; once they have, it takes the place of the one idle longest,
// which is closed. When both are busy in a handler, a new one is refused,
// counted, and the busy ones finish.
func TestConnLimit(t *testing.T) {
	block, entered := make(chan struct{}), make(chan struct{}, 2)
	var blocking atomic.Bool
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	f := newFixture(t, func(o *trackapi.Options) {
		o.MaxConns = 2
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		o.BeforeStore = func(*http.Request, []spool.Record) {
			if blocking.Load() {
				entered <- struct{}{}
				<-block
			}
		}
	})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := trackapi.NewHTTPServer("", f.h, trackapi.Timeouts{}, discardLogger())
	// Which connection waited longest depends on when each went idle,
	// which net/http reports after the client has its answer: the test
	// waits for it rather than guessing.
	idle := make(chan struct{}, 16)
	connState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		connState(c, st)
		if st == http.StateIdle {
			idle <- struct{}{}
		}
	}
	go srv.Serve(f.h.Listener(ln))
	t.Cleanup(func() { srv.Close() })

	type conn struct {
		net.Conn
		r *bufio.Reader
	}
	dial := func() conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second)) // a bound for the test only
		return conn{c, bufio.NewReader(c)}
	}
	post := func(c conn) (int, error) {
		const body = `{"delivery_id":"d","metric":"opened"}`
		if _, err := io.WriteString(c, "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n"+body); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	refused := func(c conn) {
		t.Helper()
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("X-Trackd-Reason") != "too_many_connections" || resp.Header.Get("Retry-After") != "1" ||
			!strings.Contains(string(body), "too many connections") {
			t.Fatalf("over the limit: %d %v %s", resp.StatusCode, resp.Header, body)
		}
	}

	a, b := dial(), dial()
	for _, c := range []conn{a, b} {
		if code, err := post(c); code != 200 {
			t.Fatalf("first requests: %d, %v", code, err)
		}
		<-idle
	}
	refused(dial()) // a and b have been idle for no time
	advance(time.Second)
	c := dial() // takes a's place: idle longest
	if code, err := post(c); code != 200 {
		t.Fatalf("third connection: %d, %v", code, err)
	}
	if _, err := post(a); err == nil {
		t.Fatal("the connection idle longest was not closed")
	}
	if code, err := post(b); code != 200 {
		t.Fatalf("the other idle connection: %d, %v", code, err)
	}
	kept := b

	// Both open connections busy: a new one is refused.
	blocking.Store(true)
	done := make(chan int, 2)
	for _, x := range []conn{kept, c} {
		go func() { // ends when block is closed
			code, _ := post(x)
			done <- code
		}()
	}
	<-entered
	<-entered
	advance(time.Hour) // busy ones are never taken, however long
	refused(dial())
	close(block)
	for range 2 {
		if code := <-done; code != 200 {
			t.Fatalf("busy connection answered %d", code)
		}
	}
	f.obs.mu.Lock()
	n := f.obs.rejected["too_many_connections"]
	f.obs.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d refusals counted, want 2", n)
	}
}
