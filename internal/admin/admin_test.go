package admin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWorkspaceLabelsAreBounded(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for i := 0; i < maxWorkspaceLabels+50; i++ {
		m.Rejected("v1.event", fmt.Sprintf("ws%d", i), "empty_body")
	}
	m.Rejected("v1.event", "", "unauthorized")
	if n := testutil.CollectAndCount(m.wsRejections); n != maxWorkspaceLabels+2 {
		t.Fatalf("%d workspace series, want %d (+other, +none)", n, maxWorkspaceLabels+2)
	}
	if v := testutil.ToFloat64(m.wsRejections.WithLabelValues("other", "empty_body")); v != 50 {
		t.Fatalf("other = %v, want 50", v)
	}
	if v := testutil.ToFloat64(m.rejections.WithLabelValues("v1.event", "empty_body")); v != maxWorkspaceLabels+50 {
		t.Fatalf("rejections = %v", v)
	}
}

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
}
