package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestUpgradeFailsSafelyThenSucceeds: SIGUSR2 with a broken binary on disk
// leaves the running trackd serving; with a good one, the new process takes
// over the socket and the data dir, and the old one exits 0.
func TestUpgradeFailsSafelyThenSucceeds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds trackd and runs real processes")
	}
	// The new process is orphaned when the old one exits: adopt it, to
	// wait for it at the end.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0); e != 0 {
		t.Fatal(e)
	}
	good := buildTrackd(t)
	bin := filepath.Join(t.TempDir(), "trackd")
	install := func(content []byte) {
		t.Helper()
		if err := os.WriteFile(bin+".new", content, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
	}
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	install(goodBytes)

	api := freePort(t)
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--listen", api, "--admin-listen", "127.0.0.1:0",
		"--nats-listen", freePort(t), "--workspace", "s:k")
	// Plain pipes, not StdoutPipe: Wait closes those, and the new process
	// writes to the same stdout after the old one has exited.
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = stdoutW
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderrW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderrW.Close()
	stdoutW.Close()
	go io.Copy(io.Discard, stdoutR)
	logs := bufio.NewScanner(stderrR)
	var seen []string
	waitLog := func(substr string) string {
		t.Helper()
		for logs.Scan() {
			seen = append(seen, logs.Text())
			if strings.Contains(logs.Text(), substr) {
				return logs.Text()
			}
		}
		t.Fatalf("log ended without %q:\n%s", substr, strings.Join(seen, "\n"))
		return ""
	}
	newPID := 0
	defer func() {
		cmd.Process.Kill()
		if newPID != 0 {
			syscall.Kill(newPID, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(newPID, &ws, 0, nil)
		}
	}()
	waitLog(`"msg":"serving"`)
	send := func(id string) {
		t.Helper()
		resp := call(t, "POST", "http://"+api+"/api/v1/customers/1/events", "s", "k", `{"name":"e","id":"`+id+`"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("event %s: %d\n%s", id, resp.StatusCode, strings.Join(seen, "\n"))
		}
	}
	send("01J0000000000000000000000A")

	install([]byte("#!/bin/sh\necho broken build >&2\nexit 3\n"))
	cmd.Process.Signal(syscall.SIGUSR2)
	waitLog("upgrade failed; still serving")
	send("01J0000000000000000000000B")

	install(goodBytes)
	cmd.Process.Signal(syscall.SIGUSR2)
	line := waitLog("the new process is ready; handing over")
	m := regexp.MustCompile(`"pid":(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no pid in %q", line)
	}
	newPID, _ = strconv.Atoi(m[1])
	if err := cmd.Wait(); err != nil {
		t.Fatalf("old process: %v\n%s", err, strings.Join(seen, "\n"))
	}
	send("01J0000000000000000000000C") // queued by the kernel until the new process serves
	waitLog(`"msg":"serving"`)         // the new one's, logged after it wrote the pid file
	if b, err := os.ReadFile(filepath.Join(dataDir, pidFile)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(newPID) {
		t.Fatalf("pid file after the upgrade: %q, %v; want %d", b, err, newPID)
	}
	syscall.Kill(newPID, syscall.SIGTERM)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(newPID, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("new process: %v %v", err, ws)
	}
	newPID = 0
	waitLog(`"msg":"stopped"`)
	if _, err := os.Stat(filepath.Join(dataDir, pidFile)); !os.IsNotExist(err) {
		t.Fatalf("pid file after a clean stop: %v", err)
	}
}
