package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trackd/trackd/internal/cli"
)

// compareRound is one round: the same load against the plain server, then
// against trackd.
type compareRound struct {
	Plain  *loadResult `json:"plain"`
	Trackd *loadResult `json:"trackd"`
	Ratio  float64     `json:"ratio"` // trackd / plain, acknowledged (200) requests per second
}

type spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Min: s[0], Median: med, Max: s[len(s)-1]}
}

type compareResult struct {
	Plain        string         `json:"plain_url"`
	Trackd       string         `json:"trackd_url"`
	TrackdPID    int            `json:"trackd_pid,omitempty"`
	PlainPID     int            `json:"plain_pid,omitempty"`
	Started      bool           `json:"trackd_started_by_trackload"`
	Rounds       []compareRound `json:"rounds"`
	Ratio        spread         `json:"ratio"`
	PlainOKPerS  spread         `json:"plain_ok_per_s"`
	TrackdOKPerS spread         `json:"trackd_ok_per_s"`
	TrackdP99    spread         `json:"trackd_p99_ms"`
	PlainP99     spread         `json:"plain_p99_ms"`
}

// runCompare is `trackload compare`: it runs the same load against an
// in-process plain net/http server and against trackd, alternating (plain,
// trackd, plain, trackd, …) so that both see the same machine weather, and
// reports each round's ratio and its spread.
func runCompare(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("compare", stderr)
	var f loadFlags
	addLoadFlags(fs, &f)
	rounds := fs.Int("rounds", 3, "rounds (each: plain, then trackd)")
	bin := fs.String("trackd-bin", "", "start this trackd binary as a child on free ports with a temp data dir (default: use --url)")
	plainMode := fs.String("plain", "process", "where the plain net/http server runs: process (its own process, like trackd) or inprocess (inside trackload, as before 2026-11-26: faster, as it shares trackload's scheduler)")
	extra := fs.String("trackd-args", "", "more `trackd serve` flags for --trackd-bin, space-separated (e.g. \"--forward=false\")")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	var p problems
	if *rounds <= 0 {
		p.add("--rounds must be > 0")
	}
	if *plainMode != "process" && *plainMode != "inprocess" {
		p.add("--plain must be process or inprocess")
	}
	if f.oracle != "" {
		p.add("--oracle is for `trackload run`, not compare")
	}
	if *bin != "" && f.pid != 0 {
		p.add("--pid is implied by --trackd-bin")
	}
	if *bin != "" {
		f.url = "http://127.0.0.1:1" // replaced by the child's address
	}
	o, err := f.options(*bin == "")
	if err != nil {
		var ue *cli.UsageError
		if errors.As(err, &ue) {
			p = append(p, ue.Problems...)
		}
	}
	if err := p.err(); err != nil {
		return err
	}

	res := &compareResult{}
	pid := f.pid
	if *bin != "" {
		dir, err := os.MkdirTemp("", "trackload-compare-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		node, err := newTrackdNode(*bin, dir, strings.Fields(*extra))
		if err != nil {
			return err
		}
		if err := node.Start(ctx); err != nil {
			return err
		}
		defer node.Stop(20 * time.Second)
		o.URL, o.Site, o.Key = node.URL(), node.site, node.key
		pid = node.PID()
		res.Started = true
	}
	plain, err := startPlainServer(*plainMode == "inprocess")
	if err != nil {
		return err
	}
	defer plain.Close()
	res.Plain, res.Trackd, res.TrackdPID, res.PlainPID = plain.URL(), o.URL, pid, plain.PID()

	if !f.json {
		where := "in-process"
		if plain.PID() > 0 {
			where = fmt.Sprintf("pid %d", plain.PID())
		}
		fmt.Fprintf(stdout, "trackload compare: %s, %d rounds; plain net/http (%s) at %s; trackd at %s",
			loadDesc(o), *rounds, where, plain.URL(), o.URL)
		if pid > 0 {
			fmt.Fprintf(stdout, " (pid %d)", pid)
		}
		fmt.Fprintln(stdout)
	}
	var ratios, pOK, tOK, pP99, tP99 []float64
	for r := 0; r < *rounds; r++ {
		po := o
		po.URL = plain.URL()
		pr, err := loadSampled(ctx, po, plain.PID())
		if err != nil {
			return fmt.Errorf("round %d, plain: %w", r+1, err)
		}
		tr, err := loadSampled(ctx, o, pid)
		if err != nil {
			return fmt.Errorf("round %d, trackd: %w", r+1, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		round := compareRound{Plain: pr, Trackd: tr}
		if pr.OKPerS > 0 {
			round.Ratio = tr.OKPerS / pr.OKPerS
		}
		res.Rounds = append(res.Rounds, round)
		ratios = append(ratios, round.Ratio)
		pOK, tOK = append(pOK, pr.OKPerS), append(tOK, tr.OKPerS)
		pP99, tP99 = append(pP99, pr.Latency.P99), append(tP99, tr.Latency.P99)
	}
	res.Ratio, res.PlainOKPerS, res.TrackdOKPerS = spreadOf(ratios), spreadOf(pOK), spreadOf(tOK)
	res.PlainP99, res.TrackdP99 = spreadOf(pP99), spreadOf(tP99)
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printCompare(stdout, res)
	return nil
}

// loadSampled runs a load and, when pid > 0, samples that process's CPU
// and peak RSS meanwhile.
func loadSampled(ctx context.Context, o loadOptions, pid int) (*loadResult, error) {
	var ps *procSampler
	if pid > 0 {
		var err error
		if ps, err = startProcSampler(pid, 100*time.Millisecond); err != nil {
			ps = nil // no CPU and RSS columns, the load still runs
			fmt.Fprintf(os.Stderr, "trackload compare: cannot sample pid %d: %v\n", pid, err)
		}
	}
	res, err := runLoad(ctx, o)
	if ps != nil {
		if st := ps.Stop(); res != nil {
			res.Proc = st
		}
	}
	return res, err
}

// loadDesc describes a load in a few words.
func loadDesc(o loadOptions) string {
	o.setDefaults()
	var b strings.Builder
	if o.Open {
		fmt.Fprintf(&b, "open loop %.0f req/s (up to %d in flight)", o.Rate, o.Conns)
	} else {
		fmt.Fprintf(&b, "closed loop %d conns", o.Conns)
	}
	fmt.Fprintf(&b, ", op %s", opNames[o.Op])
	if o.Op == opBatch || o.Op == opMix {
		fmt.Fprintf(&b, " (batch %d)", o.Batch)
	}
	fmt.Fprintf(&b, ", %d B", o.Size)
	if o.Duration > 0 {
		fmt.Fprintf(&b, ", %v per run", o.Duration)
	}
	if o.Requests > 0 {
		fmt.Fprintf(&b, ", at most %d requests per run", o.Requests)
	}
	return b.String()
}

func printCompare(w io.Writer, r *compareResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tplain ok/s\tplain p99\ttrackd ok/s\ttrackd p99\tratio\terrors\tplain CPU\ttrackd CPU\ttrackd peak RSS\tloader CPU (plain/trackd)\t")
	cores := func(p *procStats) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f cores", p.CPUCores)
	}
	for i, rd := range r.Rounds {
		rss := "-"
		if p := rd.Trackd.Proc; p != nil {
			rss = fmtBytes(p.PeakRSS)
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%.0f\t%s\t%.2f\t%d\t%s\t%s\t%s\t%.2f / %.2f cores\t\n", i+1,
			rd.Plain.OKPerS, fmtMS(rd.Plain.Latency.P99), rd.Trackd.OKPerS, fmtMS(rd.Trackd.Latency.P99),
			rd.Ratio, rd.Trackd.Errors()+rd.Plain.Errors(), cores(rd.Plain.Proc), cores(rd.Trackd.Proc), rss, rd.Plain.SelfCPU, rd.Trackd.SelfCPU)
	}
	tw.Flush()
	fmt.Fprintf(w, "ratio trackd/plain (200s per second): min %.2f  median %.2f  max %.2f\n", r.Ratio.Min, r.Ratio.Median, r.Ratio.Max)
	fmt.Fprintf(w, "trackd ok/s: min %.0f  median %.0f  max %.0f;  plain ok/s: min %.0f  median %.0f  max %.0f\n",
		r.TrackdOKPerS.Min, r.TrackdOKPerS.Median, r.TrackdOKPerS.Max, r.PlainOKPerS.Min, r.PlainOKPerS.Median, r.PlainOKPerS.Max)
	fmt.Fprintf(w, "trackd p99: min %s  median %s  max %s;  plain p99: min %s  median %s  max %s\n",
		fmtMS(r.TrackdP99.Min), fmtMS(r.TrackdP99.Median), fmtMS(r.TrackdP99.Max),
		fmtMS(r.PlainP99.Min), fmtMS(r.PlainP99.Median), fmtMS(r.PlainP99.Max))
	for i, rd := range r.Rounds {
		if e := rd.Trackd.Errors(); e > 0 {
			fmt.Fprintf(w, "round %d trackd errors: %s\n", i+1, errorSummary(rd.Trackd))
		}
		if e := rd.Plain.Errors(); e > 0 {
			fmt.Fprintf(w, "round %d plain errors: %s\n", i+1, errorSummary(rd.Plain))
		}
	}
}
