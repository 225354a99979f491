package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyLine is the line trackd prints on stdout once it serves requests
// with the workspaces it was given.
const readyLine = "trackd: serving workspaces"

// trackdNode is a trackd that trackload runs as a child process: compare's
// target and chaos's victim. Its ports, data dir and workspace stay the same
// across restarts.
type trackdNode struct {
	bin       string
	dataDir   string
	site, key string
	api       string   // API host:port
	nats      string   // embedded NATS client host:port
	extra     []string // more `trackd serve` flags
	startWait time.Duration

	child *trackdChild // the running process, or nil
}

// newTrackdNode picks free loopback ports and a workspace for a trackd on
// dataDir.
func newTrackdNode(bin, dataDir string, extra []string) (*trackdNode, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	nats, err := freePort()
	if err != nil {
		return nil, err
	}
	return &trackdNode{
		bin: bin, dataDir: dataDir, api: api, nats: nats, extra: extra,
		site: "trackload", key: randomHex(10), startWait: 60 * time.Second,
	}, nil
}

func (n *trackdNode) URL() string     { return "http://" + n.api }
func (n *trackdNode) NATSURL() string { return "nats://" + n.nats }

func (n *trackdNode) args() []string {
	return append([]string{"serve",
		"--data-dir", n.dataDir,
		"--listen", n.api,
		"--admin-listen", "127.0.0.1:0",
		"--nats-listen", n.nats,
		"--workspace", n.site + ":" + n.key,
	}, n.extra...)
}

// Start starts trackd and returns once it serves, or fails (with the end of
// its stderr) if it exits or does not serve within the start bound.
func (n *trackdNode) Start(ctx context.Context) error {
	if n.child != nil {
		return errors.New("trackd already running")
	}
	c, err := startChild(ctx, n.bin, n.args(), n.startWait)
	if err != nil {
		return err
	}
	n.child = c
	return nil
}

// Kill SIGKILLs the child and waits for it to exit.
func (n *trackdNode) Kill() {
	if n.child != nil {
		n.child.Kill()
		n.child = nil
	}
}

// Stop stops the child gracefully (SIGTERM), SIGKILLing it after timeout.
func (n *trackdNode) Stop(timeout time.Duration) error {
	if n.child == nil {
		return nil
	}
	err := n.child.Stop(timeout)
	n.child = nil
	return err
}

// PID is the running child's process ID, or 0.
func (n *trackdNode) PID() int {
	if n.child == nil {
		return 0
	}
	return n.child.cmd.Process.Pid
}

// trackdChild is one trackd process. Its stdout is read to the end (for
// the ready line, and so the child never blocks on a full pipe); the tail
// of its stderr is kept for error messages.
type trackdChild struct {
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{} // closed when the process has exited and its output is read
}

func startChild(ctx context.Context, bin string, args []string, wait time.Duration) (*trackdChild, error) {
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &trackdChild{cmd: cmd, stderr: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan struct{})
	go func() { // owned by c: ends when the process exits; c.done says so
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			if !seen && strings.HasPrefix(sc.Text(), readyLine) {
				seen = true
				close(ready)
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(c.done)
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ready:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("trackd exited before serving (%v): %s", cmd.ProcessState, c.stderr.String())
	case <-t.C:
		c.Kill()
		return nil, fmt.Errorf("trackd did not serve within %v: %s", wait, c.stderr.String())
	case <-ctx.Done():
		c.Kill()
		return nil, ctx.Err()
	}
}

// Kill SIGKILLs the process and waits until it has exited.
func (c *trackdChild) Kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// Stop sends SIGTERM and waits up to timeout for the process to exit, then
// SIGKILLs it. It reports an unclean exit.
func (c *trackdChild) Stop(timeout time.Duration) error {
	c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.Kill()
		return fmt.Errorf("trackd did not stop within %v after SIGTERM; killed", timeout)
	}
	if !c.cmd.ProcessState.Success() {
		return fmt.Errorf("trackd exited with %v: %s", c.cmd.ProcessState, c.stderr.String())
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int

	mu  sync.Mutex // guards buf
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}

// freePort returns a loopback host:port that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
