package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/spool"
)

// writeSpool writes n records into dataDir's spool, in groups of 10, with
// small segments so there are several.
func writeSpool(t *testing.T, dataDir string, n int) {
	t.Helper()
	s, err := spool.Open(spoolDir(dataDir), spool.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 10 {
		var g []spool.Record
		for j := i; j < i+10; j++ {
			g = append(g, spool.Record{
				ID: fmt.Sprintf("id%06d", j), Workspace: "site1", Op: "v1.event", ReceivedAt: 1_700_000_000_000_000_000,
				Meta: []spool.KV{{Key: "request_id", Value: "r1"}},
				Body: fmt.Appendf(nil, `{"name":"e%d","data":{"pad":"%s"}}`, j, strings.Repeat("p", 200)),
			})
		}
		if err := s.Append(context.Background(), g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetCursor("jetstream", spool.Position{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func runCmd(args ...string) (string, int) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
	code := cli.ExitCode("trackd", err, &errOut)
	return out.String() + errOut.String(), code
}

func TestSpoolVerifyAndDump(t *testing.T) {
	dataDir := t.TempDir()
	writeSpool(t, dataDir, 10000)

	out, code := runCmd("spool", "verify", "--data-dir", dataDir)
	if code != 0 {
		t.Fatalf("verify on a clean spool: exit %d\n%s", code, out)
	}
	for _, want := range []string{"records: 10000", "cursor jetstream: segment", "damage: none", "oldest record: 2023-11-14"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}

	out, code = runCmd("spool", "dump", "--data-dir", dataDir, "--limit", "3")
	if code != 0 {
		t.Fatalf("dump: exit %d\n%s", code, out)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var lines int
	for sc.Scan() {
		var l struct {
			ID         string          `json:"id"`
			ReceivedAt string          `json:"received_at"`
			Position   string          `json:"position"`
			Body       json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("dump line %q: %v", sc.Text(), err)
		}
		if l.ID != fmt.Sprintf("id%06d", lines) || l.ReceivedAt != "2023-11-14T22:13:20Z" || !strings.HasPrefix(l.Position, "1:") || !bytes.HasPrefix(l.Body, []byte(`{"name":"e`)) {
			t.Fatalf("dump line %d: %s", lines, sc.Text())
		}
		lines++
	}
	if lines != 3 {
		t.Fatalf("dump --limit 3 printed %d lines", lines)
	}

	// Damage a sealed segment: verify reads it in full and exits 1 naming
	// the segment and offset.
	segs, _ := filepath.Glob(filepath.Join(spoolDir(dataDir), "*.seg"))
	if len(segs) < 2 {
		t.Fatalf("want several segments, have %d", len(segs))
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[5000] ^= 0xff
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runCmd("spool", "verify", "--data-dir", dataDir)
	if code != 1 || !strings.Contains(out, "damage: "+filepath.Base(segs[0])+" offset ") {
		t.Fatalf("verify on a damaged spool: exit %d\n%s", code, out)
	}
	// dump goes on past the damage, reports it, and exits 1.
	out, code = runCmd("spool", "dump", "--data-dir", dataDir)
	if code != 1 || !strings.Contains(out, `"damage"`) {
		t.Fatalf("dump on a damaged spool: exit %d\n%.500s", code, out)
	}
	// Damage only the open segment's tail, which recovery finds and the
	// reader never meets: dump still says so and exits 1.
	b, err = os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(segs[len(segs)-1])
	tail := int64(len(b)) - 100
	if tail < 0 || fi.Size() < 200 {
		t.Fatalf("open segment of %d bytes", fi.Size())
	}
	b[tail] ^= 0xff
	if err := os.WriteFile(segs[len(segs)-1], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code = runCmd("spool", "dump", "--data-dir", dataDir, "--limit", "1"); code != 1 || !strings.Contains(out, `"damage"`) {
		t.Fatalf("dump with damage recovery found: exit %d\n%.500s", code, out)
	}
}

func TestSpoolToolsRefuseALiveSpool(t *testing.T) {
	dataDir := t.TempDir()
	s, err := spool.Open(spoolDir(dataDir), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, code := runCmd("spool", "verify", "--data-dir", dataDir)
	if code != 1 || !strings.Contains(out, "stop the node first") {
		t.Fatalf("verify on a held spool: exit %d\n%s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"spool"},
		{"spool", "frobnicate"},
		{"spool", "verify", "--nope"},
		{"spool", "dump", "--limit", "x"},
		{"nonsense"},
	} {
		out, code := runCmd(args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, out)
		}
	}
}
