package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/cli"
)

// buildTrackd builds cmd/trackd into a temp dir.
func buildTrackd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trackd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/trackd")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestChaos is the short chaos run CI does: trackd is SIGKILLed and
// restarted three times under load, and every acknowledged event must be
// in the stream.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("builds trackd and kills real processes")
	}
	bin := buildTrackd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errOut strings.Builder
	err := run(ctx, []string{"chaos", "--trackd-bin", bin, "--kills", "3", "--min-interval", "100ms", "--max-interval", "500ms",
		"--conns", "8", "--timeout", "3m", "--json"}, os.Getenv, &out, &errOut)
	if err != nil {
		t.Fatalf("chaos: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	var res chaosResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	t.Logf("%d kills: %d requests sent, %d events acknowledged, %d stream messages, lost %d, duplicated %d, out of order %d",
		res.Kills, res.Load.Requests, res.Acknowledged, res.Verify.StreamMessages, res.Verify.Lost, res.Verify.Duplicated, res.Verify.OutOfOrder)
	if res.Kills != 3 || res.Acknowledged == 0 || res.Verify.Lost != 0 {
		t.Errorf("result: %+v", res)
	}
}

func TestChaosUsage(t *testing.T) {
	err := run(context.Background(), []string{"chaos", "--kills", "-1", "--min-interval", "2s", "--max-interval", "1s", "--op", "identify"},
		os.Getenv, io.Discard, io.Discard)
	var ue *cli.UsageError
	if code := cli.ExitCode("trackload", err, io.Discard); code != 2 || !strings.Contains(err.Error(), "--trackd-bin") {
		t.Errorf("err %v, exit %d; want a usage error listing every problem", err, code)
	} else if e, ok := err.(*cli.UsageError); ok {
		ue = e
		if len(ue.Problems) != 4 {
			t.Errorf("problems: %q", ue.Problems)
		}
	}
}
