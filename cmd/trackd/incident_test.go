package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestIncidentLifecycleOnPublicStatus opens, updates and resolves an
// incident with the CLI while the node runs, and reads the public view in
// the Statuspage summary shape.
func TestIncidentLifecycleOnPublicStatus(t *testing.T) {
	dataDir := t.TempDir()
	_, lines, stop := startServe(t, dataDir, "--workspace", "s:k", "--forward=false")
	defer stop()
	summary := func() map[string]any {
		resp, err := http.Get(adminURL(t, lines) + "/public/api/v2/summary.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := summary()
	comps := s["components"].([]any)
	if s["status"].(map[string]any)["indicator"] != "none" || len(comps) != 1 ||
		comps[0].(map[string]any)["name"] != "Data Collection API (us)" || comps[0].(map[string]any)["status"] != "operational" {
		t.Fatalf("healthy summary: %v", s)
	}
	out, code := runCmd("incident", "open", "--data-dir", dataDir, "--name", "Elevated errors in the EU", "--message", "We are investigating.", "--impact", "major")
	if code != 0 {
		t.Fatalf("open: %d %s", code, out)
	}
	id := strings.Fields(out)[0]
	if out, code := runCmd("incident", "update", "--data-dir", dataDir, "--status", "identified", "--message", "Zero-sized requests from a migration.", id); code != 0 {
		t.Fatalf("update: %d %s", code, out)
	}
	s = summary()
	incs := s["incidents"].([]any)
	if len(incs) != 1 || s["status"].(map[string]any)["indicator"] != "major" {
		t.Fatalf("summary with an open incident: %v", s)
	}
	in := incs[0].(map[string]any)
	ups := in["incident_updates"].([]any)
	if in["status"] != "identified" || len(ups) != 2 || ups[0].(map[string]any)["status"] != "identified" {
		t.Fatalf("incident %v", in)
	}
	resp, err := http.Get(adminURL(t, lines) + "/public/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Elevated errors in the EU") || !strings.Contains(string(page), "Zero-sized requests from a migration.") {
		t.Fatalf("public page:\n%s", page)
	}
	if out, code := runCmd("incident", "resolve", "--data-dir", dataDir, "--message", "Fixed.", id); code != 0 {
		t.Fatalf("resolve: %d %s", code, out)
	}
	if s := summary(); len(s["incidents"].([]any)) != 0 || s["status"].(map[string]any)["indicator"] != "none" {
		t.Fatalf("summary after resolve: %v", s)
	}
	if out, _ := runCmd("incident", "list", "--data-dir", dataDir); !strings.Contains(out, id+"\tresolved\tmajor") {
		t.Fatalf("list: %s", out)
	}
	for _, args := range [][]string{
		{"incident", "open", "--data-dir", dataDir, "--name", "x"},
		{"incident", "update", "--data-dir", dataDir, "--message", "m", id},
		{"incident", "open", "--data-dir", dataDir, "--name", "x", "--message", "m", "--impact", "huge"},
	} {
		if _, code := runCmd(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if _, code := runCmd("incident", "update", "--data-dir", dataDir, "--status", "monitoring", "--message", "m", id); code != 1 {
		t.Errorf("updating a resolved incident: exit %d, want 1", code)
	}
}
