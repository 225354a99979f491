// Command trackd is the data-collection edge: it serves the Customer.io
// Track API, stores every accepted call durably in a local spool, and
// forwards it to the back end. `trackd` with no subcommand is `trackd serve`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/trackd/trackd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode("trackd", err, os.Stderr))
}
