package main

import (
	"context"
	"io"
)

// runServe runs the server. Until the Track API lands (issue 3) it opens
// the spool, reports what recovery found, and waits for a signal.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return usagef("serve: not implemented yet")
}
