package jetstream

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedStartStop(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") {
		t.Errorf("ClientURL = %q", e.ClientURL())
	}
	// A client can use JetStream at once.
	js := rawJS(t, e.ClientURL())
	if _, err := js.AccountInfo(testCtx(t)); err != nil {
		t.Fatalf("jetstream account info: %v", err)
	}

	addr := e.Addr().String()
	e.Shutdown()
	e.Shutdown() // idempotent
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Shutdown", addr)
	}
}

func TestEmbeddedAllAddresses(t *testing.T) {
	e := startEmbedded(t, "", ":-1")
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") {
		t.Errorf("ClientURL = %q, want the loopback address", e.ClientURL())
	}
	if _, err := rawJS(t, e.ClientURL()).AccountInfo(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedStoreUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := StartEmbedded(EmbeddedOptions{Dir: file, Listen: "127.0.0.1:-1"})
	if err == nil {
		e.Shutdown()
		t.Fatal("started with a file as its store directory")
	}
	t.Log(err)
}

func TestEmbeddedPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Listen: l.Addr().String()})
	if err == nil {
		e.Shutdown()
		t.Fatal("started on a port another listener holds")
	}
	if !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q should name the address and the cause", err)
	}
}

func TestEmbeddedBadOptions(t *testing.T) {
	for name, opts := range map[string]EmbeddedOptions{
		"no dir":       {Listen: "127.0.0.1:-1"},
		"bad address":  {Dir: t.TempDir(), Listen: "localhost"},
		"bad port":     {Dir: t.TempDir(), Listen: "127.0.0.1:http"},
		"port too big": {Dir: t.TempDir(), Listen: "127.0.0.1:70000"},
	} {
		t.Run(name, func(t *testing.T) {
			if e, err := StartEmbedded(opts); err == nil {
				e.Shutdown()
				t.Fatal("started")
			}
		})
	}
}

func TestEmbeddedSync(t *testing.T) {
	for _, tc := range []struct {
		name         string
		opts         EmbeddedOptions
		wantAlways   bool
		wantInterval time.Duration
	}{
		{"default", EmbeddedOptions{}, false, 2 * time.Minute},
		{"always", EmbeddedOptions{SyncAlways: true}, true, 2 * time.Minute},
		{"interval", EmbeddedOptions{SyncInterval: 5 * time.Second}, false, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Dir = t.TempDir()
			tc.opts.Listen = "127.0.0.1:-1"
			e, err := StartEmbedded(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Shutdown()
			cfg := e.Server().JetStreamConfig()
			if cfg == nil {
				t.Fatal("jetstream not enabled")
			}
			if cfg.SyncAlways != tc.wantAlways || cfg.SyncInterval != tc.wantInterval {
				t.Errorf("sync_always=%v sync_interval=%s, want %v %s", cfg.SyncAlways, cfg.SyncInterval, tc.wantAlways, tc.wantInterval)
			}
			if cfg.StoreDir == "" || !strings.HasPrefix(cfg.StoreDir, tc.opts.Dir) {
				t.Errorf("store dir %q, want under %q", cfg.StoreDir, tc.opts.Dir)
			}
		})
	}
}

func TestEmbeddedLogger(t *testing.T) {
	for _, tc := range []struct {
		level      slog.Level
		wantBanner bool
	}{
		{slog.LevelInfo, false}, // quiet: warnings and errors only
		{slog.LevelDebug, true},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			lg := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
			e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Listen: "127.0.0.1:-1", Logger: lg})
			if err != nil {
				t.Fatal(err)
			}
			e.Shutdown()
			if got := strings.Contains(buf.String(), "Server is ready"); got != tc.wantBanner {
				t.Errorf("banner logged: %v, want %v:\n%s", got, tc.wantBanner, buf.String())
			}
		})
	}
}
