package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/sink/httpsink"
	"github.com/trackd/trackd/internal/sink/jetstream"
	"github.com/trackd/trackd/internal/sink/kafka"
	"github.com/trackd/trackd/internal/spool"
)

// openOffline opens a stopped node's spool (read-only unless write) and
// quarantine. It refuses, with a clear message, a data dir a running node
// holds: the spool's lock says so.
func openOffline(dataDir string, write bool) (*spool.Spool, *quarantine.Store, error) {
	sp, err := openOfflineSpool(dataDir, spool.Options{ReadOnly: !write})
	if err != nil {
		return nil, nil, err
	}
	q, err := quarantine.Open(filepath.Join(dataDir, "quarantine"), quarantine.Options{})
	if err != nil {
		sp.Close()
		return nil, nil, err
	}
	return sp, q, nil
}

// openOfflineSpool opens a stopped node's spool with the same recovery code
// the server runs, refusing a spool a running node holds.
func openOfflineSpool(dataDir string, opts spool.Options) (*spool.Spool, error) {
	if _, err := os.Stat(spoolDir(dataDir)); errors.Is(err, os.ErrNotExist) {
		// A mistyped --data-dir must not become a new, empty spool.
		return nil, &cli.UsageError{Problems: []string{fmt.Sprintf("--data-dir %s: no spool there (want the data dir of a trackd node)", dataDir)}}
	}
	sp, err := spool.Open(spoolDir(dataDir), opts)
	if errors.Is(err, spool.ErrLocked) {
		return nil, fmt.Errorf("%w: stop the node first; offline tools never touch a data dir a running node holds", err)
	}
	return sp, err
}

// runQuarantine is `trackd quarantine list|show|replay|drop`.
func runQuarantine(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.Usagef("quarantine: want a subcommand: list, show, replay or drop")
	}
	sub, args := args[0], args[1:]
	fs := cli.NewFlagSet("quarantine "+sub, stderr)
	dataDir := fs.String("data-dir", "./data", "trackd's data directory")
	kind := fs.String("kind", quarantine.KindRecord, "records (refused by a destination) or panics (requests whose handling panicked)")
	all := fs.Bool("all", false, "replay or drop every entry of the kind")
	switch sub {
	case "list", "show", "replay", "drop":
	default:
		return cli.Usagef("quarantine: unknown subcommand %q: want list, show, replay or drop", sub)
	}
	if err := fs.Parse(args); err != nil {
		return cli.Usagef("quarantine %s: %v", sub, err)
	}
	ids := fs.Args()
	if *kind != quarantine.KindRecord && *kind != quarantine.KindPanic {
		return cli.Usagef("quarantine: --kind %q: want records or panics", *kind)
	}
	switch {
	case sub == "list" && len(ids) > 0:
		return cli.Usagef("quarantine list: unexpected arguments %q", ids)
	case sub == "show" && len(ids) == 0:
		return cli.Usagef("quarantine show: want one or more IDs")
	case (sub == "replay" || sub == "drop") && len(ids) == 0 && !*all:
		return cli.Usagef("quarantine %s: want IDs, or --all", sub)
	case sub == "replay" && *kind != quarantine.KindRecord:
		return cli.Usagef("quarantine replay: only records can be replayed (a panicked request is evidence, not data)")
	}

	sp, q, err := openOffline(*dataDir, sub == "replay")
	if err != nil {
		return err
	}
	defer sp.Close()
	if *all {
		if ids, err = q.List(*kind); err != nil {
			return err
		}
	}
	switch sub {
	case "list":
		ids, err := q.List(*kind)
		if err != nil {
			return err
		}
		for _, id := range ids {
			e, err := q.Get(*kind, id)
			if err != nil {
				fmt.Fprintf(stdout, "%s\tunreadable: %v\n", id, err)
				continue
			}
			what := e.Route
			if e.Record != nil {
				what = e.Record.Op + " " + e.Record.ID
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\t%s\n", id, e.Time.UTC().Format(time.RFC3339), orDash(e.Destination), orDash(e.Workspace), what, e.Reason)
		}
		fmt.Fprintf(stdout, "%d %s\n", len(ids), *kind)
	case "show":
		for _, id := range ids {
			e, err := q.Get(*kind, id)
			if err != nil {
				return fmt.Errorf("quarantine show %s: %w", id, err)
			}
			b, _ := json.MarshalIndent(e, "", "  ")
			fmt.Fprintf(stdout, "%s\n", b)
		}
	case "replay":
		// Each record goes back into the spool, aimed at the destination
		// that refused it, and leaves the quarantine once that is durable.
		for _, id := range ids {
			e, err := q.Get(*kind, id)
			if err != nil {
				return fmt.Errorf("quarantine replay %s: %w", id, err)
			}
			if e.Record == nil {
				return fmt.Errorf("quarantine replay %s: entry holds no record", id)
			}
			rec := e.Record.ToSpool()
			if rec.ID == "" || rec.Op == "" {
				// Nothing empty is stored (DESIGN §2.2): a damaged entry.
				return fmt.Errorf("quarantine replay %s: the entry's record has no ID or operation", id)
			}
			rec.Meta = setMeta(rec.Meta, forward.MetaDestination, e.Destination)
			if err := sp.Append(ctx, []spool.Record{rec}); err != nil {
				return fmt.Errorf("quarantine replay %s: %w", id, err)
			}
			if err := q.Delete(*kind, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "replayed %s (record %s) to %s\n", id, rec.ID, e.Destination)
		}
	case "drop":
		for _, id := range ids {
			if err := q.Delete(*kind, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "dropped %s\n", id)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// setMeta sets key in meta, replacing an existing value.
func setMeta(meta []spool.KV, key, value string) []spool.KV {
	for i := range meta {
		if meta[i].Key == key {
			meta[i].Value = value
			return meta
		}
	}
	return append(meta, spool.KV{Key: key, Value: value})
}

// runReplay is `trackd replay --since T --until T [--destination D]`: it
// sends again the records received in [since, until) that the spool still
// holds, by appending copies (same IDs, so back ends that still have them
// deduplicate) aimed at one destination or all.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("replay", stderr)
	dataDir := fs.String("data-dir", "./data", "trackd's data directory")
	since := fs.String("since", "", "start of the range, RFC 3339 (inclusive)")
	until := fs.String("until", "", "end of the range, RFC 3339 (exclusive; default now)")
	dest := fs.String("destination", "", "resend to this destination only (default: all)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	var problems []string
	from, err := time.Parse(time.RFC3339Nano, *since)
	if err != nil {
		problems = append(problems, fmt.Sprintf("--since %q: want an RFC 3339 time", *since))
	}
	to := time.Now()
	if *until != "" {
		if to, err = time.Parse(time.RFC3339Nano, *until); err != nil {
			problems = append(problems, fmt.Sprintf("--until %q: want an RFC 3339 time", *until))
		}
	}
	if *dest != "" && !spool.ValidCursorName(*dest) {
		problems = append(problems, fmt.Sprintf("--destination %q: not a destination name", *dest))
	}
	if len(problems) == 0 && !from.Before(to) {
		problems = append(problems, "--since must be before --until")
	}
	if len(problems) > 0 {
		return &cli.UsageError{Problems: problems}
	}
	sp, _, err := openOffline(*dataDir, true)
	if err != nil {
		return err
	}
	defer sp.Close()
	// A destination trackd can have (one per sink kind), or one this spool
	// has a cursor for: anything else is a typo nothing would ever send.
	known := sp.Cursors()
	for _, n := range []string{jetstream.DefaultName, kafka.DefaultName, httpsink.DefaultName} {
		known[n] = spool.Position{}
	}
	if *dest != "" && !hasKey(known, *dest) {
		return &cli.UsageError{Problems: []string{fmt.Sprintf("--destination %q: no such destination (want one of %s)", *dest, strings.Join(slices.Sorted(maps.Keys(known)), ", "))}}
	}
	// Read up to the tail as it is now, so the copies are not read again.
	end := sp.Stats().Tail
	r := sp.NewReader(spool.Position{})
	defer r.Close()
	n := 0
	for r.Pos().Less(end) {
		rec, err := r.TryNext()
		var ce *spool.CorruptionError
		switch {
		case errors.Is(err, spool.ErrNoMore):
			end = r.Pos()
			continue
		case errors.As(err, &ce):
			fmt.Fprintf(stderr, "trackd: replay: skipping damaged segment: %v\n", err)
			r.SkipSegment()
			continue
		case err != nil:
			return err
		}
		at := time.Unix(0, rec.ReceivedAt)
		if at.Before(from) || !at.Before(to) {
			continue
		}
		if d, ok := rec.Get(forward.MetaDestination); ok && *dest != "" && d != *dest {
			continue
		}
		if *dest != "" {
			rec.Meta = setMeta(rec.Meta, forward.MetaDestination, *dest)
		}
		if err := sp.Append(ctx, []spool.Record{rec}); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		n++
	}
	target := "all destinations"
	if *dest != "" {
		target = *dest
	}
	fmt.Fprintf(stdout, "replayed %d records received in [%s, %s) to %s\n", n, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), target)
	return nil
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
