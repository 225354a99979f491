package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackd/trackd/internal/auth"
	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/spool"
)

// startServe runs `trackd serve` in-process on loopback ports and returns
// the API base URL, the banner lines, and a stop function that returns
// run's error.
func startServe(t *testing.T, dataDir string, extra ...string) (string, []string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", dataDir}, extra...)
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, func(string) string { return "" }, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	base := ""
	for sc.Scan() {
		l := sc.Text()
		lines = append(lines, l)
		if rest, ok := strings.CutPrefix(l, "trackd: Track API listening on "); ok {
			base = "http://" + strings.Fields(rest)[0]
		}
		if strings.HasPrefix(l, "trackd: serving workspaces") || strings.HasPrefix(l, "  curl") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if base == "" {
		cancel()
		t.Fatalf("serve did not start: %v\n%s", <-done, strings.Join(lines, "\n"))
	}
	return base, lines, func() error {
		cancel()
		return <-done
	}
}

func TestServeFirstStartCreatesWorkspaceAndStores(t *testing.T) {
	dataDir := t.TempDir()
	base, lines, stop := startServe(t, dataDir)
	var site, key string
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "  site ID: "); ok {
			site = v
		}
		if v, ok := strings.CutPrefix(l, "  API key: "); ok {
			key = v
		}
	}
	if site == "" || key == "" {
		t.Fatalf("first start printed no credentials:\n%s", strings.Join(lines, "\n"))
	}
	resp := call(t, "PUT", base+"/api/v1/customers/42", site, key, `{"email":"ada@example.com"}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Durability") != "fsync" {
		t.Fatalf("identify: %d %v", resp.StatusCode, resp.Header)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after a graceful stop", err)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, workspacesFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("workspaces file: %v %v", fi, err)
	}

	// The record is in the spool, and a second start reuses the workspace
	// without printing its key.
	s, err := spool.Open(spoolDir(dataDir), spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	r := s.NewReader(spool.Position{})
	rec, err := r.TryNext()
	r.Close()
	s.Close()
	if err != nil || rec.Workspace != site || rec.Op != "v1.identify" || !json.Valid(rec.Body) {
		t.Fatalf("stored record %+v, %v", rec, err)
	}
	_, lines, stop = startServe(t, dataDir)
	defer stop()
	out := strings.Join(lines, "\n")
	if strings.Contains(out, key) || !strings.Contains(out, site) {
		t.Fatalf("second start banner:\n%s", out)
	}
}

func TestServeConfigProblemsReportedAtOnce(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "trackd.json")
	os.WriteFile(cfgFile, []byte(`{"region":"mars","bogus":1,"workspace":["a:b","nokey"]}`), 0o644)
	env := map[string]string{"TRACKD_DURABILITY": "sometimes"}
	var out strings.Builder
	err := run(context.Background(), []string{"serve", "--config", cfgFile, "--listen", "nope", "--admin-listen", "0.0.0.0:9"},
		func(k string) string { return env[k] }, &out, &out)
	if code := cli.ExitCode("trackd", err, &out); code != 2 {
		t.Fatalf("exit %d, want 2: %v", code, err)
	}
	msg := err.Error()
	for _, want := range []string{"--region \"mars\"", "unknown setting \"bogus\"", "--workspace \"nokey\"", "--durability \"sometimes\"", "--listen \"nope\"", "--admin-listen \"0.0.0.0:9\""} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems lack %s:\n%s", want, msg)
		}
	}
}

func TestServeFlagsWinOverEnvAndFile(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "trackd.json")
	os.WriteFile(cfgFile, []byte(`{"region":"eu","rate-limit":5,"spool-retention":"1h","workspace":"f:k"}`), 0o644)
	env := map[string]string{"TRACKD_REGION": "us", "TRACKD_CONFIG": cfgFile}
	cfg, err := loadServeConfig([]string{"--region", "eu", "--workspace", "s1:k1", "--workspace", "s2:k2"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu" || cfg.RateLimit != 5 || cfg.SpoolRetention != time.Hour || len(cfg.Workspaces) != 2 || cfg.Workspaces[0] != "s1:k1" {
		t.Fatalf("config %+v", cfg)
	}
	cfg, err = loadServeConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "us" || len(cfg.Workspaces) != 1 || cfg.Workspaces[0] != "f:k" {
		t.Fatalf("env over file: %+v", cfg)
	}
}

func TestServeRefusesAHeldDataDir(t *testing.T) {
	dataDir := t.TempDir()
	_, _, stop := startServe(t, dataDir)
	defer stop()
	err := run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data-dir", dataDir},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another trackd is serving") {
		t.Fatalf("second serve on the same data dir: %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "4KiB": 4096, "64MiB": 64 << 20, "16 GiB": 16 << 30, "2G": 2 << 30, "1TB": 1 << 40} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "lots", "99999999999TiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) accepted", in)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	noEnv := func(string) string { return "" }
	cfg, err := loadServeConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MemoryLimit != 100<<20 {
		t.Fatalf("default --memory-limit %d, want 100 MiB", cfg.MemoryLimit)
	}
	log := slog.New(slog.DiscardHandler)
	applyMemoryLimit(int64(cfg.MemoryLimit), noEnv, log)
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Fatalf("limit %d after the default, want 100 MiB", got)
	}
	// GOMEMLIMIT wins: the runtime read it at start; trackd leaves it.
	applyMemoryLimit(64<<20, func(k string) string {
		if k == "GOMEMLIMIT" {
			return "300MiB"
		}
		return ""
	}, log)
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Fatalf("limit %d with GOMEMLIMIT set, want it untouched", got)
	}
	cfg, err = loadServeConfig([]string{"--memory-limit", "0"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	applyMemoryLimit(int64(cfg.MemoryLimit), noEnv, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit %d with --memory-limit 0, want none", got)
	}
}

// TestNATSLimitsConfig: --nats-max-age and --nats-max-bytes parse, default
// to 0 (the sink's defaults) and refuse values too small to be meant.
func TestNATSLimitsConfig(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := loadServeConfig([]string{"--nats-max-age", "72h", "--nats-max-bytes", "10GiB"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATSMaxAge != 72*time.Hour || cfg.NATSMaxBytes != 10<<30 {
		t.Fatalf("max age %v, max bytes %d", cfg.NATSMaxAge, cfg.NATSMaxBytes)
	}
	if cfg, err = loadServeConfig(nil, noEnv, io.Discard); err != nil || cfg.NATSMaxAge != 0 || cfg.NATSMaxBytes != 0 {
		t.Fatalf("defaults: %v, %v, %d", err, cfg.NATSMaxAge, cfg.NATSMaxBytes)
	}
	for _, args := range [][]string{
		{"--nats-max-age", "1m", "--nats-dedup-window", "5m"},
		{"--nats-max-age", "1m", "--nats-url", "nats://127.0.0.1:4222"}, // its default window is 2m
		{"--nats-dedup-window", "200h"},                                 // over the default 7 days
	} {
		if _, err := loadServeConfig(args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "must be at least the duplicate window") {
			t.Errorf("%v: %v", args, err)
		}
	}
	for _, u := range []string{"nats://alice:S3cret%zzPW@127.0.0.1:4222", "nats://", "nats://h:4222,%zz"} {
		_, err := loadServeConfig([]string{"--nats-url", u}, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--nats-url: a URL does not parse") || strings.Contains(err.Error(), "S3cret") {
			t.Errorf("--nats-url %q: %v", u, err)
		}
	}
	for _, u := range []string{"nats://alice:pw@127.0.0.1:4222", "127.0.0.1:4222", "nats://a:4222, nats://b:4222", "tls://h:4222"} {
		if _, err := loadServeConfig([]string{"--nats-url", u}, noEnv, io.Discard); err != nil {
			t.Errorf("--nats-url %q: %v", u, err)
		}
	}
	if _, err := loadServeConfig([]string{"--nats-max-age", "1m"}, noEnv, io.Discard); err != nil {
		t.Errorf("1m with the embedded server's 1s window: %v", err)
	}
	_, err = loadServeConfig([]string{"--nats-max-age", "30s", "--nats-max-bytes", "1MiB"}, noEnv, io.Discard)
	for _, want := range []string{"--nats-max-age: at least 1m", "--nats-max-bytes: at least 16MiB"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
}

// TestConfigFilesBounded: a config or password file that is a device, a
// FIFO or huge is refused at once instead of being read without end.
func TestConfigFilesBounded(t *testing.T) {
	noEnv := func(string) string { return "" }
	big := filepath.Join(t.TempDir(), "big.json")
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(big, bytes.Repeat([]byte(" "), 2<<20), 0o600)
	for _, args := range [][]string{
		{"--config", "/dev/zero"},
		{"--config", big},
		{"--config", t.TempDir()},
		{"--config", fifo},
		{"--admin-user", "ops", "--admin-password-file", "/dev/zero"},
	} {
		if _, err := loadServeConfig(args, noEnv, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// testClient bounds every request of the tests: a server that stops
// answering fails the test instead of hanging it.
var testClient = &http.Client{Timeout: 30 * time.Second}

// call sends one request with Basic credentials and returns the answer
// (its body already read and closed).
func call(t *testing.T, method, url, site, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(site, key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// adminURL finds the admin listener's address in the banner.
func adminURL(t *testing.T, lines []string) string {
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "trackd: admin listening on "); ok {
			return "http://" + strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no admin address in the banner:\n%s", strings.Join(lines, "\n"))
	return ""
}

func TestServeCountsRejectionsByReasonAndWorkspace(t *testing.T) {
	base, lines, stop := startServe(t, t.TempDir(), "--workspace", "siteA:keyA", "--workspace", "siteB:keyB")
	defer stop()
	send := func(site, key, body string) int {
		return call(t, "POST", base+"/api/v1/customers/7/events", site, key, body).StatusCode
	}
	for i := 0; i < 3; i++ {
		if c := send("siteA", "keyA", ""); c != 400 {
			t.Fatalf("empty body: %d", c)
		}
	}
	if c := send("siteB", "keyB", `{"name":"ok"}`); c != 200 {
		t.Fatalf("good event: %d", c)
	}
	resp, err := http.Get(adminURL(t, lines) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`trackd_http_workspace_rejections_total{reason="empty_body",workspace="siteA"} 3`,
		`trackd_http_rejections_total{reason="empty_body",route="v1.event"} 3`,
		`trackd_http_requests_total{code="200",method="POST",route="v1.event"} 1`,
		`trackd_spool_records 1`,
		`trackd_spool_failed 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	resp, err = http.Get(adminURL(t, lines) + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestServeForwardsOverHTTP(t *testing.T) {
	got := make(chan []map[string]any, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var evs []map[string]any
		if r.Header.Get("Authorization") != "Bearer s3cret" || json.NewDecoder(r.Body).Decode(&evs) != nil {
			http.Error(w, "bad", 400)
			return
		}
		got <- evs
	}))
	defer recv.Close()
	base, _, stop := startServe(t, t.TempDir(), "--workspace", "s:k", "--forward=false",
		"--http-url", recv.URL, "--http-header", "Authorization: Bearer s3cret")
	defer stop()
	if code := call(t, "POST", base+"/api/v1/customers/42/events", "s", "k", `{"name":"bought"}`).StatusCode; code != 200 {
		t.Fatalf("status %d", code)
	}
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0]["type"] != "io.customer.track.v1.event" || evs[0]["subject"] != "42" || evs[0]["data"].(map[string]any)["name"] != "bought" {
			t.Fatalf("received %v", evs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nothing forwarded over HTTP within 30s")
	}
}

func TestServeForwardsToKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	base, _, stop := startServe(t, t.TempDir(), "--workspace", "s:k", "--forward=false",
		"--kafka-brokers", brokers, "--kafka-create-topic", "--kafka-partitions", "3")
	defer stop()
	if code := call(t, "POST", base+"/api/v1/customers/42/events", "s", "k", `{"name":"bought"}`).StatusCode; code != 200 {
		t.Fatalf("status %d", code)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("trackd"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("nothing forwarded to Kafka within 30s")
		}
		var got *kgo.Record
		fs.EachRecord(func(r *kgo.Record) { got = r })
		if got == nil {
			continue
		}
		hdr := map[string]string{}
		for _, h := range got.Headers {
			hdr[h.Key] = string(h.Value)
		}
		if string(got.Value) != `{"name":"bought"}` || string(got.Key) != "s/42" || hdr["ce_type"] != "io.customer.track.v1.event" {
			t.Fatalf("record key %q value %q headers %v", got.Key, got.Value, hdr)
		}
		return
	}
}

// TestServeIncidentReplay replays the incident trackd exists for: good
// traffic from several workspaces plus zero-sized requests from one of them.
// Every zero-sized request is 400 empty_body and stored nowhere, the process
// keeps serving, and the status page names empty_body and that workspace.
func TestServeIncidentReplay(t *testing.T) {
	dataDir := t.TempDir()
	base, lines, stop := startServe(t, dataDir, "--workspace", "good1:k1", "--workspace", "good2:k2", "--workspace", "migrating:k3", "--forward=false")
	send := func(site, key, body string) int {
		return call(t, "PUT", base+"/api/v1/customers/p1", site, key, body).StatusCode
	}
	good := 0
	for i := 0; i < 200; i++ {
		for _, c := range [][2]string{{"good1", "k1"}, {"good2", "k2"}, {"migrating", "k3"}} {
			if code := send(c[0], c[1], `{"email":"a@b.c"}`); code != 200 {
				t.Fatalf("good request: %d", code)
			}
			good++
		}
		if code := send("migrating", "k3", ""); code != 400 {
			t.Fatalf("zero-sized request: %d, want 400", code)
		}
	}
	resp, err := http.Get(adminURL(t, lines) + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Banner     string                  `json:"banner"`
		Reasons    []struct{ Name string } `json:"rejection_reasons_5m"`
		Workspaces []struct{ Name string } `json:"top_rejected_workspaces_5m"`
	}
	json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if len(d.Reasons) != 1 || d.Reasons[0].Name != "empty_body" || d.Workspaces[0].Name != "migrating" ||
		!strings.Contains(d.Banner, "empty_body from workspace migrating") {
		t.Fatalf("status: %+v", d)
	}
	checkStatusPageInChromium(t, adminURL(t, lines)+"/", "empty_body from workspace migrating")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, dataDir)
	if len(recs) != good {
		t.Fatalf("%d records stored, want the %d good requests only", len(recs), good)
	}
}

func TestReloadWorkspaces(t *testing.T) {
	dataDir := t.TempDir()
	os.WriteFile(filepath.Join(dataDir, workspacesFile), []byte(`{"workspaces":[{"site_id":"a","api_key":"ka"}]}`), 0o600)
	args := []string{"--data-dir", dataDir}
	cfg, err := loadServeConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := loadWorkspaces(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := auth.NewDirectory(ws)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dataDir, workspacesFile), []byte(`{"workspaces":[{"site_id":"a","api_key":"ka"},{"site_id":"b","api_key":"kb"}]}`), 0o600)
	if _, err := reloadWorkspaces(args, func(string) string { return "" }, dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := dir.Check("b", "kb"); !ok {
		t.Fatal("new workspace not served after reload")
	}
	// A broken file is refused and the running set kept.
	os.WriteFile(filepath.Join(dataDir, workspacesFile), []byte(`{"workspaces":`), 0o600)
	if _, err := reloadWorkspaces(args, func(string) string { return "" }, dir); err == nil {
		t.Fatal("reload accepted a broken workspaces file")
	}
	if _, ok := dir.Check("b", "kb"); !ok {
		t.Fatal("a failed reload changed the running workspaces")
	}
	// A missing file too: a new random workspace would lock every client out.
	os.Remove(filepath.Join(dataDir, workspacesFile))
	if _, err := reloadWorkspaces(args, func(string) string { return "" }, dir); err == nil || !strings.Contains(err.Error(), "was missing") {
		t.Fatalf("reload with the file gone: %v", err)
	}
	if _, ok := dir.Check("b", "kb"); !ok {
		t.Fatal("a reload with the file gone changed the running workspaces")
	}
}

// checkStatusPageInChromium renders the status page in headless Chromium
// and checks the rendered DOM shows the banner naming the cause. With
// TRACKD_SCREENSHOT=FILE it also saves a screenshot (docs/status.png is made
// that way). Without Chromium the check is skipped, except in CI, where the
// test command installs it.
func checkStatusPageInChromium(t *testing.T, url, want string) {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found; the test command installs it (Debian package chromium)")
		}
		t.Log("chromium not found: status page not checked in a browser")
		return
	}
	run := func(extra ...string) []byte {
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir()}, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append(args, url)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", extra, err)
		}
		return out
	}
	dom := string(run("--dump-dom"))
	if !strings.Contains(dom, `id="banner"`) || !strings.Contains(dom, want) {
		t.Fatalf("the status page in Chromium lacks the banner %q:\n%.1500s", want, dom)
	}
	if shot := os.Getenv("TRACKD_SCREENSHOT"); shot != "" {
		run("--screenshot="+shot, "--window-size=1200,1100", "--hide-scrollbars")
	}
}

// TestForwardDownIsInTheMetrics: a destination that cannot be set up (here
// a NATS URL where nothing listens) has no forwarder and so none of its
// metrics; trackd_forward_up (0) and trackd_forward_setup_failures_total
// show it, for the TrackdForwardDown alert.
func TestForwardDownIsInTheMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, lines, stop := startServe(t, t.TempDir(), "--nats-url", "nats://"+dead)
	defer stop()
	admin := ""
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "trackd: admin listening on "); ok {
			admin = strings.Fields(rest)[0]
		}
	}
	if admin == "" {
		t.Fatalf("no admin address in\n%s", strings.Join(lines, "\n"))
	}
	resp, err := testClient.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`trackd_forward_up{destination="jetstream"} 0`, `trackd_forward_setup_failures_total{destination="jetstream"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestCapListener: past max open connections, a new one is closed at once;
// closing one makes room again.
func TestCapListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &capListener{Listener: inner, max: 2}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second)) // a bound for the test only
		return c
	}
	dial()
	dial()
	first, second := <-accepted, <-accepted
	third := dial()
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatal("a third connection was kept open")
	}
	first.Close()
	first.Close() // counted out once
	dial()
	<-accepted // room again
	second.Close()
	if n := ln.open.Load(); n != 1 {
		t.Fatalf("%d open, want 1", n)
	}
}
