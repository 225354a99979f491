package trackapi_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/trackapi"
)

// TestConnLimit: with MaxConns 2, a third connection takes the place of
// one idle between requests (which is closed); when both are busy, it is
// answered 503 too_many_connections, counted, and the busy ones finish.
func TestConnLimit(t *testing.T) {
	block, entered := make(chan struct{}), make(chan struct{}, 2)
	var blocking atomic.Bool
	f := newFixture(t, func(o *trackapi.Options) {
		o.MaxConns = 2
		o.BeforeStore = func(*http.Request, []spool.Record) {
			if blocking.Load() {
				entered <- struct{}{}
				<-block
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := trackapi.NewHTTPServer("", f.h, trackapi.Timeouts{}, discardLogger())
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

	a, b := dial(), dial()
	for _, c := range []conn{a, b} {
		if code, err := post(c); code != 200 {
			t.Fatalf("first requests: %d, %v", code, err)
		}
	}
	c := dial() // a and b are idle: one of them makes room
	if code, err := post(c); code != 200 {
		t.Fatalf("third connection: %d, %v", code, err)
	}
	var kept conn
	failed := 0
	for _, x := range []conn{a, b} {
		if code, err := post(x); err != nil {
			failed++
		} else if code == 200 {
			kept = x
		}
	}
	if failed != 1 || kept.Conn == nil {
		t.Fatalf("%d of the two idle connections were closed, want 1", failed)
	}

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
	d := dial()
	resp, err := http.ReadResponse(d.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b503, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("X-Trackd-Reason") != "too_many_connections" || resp.Header.Get("Retry-After") != "1" ||
		!strings.Contains(string(b503), "too many connections") {
		t.Fatalf("over the limit: %d %v %s", resp.StatusCode, resp.Header, b503)
	}
	close(block)
	for range 2 {
		if code := <-done; code != 200 {
			t.Fatalf("busy connection answered %d", code)
		}
	}
	f.obs.mu.Lock()
	refused := f.obs.rejected["too_many_connections"]
	f.obs.mu.Unlock()
	if refused != 1 {
		t.Fatalf("%d refusals counted, want 1", refused)
	}
}
