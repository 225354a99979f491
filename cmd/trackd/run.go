package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/trackd/trackd/internal/cli"
)

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
	case "incident":
		return runIncident(args, stdout, stderr)
	case "tail":
		return runTail(ctx, args, getenv, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	return cli.Usagef("unknown command %q (try `trackd help`)", cmd)
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
  trackd incident open|update|resolve|list --data-dir DIR [--name N] [--message M] [--status S] [--impact I] [ID]
                                               incidents on the public status view (--public-listen, /public/ on the admin listener)
  trackd help                                  this text
`
