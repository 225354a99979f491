package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trackd/trackd/internal/cli"
)

// The binary upgrade (SIGUSR2), nginx-style, made explicit with the data
// dir's lock:
//
//  1. The old process starts the binary now on disk with the same command
//     line and environment, handing it the listening sockets (fds 3..) and
//     one end of a socket pair (the "upgrade connection").
//  2. The new process reads its configuration and takes the sockets, then
//     says "ready". If it fails before that, the old process logs why and
//     goes on serving: a bad binary or configuration never takes the
//     service down. A SIGTERM meanwhile kills the new process and stops.
//  3. The old process tells systemd MAINPID=<new> (it is still the main
//     process, so NotifyAccess=main suffices) and stops as on SIGTERM,
//     without STOPPING=1 (that would stop the service): readiness drops, it
//     stops accepting (the kernel queues new connections on the shared
//     socket), in-flight requests finish, keep-alive connections close
//     after their next answer, the forwarders stop, the spool closes. Then
//     it says "released".
//  4. The new process opens the spool (its lock is free now), serves, and
//     says "serving". It starts the embedded NATS server once the old
//     process has exited (the upgrade connection reaches EOF), since the
//     old one holds its port and store until then; records wait in the
//     spool meanwhile.
//  5. The old process exits 0 once it heard "serving". If the new process
//     died before (or hung, and is killed), the old one runs its own
//     binary again in place on the same sockets, which it kept copies of
//     (resumeAfterFailedUpgrade); under systemd it exits non-zero instead,
//     and Restart= starts the service again on the sockets systemd holds.
const (
	upgradeReady    = "ready\n"
	upgradeReleased = "released\n"
	upgradeServing  = "serving\n"
)

// namedListener is a listening socket and its role (listenerAPI, ...).
type namedListener struct {
	name string
	ln   net.Listener
}

// upgradeChild is the new process of an upgrade in progress, as its parent
// sees it.
type upgradeChild struct {
	cmd  *exec.Cmd
	conn net.Conn
	r    *bufio.Reader
	// files are copies of the listening sockets handed over, and names
	// their names: kept until the new process serves, so that the
	// sockets (and the connections waiting in them) outlive a new process
	// that dies before it serves, and this one can take them back
	// (resumeAfterFailedUpgrade).
	files []*os.File
	names []string
}

// startUpgrade starts exe with argv[1:] and the listeners, and waits up to
// wait (or until ctx ends) for it to be ready to take over. On an error the
// new process is gone and the caller goes on serving.
func startUpgrade(ctx context.Context, exe string, argv []string, lns []namedListener, stdout, stderr io.Writer, wait time.Duration) (*upgradeChild, error) {
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "upgrade")
	theirs := os.NewFile(uintptr(pair[1]), "upgrade")
	// This process keeps no copy of the new process's descriptors: its end
	// of the pair must reach EOF when the new process exits.
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	names := make([]string, len(lns))
	for i, l := range lns {
		f, err := listenerFile(l.ln)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s listener: %w", l.name, err)
		}
		files = append(files, f)
		names[i] = l.name
	}
	cmd := exec.Command(exe, argv[1:]...)
	cmd.ExtraFiles = append(files[:len(files):len(files)], theirs)
	cmd.Env = append(childEnv(os.Environ()),
		upgradeFDsEnv+"="+strings.Join(names, ":"),
		upgradeConnEnv+"="+strconv.Itoa(3+len(files)))
	// The new process outlives this one: give it the files themselves, not
	// pipes copied by goroutines that end with this process.
	cmd.Stdout, cmd.Stderr = osFile(stdout, os.Stdout), osFile(stderr, os.Stderr)
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	theirs.Close()
	go cmd.Wait() // reaps it should it exit while this process still runs

	c := &upgradeChild{cmd: cmd, conn: conn, r: bufio.NewReader(conn), files: files, names: names}
	files = nil // c's now; closed by c.close
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	conn.SetReadDeadline(time.Now().Add(wait))
	line, err := c.r.ReadString('\n')
	stopped := !stop()
	if err != nil || line != upgradeReady {
		c.abort()
		c.close()
		switch {
		case stopped:
			err = errors.New("stopping (SIGTERM) before it was ready")
		case errors.Is(err, io.EOF):
			err = errors.New("it exited before it was ready (its log says why)")
		case err == nil:
			err = fmt.Errorf("unexpected message %q", line)
		}
		return nil, fmt.Errorf("new process %d: %w", cmd.Process.Pid, err)
	}
	conn.SetReadDeadline(time.Time{})
	return c, nil
}

// abort kills the new process (it has not touched the data dir yet).
func (c *upgradeChild) abort() {
	c.cmd.Process.Kill()
	c.conn.Close()
}

// waitServing waits up to wait, or until ctx ends, for the new process to
// say it serves.
func (c *upgradeChild) waitServing(ctx context.Context, wait time.Duration) error {
	c.conn.SetReadDeadline(time.Now().Add(wait))
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	defer stop()
	line, err := c.r.ReadString('\n')
	switch {
	case err == nil && line == upgradeServing:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("the new process %d had not said it serves when this one was stopped", c.cmd.Process.Pid)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("the new process %d exited before it served", c.cmd.Process.Pid)
	case err != nil:
		return fmt.Errorf("the new process %d did not say it serves: %w", c.cmd.Process.Pid, err)
	}
	return fmt.Errorf("the new process %d: unexpected message %q", c.cmd.Process.Pid, line)
}

// released tells the new process that the spool is free.
func (c *upgradeChild) released() error {
	_, err := io.WriteString(c.conn, upgradeReleased)
	return err
}

// close ends the upgrade connection (the new process takes it as "the
// old process is gone"; exiting closes it too) and drops this process's
// copies of the sockets.
func (c *upgradeChild) close() {
	c.conn.Close()
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}

// resumeAfterFailedUpgrade is what the old process does when the new one
// it released the data dir to did not serve (it died, or hung and is
// killed here): it runs its own binary again, in place (same PID), on the
// same listening sockets, which connections kept queueing in meanwhile.
// The binary is /proc/self/exe, the one this process runs even though
// the upgrade replaced the file on disk. The sockets are passed as they
// are, their descriptor numbers in resumeFDsEnv: no descriptor is moved,
// so none of the runtime's is overwritten while it runs, and a failed exec
// leaves this process intact. It returns only on failure.
func (c *upgradeChild) resumeAfterFailedUpgrade() error {
	c.cmd.Process.Kill() // if it is still there, it hung
	// EOF once it has exited, and with it released its lock on the data
	// dir; a process that does not die is left alone.
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c.r); err != nil {
		return fmt.Errorf("resume: the new process %d did not exit: %w", c.cmd.Process.Pid, err)
	}
	pairs := make([]string, len(c.files))
	for i, f := range c.files {
		// A copy without close-on-exec (F_DUPFD clears it), for the exec.
		fd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_DUPFD, 3)
		if errno != 0 {
			return fmt.Errorf("resume: dup %s socket: %w", c.names[i], errno)
		}
		pairs[i] = c.names[i] + "=" + strconv.Itoa(int(fd))
	}
	env := append(childEnv(os.Environ()), resumeFDsEnv+"="+strings.Join(pairs, ":"))
	return fmt.Errorf("resume: %w", syscall.Exec("/proc/self/exe", os.Args, env))
}

// upgradeExecutable is the binary an upgrade starts: the path this process
// was started by (made absolute, symlinks not followed), else the running
// binary's.
func upgradeExecutable() (string, error) {
	arg0 := os.Args[0]
	if !strings.Contains(arg0, "/") {
		p, err := exec.LookPath(arg0)
		if err != nil {
			return os.Executable()
		}
		arg0 = p
	}
	p, err := filepath.Abs(arg0)
	if err != nil {
		return os.Executable()
	}
	return p, nil
}

// childEnv is env without the variables that handed sockets to this
// process.
func childEnv(env []string) []string {
	return cli.WithoutEnv(env, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", upgradeFDsEnv, upgradeConnEnv, resumeFDsEnv)
}

func osFile(w io.Writer, def *os.File) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return def
}

// upgradeParent is the old process of an upgrade, as the new one sees it.
type upgradeParent struct {
	conn net.Conn
	r    *bufio.Reader
	gone chan struct{} // closed when the old process has exited (or closed the connection)
}

// upgradeParentFrom returns the upgrade connection this process was given,
// or nil when it was not started by an upgrade.
func upgradeParentFrom(getenv func(string) string) (*upgradeParent, error) {
	s := getenv(upgradeConnEnv)
	if s == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q", upgradeConnEnv, s)
	}
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "upgrade")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("upgrade connection: %w", err)
	}
	return &upgradeParent{conn: conn, r: bufio.NewReader(conn), gone: make(chan struct{})}, nil
}

// serving tells the old process that this one serves.
func (p *upgradeParent) serving() error {
	_, err := io.WriteString(p.conn, upgradeServing)
	return err
}

// ready tells the old process to stop and release the spool, and waits up
// to wait until it has. The old process exiting counts as releasing it.
func (p *upgradeParent) ready(wait time.Duration) error {
	if _, err := io.WriteString(p.conn, upgradeReady); err != nil {
		return fmt.Errorf("upgrade: telling the old process: %w", err)
	}
	p.conn.SetReadDeadline(time.Now().Add(wait))
	line, err := p.r.ReadString('\n')
	p.conn.SetReadDeadline(time.Time{})
	switch {
	case err == nil && line == upgradeReleased:
	case errors.Is(err, io.EOF):
		close(p.gone)
		return nil
	case err != nil:
		return fmt.Errorf("upgrade: waiting for the old process to release the data dir: %w", err)
	default:
		return fmt.Errorf("upgrade: unexpected message %q from the old process", line)
	}
	go func() { // ends when the old process exits
		io.Copy(io.Discard, p.r)
		p.conn.Close()
		close(p.gone)
	}()
	return nil
}
