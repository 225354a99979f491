package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/trackd/trackd/internal/ulid"
)

// Load operations (--op).
const (
	opTrack    = iota // v1 POST /api/v1/customers/{id}/events, one event with a client ULID id
	opIdentify        // v1 PUT /api/v1/customers/{id}, no client id
	opBatch           // v2 POST /api/v2/batch of --batch person events, each with a client ULID id
	opMix             // per worker, every 10 requests: 6 track, 2 identify, 2 batch
	nOps
)

var opNames = [nOps]string{"track", "identify", "batch", "mix"}

func parseOp(s string) (int, bool) {
	for i, n := range opNames {
		if n == s {
			return i, true
		}
	}
	return 0, false
}

// Transport error classes, reported apart from HTTP status codes.
const (
	errRefused = iota // connection refused: nothing listens
	errReset          // connection reset, broken pipe, or closed before the answer (EOF)
	errTimeout        // dial, response-header or context timeout
	errOther
	nErrClasses
)

var errClassNames = [nErrClasses]string{"refused", "reset", "timeout", "other"}

// classify maps a transport error to its class.
func classify(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errReset
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT),
		errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	}
	return errOther
}

// Latencies are recorded in microseconds, from 1 µs to an hour (an open-loop
// run against a stalled server queues for long), to 3 significant digits.
const (
	histMin     = 1
	histMax     = int64(time.Hour / time.Microsecond)
	histSigFigs = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// clock is the load engine's time source. The open loop schedules sends
// from it and measures latency against it; tests replace it to make
// coordinated omission visible without waiting.
type clock interface {
	Now() time.Time
	// SleepUntil returns at t, or at once when t has passed, or when ctx
	// ends (then it reports false).
	SleepUntil(ctx context.Context, t time.Time) bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pause waits d on the real clock (chaos and restarts let trackd take load
// that long); it reports false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	return realClock{}.SleepUntil(ctx, time.Now().Add(d))
}

// ackSink receives the IDs of the events of every acknowledged (200)
// request: the oracle. Ack must be safe for concurrent use; ids is only
// valid during the call.
type ackSink interface {
	Ack(ids []ulid.ULID)
}

// loadOptions configures one load run. Zero values are the documented
// defaults of `trackload run`, except URL, Site and Key, which are required.
type loadOptions struct {
	URL       string // base URL, e.g. http://127.0.0.1:8080
	Site, Key string // Basic-auth credentials
	Open      bool   // open loop (constant arrival at Rate) instead of closed
	Conns     int    // closed: workers; open: the most requests in flight; default 64
	Rate      float64
	Op        int
	Batch     int           // items per v2 batch; default 100
	Size      int           // body (batch item) size in bytes; default 300
	Duration  time.Duration // 0 with Requests 0 means until Stop or ctx ends
	Requests  int64         // 0: no bound
	Timeout   time.Duration // dial and response-header timeout; default 10s
	Oracle    ackSink       // nil: none
	// ErrorBackoff is how long a closed-loop worker waits after a transport
	// error before it sends again (chaos: do not spin while trackd is
	// down); 0: none.
	ErrorBackoff time.Duration
	// Stop, when closed, makes workers finish their request in flight and
	// stop (ending ctx instead cancels requests in flight).
	Stop <-chan struct{}
	// Clock is the time source; nil means the real clock.
	Clock clock
	// Tag names this run's persons (tl-<tag>-<worker>); default random.
	Tag string
}

func (o *loadOptions) setDefaults() {
	if o.Conns <= 0 {
		o.Conns = 64
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Size <= 0 {
		o.Size = 300
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Tag == "" {
		s := ulid.NewGenerator(nil, nil).NewString()
		o.Tag = strings.ToLower(s[len(s)-6:])
	}
}

// loadResult is what one run measured.
type loadResult struct {
	Mode     string  `json:"mode"`
	Op       string  `json:"op"`
	Conns    int     `json:"conns"`
	Rate     float64 `json:"rate,omitempty"`
	Size     int     `json:"size"`
	Batch    int     `json:"batch,omitempty"`
	Target   string  `json:"url"`
	Elapsed  float64 `json:"elapsed_seconds"`
	Requests int64   `json:"requests"`  // sent: answered (any status) or failed in transport
	OK       int64   `json:"ok"`        // answered 200
	Events   int64   `json:"events"`    // events in requests answered 200
	ReqPerS  float64 `json:"req_per_s"` // Requests per second
	OKPerS   float64 `json:"ok_per_s"`  // OK per second: what compare's ratios use
	EvPerS   float64 `json:"events_per_s"`
	Latency  latency `json:"latency_ms"` // answered requests; open loop: from the intended send time

	Status    map[string]int64 `json:"status"`             // every answered status code
	Transport map[string]int64 `json:"transport_errors"`   // by class
	Canceled  int64            `json:"canceled,omitempty"` // requests cut off by the run's end
	Proc      *procStats       `json:"target_proc,omitempty"`
	// SelfCPU is the CPU trackload's own process used, in cores: the
	// load generator and, in compare's plain rounds, the in-process
	// plain server.
	SelfCPU float64 `json:"self_cpu_cores"`

	hist *hdrhistogram.Histogram
}

// Errors is the count of non-200 answers plus transport errors.
func (r *loadResult) Errors() int64 {
	var n int64
	for code, c := range r.Status {
		if code != "200" {
			n += c
		}
	}
	for _, c := range r.Transport {
		n += c
	}
	return n
}

// latency is a latency summary in milliseconds.
type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func summarize(h *hdrhistogram.Histogram) latency {
	if h.TotalCount() == 0 {
		return latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return latency{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / 1000,
	}
}

// worker is one sender: it sends one request at a time, so the IDs it puts
// in its requests reach the server in the order it generated them. Its
// counters are its own (merged after the run), so the hot path shares
// nothing but the oracle.
type worker struct {
	n       int
	person  string
	gen     *ulid.Generator
	tmpl    [opMix]*http.Request // per concrete op
	scratch []byte
	ids     []ulid.ULID
	seq     int64

	hist      *hdrhistogram.Histogram
	status    map[int]int64
	transport [nErrClasses]int64
	requests  int64
	ok        int64
	events    int64
	canceled  int64
}

// reqBody is an immutable request body. It is its own ReadCloser, so a
// request costs one allocation for the body's bytes and one for this.
type reqBody struct{ bytes.Reader }

func (*reqBody) Close() error { return nil }

// runLoad runs one load against o.URL and returns what it measured. It
// returns when the bound is reached (Duration, Requests), Stop is closed or
// ctx ends, and every worker's request in flight has finished.
func runLoad(ctx context.Context, o loadOptions) (*loadResult, error) {
	o.setDefaults()
	base, err := url.Parse(strings.TrimRight(o.URL, "/"))
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if o.Open && o.Rate <= 0 {
		return nil, errors.New("open loop needs a rate > 0")
	}
	tr := newTransport(o.Conns, o.Timeout)
	defer tr.CloseIdleConnections()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(o.Site+":"+o.Key))

	workers := make([]*worker, o.Conns)
	for i := range workers {
		w := &worker{
			n:      i,
			person: fmt.Sprintf("tl-%s-%d", o.Tag, i),
			gen:    ulid.NewGenerator(nil, nil),
			hist:   newHistogram(),
			status: map[int]int64{},
		}
		paths := [opMix]struct{ method, path string }{
			opTrack:    {http.MethodPost, "/api/v1/customers/" + w.person + "/events"},
			opIdentify: {http.MethodPut, "/api/v1/customers/" + w.person},
			opBatch:    {http.MethodPost, "/api/v2/batch"},
		}
		for op, p := range paths {
			req, err := http.NewRequestWithContext(ctx, p.method, base.String()+p.path, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", auth)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", "trackload/1")
			w.tmpl[op] = req
		}
		workers[i] = w
	}

	clk := o.Clock
	cpu0 := selfCPU()
	start := clk.Now()
	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	stop := o.Stop
	if stop == nil {
		stop = make(chan struct{})
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return ctx.Err() != nil
		}
	}

	var issued atomic.Int64 // closed: requests started; open: schedule slots taken
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.Open {
				w.runOpen(ctx, &o, tr, start, deadline, &issued, stopped)
			} else {
				w.runClosed(ctx, &o, tr, deadline, &issued, stopped)
			}
		}()
	}
	wg.Wait()
	elapsed := clk.Now().Sub(start)
	cpu := selfCPU() - cpu0

	res := &loadResult{
		Mode: "closed", Op: opNames[o.Op], Conns: o.Conns, Size: o.Size, Target: o.URL,
		Elapsed:   elapsed.Seconds(),
		Status:    map[string]int64{},
		Transport: map[string]int64{},
		hist:      newHistogram(),
	}
	if o.Open {
		res.Mode, res.Rate = "open", o.Rate
	}
	if o.Op == opBatch || o.Op == opMix {
		res.Batch = o.Batch
	}
	for _, w := range workers {
		res.hist.Merge(w.hist)
		res.Requests += w.requests
		res.OK += w.ok
		res.Events += w.events
		res.Canceled += w.canceled
		for code, n := range w.status {
			res.Status[strconv.Itoa(code)] += n
		}
		for c, n := range w.transport {
			if n > 0 {
				res.Transport[errClassNames[c]] += n
			}
		}
	}
	if elapsed > 0 {
		res.ReqPerS = float64(res.Requests) / elapsed.Seconds()
		res.OKPerS = float64(res.OK) / elapsed.Seconds()
		res.EvPerS = float64(res.Events) / elapsed.Seconds()
		res.SelfCPU = cpu.Seconds() / elapsed.Seconds()
	}
	res.Latency = summarize(res.hist)
	return res, nil
}

// selfCPU is the user+system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newTransport returns a client transport tuned so that the client is not
// the bottleneck: keep-alive with up to conns idle connections to the one
// host, no proxy, no compression, HTTP/1.1.
func newTransport(conns int, timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		DisableCompression:    true,
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        16 << 10,
	}
}

// runClosed sends back to back until the bound, Stop or ctx.
func (w *worker) runClosed(ctx context.Context, o *loadOptions, tr http.RoundTripper, deadline time.Time, issued *atomic.Int64, stopped func() bool) {
	for {
		if stopped() {
			return
		}
		if !deadline.IsZero() && !o.Clock.Now().Before(deadline) {
			return
		}
		if o.Requests > 0 && issued.Add(1) > o.Requests {
			return
		}
		failed := w.send(ctx, o, tr, o.Clock.Now())
		if failed && o.ErrorBackoff > 0 {
			if !o.Clock.SleepUntil(ctx, o.Clock.Now().Add(o.ErrorBackoff)) {
				return
			}
		}
	}
}

// runOpen takes the next slot of the shared schedule (slot k is due at
// start + k/rate), waits for it, sends, and measures from the slot's time,
// not from when the request actually left: when every worker is busy the
// next slots are already due, and their wait counts as latency. That is
// the coordinated-omission correction; without it a stalled server would
// stall the schedule and hide the stall from the histogram.
func (w *worker) runOpen(ctx context.Context, o *loadOptions, tr http.RoundTripper, start, deadline time.Time, issued *atomic.Int64, stopped func() bool) {
	perReq := float64(time.Second) / o.Rate
	for {
		if stopped() {
			return
		}
		k := issued.Add(1) - 1
		if o.Requests > 0 && k >= o.Requests {
			return
		}
		due := start.Add(time.Duration(math.Round(float64(k) * perReq)))
		if !deadline.IsZero() && !due.Before(deadline) {
			return
		}
		if !o.Clock.SleepUntil(ctx, due) {
			return
		}
		w.send(ctx, o, tr, due)
	}
}

// send builds and sends one request, measuring latency from since, and
// reports whether it failed in transport.
func (w *worker) send(ctx context.Context, o *loadOptions, tr http.RoundTripper, since time.Time) (transportFailed bool) {
	op := o.Op
	if op == opMix {
		switch w.seq % 10 {
		case 6, 7:
			op = opIdentify
		case 8, 9:
			op = opBatch
		default:
			op = opTrack
		}
	}
	w.scratch, w.ids = w.build(op, o, w.scratch[:0], w.ids[:0])
	w.seq++
	body := &reqBody{}
	body.Reset(bytes.Clone(w.scratch))
	req := *w.tmpl[op] // a shallow copy; the template's header is only read
	req.Body = body
	req.ContentLength = int64(len(w.scratch))

	resp, err := tr.RoundTrip(&req)
	w.requests++
	if err != nil {
		if ctx.Err() != nil {
			w.requests--
			w.canceled++
			return false
		}
		w.transport[classify(err)]++
		return true
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil && ctx.Err() != nil {
		w.requests--
		w.canceled++
		return false
	}
	us := o.Clock.Now().Sub(since).Microseconds()
	w.hist.RecordValue(min(max(us, histMin), histMax))
	w.status[resp.StatusCode]++
	if resp.StatusCode == http.StatusOK {
		w.ok++
		if op == opBatch {
			w.events += int64(o.Batch)
		} else {
			w.events++
		}
		if o.Oracle != nil && len(w.ids) > 0 {
			o.Oracle.Ack(w.ids)
		}
	}
	return false
}

// pad is where padding bytes come from.
var pad = strings.Repeat("x", 1<<20)

// build appends the body of one request of kind op to b and the client IDs
// it carries to ids. Bodies are padded to o.Size bytes (a batch's items
// each to o.Size); a size smaller than the fixed part gives no padding.
func (w *worker) build(op int, o *loadOptions, b []byte, ids []ulid.ULID) ([]byte, []ulid.ULID) {
	switch op {
	case opTrack:
		id := w.gen.New()
		ids = append(ids, id)
		start := len(b)
		b = append(b, `{"name":"trackload","id":"`...)
		b, _ = id.AppendText(b)
		b = append(b, `","data":{"w":`...)
		b = strconv.AppendInt(b, int64(w.n), 10)
		b = append(b, `,"i":`...)
		b = strconv.AppendInt(b, w.seq, 10)
		b = append(b, `,"pad":"`...)
		b = appendPad(b, o.Size-(len(b)-start)-len(`"}}`))
		b = append(b, `"}}`...)
	case opIdentify:
		start := len(b)
		b = append(b, `{"email":"`...)
		b = append(b, w.person...)
		b = append(b, `@example.com","trackload_i":`...)
		b = strconv.AppendInt(b, w.seq, 10)
		b = append(b, `,"pad":"`...)
		b = appendPad(b, o.Size-(len(b)-start)-len(`"}`))
		b = append(b, `"}`...)
	case opBatch:
		b = append(b, `{"batch":[`...)
		for i := 0; i < o.Batch; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			id := w.gen.New()
			ids = append(ids, id)
			start := len(b)
			b = append(b, `{"type":"person","action":"event","identifiers":{"id":"`...)
			b = append(b, w.person...)
			b = append(b, `"},"name":"trackload","id":"`...)
			b, _ = id.AppendText(b)
			b = append(b, `","attributes":{"w":`...)
			b = strconv.AppendInt(b, int64(w.n), 10)
			b = append(b, `,"i":`...)
			b = strconv.AppendInt(b, w.seq, 10)
			b = append(b, `,"item":`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `,"pad":"`...)
			b = appendPad(b, o.Size-(len(b)-start)-len(`"}}`))
			b = append(b, `"}}`...)
		}
		b = append(b, `]}`...)
	}
	return b, ids
}

func appendPad(b []byte, n int) []byte {
	if n <= 0 {
		return b
	}
	return append(b, pad[:min(n, len(pad))]...)
}
