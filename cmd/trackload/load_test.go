package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/ulid"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name   string
		values []int64 // µs
		want   latency // ms, to HDR's 3 significant digits
	}{
		{"empty", nil, latency{}},
		{"one value", []int64{2500}, latency{P50: 2.5, P90: 2.5, P99: 2.5, P999: 2.5, Max: 2.5, Mean: 2.5}},
		{
			// 1..1000 ms: the quantiles are the values at those ranks.
			"uniform 1..1000ms",
			func() (v []int64) {
				for i := int64(1); i <= 1000; i++ {
					v = append(v, i*1000)
				}
				return v
			}(),
			latency{P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000, Mean: 500.5},
		},
		{
			"one outlier in 1000",
			func() (v []int64) {
				for i := 0; i < 999; i++ {
					v = append(v, 1000)
				}
				return append(v, 5_000_000)
			}(),
			latency{P50: 1, P90: 1, P99: 1, P999: 1, Max: 5000, Mean: 5.999},
		},
	}
	approx := cmp.Comparer(func(a, b float64) bool {
		d := a - b
		if d < 0 {
			d = -d
		}
		return d <= 0.002*max(a, b)+1e-9 // HDR keeps 3 significant digits
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistogram()
			for _, v := range tt.values {
				if err := h.RecordValue(v); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tt.want, summarize(h), approx); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrintResult(t *testing.T) {
	r := &loadResult{
		Mode: "open", Op: "track", Conns: 8, Rate: 1000, Size: 300, Target: "http://127.0.0.1:8080",
		Elapsed: 2, Requests: 2000, OK: 1990, Events: 1990, ReqPerS: 1000, OKPerS: 995, EvPerS: 995,
		Latency:   latency{P50: 1.5, P90: 3, P99: 12.25, P999: 40, Max: 1500},
		Status:    map[string]int64{"200": 1990, "503": 7, "429": 1},
		Transport: map[string]int64{"refused": 2},
		Proc:      &procStats{PID: 42, CPUSeconds: 1.5, CPUCores: 0.75, PeakRSS: 50 << 20, HWM: 60 << 20},
	}
	var b strings.Builder
	printResult(&b, r)
	for _, want := range []string{
		"open loop, 1000 req/s, up to 8 in flight",
		"2000 sent (1000 req/s), 1990 ok",
		"p50 1.500ms  p90 3.000ms  p99 12.2ms  p99.9 40.0ms  max 1.50s (from the intended send time)",
		"status 429: 1, status 503: 7, refused: 2",
		"pid 42: CPU 1.50 s (0.75 cores), peak RSS 50.0 MiB (VmHWM 60.0 MiB)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// stepClock is a clock for tests: time moves only when the test advances
// it, or when SleepUntil is asked to wait for a later time (it jumps there).
type stepClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) SleepUntil(ctx context.Context, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return ctx.Err() == nil
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestCoordinatedOmission holds the first request at the server while the
// clock moves on by one second. The open loop at 10 req/s had four more
// requests due during that second; it must report them as having waited
// (900, 800, 700, 600 ms), not as fast. The closed loop, for contrast, only
// sees the one slow request.
func TestCoordinatedOmission(t *testing.T) {
	tests := []struct {
		name string
		open bool
		want []int64 // ms, sorted
	}{
		{"open loop measures from the intended time", true, []int64{600, 700, 800, 900, 1000}},
		{"closed loop measures from the actual send", false, []int64{0, 0, 0, 0, 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if n.Add(1) == 1 {
					close(entered)
					<-release
				}
				w.Write([]byte("{}"))
			}))
			defer srv.Close()
			clk := &stepClock{now: time.Unix(1_000_000, 0)}
			type out struct {
				res *loadResult
				err error
			}
			done := make(chan out, 1)
			go func() {
				res, err := runLoad(context.Background(), loadOptions{
					URL: srv.URL, Site: "s", Key: "k", Open: tt.open, Rate: 10, Conns: 1,
					Requests: 5, Clock: clk,
				})
				done <- out{res, err}
			}()
			<-entered
			clk.Advance(time.Second)
			close(release)
			o := <-done
			if o.err != nil {
				t.Fatal(o.err)
			}
			if o.res.OK != 5 {
				t.Fatalf("ok = %d, want 5", o.res.OK)
			}
			var got []int64
			for _, b := range o.res.hist.Distribution() {
				for i := int64(0); i < b.Count; i++ {
					got = append(got, int64(math.Round(float64(b.From)/1000))) // µs → ms
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("latencies in ms (-want +got):\n%s", diff)
			}
		})
	}
}

// trackServer answers a fixed cycle of status codes and remembers the
// client IDs of the events it answered 200.
type trackServer struct {
	codes []int

	mu    sync.Mutex // guards n, acked, all
	n     int
	acked []string
	all   []string
}

func (s *trackServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != "site" || p != "key" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var ids []string
	var one struct {
		ID    string `json:"id"`
		Batch []struct {
			ID string `json:"id"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(b, &one); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if one.ID != "" {
		ids = append(ids, one.ID)
	}
	for _, it := range one.Batch {
		ids = append(ids, it.ID)
	}
	s.mu.Lock()
	code := s.codes[s.n%len(s.codes)]
	s.n++
	s.all = append(s.all, ids...)
	if code == http.StatusOK {
		s.acked = append(s.acked, ids...)
	}
	s.mu.Unlock()
	w.WriteHeader(code)
	w.Write([]byte("{}"))
}

func TestOracleHoldsOnlyAcknowledgedEvents(t *testing.T) {
	tests := []struct {
		name  string
		op    string
		codes []int
	}{
		{"track", "track", []int{200, 503, 200, 400, 429, 500}},
		{"batch", "batch", []int{200, 207, 200, 503}},
		{"mix (identify carries no id)", "mix", []int{200, 200, 503}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := &trackServer{codes: tt.codes}
			srv := httptest.NewServer(ts)
			defer srv.Close()
			file := filepath.Join(t.TempDir(), "oracle")
			var out strings.Builder
			err := run(context.Background(), []string{"run", "--url", srv.URL, "--site", "site", "--key", "key",
				"--op", tt.op, "--batch", "3", "--conns", "4", "--requests", "60", "--oracle", file}, os.Getenv, &out, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ids, torn, err := readOracle(file)
			if err != nil || torn {
				t.Fatalf("readOracle: %v (torn %v)", err, torn)
			}
			var got []string
			for _, id := range ids {
				got = append(got, id.String())
			}
			slices.Sort(got)
			ts.mu.Lock()
			want := slices.Sorted(slices.Values(ts.acked))
			sent, requests := len(ts.all), ts.n
			ts.mu.Unlock()
			if requests != 60 {
				t.Errorf("server saw %d requests, want 60 (--requests)", requests)
			}
			if len(want) == 0 || len(want) == sent {
				t.Fatalf("test is vacuous: %d acknowledged of %d IDs sent", len(want), sent)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("oracle (-acknowledged +oracle):\n%s", diff)
			}
			if !strings.Contains(out.String(), "acknowledged event IDs appended") {
				t.Errorf("report:\n%s", out.String())
			}
		})
	}
}

func TestBodies(t *testing.T) {
	o := &loadOptions{Size: 300, Batch: 4}
	w := &worker{n: 7, person: "tl-abc-7", gen: ulid.NewGenerator(nil, nil)}
	tests := []struct {
		op      int
		wantLen int
		wantIDs int
	}{
		{opTrack, 300, 1},
		{opIdentify, 300, 0},
		{opBatch, len(`{"batch":[`) + 4*300 + 3 + len(`]}`), 4},
	}
	for _, tt := range tests {
		t.Run(opNames[tt.op], func(t *testing.T) {
			b, ids := w.build(tt.op, o, nil, nil)
			if len(b) != tt.wantLen {
				t.Errorf("len = %d, want %d: %s", len(b), tt.wantLen, b)
			}
			if !json.Valid(b) {
				t.Errorf("invalid JSON: %s", b)
			}
			if len(ids) != tt.wantIDs {
				t.Fatalf("%d ids, want %d", len(ids), tt.wantIDs)
			}
			for i, id := range ids {
				if !bytes.Contains(b, []byte(`"id":"`+id.String()+`"`)) {
					t.Errorf("body lacks id %s", id)
				}
				if i > 0 && bytes.Compare(ids[i-1][:], id[:]) >= 0 {
					t.Errorf("ids not increasing: %s then %s", ids[i-1], id)
				}
			}
		})
	}
	// A size below the fixed part gives no padding, never a broken body.
	b, _ := w.build(opBatch, &loadOptions{Size: 1, Batch: 2}, nil, nil)
	if !json.Valid(b) {
		t.Errorf("invalid JSON at tiny size: %s", b)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"refused", &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}, errRefused},
		{"reset", &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}, errReset},
		{"broken pipe", &os.SyscallError{Syscall: "write", Err: syscall.EPIPE}, errReset},
		{"closed before the answer", io.EOF, errReset},
		{"deadline", context.DeadlineExceeded, errTimeout},
		{"other", errors.New("tls: bad certificate"), errOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %s, want %s", tt.err, errClassNames[got], errClassNames[tt.want])
			}
		})
	}
	// A real refused connection and a real response-header timeout.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	if _, err := newTransport(1, time.Second).RoundTrip(req); err == nil || classify(err) != errRefused {
		t.Errorf("a closed port: %v, want class refused", err)
	}
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		url    string
		remote bool
		ok     bool
	}{
		{"http://127.0.0.1:8080", false, true},
		{"http://127.3.4.5:8080", false, true},
		{"http://localhost:8080", false, true},
		{"http://[::1]:8080", false, true},
		{"http://10.0.0.1:8080", false, false},
		{"http://[2001:db8::1]/", false, false},
		{"https://track.customer.io", false, false},
		{"http://localhost.example.com", false, false},
		{"https://track.customer.io", true, true},
		{"ftp://127.0.0.1", false, false},
		{"http://", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := checkTarget(tt.url, tt.remote)
			if (err == nil) != tt.ok {
				t.Errorf("checkTarget(%q, %v) = %v, want ok=%v", tt.url, tt.remote, err, tt.ok)
			}
		})
	}
	// Through the command: a usage error (exit 2), and nothing sent.
	err := run(context.Background(), []string{"run", "--url", "http://192.0.2.1:8080", "--site", "s", "--key", "k"},
		os.Getenv, io.Discard, io.Discard)
	if code := cli.ExitCode("trackload", err, io.Discard); code != 2 || !strings.Contains(err.Error(), "non-loopback") {
		t.Errorf("remote target: err %v, exit %d; want exit 2 refusing it", err, code)
	}
}

func TestUsageProblemsReportedTogether(t *testing.T) {
	err := run(context.Background(), []string{"run", "--mode", "sideways", "--op", "nope", "--conns", "0"},
		os.Getenv, io.Discard, io.Discard)
	var ue *cli.UsageError
	if !errors.As(err, &ue) || len(ue.Problems) < 4 {
		t.Fatalf("err = %v; want every problem (mode, op, conns, credentials)", err)
	}
}

func TestReadWorkspace(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := readWorkspace(dir); err == nil {
		t.Error("missing file: no error")
	}
	os.WriteFile(filepath.Join(dir, "workspaces.json"), []byte(`{"workspaces":[{"site_id":"s1","api_key":"k1"},{"site_id":"s2","api_key":"k2"}]}`), 0o644)
	site, key, err := readWorkspace(dir)
	if err != nil || site != "s1" || key != "k1" {
		t.Errorf("readWorkspace = %q, %q, %v; want s1, k1", site, key, err)
	}
}

func TestRunJSON(t *testing.T) {
	ts := &trackServer{codes: []int{200}}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	var out strings.Builder
	err := run(context.Background(), []string{"--url", srv.URL, "--site", "site", "--key", "key",
		"--requests", "40", "--conns", "2", "--json", "--pid", strconv.Itoa(os.Getpid())}, os.Getenv, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var res loadResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if res.Requests != 40 || res.OK != 40 || res.Events != 40 || res.Status["200"] != 40 || res.Latency.Max <= 0 {
		t.Errorf("result: %+v", res)
	}
	if res.Proc == nil || res.Proc.PID != os.Getpid() || res.Proc.PeakRSS <= 0 {
		t.Errorf("target proc: %+v", res.Proc)
	}
}

// BenchmarkSend measures one closed-loop request's cost on the client side
// (allocations included) against a server that answers {} at once.
func BenchmarkSend(b *testing.B) {
	for _, op := range []int{opTrack, opBatch} {
		b.Run(opNames[op], func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Write([]byte("{}"))
			}))
			defer srv.Close()
			b.ReportAllocs()
			res, err := runLoad(context.Background(), loadOptions{URL: srv.URL, Site: "s", Key: "k", Op: op, Conns: 1, Requests: int64(b.N)})
			if err != nil || res.OK != int64(b.N) {
				b.Fatalf("%v, ok %d of %d", err, res.OK, b.N)
			}
		})
	}
}
