package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Listening sockets can come from four places, tried in this order:
//
//   - this same process before it ran its binary again, after an upgrade
//     whose new process failed (resumeAfterFailedUpgrade): the descriptors
//     named in resumeFDsEnv;
//   - the trackd being upgraded (SIGUSR2), which starts this process with
//     its sockets as fds 3.. and their names in upgradeFDsEnv;
//   - systemd socket activation: LISTEN_PID (this process), LISTEN_FDS (the
//     count, from fd 3) and LISTEN_FDNAMES (FileDescriptorName= in the
//     .socket unit; unnamed sockets are api, admin, public in that order);
//   - otherwise trackd listens itself on the configured addresses.
//
// Either way the kernel keeps the socket's accept queue across a restart,
// so a client that connects meanwhile waits instead of being refused.
const (
	upgradeFDsEnv  = "_TRACKD_UPGRADE_FDS"  // names of the handed-over listeners, colon-separated, from fd 3
	upgradeConnEnv = "_TRACKD_UPGRADE_CONN" // fd of the socket to the old process
	resumeFDsEnv   = "_TRACKD_RESUME_FDS"   // name=fd pairs, colon-separated: a process resuming after a failed upgrade
)

// Listener names, as in the .socket unit's FileDescriptorName=.
const (
	listenerAPI    = "api"
	listenerAdmin  = "admin"
	listenerPublic = "public"
)

var defaultListenerOrder = []string{listenerAPI, listenerAdmin, listenerPublic}

// inheritedListeners are the sockets this process was given, by name.
type inheritedListeners struct {
	source string // "upgrade", "resume", "systemd", or "" (none)
	files  map[string]*os.File
}

// inheritListeners collects the listening sockets handed to this process.
// It marks them close-on-exec, so they reach a later child only on purpose.
func inheritListeners(getenv func(string) string) (*inheritedListeners, error) {
	inh := &inheritedListeners{files: map[string]*os.File{}}
	var names []string
	var n int
	switch {
	case getenv(resumeFDsEnv) != "":
		// The old process of a failed upgrade, run again in place: its
		// sockets at the descriptors it names.
		inh.source = "resume"
		for _, pair := range strings.Split(getenv(resumeFDsEnv), ":") {
			name, v, _ := strings.Cut(pair, "=")
			fd, err := strconv.Atoi(v)
			if err != nil || fd < 3 || name == "" {
				return nil, fmt.Errorf("%s=%q", resumeFDsEnv, getenv(resumeFDsEnv))
			}
			if _, dup := inh.files[name]; dup {
				return nil, fmt.Errorf("resume: two sockets named %q", name)
			}
			syscall.CloseOnExec(fd)
			inh.files[name] = os.NewFile(uintptr(fd), name)
		}
		return inh, nil
	case getenv(upgradeFDsEnv) != "":
		inh.source = "upgrade"
		names = strings.Split(getenv(upgradeFDsEnv), ":")
		n = len(names)
	case getenv("LISTEN_FDS") != "":
		pid, err := strconv.Atoi(getenv("LISTEN_PID"))
		if err != nil || pid != os.Getpid() {
			return inh, nil // meant for another process
		}
		inh.source = "systemd"
		n, err = strconv.Atoi(getenv("LISTEN_FDS"))
		if err != nil || n < 0 || n > 16 {
			return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q", getenv("LISTEN_FDS"))
		}
		if s := getenv("LISTEN_FDNAMES"); s != "" {
			names = strings.Split(s, ":")
		}
	default:
		return inh, nil
	}
	for i := range n {
		fd := 3 + i
		name := ""
		if i < len(names) {
			name = names[i]
		}
		if name == "" || name == "unknown" || name == "stored" {
			if i >= len(defaultListenerOrder) {
				return nil, fmt.Errorf("%s: socket %d (fd %d) has no name and no default role", inh.source, i, fd)
			}
			name = defaultListenerOrder[i]
		}
		syscall.CloseOnExec(fd)
		if _, dup := inh.files[name]; dup {
			return nil, fmt.Errorf("%s: two sockets named %q", inh.source, name)
		}
		inh.files[name] = os.NewFile(uintptr(fd), name)
	}
	return inh, nil
}

// listen returns the inherited listener called name, or a new one on addr.
func (inh *inheritedListeners) listen(name, addr string) (net.Listener, error) {
	if f, ok := inh.files[name]; ok {
		delete(inh.files, name)
		defer f.Close() // FileListener has its own copy
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("%s socket %q: %w", inh.source, name, err)
		}
		return ln, nil
	}
	return net.Listen("tcp", addr)
}

// close closes the sockets no listener took (the unit may pass one trackd
// does not use).
func (inh *inheritedListeners) close() {
	for _, f := range inh.files {
		f.Close()
	}
	clear(inh.files)
}

// listenerFile returns a duplicate of ln's socket, to hand to a new process.
// It is made with os.NewFile, not the listener's File method: that copy is
// switched to blocking mode by its Fd method (which os/exec calls on
// ExtraFiles), and the mode belongs to the socket, shared with this
// process's own listener. Its accept loop could then block in the kernel,
// and closing the listener to drain would wait for the next connection.
func listenerFile(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, errors.New("listener cannot be handed over")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	dup, errno := -1, syscall.Errno(0)
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		dup, errno = int(r), e
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("dup listener: %w", errno)
	}
	return os.NewFile(uintptr(dup), "listener"), nil
}

// maxAdminConns bounds the admin listener's open connections: a scraper, a
// browser and an operator need a handful, and without a bound a client
// holding many idle connections would use up the process's file
// descriptors, which the API and the spool need.
const maxAdminConns = 64

// capListener closes, at once, each connection accepted while max are
// open (the client sees a reset and retries), so that the listener never
// holds more than max.
type capListener struct {
	net.Listener
	open atomic.Int64
	max  int64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			c.Close()
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
