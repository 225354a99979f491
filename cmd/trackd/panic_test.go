package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackd/trackd/internal/admin"
	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/trackapi"
)

func TestQuarantinePanicKeepsRequestAndStack(t *testing.T) {
	q, err := quarantine.Open(filepath.Join(t.TempDir(), "quarantine"), quarantine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := admin.NewMetrics(reg)
	var logs bytes.Buffer
	quarantinePanic(q, m, slog.New(slog.NewTextHandler(&logs, nil)), trackapi.PanicInfo{
		Time: time.Unix(1_700_000_000, 0), RequestID: "req-1", Route: "v1.identify", Workspace: "site1",
		Method: "PUT", URI: "/api/v1/customers/42", Remote: "127.0.0.1:5555",
		Header: http.Header{"User-Agent": {"test"}},
		Body:   []byte(`{"email":"a@b.c"}`), Value: "boom", Stack: []byte("goroutine 7 [running]:\nmain.handler()"),
	})
	ids, err := q.List(quarantine.KindPanic)
	if err != nil || len(ids) != 1 {
		t.Fatalf("quarantine list: %v %v", ids, err)
	}
	e, err := q.Get(quarantine.KindPanic, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if e.Panic != "boom" || e.BodyText != `{"email":"a@b.c"}` || !strings.Contains(e.Stack, "goroutine 7") || e.RequestID != "req-1" || e.Header["User-Agent"][0] != "test" {
		t.Fatalf("entry %+v", e)
	}
	if !strings.Contains(logs.String(), "quarantine_id="+ids[0]) {
		t.Fatalf("log does not name the quarantined entry: %s", logs.String())
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "trackd_panics_total" && mf.GetMetric()[0].GetCounter().GetValue() == 1 {
			found = true
		}
	}
	if !found {
		t.Fatal("panic not counted")
	}
}
