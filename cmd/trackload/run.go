package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// usageError is a usage or configuration problem: exit code 2. It lists
// every problem found, not just the first.
type usageError struct{ problems []string }

func (e *usageError) Error() string { return strings.Join(e.problems, "; ") }

func usagef(format string, args ...any) error {
	return &usageError{problems: []string{fmt.Sprintf(format, args...)}}
}

// problems collects usage problems so that all are reported at once.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &usageError{problems: p}
}

// errCheckFailed reports that a check (verify, chaos) found a problem and
// has already printed what: exit code 1.
var errCheckFailed = errors.New("trackload: check failed")

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
	case "help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	return usagef("unknown command %q (try `trackload help`)", cmd)
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

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, mapping flag errors to usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usagef("%s: help requested", fs.Name())
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return nil
}
