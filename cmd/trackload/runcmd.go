package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trackd/trackd/internal/cli"
)

// defaultDuration bounds a run given neither --duration nor --requests.
const defaultDuration = 10 * time.Second

// loadFlags are the flags shared by run, compare (and, in part, chaos).
type loadFlags struct {
	url, site, key, dataDir string
	mode, op, oracle        string
	conns, batch, size, pid int
	rate                    float64
	duration, timeout       time.Duration
	requests                int64
	json, allowRemote       bool
}

func addLoadFlags(fs *flag.FlagSet, f *loadFlags) {
	fs.StringVar(&f.url, "url", "http://127.0.0.1:8080", "target base URL (loopback only unless --allow-remote)")
	fs.StringVar(&f.site, "site", "", "workspace site ID (Basic-auth user)")
	fs.StringVar(&f.key, "key", "", "workspace API key (Basic-auth password)")
	fs.StringVar(&f.dataDir, "data-dir", "", "read --site/--key from the first workspace in DIR/workspaces.json")
	fs.StringVar(&f.mode, "mode", "closed", "closed (--conns workers back to back) or open (--rate req/s, constant arrival)")
	fs.IntVar(&f.conns, "conns", 64, "closed: workers (connections); open: the most requests in flight")
	fs.Float64Var(&f.rate, "rate", 0, "open loop: requests per second")
	fs.StringVar(&f.op, "op", "track", "track, identify, batch, or mix (per 10 requests: 6 track, 2 identify, 2 batch)")
	fs.IntVar(&f.batch, "batch", 100, "items per v2 batch")
	fs.IntVar(&f.size, "size", 300, "body size in bytes (for a batch: each item's size)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (default 10s when --requests is not given either)")
	fs.Int64Var(&f.requests, "requests", 0, "stop after this many requests (0: no bound)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "dial and response-header timeout of each request")
	fs.StringVar(&f.oracle, "oracle", "", "append the ID of every acknowledged (200) event to FILE, one per line")
	fs.IntVar(&f.pid, "pid", 0, "the target's process ID: report its CPU seconds and peak RSS during the run")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON")
	fs.BoolVar(&f.allowRemote, "allow-remote", false, "allow a target that is not on a loopback address")
}

// options validates the flags (every problem at once) and returns the load
// options; creds says whether credentials are needed.
func (f *loadFlags) options(creds bool) (loadOptions, error) {
	var p problems
	o := loadOptions{
		URL: strings.TrimRight(f.url, "/"), Site: f.site, Key: f.key,
		Conns: f.conns, Rate: f.rate, Batch: f.batch, Size: f.size,
		Duration: f.duration, Requests: f.requests, Timeout: f.timeout,
	}
	if err := checkTarget(f.url, f.allowRemote); err != nil {
		p.add("%v", err)
	}
	switch f.mode {
	case "closed":
	case "open":
		o.Open = true
		if f.rate <= 0 {
			p.add("--mode open needs --rate > 0")
		}
	default:
		p.add("--mode must be closed or open, not %q", f.mode)
	}
	op, ok := parseOp(f.op)
	if !ok {
		p.add("--op must be track, identify, batch or mix, not %q", f.op)
	}
	o.Op = op
	if f.oracle != "" && (op == opIdentify) {
		p.add("--oracle needs events with client IDs: use --op track, batch or mix (identify has none)")
	}
	if f.conns <= 0 {
		p.add("--conns must be > 0")
	}
	if f.batch <= 0 {
		p.add("--batch must be > 0")
	}
	if f.size <= 0 || f.size > 1<<20 {
		p.add("--size must be in 1..1048576")
	}
	if f.duration < 0 || f.requests < 0 {
		p.add("--duration and --requests must not be negative")
	}
	if f.duration == 0 && f.requests == 0 {
		o.Duration = defaultDuration
	}
	if f.pid < 0 {
		p.add("--pid must be a process ID")
	}
	if creds {
		if f.dataDir != "" && (f.site != "" || f.key != "") {
			p.add("give --site/--key or --data-dir, not both")
		} else if f.dataDir != "" {
			site, key, err := readWorkspace(f.dataDir)
			if err != nil {
				p.add("%v", err)
			}
			o.Site, o.Key = site, key
		} else if f.site == "" || f.key == "" {
			p.add("credentials needed: --site and --key, or --data-dir DIR")
		}
	}
	return o, p.err()
}

// checkTarget refuses a target that is not on a loopback address unless
// allowed: a load tool pointed at someone else's server is an attack. Only
// IP literals and "localhost" are loopback here; other names are not
// resolved (what a name resolves to can change between check and use).
func checkTarget(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("--url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("--url %q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("--url %q: no host", raw)
	}
	if allowRemote || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("--url %q: refusing a non-loopback host (pass --allow-remote to load a remote server)", raw)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readWorkspace returns the first workspace of DIR/workspaces.json (the
// file trackd keeps in its data dir).
func readWorkspace(dir string) (site, key string, err error) {
	name := filepath.Join(dir, "workspaces.json")
	b, err := os.ReadFile(name)
	if err != nil {
		return "", "", fmt.Errorf("--data-dir: %v", err)
	}
	var f struct {
		Workspaces []struct {
			SiteID string `json:"site_id"`
			APIKey string `json:"api_key"`
		} `json:"workspaces"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return "", "", fmt.Errorf("%s: %v", name, err)
	}
	if len(f.Workspaces) == 0 || f.Workspaces[0].SiteID == "" || f.Workspaces[0].APIKey == "" {
		return "", "", fmt.Errorf("%s: no workspace with site_id and api_key", name)
	}
	return f.Workspaces[0].SiteID, f.Workspaces[0].APIKey, nil
}

// runRun is `trackload run`: one load, one report.
func runRun(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("run", stderr)
	var f loadFlags
	addLoadFlags(fs, &f)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	o, err := f.options(true)
	if err != nil {
		return err
	}
	var orc *fileOracle
	if f.oracle != "" {
		if orc, err = openFileOracle(f.oracle); err != nil {
			return err
		}
		o.Oracle = orc
	}
	var ps *procSampler
	if f.pid > 0 {
		if ps, err = startProcSampler(f.pid, 100*time.Millisecond); err != nil {
			if orc != nil {
				orc.Close()
			}
			return cli.Usagef("--pid %d: %v", f.pid, err)
		}
	}
	res, err := runLoad(ctx, o)
	if ps != nil {
		st := ps.Stop()
		if res != nil {
			res.Proc = st
		}
	}
	if orc != nil {
		if cerr := orc.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResult(stdout, res)
	if orc != nil {
		fmt.Fprintf(stdout, "oracle     %d acknowledged event IDs appended to %s\n", orc.n, f.oracle)
	}
	return nil
}

// printResult prints a human-readable report of one run.
func printResult(w io.Writer, r *loadResult) {
	load := fmt.Sprintf("%d conns", r.Conns)
	if r.Mode == "open" {
		load = fmt.Sprintf("%.0f req/s, up to %d in flight", r.Rate, r.Conns)
	}
	op := r.Op
	if r.Batch > 0 {
		op += fmt.Sprintf(" (batch %d)", r.Batch)
	}
	fmt.Fprintf(w, "trackload: %s loop, %s, op %s, %d B bodies, %.1fs against %s\n", r.Mode, load, op, r.Size, r.Elapsed, r.Target)
	fmt.Fprintf(w, "requests   %d sent (%.0f req/s), %d ok (200: %.0f/s)\n", r.Requests, r.ReqPerS, r.OK, r.OKPerS)
	fmt.Fprintf(w, "events     %d acknowledged (%.0f events/s)\n", r.Events, r.EvPerS)
	l := r.Latency
	from := ""
	if r.Mode == "open" {
		from = " (from the intended send time)"
	}
	fmt.Fprintf(w, "latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s%s\n",
		fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max), from)
	fmt.Fprintf(w, "errors     %s\n", errorSummary(r))
	fmt.Fprintf(w, "client     trackload used %.2f cores\n", r.SelfCPU)
	if r.Proc != nil {
		p := r.Proc
		fmt.Fprintf(w, "target     pid %d: CPU %.2f s (%.2f cores), peak RSS %s (VmHWM %s)",
			p.PID, p.CPUSeconds, p.CPUCores, fmtBytes(p.PeakRSS), fmtBytes(p.HWM))
		if p.Exited {
			fmt.Fprint(w, " — the process exited during the run")
		}
		fmt.Fprintln(w)
	}
}

func errorSummary(r *loadResult) string {
	var parts []string
	codes := make([]string, 0, len(r.Status))
	for c := range r.Status {
		if c != "200" {
			codes = append(codes, c)
		}
	}
	sort.Strings(codes)
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("status %s: %d", c, r.Status[c]))
	}
	for _, c := range errClassNames {
		if n := r.Transport[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", c, n))
		}
	}
	if r.Canceled > 0 {
		parts = append(parts, fmt.Sprintf("canceled at the end: %d", r.Canceled))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func fmtMS(ms float64) string {
	switch {
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 3, 64) + "ms"
}

func fmtBytes(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
