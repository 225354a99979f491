package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestTrackerBurnRatesAndAlerts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tr := NewTracker(func() time.Time { return now })
	// An hour of healthy traffic, then 10 minutes with 5% errors.
	for i := 0; i < 360; i++ {
		for j := 0; j < 100; j++ {
			tr.Served("v1.event", "POST", 200, time.Millisecond)
		}
		now = now.Add(10 * time.Second)
	}
	if a := tr.Alerts(); len(a) != 0 {
		t.Fatalf("healthy traffic raised %v", a)
	}
	for i := 0; i < 60; i++ {
		for j := 0; j < 100; j++ {
			status := 200
			if j < 5 {
				status = 503
			}
			tr.Served("v1.event", "POST", status, time.Millisecond)
		}
		now = now.Add(10 * time.Second)
	}
	w5 := tr.Window(5 * time.Minute)
	if w5.ErrorRatio < 0.049 || w5.ErrorRatio > 0.051 || w5.AvailabilityBurn < 49 {
		t.Fatalf("5m window %+v", w5)
	}
	alerts := tr.Alerts()
	if len(alerts) != 1 || alerts[0].SLO != "availability" || alerts[0].Severity != "page" {
		t.Fatalf("alerts %v, want one availability page", alerts)
	}
	// Old buckets fall out of the window.
	now = now.Add(2 * time.Hour)
	if w := tr.Window(time.Hour); w.Requests != 0 {
		t.Fatalf("1h window two hours later: %+v", w)
	}
}

// TestStatusNamesTheCause replays the incident trackd exists for: one
// workspace sends zero-sized requests among good traffic. The status page and
// its JSON name empty_body and that workspace.
func TestStatusNamesTheCause(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tr := NewTracker(func() time.Time { return now })
	for i := 0; i < 300; i++ {
		for range 3 { // good traffic from several workspaces
			tr.Served("v1.event", "POST", 200, time.Millisecond)
		}
		tr.Served("v1.identify", "PUT", 400, time.Millisecond)
		tr.Rejected("v1.identify", "bad", "empty_body")
		if i%50 == 0 {
			tr.Rejected("v1.event", "good1", "invalid_json")
		}
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(Handler(HandlerOptions{Gatherer: reg, Ready: func() error { return nil },
		Status: &StatusOptions{Region: "us", Tracker: tr, Now: func() time.Time { return now }}}))
	defer srv.Close()
	get := func(path string) string {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	var d StatusData
	if err := json.Unmarshal([]byte(get("/status.json")), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Reasons) == 0 || d.Reasons[0].Name != "empty_body" || d.Workspaces[0].Name != "bad" || d.Pairs[0].Name != "bad empty_body" {
		t.Fatalf("status data %+v", d)
	}
	page := get("/")
	if !strings.Contains(page, `id="banner"`) || !strings.Contains(page, "reason empty_body from workspace bad") || !strings.Contains(page, `http-equiv="refresh"`) {
		t.Fatalf("status page lacks the banner naming the cause:\n%.2000s", page)
	}
}

func TestPublicComponentsFromBurnRates(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tr := NewTracker(func() time.Time { return now })
	o := PublicOptions{Region: "eu", Tracker: tr, Now: func() time.Time { return now }}
	if s := o.Summary(); s.Components[0].Status != Operational || s.Status.Indicator != "none" {
		t.Fatalf("no traffic: %+v", s)
	}
	for i := 0; i < 400; i++ { // an hour of half 503s
		for j := 0; j < 10; j++ {
			st := 200
			if j%2 == 0 {
				st = 503
			}
			tr.Served("v1.event", "POST", st, time.Millisecond)
		}
		now = now.Add(10 * time.Second)
	}
	s := o.Summary()
	if s.Components[0].Name != "Data Collection API (eu)" || s.Components[0].Status != MajorOutage || s.Status.Indicator != "critical" {
		t.Fatalf("outage: %+v", s)
	}
}
