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
// does: under 64 closed-loop connections, trackd is upgraded (SIGUSR2)
// and stopped and started (socket activation) five times each. No request
// may fail and every acknowledged event must be in the stream once.
func TestRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds trackd and restarts real processes")
	}
	bin := buildTrackd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errOut strings.Builder
	err := run(ctx, []string{"restarts", "--trackd-bin", bin, "--upgrades", "5", "--restarts", "5",
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
}

// TestUpgradesOwnSockets: the same under load without a socket holder:
// trackd listens itself, and five SIGUSR2 upgrades hand its socket from
// process to process with no request failing.
func TestUpgradesOwnSockets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds trackd and restarts real processes")
	}
	bin := buildTrackd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errOut strings.Builder
	err := run(ctx, []string{"restarts", "--trackd-bin", bin, "--sockets", "own", "--upgrades", "5", "--restarts", "0",
		"--steady", "1s", "--interval", "200ms", "--conns", "64", "--timeout", "3m", "--json"}, os.Getenv, &out, &errOut)
	var res restartResult
	if jerr := json.Unmarshal([]byte(out.String()), &res); jerr != nil {
		t.Fatalf("restarts: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	t.Logf("%d upgrades (median %.1fms); %d requests, %d failed; %d acknowledged, lost %d, duplicated %d",
		res.Upgrades, res.Upgrade.Median, res.Steady.Requests+res.During.Requests, res.Failed,
		res.Acknowledged, res.Verify.Lost, res.Verify.Duplicated)
	if err != nil {
		t.Fatalf("restarts: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if res.Failed != 0 || res.Verify.Lost != 0 || res.Verify.Duplicated != 0 || res.During.OK == 0 {
		t.Fatalf("restarts passed but: %s", out.String())
	}
}

func TestRestartsUsage(t *testing.T) {
	err := run(context.Background(), []string{"restarts", "--upgrades", "-1", "--op", "identify", "--sockets", "own"}, os.Getenv, io.Discard, io.Discard)
	if code := cli.ExitCode("trackload", err, io.Discard); code != 2 || !strings.Contains(err.Error(), "--trackd-bin") ||
		!strings.Contains(err.Error(), "--upgrades") || !strings.Contains(err.Error(), "--op") || !strings.Contains(err.Error(), "--restarts 0") {
		t.Fatalf("exit %d: %v", code, err)
	}
}
