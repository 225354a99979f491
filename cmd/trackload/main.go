// Command trackload is trackd's load generator and crash harness (DESIGN
// §2.8, issue 5). It loads a Track API server as its users would (closed or
// open loop, v1 track, v1 identify, v2 batch), reports throughput and
// latency from an HDR histogram, writes the IDs of acknowledged events to an
// oracle file, and checks an oracle against what the back end holds:
//
//	trackload run      load a server and report (the default subcommand)
//	trackload verify   check an oracle file against the JetStream stream
//	trackload compare  the same load against a plain net/http server and trackd, alternating
//	trackload chaos    load trackd while SIGKILLing and restarting it, then verify
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/trackd/trackd/internal/cli"
)

func main() {
	if os.Getenv(plainServerEnv) != "" {
		os.Exit(plainServerMain(os.Stdin, os.Stdout))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode("trackload", err, os.Stderr))
}
