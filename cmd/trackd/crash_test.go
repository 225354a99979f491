package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/ulid"
)

// buildTrackd builds the trackd binary once per test binary run.
func buildTrackd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trackd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// child is a trackd process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild starts trackd and returns once it serves (its banner says so).
func startChild(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if !sent && strings.HasPrefix(sc.Text(), "trackd: serving workspaces") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
		cmd.Wait()
		close(c.done)
	}()
	if !<-ready {
		<-c.done
		t.Fatalf("trackd did not start: %s", cmd.Stderr.(*lockedWriter).String())
	}
	return c
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// TestCrashKillUnderLoad runs trackd as a child with the embedded JetStream,
// sends events over HTTP while killing it with SIGKILL at random moments and
// restarting it, and checks with an oracle of acknowledged event IDs that
// every event that got a 200 reached the stream, once.
func TestCrashKillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills real processes")
	}
	kills := 10
	if os.Getenv("TRACKD_CRASH_KILLS") != "" {
		fmt.Sscan(os.Getenv("TRACKD_CRASH_KILLS"), &kills)
	}
	bin := buildTrackd(t)
	dataDir := t.TempDir()
	api, nport := freePort(t), freePort(t)
	args := []string{"serve", "--data-dir", dataDir, "--listen", api, "--admin-listen", "127.0.0.1:0",
		"--nats-listen", nport, "--workspace", "site1:key1"}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	acked := map[string]bool{}
	sent := 0
	gen := ulid.NewGenerator(nil, nil)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				id := gen.NewString()
				body := fmt.Sprintf(`{"name":"crash-test","id":%q,"data":{"writer":%d,"i":%d}}`, id, w, i)
				req, _ := http.NewRequestWithContext(loadCtx, "POST", "http://"+api+fmt.Sprintf("/api/v1/customers/person-%d/events", w), strings.NewReader(body))
				req.SetBasicAuth("site1", "key1")
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				mu.Lock()
				sent++
				mu.Unlock()
				if err != nil {
					continue // down or being killed: not acknowledged
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		}(w)
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for k := 0; k < kills; k++ {
		c := startChild(t, bin, args...)
		// Let it take load for a random while, then kill it mid-flight.
		select {
		case <-time.After(time.Duration(50+rng.IntN(400)) * time.Millisecond):
		case <-ctx.Done():
		}
		c.kill()
	}
	stopLoad()
	wg.Wait()

	// Restart once more and let the forwarder deliver what is left.
	c := startChild(t, bin, args...)
	defer c.kill()
	mu.Lock()
	want := len(acked)
	mu.Unlock()
	if want == 0 {
		t.Fatal("no request was acknowledged")
	}
	seen := readStream(ctx, t, "nats://"+nport, acked)
	missing, dups := 0, 0
	for id := range acked {
		switch n := seen[id]; {
		case n == 0:
			missing++
		case n > 1:
			dups++
		}
	}
	t.Logf("%d kills, %d requests sent, %d acknowledged, %d in the stream, %d missing, %d duplicated", kills, sent, want, len(seen), missing, dups)
	if missing > 0 || dups > 0 {
		t.Fatalf("%d acknowledged events missing from the stream, %d duplicated", missing, dups)
	}
}

// readStream reads the TRACKD stream until every ID in want has been seen
// (or ctx ends), then to its end, and counts each message ID.
func readStream(ctx context.Context, t *testing.T, url string, want map[string]bool) map[string]int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, "TRACKD", natsjs.OrderedConsumerConfig{DeliverPolicy: natsjs.DeliverAllPolicy})
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	seen := map[string]int{}
	found := 0
	var lastRead uint64
	next := func(opt natsjs.NextOpt) bool {
		msg, err := it.Next(opt)
		if err != nil {
			t.Logf("stream read stopped: %v", err)
			return false
		}
		id := msg.Headers().Get("Nats-Msg-Id")
		seen[id]++
		if want[id] && seen[id] == 1 {
			found++
		}
		if m, err := msg.Metadata(); err == nil {
			lastRead = m.Sequence.Stream
		}
		return true
	}
	for found < len(want) && next(natsjs.NextContext(ctx)) {
	}
	// Read on to the stream's end to catch duplicates.
	info, err := js.Stream(ctx, "TRACKD")
	if err != nil {
		t.Fatal(err)
	}
	for last := info.CachedInfo().State.LastSeq; lastRead < last && next(natsjs.NextMaxWait(10*time.Second)); {
	}
	return seen
}
