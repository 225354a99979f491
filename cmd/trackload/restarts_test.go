package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/cli"
)

// TestRestarts is the short version of the zero-failed-requests run CI
// does, under 64 closed-loop connections: as under systemd (the harness
// holds the sockets), trackd is upgraded (SIGUSR2) and stopped and started
// five times each; with trackd listening itself and nothing else holding
// its socket, it is upgraded five times. No request may fail and every
// acknowledged event must be in the stream once.
func TestRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds trackd and restarts real processes")
	}
	bin := buildTrackd(t)
	for _, tc := range []struct{ name, sockets, restarts string }{
		{"systemd", "systemd", "5"},
		{"own sockets", "own", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			var out, errOut strings.Builder
			err := run(ctx, []string{"restarts", "--trackd-bin", bin, "--sockets", tc.sockets, "--upgrades", "5", "--restarts", tc.restarts,
				"--steady", "1s", "--interval", "200ms", "--conns", "64", "--timeout", "3m", "--json"}, os.Getenv, &out, &errOut)
			var res restartResult
			if jerr := json.Unmarshal([]byte(out.String()), &res); jerr != nil {
				t.Fatalf("restarts: %v\n%s\n%s", err, out.String(), errOut.String())
			}
			t.Logf("%d upgrades (median %.1fms), %d restarts (median %.1fms); %d requests, %d failed; p99 steady %.1fms, during %.1fms; %d acknowledged, lost %d, duplicated %d",
				res.Upgrades, res.Upgrade.Median, res.Restarts, res.Restart.Median, res.Steady.Requests+res.During.Requests, res.Failed,
				res.Steady.Latency.P99, res.During.Latency.P99, res.Acknowledged, res.Verify.Lost, res.Verify.Duplicated)
			if err != nil {
				t.Fatalf("restarts: %v\n%s\n%s", err, out.String(), errOut.String())
			}
			if res.Failed != 0 || res.Verify.Lost != 0 || res.Verify.Duplicated != 0 || res.During.OK == 0 {
				t.Fatalf("restarts passed but: %s", out.String())
			}
		})
	}
}

func TestRestartsUsage(t *testing.T) {
	err := run(context.Background(), []string{"restarts", "--upgrades", "-1", "--op", "identify", "--sockets", "own"}, os.Getenv, io.Discard, io.Discard)
	if code := cli.ExitCode("trackload", err, io.Discard); code != 2 || !strings.Contains(err.Error(), "--trackd-bin") ||
		!strings.Contains(err.Error(), "--upgrades") || !strings.Contains(err.Error(), "--op") || !strings.Contains(err.Error(), "--restarts 0") {
		t.Fatalf("exit %d: %v", code, err)
	}
}
