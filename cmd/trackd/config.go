package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/sink/jetstream"
)

// serveConfig is `trackd serve`'s configuration. Each field is a flag; each
// flag can also be set in the config file (--config, a JSON object keyed by
// flag name) and by the environment variable TRACKD_<FLAG> (upper case,
// dashes as underscores). Precedence: flags, then environment, then file,
// then the defaults below.
type serveConfig struct {
	Config          string
	Listen          string
	AdminListen     string
	DataDir         string
	Region          string
	Workspaces      workspaceList
	Durability      string
	SpoolMaxBytes   byteSize
	SpoolMinFree    byteSize
	SpoolSegment    byteSize
	MemoryLimit     byteSize
	SpoolRetention  time.Duration
	RateLimit       float64
	RateBurst       int
	MaxConns        int
	ShutdownTimeout time.Duration
	DrainGrace      time.Duration
	LogFormat       string

	// Forwarding to NATS JetStream: the embedded server unless NATSURL.
	NATSListen     string
	NATSURL        string
	NATSSyncAlways bool
	NATSCreds      string
	NATSUser       string
	NATSPassword   string
	NATSToken      string
	NATSTLSCA      string
	NATSTLSCert    string
	NATSTLSKey     string
	NATSStream     string
	NATSPrefix     string
	NATSReplicas   int
	NATSDedup      time.Duration
	NATSMaxAge     time.Duration
	NATSMaxBytes   byteSize
	Forward        bool

	// Forwarding over HTTP, when HTTPURL is set.
	HTTPURL     string
	HTTPMode    string
	HTTPHeaders headerList
	HTTPTimeout time.Duration

	// Forwarding to Kafka, when KafkaBrokers is set.
	KafkaBrokers     string
	KafkaTopic       string
	KafkaCreateTopic bool
	KafkaPartitions  int
	KafkaReplication int
	KafkaTLS         bool
	KafkaTLSCA       string
	KafkaTLSCert     string
	KafkaTLSKey      string
	KafkaSASL        string
	KafkaUser        string
	KafkaPassword    string

	// The admin listener's HTTP Basic credentials; required when it
	// listens on a non-loopback address (see checkAdmin).
	AdminUser         string
	AdminPassword     string
	AdminPasswordFile string
	// PublicListen, if set, serves only the public status view on a
	// listener of its own.
	PublicListen string

	// adminSecret is the admin password, from --admin-password or
	// --admin-password-file (set by validate).
	adminSecret string
	// shown is every setting, secrets masked, for the startup log.
	shown []any
}

// headerList is the repeatable --http-header "Name: value" flag.
type headerList []string

func (h *headerList) String() string { return fmt.Sprintf("%d headers", len(*h)) }
func (h *headerList) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("want \"Name: value\"")
	}
	*h = append(*h, strings.TrimSpace(name)+":"+strings.TrimSpace(value))
	return nil
}

func (h headerList) values() map[string]string {
	m := make(map[string]string, len(h))
	for _, kv := range h {
		name, value, _ := strings.Cut(kv, ":")
		m[name] = value
	}
	return m
}

// workspaceList is the repeatable --workspace SITE_ID:API_KEY flag.
type workspaceList []string

func (w *workspaceList) String() string { return strings.Join(*w, ",") }
func (w *workspaceList) Set(v string) error {
	*w = append(*w, v)
	return nil
}

// byteSize is a size flag: a number of bytes with an optional KiB, MiB,
// GiB or TiB suffix (KB, MB, GB also mean powers of 1024).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Set(v string) error {
	n, err := parseByteSize(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseByteSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffixes []string
		mult     int64
	}{
		{[]string{"TiB", "TB", "T"}, 1 << 40},
		{[]string{"GiB", "GB", "G"}, 1 << 30},
		{[]string{"MiB", "MB", "M"}, 1 << 20},
		{[]string{"KiB", "KB", "K"}, 1 << 10},
		{[]string{"B"}, 1},
	} {
		found := false
		for _, suf := range u.suffixes {
			if strings.HasSuffix(s, suf) {
				s, mult, found = strings.TrimSpace(strings.TrimSuffix(s, suf)), u.mult, true
				break
			}
		}
		if found {
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: want bytes, or a number with KiB, MiB, GiB or TiB", v)
	}
	return n * mult, nil
}

// serveFlags defines the flags of `trackd serve` on fs, bound to cfg.
func serveFlags(fs *flag.FlagSet, cfg *serveConfig) {
	fs.StringVar(&cfg.Config, "config", "", "config file (JSON object keyed by flag name)")
	fs.StringVar(&cfg.Listen, "listen", ":8080", "Track API listen address")
	fs.StringVar(&cfg.AdminListen, "admin-listen", "127.0.0.1:8081", "admin listener (status page, metrics, health, pprof); a non-loopback address requires --admin-user and a password")
	fs.StringVar(&cfg.AdminUser, "admin-user", "", "user the admin listener requires (HTTP Basic auth) on every path but /healthz, /readyz and /public/")
	fs.StringVar(&cfg.AdminPassword, "admin-password", "", "password for --admin-user (prefer --admin-password-file or TRACKD_ADMIN_PASSWORD: a flag shows in the process list); never logged")
	fs.StringVar(&cfg.AdminPasswordFile, "admin-password-file", "", "file holding the password for --admin-user (trailing newlines ignored)")
	fs.StringVar(&cfg.PublicListen, "public-listen", "", "also serve the public status view (only that: /, /api/v2/summary.json) on this address, to expose to customers (empty: off)")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "data directory (spool, workspaces)")
	fs.StringVar(&cfg.Region, "region", "us", "this node's region: us or eu")
	fs.Var(&cfg.Workspaces, "workspace", "a workspace as SITE_ID:API_KEY (repeatable); none: use or create one in the data dir")
	fs.StringVar(&cfg.Durability, "durability", "fsync", "fsync (a 2xx means fsynced to the spool) or memory (weaker: the page cache only)")
	cfg.SpoolMaxBytes = 16 << 30
	fs.Var(&cfg.SpoolMaxBytes, "spool-max-bytes", "spool byte budget; past it the API answers 503")
	cfg.SpoolMinFree = 512 << 20
	fs.Var(&cfg.SpoolMinFree, "spool-min-free", "free disk space kept; below it the API answers 503")
	cfg.SpoolSegment = 64 << 20
	fs.Var(&cfg.SpoolSegment, "spool-segment-size", "spool segment size")
	cfg.MemoryLimit = defaultMemoryLimit
	fs.Var(&cfg.MemoryLimit, "memory-limit", "soft limit on the Go heap (the runtime collects harder as it nears it; 0: none); the GOMEMLIMIT environment variable wins when set")
	fs.DurationVar(&cfg.SpoolRetention, "spool-retention", 15*time.Minute, "how long records stay in the spool after every destination acknowledged them")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 0, "requests per second allowed per workspace (0: no limit)")
	fs.IntVar(&cfg.RateBurst, "rate-burst", 0, "rate limit burst (0: one second's worth)")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "most Track API connections kept open; past it an idle one is closed for a new one, or the new one gets 503 (0: from the open-file limit, at most 8192)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long a graceful stop may take")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "log lines on stderr as json (log/slog JSON) or text (key=value)")
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", time.Second, "on a stop or upgrade, how long keep-alive connections get to close after their last answer before idle ones are closed")

	fs.BoolVar(&cfg.Forward, "forward", true, "forward stored records to NATS JetStream (false: store only)")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "client address of the embedded NATS server (JetStream under <data-dir>/jetstream)")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "use this external NATS server (or comma-separated seeds) instead of the embedded one")
	fs.BoolVar(&cfg.NATSSyncAlways, "nats-sync-always", false, "make the embedded JetStream fsync every write before it acks it")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&cfg.NATSUser, "nats-user", "", "NATS user")
	fs.StringVar(&cfg.NATSPassword, "nats-password", "", "NATS password")
	fs.StringVar(&cfg.NATSToken, "nats-token", "", "NATS token")
	fs.StringVar(&cfg.NATSTLSCA, "nats-tls-ca", "", "CA bundle to verify the NATS server")
	fs.StringVar(&cfg.NATSTLSCert, "nats-tls-cert", "", "client certificate for NATS mutual TLS")
	fs.StringVar(&cfg.NATSTLSKey, "nats-tls-key", "", "client key for NATS mutual TLS")
	fs.StringVar(&cfg.NATSStream, "nats-stream", "TRACKD", "JetStream stream (created if absent, verified if present)")
	fs.StringVar(&cfg.NATSPrefix, "nats-subject-prefix", "trackd", "subject prefix: subjects are <prefix>.<region>.<workspace>.<operation>")
	fs.IntVar(&cfg.NATSReplicas, "nats-replicas", 1, "stream replicas when trackd creates the stream (3 for a cluster)")
	fs.DurationVar(&cfg.NATSDedup, "nats-dedup-window", 0, "JetStream duplicate window for a stream trackd creates (0: 1s for the embedded server, whose memory it bounds, as the sink's resume check drops resends after a crash; 2m for --nats-url)")

	fs.DurationVar(&cfg.NATSMaxAge, "nats-max-age", 0, "how long the JetStream stream keeps messages; consumers must read within it (0: 7 days; applied to the embedded stream at every start, and to an existing --nats-url stream only when set)")
	fs.Var(&cfg.NATSMaxBytes, "nats-max-bytes", "cap on the JetStream stream's size, past which its oldest messages are discarded (0: no cap of its own: the JetStream store's limit applies, and once the store is full publishes fail and records wait in the spool; applied to the embedded stream at every start, and to an existing --nats-url stream only when set)")

	fs.StringVar(&cfg.HTTPURL, "http-url", "", "also forward to this HTTP endpoint (CloudEvents over HTTP)")
	fs.StringVar(&cfg.HTTPMode, "http-mode", "batch", "batch (one POST of a CloudEvents JSON array per batch) or single (one POST per record)")
	fs.Var(&cfg.HTTPHeaders, "http-header", "a header sent with every HTTP request, \"Name: value\" (repeatable; e.g. Authorization); never logged")
	fs.DurationVar(&cfg.HTTPTimeout, "http-timeout", 10*time.Second, "timeout of one HTTP request")

	fs.StringVar(&cfg.KafkaBrokers, "kafka-brokers", "", "also forward to Kafka: comma-separated seed brokers host:port")
	fs.StringVar(&cfg.KafkaTopic, "kafka-topic", "trackd", "Kafka topic")
	fs.BoolVar(&cfg.KafkaCreateTopic, "kafka-create-topic", false, "create the topic if it is missing")
	fs.IntVar(&cfg.KafkaPartitions, "kafka-partitions", 0, "partitions when creating the topic (0: the broker's default)")
	fs.IntVar(&cfg.KafkaReplication, "kafka-replication-factor", 0, "replication factor when creating the topic (0: the broker's default)")
	fs.BoolVar(&cfg.KafkaTLS, "kafka-tls", false, "connect to Kafka over TLS")
	fs.StringVar(&cfg.KafkaTLSCA, "kafka-tls-ca", "", "CA bundle to verify the brokers (implies --kafka-tls)")
	fs.StringVar(&cfg.KafkaTLSCert, "kafka-tls-cert", "", "client certificate for Kafka mutual TLS")
	fs.StringVar(&cfg.KafkaTLSKey, "kafka-tls-key", "", "client key for Kafka mutual TLS")
	fs.StringVar(&cfg.KafkaSASL, "kafka-sasl", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&cfg.KafkaUser, "kafka-user", "", "SASL user")
	fs.StringVar(&cfg.KafkaPassword, "kafka-password", "", "SASL password")
}

// envName is the environment variable for a flag.
func envName(flagName string) string {
	return "TRACKD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadServeConfig builds the configuration from flags, environment and the
// config file, and validates it. Every problem is reported at once, as a
// *cli.UsageError.
func loadServeConfig(args []string, getenv func(string) string, stderr io.Writer) (*serveConfig, error) {
	cfg := &serveConfig{}
	fs := cli.NewFlagSet("serve", stderr)
	serveFlags(fs, cfg)
	if err := cli.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	onCmdline := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCmdline[f.Name] = true })

	var problems []string
	set := func(name, value, source string) {
		if err := fs.Set(name, value); err != nil {
			problems = append(problems, fmt.Sprintf("%s: --%s=%q: %v", source, name, value, err))
		}
	}
	// The config file's name may itself come from the environment.
	if !onCmdline["config"] {
		if v := getenv(envName("config")); v != "" {
			cfg.Config = v
		}
	}
	fileValues := map[string][]string{}
	if cfg.Config != "" {
		vals, err := readConfigFile(cfg.Config)
		if err != nil {
			problems = append(problems, err.Error())
		}
		fileValues = vals
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	for _, name := range names {
		if onCmdline[name] || name == "config" {
			continue
		}
		if v := getenv(envName(name)); v != "" {
			vals := []string{v}
			if name == "workspace" {
				vals = strings.Split(v, ",")
			}
			for _, v := range vals {
				set(name, strings.TrimSpace(v), envName(name))
			}
			continue
		}
		for _, v := range fileValues[name] {
			set(name, v, cfg.Config)
		}
	}
	for name := range fileValues {
		if fs.Lookup(name) == nil || name == "config" {
			problems = append(problems, fmt.Sprintf("%s: unknown setting %q", cfg.Config, name))
		}
	}
	problems = append(problems, cfg.validate()...)
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &cli.UsageError{Problems: problems}
	}
	cfg.shown = shownSettings(fs)
	return cfg, nil
}

// readConfigFile reads a JSON object keyed by flag name. Values may be
// strings, numbers, booleans, or (for repeatable flags) arrays of those.
func readConfigFile(name string) (map[string][]string, error) {
	b, err := readSmallFile(name, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("config file: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %v", name, err)
	}
	out := make(map[string][]string, len(raw))
	for k, v := range raw {
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			list = []json.RawMessage{v}
		}
		for _, item := range list {
			var s string
			if err := json.Unmarshal(item, &s); err != nil {
				s = string(item) // a number or boolean, as written
			}
			out[k] = append(out[k], s)
		}
	}
	return out, nil
}

// validate returns every problem with the configuration.
func (c *serveConfig) validate() []string {
	var p []string
	checkAddr := func(flagName, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			p = append(p, fmt.Sprintf("--%s %q: %v", flagName, addr, err))
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			p = append(p, fmt.Sprintf("--%s %q: bad port", flagName, addr))
		}
	}
	checkAddr("listen", c.Listen)
	checkAddr("admin-listen", c.AdminListen)
	p = append(p, c.checkAdmin()...)
	if c.PublicListen != "" {
		checkAddr("public-listen", c.PublicListen)
	}
	if c.DataDir == "" {
		p = append(p, "--data-dir: must not be empty")
	}
	if c.Region != "us" && c.Region != "eu" {
		p = append(p, fmt.Sprintf("--region %q: want us or eu", c.Region))
	}
	seen := map[string]bool{}
	for _, w := range c.Workspaces {
		site, key, ok := strings.Cut(w, ":")
		switch {
		case !ok || site == "" || key == "":
			p = append(p, fmt.Sprintf("--workspace %q: want SITE_ID:API_KEY", redactWorkspace(w)))
		case seen[site]:
			p = append(p, fmt.Sprintf("--workspace: site ID %q given twice", site))
		}
		seen[site] = true
	}
	if c.Durability != "fsync" && c.Durability != "memory" {
		p = append(p, fmt.Sprintf("--durability %q: want fsync or memory", c.Durability))
	}
	if c.SpoolSegment < 2<<20 {
		p = append(p, "--spool-segment-size: at least 2MiB")
	}
	if c.SpoolRetention < 0 {
		p = append(p, "--spool-retention: must not be negative")
	}
	if c.MaxConns < 0 {
		p = append(p, fmt.Sprintf("--max-conns %d: must not be negative", c.MaxConns))
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		p = append(p, "--rate-limit, --rate-burst: must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		p = append(p, "--shutdown-timeout: must be positive")
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		p = append(p, fmt.Sprintf("--log-format %q: want json or text", c.LogFormat))
	}
	if c.DrainGrace < 0 || c.DrainGrace >= c.ShutdownTimeout {
		p = append(p, "--drain-grace: from 0 to less than --shutdown-timeout")
	}
	if c.NATSURL == "" {
		checkAddr("nats-listen", c.NATSListen)
	}
	if c.NATSURL != "" && !natsURLsParse(c.NATSURL) {
		// Never quoted: it may hold a password.
		p = append(p, "--nats-url: a URL does not parse (want nats://[user:password@]host:port, comma-separated; special characters in a password percent-encoded)")
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		p = append(p, "--nats-replicas: 1 to 5")
	}
	if c.NATSDedup < 0 {
		p = append(p, "--nats-dedup-window: must not be negative")
	}
	if c.NATSMaxAge < 0 || (c.NATSMaxAge > 0 && c.NATSMaxAge < time.Minute) {
		p = append(p, "--nats-max-age: at least 1m (or 0 for the default)")
	}
	if c.NATSMaxBytes != 0 && c.NATSMaxBytes < 16<<20 {
		p = append(p, "--nats-max-bytes: at least 16MiB (or 0 for no cap)")
	}
	if maxAge := cmp.Or(c.NATSMaxAge, jetstream.DefaultMaxAge); c.NATSMaxAge >= 0 && c.NATSDedup >= 0 && c.natsDedupWindow() > maxAge {
		// JetStream refuses such a stream: forwarding would never start.
		p = append(p, fmt.Sprintf("--nats-max-age %s: must be at least the duplicate window (%s; --nats-dedup-window)", maxAge, c.natsDedupWindow()))
	}
	if c.HTTPURL != "" {
		if u, err := url.Parse(c.HTTPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p = append(p, "--http-url: want an http:// or https:// URL")
		}
		if c.HTTPMode != "batch" && c.HTTPMode != "single" {
			p = append(p, fmt.Sprintf("--http-mode %q: want batch or single", c.HTTPMode))
		}
		if c.HTTPTimeout <= 0 {
			p = append(p, "--http-timeout: must be positive")
		}
	}
	if c.KafkaBrokers != "" {
		for _, b := range strings.Split(c.KafkaBrokers, ",") {
			if _, _, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil {
				p = append(p, fmt.Sprintf("--kafka-brokers: %q is not host:port", b))
			}
		}
		if c.KafkaPartitions < 0 || c.KafkaReplication < 0 || c.KafkaReplication > 32767 || c.KafkaPartitions > 1<<20 {
			p = append(p, "--kafka-partitions, --kafka-replication-factor: out of range")
		}
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		p = append(p, "--nats-tls-cert and --nats-tls-key go together")
	}
	return p
}

// checkAdmin validates the admin listener's credentials and reads
// --admin-password-file into adminSecret. Credentials are optional on a
// loopback address (and then apply there too); on any other address,
// including all interfaces (":8081"), trackd refuses to start without them:
// the admin listener serves pprof, metrics and workspace IDs.
func (c *serveConfig) checkAdmin() []string {
	var p []string
	c.adminSecret = c.AdminPassword
	hasPassword := c.AdminPassword != "" || c.AdminPasswordFile != ""
	switch {
	case c.AdminPassword != "" && c.AdminPasswordFile != "":
		p = append(p, "--admin-password, --admin-password-file: give one, not both")
	case c.AdminPasswordFile != "":
		b, err := readSmallFile(c.AdminPasswordFile, 4<<10)
		if err != nil {
			p = append(p, fmt.Sprintf("--admin-password-file: %v", err))
			break
		}
		c.adminSecret = strings.TrimRight(string(b), "\r\n")
		if c.adminSecret == "" {
			p = append(p, fmt.Sprintf("--admin-password-file %s: empty", c.AdminPasswordFile))
		}
	}
	switch {
	case c.AdminUser != "" && !hasPassword:
		p = append(p, "--admin-user: needs --admin-password or --admin-password-file")
	case c.AdminUser == "" && hasPassword:
		p = append(p, "--admin-password, --admin-password-file: need --admin-user")
	case strings.ContainsFunc(c.AdminUser, func(r rune) bool { return r == ':' || unicode.IsControl(r) }):
		p = append(p, "--admin-user: must not contain ':' or control characters")
	}
	if host, _, err := net.SplitHostPort(c.AdminListen); err == nil && !isLoopback(host) && c.AdminUser == "" {
		p = append(p, fmt.Sprintf("--admin-listen %q is not a loopback address: set --admin-user and --admin-password (or --admin-password-file) so that the admin listener requires credentials", c.AdminListen))
	}
	return p
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactWorkspace hides the API key of a SITE_ID:API_KEY pair in messages.
func redactWorkspace(w string) string {
	if site, _, ok := strings.Cut(w, ":"); ok {
		return site + ":***"
	}
	return w
}

// logAttrs is the effective configuration for the startup log, every
// secret masked: log.Info("configuration", cfg.logAttrs()...).
func (c *serveConfig) logAttrs() []any { return c.shown }

// shownSettings returns every flag's value as slog attributes, masking
// secrets: passwords and tokens show as "***" when set, workspaces as
// SITE_ID:***, URLs without their user info and query values, headers as a
// count.
func shownSettings(fs *flag.FlagSet) []any {
	var out []any
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		switch {
		case f.Name == "workspace":
			ws := *f.Value.(*workspaceList)
			masked := make([]string, len(ws))
			for i, w := range ws {
				masked[i] = redactWorkspace(w)
			}
			v = strings.Join(masked, ",")
		case f.Name == "nats-url" || f.Name == "http-url":
			v = maskURLs(v)
		case (strings.Contains(f.Name, "password") || strings.Contains(f.Name, "token") || strings.Contains(f.Name, "secret")) &&
			!strings.HasSuffix(f.Name, "-file"):
			if v != "" {
				v = "***"
			}
		}
		out = append(out, slog.String(f.Name, v))
	})
	return out
}

// maskURLs hides the user info and query values of a URL, or of
// comma-separated URLs.
func maskURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "***"
			continue
		}
		if u.User != nil {
			u.User = url.User("***")
		}
		if u.RawQuery != "" {
			q := u.Query()
			for k := range q {
				q[k] = []string{"***"}
			}
			u.RawQuery = q.Encode()
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// natsURLsParse reports whether every one of the comma-separated NATS URLs
// parses, with a host (host:port alone is read as nats://host:port, as the
// NATS client does).
func natsURLsParse(urls string) bool {
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		if pu, err := url.Parse(u); err != nil || pu.Host == "" {
			return false
		}
	}
	return true
}

// natsDedupWindow is the duplicate window of a stream trackd creates:
// --nats-dedup-window, else 1 s for the embedded server (its memory grows
// with the window) and 2 minutes for --nats-url.
func (c *serveConfig) natsDedupWindow() time.Duration {
	switch {
	case c.NATSDedup > 0:
		return c.NATSDedup
	case c.NATSURL == "":
		return jetstream.EmbeddedDuplicateWindow
	}
	return jetstream.DefaultDuplicateWindow
}

// readSmallFile reads a regular file of at most max bytes: a configuration
// or secret file that is a device (/dev/zero), a FIFO or huge is refused
// rather than read without end.
func readSmallFile(name string, max int64) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0) // a FIFO must not block the open
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, at most %d", name, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%s: over %d bytes", name, max)
	}
	return b, err
}
