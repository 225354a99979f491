package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/trackd/trackd/internal/cli"
)

// chaosResult is what a chaos run did and found.
type chaosResult struct {
	Kills        int           `json:"kills"`
	Seed         uint64        `json:"seed"`
	Load         *loadResult   `json:"load"`
	Acknowledged int64         `json:"acknowledged_events"`
	Restart      spread        `json:"restart_ms"` // start to serving, over every start
	Verify       *verifyResult `json:"verify"`
	DataDir      string        `json:"data_dir,omitempty"`
	Elapsed      float64       `json:"elapsed_seconds"`
}

// runChaos is `trackload chaos`: it starts trackd as a child, loads it
// (closed loop, events with client IDs, an in-memory oracle), SIGKILLs and
// restarts it --kills times at random moments, restarts it once more, stops
// the load, and verifies the oracle against the stream as `verify` does.
// Every wait is bounded: a start by --start-timeout, the stream check by
// --verify-timeout, the whole run by --timeout.
func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("chaos", stderr)
	kills := fs.Int("kills", 10, "how many times to SIGKILL and restart trackd")
	minIv := fs.Duration("min-interval", 100*time.Millisecond, "shortest time a trackd serves before it is killed")
	maxIv := fs.Duration("max-interval", time.Second, "longest time a trackd serves before it is killed")
	var hl harnessLoad
	hl.register(fs, 32)
	dataDir := fs.String("data-dir", "", "trackd data dir (default: a temp dir, removed afterwards)")
	extra := fs.String("trackd-args", "", "more `trackd serve` flags, space-separated")
	seed := fs.Uint64("seed", 0, "random seed for the kill moments (0: from the clock)")
	timeout := fs.Duration("timeout", 15*time.Minute, "bound on the whole run")
	startTimeout := fs.Duration("start-timeout", 60*time.Second, "bound on each trackd start")
	verifyTimeout := fs.Duration("verify-timeout", 60*time.Second, "bound on waiting for the acknowledged events in the stream")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	var p problems
	op := hl.check(&p)
	if *kills < 0 {
		p.add("--kills must not be negative")
	}
	if *minIv <= 0 || *maxIv < *minIv {
		p.add("need 0 < --min-interval <= --max-interval")
	}
	if err := p.err(); err != nil {
		return err
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(*seed, 0x7472_6163_6b6c))
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	dir := *dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "trackload-chaos-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	node, err := newTrackdNode(hl.bin, dir, strings.Fields(*extra))
	if err != nil {
		return err
	}
	node.startWait = *startTimeout
	defer node.Kill() // on an early return; the normal path stops it gracefully

	var restarts []float64
	start := func() error {
		t0 := time.Now()
		if err := node.Start(ctx); err != nil {
			return err
		}
		restarts = append(restarts, float64(time.Since(t0).Microseconds())/1000)
		return nil
	}
	if err := start(); err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "trackload chaos: %d kills of %s at %s (data %s), %d conns, op %s, seed %d\n",
			*kills, hl.bin, node.URL(), dir, hl.conns, hl.opName, *seed)
	}

	oracle := &memOracle{}
	stopLoad := make(chan struct{})
	type loadDone struct {
		res *loadResult
		err error
	}
	loaded := make(chan loadDone, 1)
	go func() { // owned here: ends after stopLoad is closed (or ctx ends)
		res, err := runLoad(ctx, loadOptions{
			URL: node.URL(), Site: node.site, Key: node.key,
			Conns: hl.conns, Op: op, Batch: hl.batch, Size: hl.siz,
			Timeout: 5 * time.Second, ErrorBackoff: 10 * time.Millisecond,
			Oracle: oracle, Stop: stopLoad,
		})
		loaded <- loadDone{res, err}
	}()
	finishLoad := func() loadDone {
		close(stopLoad)
		return <-loaded
	}

	wait := func() bool {
		return pause(ctx, *minIv+time.Duration(rng.Int64N(int64(*maxIv-*minIv)+1)))
	}
	for k := 0; k < *kills; k++ {
		if !wait() {
			finishLoad()
			return fmt.Errorf("chaos: %w after %d kills", ctx.Err(), k)
		}
		node.Kill()
		if err := start(); err != nil {
			finishLoad()
			return fmt.Errorf("chaos: restart after kill %d: %w", k+1, err)
		}
	}
	// The last start is the "once more": let it take load for a while too,
	// then stop the load (requests in flight get their answers).
	wait()
	ld := finishLoad()
	if ld.err != nil {
		return fmt.Errorf("chaos: load: %w", ld.err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("chaos: %w", ctx.Err())
	}

	ids := oracle.IDs()
	vr, err := verifyStream(ctx, ids, verifyOptions{NATSURL: node.NATSURL(), Timeout: *verifyTimeout})
	if err != nil {
		return fmt.Errorf("chaos: verify: %w", err)
	}
	stopErr := node.Stop(20 * time.Second)

	res := &chaosResult{
		Kills: *kills, Seed: *seed, Load: ld.res, Acknowledged: int64(len(ids)),
		Restart: spreadOf(restarts), Verify: vr, Elapsed: time.Since(began).Seconds(),
	}
	if *dataDir != "" {
		res.DataDir = dir
	}
	if err := writeResult(stdout, *asJSON, res, func() { printChaos(stdout, res) }); err != nil {
		return err
	}
	if stopErr != nil {
		fmt.Fprintf(stderr, "trackload: chaos: final stop: %v\n", stopErr)
	}
	if res.Acknowledged == 0 {
		fmt.Fprintln(stderr, "trackload: chaos: no event was acknowledged: nothing was checked")
		return cli.ErrCheckFailed
	}
	return verdict(vr, false)
}

func printChaos(w io.Writer, r *chaosResult) {
	l := r.Load
	fmt.Fprintf(w, "kills      %d (trackd started %d times: start to serving min %s, median %s, max %s)\n",
		r.Kills, r.Kills+1, fmtMS(r.Restart.Min), fmtMS(r.Restart.Median), fmtMS(r.Restart.Max))
	fmt.Fprintf(w, "sent       %d requests in %.1fs, %d acknowledged (200)\n", l.Requests, l.Elapsed, l.OK)
	fmt.Fprintf(w, "acknowledged %d events (the oracle)\n", r.Acknowledged)
	fmt.Fprintf(w, "errors     %s\n", errorSummary(l))
	printVerify(w, r.Verify)
	verdict := "PASS: every acknowledged event is in the stream"
	if r.Verify.Lost > 0 {
		verdict = fmt.Sprintf("FAIL: %d acknowledged events lost", r.Verify.Lost)
	}
	fmt.Fprintln(w, verdict)
}
