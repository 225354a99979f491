package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/trackd/trackd/internal/cli"
)

func TestServeAdminCredentialsConfig(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "admin-password")
	os.WriteFile(pwFile, []byte("s3cret-from-file\n"), 0o600)
	emptyFile := filepath.Join(dir, "empty")
	os.WriteFile(emptyFile, []byte("\n"), 0o600)
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // problems; none: the configuration is accepted
		user    string
		secret  string
		hideArg string // must not appear in any problem
	}{
		{name: "loopback without credentials", args: []string{"--admin-listen", "127.0.0.1:8081"}},
		{name: "loopback with credentials", args: []string{"--admin-user", "ops", "--admin-password", "pw"}, user: "ops", secret: "pw"},
		{name: "all interfaces without credentials", args: []string{"--admin-listen", ":8081"},
			want: []string{`--admin-listen ":8081" is not a loopback address: set --admin-user and --admin-password`}},
		{name: "public address without credentials", args: []string{"--admin-listen", "0.0.0.0:8081"},
			want: []string{`--admin-listen "0.0.0.0:8081" is not a loopback address`}},
		{name: "host name without credentials", args: []string{"--admin-listen", "admin.internal:8081"},
			want: []string{`--admin-listen "admin.internal:8081" is not a loopback address`}},
		{name: "public address with a password", args: []string{"--admin-listen", "0.0.0.0:8081", "--admin-user", "ops", "--admin-password", "hunter2hunter2"},
			user: "ops", secret: "hunter2hunter2"},
		{name: "public address with a password file", args: []string{"--admin-listen", "[::]:8081", "--admin-user", "ops", "--admin-password-file", pwFile},
			user: "ops", secret: "s3cret-from-file"},
		{name: "credentials from the environment", args: []string{"--admin-listen", "0.0.0.0:8081"},
			env: map[string]string{"TRACKD_ADMIN_USER": "ops", "TRACKD_ADMIN_PASSWORD": "from-env"}, user: "ops", secret: "from-env"},
		{name: "user without password", args: []string{"--admin-listen", "0.0.0.0:8081", "--admin-user", "ops"},
			want: []string{"--admin-user: needs --admin-password or --admin-password-file"}},
		{name: "password without user", args: []string{"--admin-password", "pw-no-user"},
			want: []string{"--admin-password, --admin-password-file: need --admin-user"}, hideArg: "pw-no-user"},
		{name: "both password and file", args: []string{"--admin-user", "ops", "--admin-password", "pw-both", "--admin-password-file", pwFile},
			want: []string{"give one, not both"}, hideArg: "pw-both"},
		{name: "missing password file", args: []string{"--admin-user", "ops", "--admin-password-file", filepath.Join(dir, "nope")},
			want: []string{"--admin-password-file: open "}},
		{name: "empty password file", args: []string{"--admin-user", "ops", "--admin-password-file", emptyFile},
			want: []string{"--admin-password-file " + emptyFile + ": empty"}},
		{name: "colon in user", args: []string{"--admin-user", "a:b", "--admin-password", "pw-colon"},
			want: []string{"--admin-user: must not contain ':'"}, hideArg: "pw-colon"},
		{name: "bad public address", args: []string{"--public-listen", "nope"}, want: []string{`--public-listen "nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadServeConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.AdminUser != tc.user || cfg.adminSecret != tc.secret {
					t.Fatalf("credentials %q %q, want %q %q", cfg.AdminUser, cfg.adminSecret, tc.user, tc.secret)
				}
				return
			}
			if code := cli.ExitCode("trackd", err, io.Discard); code != 2 {
				t.Fatalf("exit %d, want 2: %v", code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
			}
			if tc.hideArg != "" && strings.Contains(err.Error(), tc.hideArg) {
				t.Errorf("a problem shows the password: %v", err)
			}
		})
	}
}

// TestServeRefusesAnExposedAdminListenerWithoutCredentials: the whole
// command, not just the configuration, exits 2 before listening.
func TestServeRefusesAnExposedAdminListenerWithoutCredentials(t *testing.T) {
	var out strings.Builder
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--admin-listen", "0.0.0.0:0", "--listen", "127.0.0.1:0"},
		func(string) string { return "" }, &out, &out)
	if code := cli.ExitCode("trackd", err, &out); code != 2 {
		t.Fatalf("exit %d, want 2: %v", code, err)
	}
	if !strings.Contains(out.String(), "trackd: --admin-listen \"0.0.0.0:0\" is not a loopback address: set --admin-user and --admin-password (or --admin-password-file)") {
		t.Fatalf("message:\n%s", out.String())
	}
}

func TestServeConfigLogMasksSecrets(t *testing.T) {
	cfg, err := loadServeConfig([]string{
		"--admin-user", "ops", "--admin-password", "adminpw-123",
		"--workspace", "site1:apikey-456",
		"--nats-url", "nats://natsuser:natspw-789@nats.internal:4222", "--nats-token", "tok-000",
		"--http-url", "https://hooks.example/in?key=httpkey-111", "--http-header", "Authorization: Bearer hdr-222",
		"--kafka-brokers", "k:9092", "--kafka-password", "kafkapw-333",
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, a := range cfg.logAttrs() {
		fmt.Fprintln(&b, a)
	}
	shown := b.String()
	for _, secret := range []string{"adminpw-123", "apikey-456", "natspw-789", "natsuser", "tok-000", "httpkey-111", "hdr-222", "kafkapw-333"} {
		if strings.Contains(shown, secret) {
			t.Errorf("the configuration log shows %q:\n%s", secret, shown)
		}
	}
	for _, want := range []string{"admin-user=ops", "admin-password=***", "workspace=site1:***", "nats.internal:4222", "kafka-password=***", "admin-listen=127.0.0.1:8081"} {
		if !strings.Contains(shown, want) {
			t.Errorf("the configuration log lacks %q:\n%s", want, shown)
		}
	}
}

// TestServeAdminCredentialsAndPublicListener runs trackd with admin
// credentials (on loopback, where they apply too) and a public listener.
func TestServeAdminCredentialsAndPublicListener(t *testing.T) {
	dataDir := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("correct horse battery staple\n"), 0o600)
	publicAddr := freePort(t)
	base, lines, stop := startServe(t, dataDir, "--workspace", "s:k", "--forward=false",
		"--admin-user", "ops", "--admin-password-file", pwFile, "--public-listen", publicAddr)
	stop = sync.OnceValue(stop) // stopped below, or on an early failure
	defer stop()
	if c := call(t, "POST", base+"/api/v1/customers/7/events", "s", "k", "").StatusCode; c != 400 {
		t.Fatalf("empty body: %d", c)
	}
	admin := adminURL(t, lines)
	get := func(url, user, pass string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/", "/status.json", "/metrics", "/debug/pprof/"} {
		if code, _ := get(admin+path, "", ""); code != 401 {
			t.Errorf("admin %s without credentials: %d, want 401", path, code)
		}
		if code, _ := get(admin+path, "ops", "wrong"); code != 401 {
			t.Errorf("admin %s with a wrong password: %d, want 401", path, code)
		}
		if code, _ := get(admin+path, "ops", "correct horse battery staple"); code != 200 {
			t.Errorf("admin %s with the credentials: %d, want 200", path, code)
		}
	}
	if _, body := get(admin+"/metrics", "ops", "correct horse battery staple"); !strings.Contains(body, `trackd_http_workspace_rejections_total{reason="empty_body",workspace="s"} 1`) {
		t.Errorf("/metrics lacks the workspace's rejection:\n%.2000s", body)
	}
	if _, body := get(admin+"/metrics", "ops", "correct horse battery staple"); !strings.Contains(body, `trackd_admin_auth_failures_total{result="refused"} 8`) {
		t.Errorf("/metrics does not count the 8 refused admin requests:\n%.2000s", body)
	}
	for _, path := range []string{"/healthz", "/readyz", "/public/", "/public/api/v2/summary.json"} {
		if code, _ := get(admin+path, "", ""); code != 200 {
			t.Errorf("admin %s without credentials: %d, want 200", path, code)
		}
	}

	public := "http://" + publicAddr
	for _, path := range []string{"/", "/api/v2/summary.json", "/api/v2/status.json", "/public/api/v2/summary.json"} {
		code, body := get(public+path, "", "")
		if code != 200 || !strings.Contains(body, "Data Collection API (us)") && strings.Contains(path, "summary") {
			t.Errorf("public %s: %d\n%s", path, code, body)
		}
		if strings.Contains(body, "empty_body") || strings.Contains(body, `"s"`) {
			t.Errorf("public %s leaks internal detail:\n%s", path, body)
		}
	}
	for _, path := range []string{"/metrics", "/status.json", "/healthz", "/debug/pprof/"} {
		if code, _ := get(public+path, "ops", "correct horse battery staple"); code != 404 {
			t.Errorf("public %s: %d, want 404 (the public listener serves the public view only)", path, code)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
