package admin

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRejectLogSamplesPerClass(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := NewRejectLog(slog.New(slog.NewJSONHandler(&buf, nil)), 10*time.Second, func() time.Time { return now })
	for range 1000 {
		l.Rejected("v1.event", "ws1", "empty_body")
	}
	l.Rejected("v1.event", "ws2", "invalid_json") // another class gets its own line at once
	now = now.Add(10 * time.Second)
	l.Rejected("v1.event", "ws1", "empty_body")
	l.Rejected("v1.event", "", "unauthorized")

	var lines []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("%v: %q", err, s)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), buf.String())
	}
	want := []struct {
		reason, ws string
		count      float64
	}{{"empty_body", "ws1", 1}, {"invalid_json", "ws2", 1}, {"empty_body", "ws1", 1000}, {"unauthorized", "none", 1}}
	for i, w := range want {
		m := lines[i]
		if m["reason"] != w.reason || m["workspace"] != w.ws || m["count"] != w.count || m["msg"] != "requests rejected" {
			t.Errorf("line %d: %v, want %+v", i, m, w)
		}
	}
}
