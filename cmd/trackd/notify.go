package main

import (
	"net"
	"strings"
)

// notifier speaks systemd's sd_notify protocol: datagrams of KEY=VALUE lines
// to the unix socket named by NOTIFY_SOCKET ("@name" is in the abstract
// namespace). With no NOTIFY_SOCKET it does nothing. trackd sends
// READY=1 with MAINPID when it serves, STOPPING=1 when it starts to stop, and
// MAINPID=<new pid> from the new process of an upgrade (the unit needs
// NotifyAccess=all for that), so systemd follows the process that serves.
type notifier struct {
	addr string
}

func newNotifier(getenv func(string) string) *notifier {
	return &notifier{addr: getenv("NOTIFY_SOCKET")}
}

// send sends the lines as one datagram; errors are returned for logging
// only (the service works without systemd hearing of it).
func (n *notifier) send(lines ...string) error {
	if n == nil || n.addr == "" {
		return nil
	}
	addr := n.addr
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(strings.Join(lines, "\n") + "\n"))
	return err
}
