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

// errCheckFailed reports that a check (e.g. spool verify) found a problem
// and has already said what: exit code 1.
var errCheckFailed = errors.New("check failed")

// run is trackd's entry point: everything main does, with its inputs and
// outputs passed in so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, getenv, stdout, stderr)
	case "spool":
		return runSpool(ctx, args, stdout, stderr)
	case "quarantine":
		return runQuarantine(ctx, args, stdout, stderr)
	case "replay":
		return runReplay(ctx, args, stdout, stderr)
	case "tail":
		return runTail(ctx, args, getenv, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	return usagef("unknown command %q (try `trackd help`)", cmd)
}

const usageText = `trackd: the Track API edge with a durable spool.

Usage:
  trackd [serve] [flags]                       serve the Track API (default)
  trackd spool verify --data-dir DIR           check a stopped node's spool (exit 1 on damage)
  trackd spool dump --data-dir DIR [--limit N] print a stopped node's records as JSON lines
  trackd quarantine list|show|replay|drop --data-dir DIR [--kind records|panics] [--all] [ID...]
                                               inspect, resend or drop what a destination refused
  trackd replay --data-dir DIR --since T [--until T] [--destination D]
                                               resend records received in [T, T) still in the spool
  trackd tail [--nats-url URL] [--count N] [--all] [--subject S]
                                               print what the back end receives, as JSON lines
  trackd help                                  this text
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
