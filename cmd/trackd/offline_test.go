package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/spool"
)

func readRecords(t *testing.T, dataDir string) []spool.Record {
	t.Helper()
	s, err := spool.Open(spoolDir(dataDir), spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := s.NewReader(spool.Position{})
	defer r.Close()
	var out []spool.Record
	for {
		rec, err := r.TryNext()
		if errors.Is(err, spool.ErrNoMore) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func TestQuarantineCommands(t *testing.T) {
	dataDir := t.TempDir()
	writeSpool(t, dataDir, 10)
	q, err := quarantine.Open(filepath.Join(dataDir, "quarantine"), quarantine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := q.Put(quarantine.Entry{Kind: quarantine.KindRecord, Reason: "refused by the destination: 400", Destination: "httpsink", Workspace: "site1",
		Attempts: []quarantine.Attempt{{Time: time.Now(), Error: "400 Bad Request"}},
		Record:   &quarantine.Record{ID: "rec-q1", Workspace: "site1", Op: "v1.event", ReceivedAt: 5, Meta: [][2]string{{"identifier", "42"}}, BodyText: `{"name":"x"}`}})
	id2, _ := q.Put(quarantine.Entry{Kind: quarantine.KindRecord, Reason: "poison", Destination: "jetstream",
		Record: &quarantine.Record{ID: "rec-q2", Workspace: "site1", Op: "v1.event", ReceivedAt: 6, BodyText: `{"name":"y"}`}})

	out, code := runCmd("quarantine", "list", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, id1+"\t") || !strings.Contains(out, "httpsink\tsite1\tv1.event rec-q1\trefused by the destination: 400") || !strings.Contains(out, "2 records") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	out, code = runCmd("quarantine", "show", "--data-dir", dataDir, id1)
	if code != 0 || !strings.Contains(out, `"error": "400 Bad Request"`) || !strings.Contains(out, `"body_text": "{\"name\":\"x\"}"`) {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	out, code = runCmd("quarantine", "replay", "--data-dir", dataDir, id1)
	if code != 0 || !strings.Contains(out, "replayed "+id1) {
		t.Fatalf("replay: exit %d\n%s", code, out)
	}
	recs := readRecords(t, dataDir)
	last := recs[len(recs)-1]
	if d, _ := last.Get(forward.MetaDestination); last.ID != "rec-q1" || d != "httpsink" || string(last.Body) != `{"name":"x"}` {
		t.Fatalf("replayed record %+v", last)
	}
	out, code = runCmd("quarantine", "drop", "--data-dir", dataDir, "--all")
	if code != 0 || !strings.Contains(out, "dropped "+id2) || strings.Contains(out, id1) {
		t.Fatalf("drop --all: exit %d\n%s", code, out)
	}
	if out, _ := runCmd("quarantine", "list", "--data-dir", dataDir); !strings.Contains(out, "0 records") {
		t.Fatalf("after drop: %s", out)
	}
	// A damaged entry whose record is empty is not stored (DESIGN §2.2).
	id3, _ := q.Put(quarantine.Entry{Kind: quarantine.KindRecord, Reason: "damaged", Destination: "jetstream", Record: &quarantine.Record{}})
	before := len(readRecords(t, dataDir))
	if out, code := runCmd("quarantine", "replay", "--data-dir", dataDir, id3); code == 0 || !strings.Contains(out, "no ID or operation") {
		t.Fatalf("replay of an empty record: exit %d\n%s", code, out)
	}
	if n := len(readRecords(t, dataDir)); n != before {
		t.Fatalf("an empty record was stored: %d -> %d records", before, n)
	}
	for _, args := range [][]string{
		{"quarantine", "replay", "--data-dir", dataDir},
		{"quarantine", "replay", "--kind", "panics", "--all", "--data-dir", dataDir},
		{"quarantine", "show", "--data-dir", dataDir},
		{"quarantine", "list", "--kind", "bogus", "--data-dir", dataDir},
	} {
		if _, code := runCmd(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestReplayTimeRange(t *testing.T) {
	dataDir := t.TempDir()
	s, err := spool.Open(spoolDir(dataDir), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		rec := spool.Record{ID: "r" + string(rune('0'+i)), Workspace: "w", Op: "v1.event", ReceivedAt: base.Add(time.Duration(i) * time.Minute).UnixNano(), Body: []byte(`{}`)}
		if err := s.Append(context.Background(), []spool.Record{rec}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	out, code := runCmd("replay", "--data-dir", dataDir, "--since", "2026-11-01T12:03:00Z", "--until", "2026-11-01T12:06:00Z", "--destination", "jetstream")
	if code != 0 || !strings.Contains(out, "replayed 3 records") {
		t.Fatalf("replay: exit %d\n%s", code, out)
	}
	recs := readRecords(t, dataDir)
	if len(recs) != 13 {
		t.Fatalf("%d records after replay, want 13", len(recs))
	}
	for i, want := range []string{"r3", "r4", "r5"} {
		r := recs[10+i]
		if d, _ := r.Get(forward.MetaDestination); r.ID != want || d != "jetstream" {
			t.Fatalf("copy %d: %+v", i, r)
		}
	}
	if _, code := runCmd("replay", "--data-dir", dataDir, "--since", "yesterday"); code != 2 {
		t.Fatalf("bad --since: exit %d", code)
	}
	// Typos are refused, not acted on: an unknown destination, a data dir
	// with no spool (which must not be created).
	if out, code := runCmd("replay", "--data-dir", dataDir, "--since", "2026-11-01T12:03:00Z", "--destination", "jetsteam"); code != 2 || !strings.Contains(out, `--destination "jetsteam": no such destination`) {
		t.Fatalf("unknown destination: exit %d\n%s", code, out)
	}
	typo := filepath.Join(t.TempDir(), "dta")
	if out, code := runCmd("replay", "--data-dir", typo, "--since", "2026-11-01T12:03:00Z"); code != 2 || !strings.Contains(out, "no spool there") {
		t.Fatalf("data dir typo: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(typo); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a mistyped data dir was created: %v", err)
	}
}
