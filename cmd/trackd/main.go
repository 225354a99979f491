// Command trackd is the data-collection edge: it serves the Customer.io
// Track API, stores every accepted call durably in a local spool, and
// forwards it to the back end. `trackd` with no subcommand is `trackd serve`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err and maps it to trackd's exit codes: 0 success, 1 a
// check found a problem, 2 usage or configuration error.
func exitCode(err error, stderr interface{ Write([]byte) (int, error) }) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "trackd: %v\n", err)
		return 2
	case errors.Is(err, errCheckFailed):
		return 1
	default:
		fmt.Fprintf(stderr, "trackd: %v\n", err)
		return 1
	}
}
