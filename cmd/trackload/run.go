package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/trackd/trackd/internal/cli"
)

// problems collects usage problems so that all are reported at once.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// writeResult writes v as indented JSON, or as text with printText.
func writeResult(w io.Writer, asJSON bool, v any, printText func()) error {
	if !asJSON {
		printText()
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// harnessLoad is the load flags of the commands that run trackd as a child
// and load it with events that carry client IDs (chaos, restarts).
type harnessLoad struct {
	bin               string
	conns, batch, siz int
	opName            string
}

func (h *harnessLoad) register(fs *flag.FlagSet, conns int) {
	fs.StringVar(&h.bin, "trackd-bin", "", "trackd binary to run (required)")
	fs.IntVar(&h.conns, "conns", conns, "closed-loop workers")
	fs.StringVar(&h.opName, "op", "track", "track or batch (events with client IDs)")
	fs.IntVar(&h.batch, "batch", 10, "items per v2 batch with --op batch")
	fs.IntVar(&h.siz, "size", 300, "body (batch item) size in bytes")
}

// check adds the flags' problems to p and returns the operation.
func (h *harnessLoad) check(p *problems) int {
	if h.bin == "" {
		p.add("--trackd-bin PATH is required")
	}
	if h.conns <= 0 || h.batch <= 0 || h.siz <= 0 {
		p.add("--conns, --batch and --size must be > 0")
	}
	op, ok := parseOp(h.opName)
	if !ok || (op != opTrack && op != opBatch) {
		p.add("--op must be track or batch")
	}
	return op
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &cli.UsageError{Problems: p}
}

// run is trackload's entry point: everything main does, with its inputs and
// outputs passed in so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runRun(ctx, args, getenv, stdout, stderr)
	case "verify":
		return runVerify(ctx, args, stdout, stderr)
	case "compare":
		return runCompare(ctx, args, getenv, stdout, stderr)
	case "chaos":
		return runChaos(ctx, args, stdout, stderr)
	case "restarts":
		return runRestarts(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	return cli.Usagef("unknown command %q (try `trackload help`)", cmd)
}

const usageText = `trackload: load generator and crash harness for trackd.

Usage:
  trackload [run] [load flags]                 load a Track API server and report (default)
  trackload verify --oracle FILE [--nats-url URL] [--stream S] [--timeout D]
                                               check acknowledged IDs against the stream (exit 1 on loss)
  trackload compare [load flags] [--rounds N] [--trackd-bin PATH]
                                               the same load against a plain net/http server and
                                               trackd, alternating; prints each round's ratio
  trackload chaos --trackd-bin PATH --kills K [--min-interval D] [--max-interval D] [--conns N]
                                               SIGKILL and restart trackd under load, then verify
  trackload restarts --trackd-bin PATH [--upgrades N] [--restarts N] [--sockets systemd|own] [--conns N]
                                               upgrade (SIGUSR2) and stop/start trackd (socket
                                               activation) under load: no request may fail, and
                                               every acknowledged event is in the stream once
  trackload help                               this text

Load flags:
  --url URL            target (default http://127.0.0.1:8080); loopback only unless --allow-remote
  --site, --key        workspace credentials, or --data-dir DIR to read DIR/workspaces.json
  --mode closed|open   closed: --conns workers back to back; open: --rate req/s constant arrival,
                       latency from the intended send time (coordinated omission corrected)
  --op track|identify|batch|mix   --batch N items per v2 batch   --size BYTES body (item) size
  --duration D, --requests N      stop at whichever comes first (default 10s)
  --oracle FILE        append the ID of every acknowledged (200) event, one per line
  --pid PID            report the target's CPU seconds and peak RSS from /proc
  --json               machine-readable result

Run 'trackload <command> -h' for every flag of a command.
`
