package admin

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Served("v1.identify", "PUT", 200, time.Millisecond)
	m.Commit(3, 10, 3000, time.Millisecond)
	var notReady error
	srv := httptest.NewServer(Handler(HandlerOptions{Gatherer: reg, Ready: func() error { return notReady }}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	for _, want := range []string{`trackd_http_requests_total{code="200",method="PUT",route="v1.identify"} 1`, "trackd_spool_commit_records_bucket", "trackd_spool_written_bytes_total 3000"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s (status %d)", want, code)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz ready: %d", code)
	}
	notReady = errors.New("stopping")
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "stopping") {
		t.Errorf("/readyz not ready: %d %q", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/: %d", code)
	}
	// The command line holds secrets (--workspace SITE:KEY, passwords).
	if code, body := get("/debug/pprof/cmdline"); code != 404 || strings.Contains(body, os.Args[0]) {
		t.Errorf("/debug/pprof/cmdline: %d %q", code, body)
	}
}

func TestHandlerCredentials(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	tracker := NewTracker(nil)
	srv := httptest.NewServer(Handler(HandlerOptions{
		Gatherer: reg,
		Ready:    func() error { return nil },
		Status:   &StatusOptions{Region: "us", Tracker: tracker},
		Public:   &PublicOptions{Region: "us", Tracker: tracker},
		User:     "ops",
		Password: "correct horse battery staple",
		// Each failure comes a limit period after the last: none is
		// limited (TestFailedLoginsLimited tests the limit).
		Now: steppingClock(authFailEvery),
	}))
	defer srv.Close()
	// Redirects are not followed: an unclean path must not reach a
	// protected page through one.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, setAuth func(*http.Request)) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if setAuth != nil {
			setAuth(req)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	basic := func(user, pass string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(user, pass) }
	}
	urlSafe := func(r *http.Request) { // as the Go Track client encodes
		r.Header.Set("Authorization", "Basic "+base64.URLEncoding.EncodeToString([]byte("ops:correct horse battery staple")))
	}
	protected := []string{"/", "/status.json", "/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/nowhere", "/public/nowhere"}
	for _, path := range protected {
		for name, a := range map[string]func(*http.Request){
			"none":           nil,
			"wrong password": basic("ops", "correct horse battery"),
			"wrong user":     basic("root", "correct horse battery staple"),
			"empty":          basic("", ""),
			"garbage":        func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") },
		} {
			resp := get(path, a)
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("%s with %s credentials: %d %q, want 401 with a challenge", path, name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	for _, path := range []string{"/", "/status.json", "/metrics", "/debug/pprof/"} {
		for name, a := range map[string]func(*http.Request){"standard": basic("ops", "correct horse battery staple"), "url-safe": urlSafe} {
			if resp := get(path, a); resp.StatusCode != 200 {
				t.Errorf("%s with the right credentials (%s base64): %d", path, name, resp.StatusCode)
			}
		}
	}
	if resp := get("/nowhere", basic("ops", "correct horse battery staple")); resp.StatusCode != 404 {
		t.Errorf("/nowhere with credentials: %d, want 404", resp.StatusCode)
	}
	for _, path := range []string{"/healthz", "/readyz", "/public/", "/public/api/v2/summary.json", "/public/api/v2/status.json"} {
		if resp := get(path, nil); resp.StatusCode != 200 {
			t.Errorf("%s without credentials: %d, want 200 (open)", path, resp.StatusCode)
		}
	}
	// An unclean path that starts like an open one is redirected to its
	// clean form, not served.
	if resp := get("/public/../metrics", nil); resp.StatusCode == 200 {
		t.Errorf("/public/../metrics served without credentials")
	}
}

// steppingClock returns a clock that moves by step at every reading.
func steppingClock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(step)
		return now
	}
}

// TestFailedLoginsLimited: a client that keeps failing is answered 429
// without its credentials being checked (even right ones), counted, until
// the limit lets it try again; another client is not affected, an IPv6
// client is limited by its /64, and loopback peers are not limited.
func TestFailedLoginsLimited(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var refused, limited int
	h := Handler(HandlerOptions{
		Gatherer: prometheus.NewRegistry(),
		Ready:    func() error { return nil },
		User:     "ops",
		Password: "right",
		Now:      clock,
		OnAuthFailure: func(l bool) {
			if l {
				limited++
			} else {
				refused++
			}
		},
	})
	do := func(from, pass string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = from
		req.SetBasicAuth("ops", pass)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	for i := range authFailBurst {
		if w := do("192.0.2.1:1000", "guess"); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, w.Code)
		}
	}
	w := do("192.0.2.1:1001", "right")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "5" {
		t.Fatalf("past the burst, the right password: %d Retry-After %q; want 429, 5", w.Code, w.Header().Get("Retry-After"))
	}
	if w := do("[2001:db8::1]:1000", "right"); w.Code != 200 {
		t.Fatalf("another client: %d, want 200", w.Code)
	}
	mu.Lock()
	now = now.Add(authFailEvery)
	mu.Unlock()
	if w := do("192.0.2.1:1000", "right"); w.Code != 200 {
		t.Fatalf("after the wait, the right password: %d, want 200", w.Code)
	}
	if refused != authFailBurst || limited != 1 {
		t.Fatalf("counted %d refused, %d limited; want %d, 1", refused, limited, authFailBurst)
	}

	// Many addresses of one IPv6 /64 are one client.
	for i := range authFailBurst {
		do(fmt.Sprintf("[2001:db8:0:7::%x]:1000", i+1), "guess")
	}
	if w := do("[2001:db8:0:7::ffff]:1000", "guess"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("an 11th address of the same /64: %d, want 429", w.Code)
	}
	// A loopback peer (a local TLS proxy) is never limited.
	for range 3 * authFailBurst {
		do("127.0.0.1:1000", "guess")
	}
	if w := do("127.0.0.1:1000", "right"); w.Code != 200 {
		t.Fatalf("loopback peer after many failures: %d, want 200", w.Code)
	}
}

func TestPublicOnlyHandler(t *testing.T) {
	tracker := NewTracker(nil)
	for i := 0; i < 50; i++ {
		tracker.Served("v1.event", "POST", 400, time.Millisecond)
		tracker.Rejected("v1.event", "secretsite", "empty_body")
	}
	srv := httptest.NewServer(PublicOnlyHandler(PublicOptions{Name: "Acme", Region: "eu", Tracker: tracker,
		Incidents: func() ([]Incident, error) {
			return []Incident{{ID: "i1", Name: "Elevated errors", Status: "investigating", Impact: "minor"}}, nil
		}}))
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for _, path := range []string{"/", "/public/", "/api/v2/summary.json", "/public/api/v2/summary.json", "/api/v2/status.json"} {
		resp, body := get(path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %v", path, resp.StatusCode, resp.Header)
		}
		if strings.Contains(body, "secretsite") || strings.Contains(body, "empty_body") {
			t.Errorf("%s leaks internal detail:\n%s", path, body)
		}
	}
	if _, body := get("/api/v2/summary.json"); !strings.Contains(body, `"Data Collection API (eu)"`) || !strings.Contains(body, `"Elevated errors"`) {
		t.Errorf("summary.json: %s", body)
	}
	if _, body := get("/"); !strings.Contains(body, "Acme status") || !strings.Contains(body, "Elevated errors") {
		t.Errorf("page: %s", body)
	}
	for _, path := range []string{"/metrics", "/status.json", "/healthz", "/debug/pprof/", "/public/nowhere"} {
		if resp, _ := get(path); resp.StatusCode != 404 {
			t.Errorf("%s on the public listener: %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := http.Post(srv.URL+"/api/v2/summary.json", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

func TestStatusPageNamesTheRegion(t *testing.T) {
	tracker := NewTracker(nil)
	for i := 0; i < 10; i++ {
		tracker.Served("v1.event", "POST", 400, time.Millisecond)
		tracker.Rejected("v1.event", "bad", "empty_body")
	}
	o := StatusOptions{Region: "eu", Tracker: tracker}
	var page strings.Builder
	if err := statusTmpl.Execute(&page, o.Data()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Requests and SLOs — region eu", "Rejections, last 5 minutes — region eu", "Forwarding — region eu", "Region eu: "} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}

// TestUntimedAnswer: an answer served with a negative duration (a slow
// client's 408) is counted but not put in the latency histogram, so it
// cannot spend the latency SLO's budget.
func TestUntimedAnswer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Served("unknown", "", 408, -1)
	m.Served("v1.event", "POST", 200, time.Millisecond)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted, timed := 0.0, uint64(0)
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			switch mf.GetName() {
			case "trackd_http_requests_total":
				counted += mt.GetCounter().GetValue()
			case "trackd_http_request_duration_seconds":
				timed += mt.GetHistogram().GetSampleCount()
			}
		}
	}
	if counted != 2 || timed != 1 {
		t.Fatalf("%v answers counted, %d timed; want 2 and 1", counted, timed)
	}
}

// TestReservedWorkspaceLabels: workspaces whose site IDs are literally
// "other" or "none" do not share the labels of the aggregate series.
func TestReservedWorkspaceLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Rejected("v1.event", "other", "empty_body")
	m.Rejected("v1.event", "none", "empty_body")
	m.Rejected("v1.event", "", "unauthorized")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "trackd_http_workspace_rejections_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "workspace" {
					got[l.GetValue()] = true
				}
			}
		}
	}
	if !got["site:other"] || !got["site:none"] || !got["none"] || got["other"] || len(got) != 3 {
		t.Fatalf("workspace labels %v, want site:other, site:none and none", got)
	}
}
