package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// plainHandler is the baseline of every whole-server figure: a plain
// net/http handler that reads the body and answers {} (the Track API's
// success body), with no auth, validation or storage.
func plainHandler() http.Handler {
	ok := []byte("{}")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(ok)
	})
}

func newPlainHTTPServer() *http.Server {
	return &http.Server{
		Handler:           plainHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
}

// plainServer is the plain net/http server compare measures trackd
// against: by default its own process (this binary, started with
// plainServerEnv set), as trackd is, so that both pay the same for being a
// separate process; or, with --plain inprocess, a server inside trackload.
type plainServer struct {
	url string
	pid int // 0 when in-process

	// in-process
	srv *http.Server
	err chan error
	// child process
	cmd   *exec.Cmd
	stdin io.Closer
}

// plainServerEnv, set in a process's environment, makes trackload the
// plain server instead (plainServerMain): it listens on the loopback,
// prints "listening ADDR" and serves until its standard input closes.
const plainServerEnv = "_TRACKLOAD_PLAIN_SERVER"

func startPlainServer(inProcess bool) (*plainServer, error) {
	if inProcess {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := &plainServer{url: "http://" + ln.Addr().String(), srv: newPlainHTTPServer(), err: make(chan error, 1)}
		go func() { p.err <- p.srv.Serve(ln) }() // owned by p: ends in Close
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("plain server: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), plainServerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("plain server: %w", err)
	}
	p := &plainServer{pid: cmd.Process.Pid, cmd: cmd, stdin: stdin}
	// A child that hangs before it listens is killed (Close), which ends
	// the read.
	hung := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	hung.Stop()
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		p.Close()
		return nil, fmt.Errorf("plain server did not start (said %q): %v", line, err)
	}
	p.url = "http://" + addr
	return p, nil
}

func (p *plainServer) URL() string { return p.url }

// PID returns the plain server's process ID, or 0 when it runs inside
// trackload.
func (p *plainServer) PID() int { return p.pid }

func (p *plainServer) Close() {
	if p.srv != nil {
		p.srv.Close()
		<-p.err
		return
	}
	p.stdin.Close() // the server exits when its input closes
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// plainServerMain is the plain server process. It returns the exit code.
func plainServerMain(stdin io.Reader, stdout io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "trackload plain server:", err)
		return 1
	}
	srv := newPlainHTTPServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, stdin); close(closed) }()
	select {
	case <-closed:
		srv.Close()
		<-served
		return 0
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "trackload plain server:", err)
		return 1
	}
}
