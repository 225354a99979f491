package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// upgradeFixture is a trackd started from a binary the test can replace
// on disk, its log, and the process an upgrade started.
type upgradeFixture struct {
	t       *testing.T
	bin     string
	good    []byte // a working trackd
	api     string
	dataDir string
	cmd     *exec.Cmd
	logs    *bufio.Scanner
	seen    []string
	newPID  int
}

// startUpgradable installs a working trackd at a path of its own and
// starts it, serving, on a fixed API address.
func startUpgradable(t *testing.T, extra ...string) *upgradeFixture {
	if testing.Short() {
		t.Skip("builds trackd and runs real processes")
	}
	// The new process is orphaned when the old one exits: adopt it, to
	// wait for it at the end.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0); e != 0 {
		t.Fatal(e)
	}
	good, err := os.ReadFile(buildTrackd(t))
	if err != nil {
		t.Fatal(err)
	}
	f := &upgradeFixture{t: t, bin: filepath.Join(t.TempDir(), "trackd"), good: good, api: freePort(t), dataDir: t.TempDir()}
	f.install(good)
	f.cmd = exec.Command(f.bin, append([]string{"serve", "--data-dir", f.dataDir, "--listen", f.api, "--admin-listen", "127.0.0.1:0",
		"--nats-listen", freePort(t), "--workspace", "s:k"}, extra...)...)
	// Plain pipes, not StdoutPipe: Wait closes those, and the new process
	// writes to the same stdout after the old one has exited.
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	f.cmd.Stdout = stdoutW
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	f.cmd.Stderr = stderrW
	// Its own process group, which every process of the test (the new
	// ones and their children) joins: a hang is ended by killing it.
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderrW.Close()
	stdoutW.Close()
	go io.Copy(io.Discard, stdoutR)
	f.logs = bufio.NewScanner(stderrR)
	t.Cleanup(func() {
		syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		if f.newPID != 0 {
			syscall.Kill(f.newPID, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(f.newPID, &ws, 0, nil)
		}
	})
	f.waitLog(`"msg":"serving"`)
	return f
}

// install replaces the binary on disk, as a deployment does.
func (f *upgradeFixture) install(content []byte) {
	f.t.Helper()
	if err := os.WriteFile(f.bin+".new", content, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(f.bin+".new", f.bin); err != nil {
		f.t.Fatal(err)
	}
}

// waitLog reads the log (both processes') up to a line containing substr.
// If none comes within a minute, every process of the test is killed,
// which ends the log and fails the test with what it said.
func (f *upgradeFixture) waitLog(substr string) string {
	f.t.Helper()
	hung := time.AfterFunc(time.Minute, func() { syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL) })
	defer hung.Stop()
	for f.logs.Scan() {
		f.seen = append(f.seen, f.logs.Text())
		if strings.Contains(f.logs.Text(), substr) {
			return f.logs.Text()
		}
	}
	f.t.Fatalf("log ended without %q:\n%s", substr, strings.Join(f.seen, "\n"))
	return ""
}

// waitHandover waits until the old process hands over to a new one, and
// notes the new one's PID.
func (f *upgradeFixture) waitHandover() {
	f.t.Helper()
	line := f.waitLog("the new process is ready; handing over")
	m := regexp.MustCompile(`"pid":(\d+)`).FindStringSubmatch(line)
	if m == nil {
		f.t.Fatalf("no pid in %q", line)
	}
	f.newPID, _ = strconv.Atoi(m[1])
}

// send stores one event and fails the test unless it got a 200.
func (f *upgradeFixture) send(id string) {
	f.t.Helper()
	resp := call(f.t, "POST", "http://"+f.api+"/api/v1/customers/1/events", "s", "k", `{"name":"e","id":"`+id+`"}`)
	if resp.StatusCode != 200 {
		f.t.Fatalf("event %s: %d\n%s", id, resp.StatusCode, strings.Join(f.seen, "\n"))
	}
}

// checkPIDFile fails the test unless the data dir's pid file names pid.
func (f *upgradeFixture) checkPIDFile(pid int) {
	f.t.Helper()
	if b, err := os.ReadFile(filepath.Join(f.dataDir, pidFile)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		f.t.Fatalf("pid file: %q, %v; want %d", b, err, pid)
	}
}

// handoverScript is a new "binary" that says ready, waits to be given the
// data dir (the old process's "released"), and then runs then.
func handoverScript(then string) []byte {
	return []byte("#!/bin/sh\nfd=$" + upgradeConnEnv + "\n" +
		"eval \"printf 'ready\\n' >&$fd\"\n" +
		"eval \"read released <&$fd\"\n" + then + "\n")
}

// TestUpgradeFailsSafelyThenSucceeds: SIGUSR2 with a broken binary on disk
// leaves the running trackd serving; with a good one, the new process takes
// over the socket and the data dir, and the old one exits 0.
func TestUpgradeFailsSafelyThenSucceeds(t *testing.T) {
	f := startUpgradable(t)
	f.send("01J0000000000000000000000A")

	f.install([]byte("#!/bin/sh\necho broken build >&2\nexit 3\n"))
	f.cmd.Process.Signal(syscall.SIGUSR2)
	f.waitLog("upgrade failed; still serving")
	f.send("01J0000000000000000000000B")

	f.install(f.good)
	f.cmd.Process.Signal(syscall.SIGUSR2)
	f.waitHandover()
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("old process: %v\n%s", err, strings.Join(f.seen, "\n"))
	}
	f.send("01J0000000000000000000000C") // queued by the kernel until the new process serves
	f.waitLog(`"msg":"serving"`)         // the new one's, logged after it wrote the pid file
	f.checkPIDFile(f.newPID)
	syscall.Kill(f.newPID, syscall.SIGTERM)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(f.newPID, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("new process: %v %v", err, ws)
	}
	f.newPID = 0
	f.waitLog(`"msg":"stopped"`)
	if _, err := os.Stat(filepath.Join(f.dataDir, pidFile)); !os.IsNotExist(err) {
		t.Fatalf("pid file after a clean stop: %v", err)
	}
}

// TestUpgradeNewProcessDiesAfterReady: a new binary that gets through the
// handshake, is given the data dir and then dies before it serves (say it
// cannot read the spool) does not leave the service down: the old binary
// runs again in place, on the same sockets, and a request sent meanwhile
// waits in the socket and is answered.
func TestUpgradeNewProcessDiesAfterReady(t *testing.T) {
	f := startUpgradable(t)
	f.send("01J0000000000000000000000A")

	// Says ready, waits to be given the data dir, then fails.
	f.install(handoverScript(`echo "new build: cannot open the spool" >&2; exit 4`))
	f.cmd.Process.Signal(syscall.SIGUSR2)
	f.waitLog("the new process is ready; handing over")
	f.waitLog("running this binary again on the same sockets")
	f.send("01J0000000000000000000000B") // waits in the socket until the old binary serves again
	if line := f.waitLog(`"msg":"serving"`); !strings.Contains(line, `"sockets":"resume"`) {
		t.Fatalf("the resumed process does not serve on the sockets it kept: %s", line)
	}
	f.checkPIDFile(f.cmd.Process.Pid) // the same process, its binary run again
	for _, l := range f.seen {
		if strings.Contains(l, "fatal error") || strings.Contains(l, "panic") {
			t.Fatalf("the resume crashed the runtime:\n%s", strings.Join(f.seen, "\n"))
		}
	}

	// It is a whole trackd again: it stops cleanly.
	f.cmd.Process.Signal(syscall.SIGTERM)
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("resumed process: %v\n%s", err, strings.Join(f.seen, "\n"))
	}
	f.waitLog(`"msg":"stopped"`)
}

// TestUpgradeStoppedDuringHandover: a SIGTERM to the old process after it
// released the data dir and before the new one serves stops both; the old
// one does not take the sockets back.
func TestUpgradeStoppedDuringHandover(t *testing.T) {
	f := startUpgradable(t)
	// Says ready, takes the data dir, then takes its time.
	f.install(handoverScript("exec sleep 60"))
	f.cmd.Process.Signal(syscall.SIGUSR2)
	f.waitHandover()
	f.waitLog(`"msg":"spool closed"`) // released
	f.cmd.Process.Signal(syscall.SIGTERM)
	f.waitLog("stopping (SIGTERM) during the handover")
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("old process: %v\n%s", err, strings.Join(f.seen, "\n"))
	}
	// The new process ended: reaped by the old one (ECHILD here), or
	// adopted by this test (the subreaper) when it outlived the old one.
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(f.newPID, &ws, 0, nil); err != nil && !errors.Is(err, syscall.ECHILD) || err == nil && ws.Signal() != syscall.SIGTERM {
		t.Fatalf("new process: %v, %v; want ended by SIGTERM", err, ws)
	}
	f.newPID = 0
	for _, l := range f.seen {
		if strings.Contains(l, "running this binary again") {
			t.Fatalf("the old process took the sockets back after a SIGTERM:\n%s", strings.Join(f.seen, "\n"))
		}
	}
}

// TestUpgradeNewProcessHangs: a new process that takes the data dir and
// then neither serves nor exits is killed after --shutdown-timeout, and
// the old binary runs again on the same sockets.
func TestUpgradeNewProcessHangs(t *testing.T) {
	f := startUpgradable(t, "--shutdown-timeout", "2s")
	f.install(handoverScript("exec sleep 60"))
	f.cmd.Process.Signal(syscall.SIGUSR2)
	f.waitLog("the new process is ready; handing over")
	f.waitLog("did not say it serves")
	f.waitLog("running this binary again on the same sockets")
	f.send("01J0000000000000000000000H")
	if line := f.waitLog(`"msg":"serving"`); !strings.Contains(line, `"sockets":"resume"`) {
		t.Fatalf("not serving on the sockets it kept: %s", line)
	}
	f.checkPIDFile(f.cmd.Process.Pid)
	f.cmd.Process.Signal(syscall.SIGTERM)
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("resumed process: %v\n%s", err, strings.Join(f.seen, "\n"))
	}
}

// TestListenerFileKeepsSocketNonBlocking: handing a listener to a new
// process (os/exec calls Fd on each extra file) leaves the socket in
// non-blocking mode, which this process's own listener shares: in blocking
// mode its accept loop could wait in the kernel, and closing the listener
// to drain would hang until the next connection came.
func TestListenerFileKeepsSocketNonBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := listenerFile(ln)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Fd() // what os/exec does
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags uintptr
	rc.Control(func(fd uintptr) { flags, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0) })
	if flags&syscall.O_NONBLOCK == 0 {
		t.Fatal("the listening socket is in blocking mode after its handover copy's Fd")
	}
}
