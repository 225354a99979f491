package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/spool"
)

// spoolDir is where the spool lives inside a data dir.
func spoolDir(dataDir string) string { return filepath.Join(dataDir, "spool") }

func runSpool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.Usagef("spool: want a subcommand: verify or dump")
	}
	sub, args := args[0], args[1:]
	fs := cli.NewFlagSet("spool "+sub, stderr)
	dataDir := fs.String("data-dir", "./data", "trackd's data directory")
	var limit *int
	switch sub {
	case "verify":
	case "dump":
		limit = fs.Int("limit", 0, "print at most N records (0: all)")
	default:
		return cli.Usagef("spool: unknown subcommand %q: want verify or dump", sub)
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	// Read-only, deep for verify: the same recovery code the server runs,
	// reporting instead of repairing.
	s, err := openOfflineSpool(*dataDir, spool.Options{ReadOnly: true, Deep: sub == "verify"})
	if err != nil {
		return err
	}
	defer s.Close()
	if sub == "verify" {
		return spoolVerify(s, stdout)
	}
	err = spoolDump(ctx, s, *limit, stdout)
	if rep := s.Report(); err == nil && !rep.Clean() {
		// Recovery found damage the reader does not meet (a damaged
		// tail, a segment header): the dump is incomplete, so say so.
		for _, d := range rep.Damage {
			fmt.Fprintf(stdout, "%s\n", mustJSON(map[string]any{"damage": d.Reason, "file": d.File, "offset": d.Offset}))
		}
		return cli.ErrCheckFailed
	}
	return err
}

func spoolVerify(s *spool.Spool, w io.Writer) error {
	rep := s.Report()
	fmt.Fprintf(w, "spool %s\n", s.Dir())
	fmt.Fprintf(w, "segments: %d\nrecords: %d\nbytes: %d\n", rep.Segments, rep.Records, rep.Bytes)
	if rep.OldestAt != 0 {
		at := time.Unix(0, rep.OldestAt).UTC()
		fmt.Fprintf(w, "oldest record: %s (%s ago)\n", at.Format(time.RFC3339), time.Since(at).Round(time.Second))
	} else {
		fmt.Fprintf(w, "oldest record: none\n")
	}
	names := make([]string, 0, len(rep.Cursors))
	for n := range rep.Cursors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "cursor %s: segment %d offset %d\n", n, rep.Cursors[n].Seq, rep.Cursors[n].Offset)
	}
	if rep.Clean() {
		fmt.Fprintf(w, "damage: none\n")
		return nil
	}
	for _, d := range rep.Damage {
		fmt.Fprintf(w, "damage: %s offset %d: %s\n", d.File, d.Offset, d.Reason)
	}
	return cli.ErrCheckFailed
}

// dumpLine is one record in `trackd spool dump` output.
type dumpLine struct {
	ID         string            `json:"id"`
	Workspace  string            `json:"workspace"`
	Op         string            `json:"op"`
	ReceivedAt string            `json:"received_at"`
	Meta       map[string]string `json:"meta,omitempty"`
	Body       json.RawMessage   `json:"body"`
	Position   string            `json:"position"`
}

func spoolDump(ctx context.Context, s *spool.Spool, limit int, w io.Writer) error {
	r := s.NewReader(spool.Position{})
	defer r.Close()
	enc := json.NewEncoder(w)
	damaged := false
	for n := 0; limit <= 0 || n < limit; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		at := r.Pos()
		rec, err := r.TryNext()
		var ce *spool.CorruptionError
		switch {
		case errors.Is(err, spool.ErrNoMore):
			if damaged {
				return cli.ErrCheckFailed
			}
			return nil
		case errors.As(err, &ce):
			fmt.Fprintf(w, "%s\n", mustJSON(map[string]any{"damage": ce.Error(), "segment": ce.Segment, "offset": ce.Offset}))
			damaged = true
			r.SkipSegment()
			continue
		case err != nil:
			return err
		}
		line := dumpLine{
			ID: rec.ID, Workspace: rec.Workspace, Op: rec.Op,
			ReceivedAt: time.Unix(0, rec.ReceivedAt).UTC().Format(time.RFC3339Nano),
			Body:       rec.Body,
			Position:   at.String(),
		}
		if len(rec.Body) == 0 {
			line.Body = json.RawMessage("null")
		} else if !json.Valid(rec.Body) {
			line.Body = mustJSON(string(rec.Body)) // never print invalid JSON
		}
		if len(rec.Meta) > 0 {
			line.Meta = make(map[string]string, len(rec.Meta))
			for _, kv := range rec.Meta {
				line.Meta[kv.Key] = kv.Value
			}
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
