package main

import (
	"cmp"
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

// restartResult is what a restarts run did and found.
type restartResult struct {
	Upgrades     int           `json:"upgrades"`
	Restarts     int           `json:"restarts"`
	Upgrade      spread        `json:"upgrade_ms"` // SIGUSR2 to the new process serving
	Restart      spread        `json:"restart_ms"` // SIGTERM to the next process serving
	Steady       *loadResult   `json:"steady"`     // the same load before any restart
	During       *loadResult   `json:"during"`     // the load while restarting and upgrading
	Failed       int64         `json:"failed_requests"`
	Acknowledged int64         `json:"acknowledged_events"`
	Verify       *verifyResult `json:"verify"`
	Elapsed      float64       `json:"elapsed_seconds"`
}

// runRestarts is `trackload restarts`: it plays systemd for a trackd — owns
// its listening sockets (socket activation, LISTEN_FDS) and its
// NOTIFY_SOCKET — loads it (closed loop), and meanwhile upgrades it
// (SIGUSR2: the binary on disk takes over the sockets and the data dir)
// and stops and starts it (SIGTERM, then a new process on the same
// sockets) the given number of times. Every request must get a 200 (no
// refused or reset connection, no 5xx) and every acknowledged event must
// be in the stream exactly once.
func runRestarts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("restarts", stderr)
	upgrades := fs.Int("upgrades", 20, "binary upgrades (SIGUSR2)")
	restarts := fs.Int("restarts", 20, "stop/start cycles through socket activation")
	sockets := fs.String("sockets", "systemd", "systemd: hold the listening sockets and start trackd with them, as systemd does; own: trackd listens itself and nothing else holds its sockets (upgrades only: a stop/start then refuses connections)")
	interval := fs.Duration("interval", 300*time.Millisecond, "load time between two restarts or upgrades")
	steady := fs.Duration("steady", 3*time.Second, "load time before the first restart, for the steady-state figures")
	var hl harnessLoad
	hl.register(fs, 64)
	extra := fs.String("trackd-args", "", "more `trackd serve` flags, space-separated")
	timeout := fs.Duration("timeout", 15*time.Minute, "bound on the whole run")
	startTimeout := fs.Duration("start-timeout", 60*time.Second, "bound on each start, stop or upgrade")
	verifyTimeout := fs.Duration("verify-timeout", 60*time.Second, "bound on waiting for the acknowledged events in the stream")
	logFile := fs.String("trackd-log", "", "write the trackd processes' output to FILE (default: a temp file, shown on failure)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	var p problems
	op := hl.check(&p)
	if *upgrades < 0 || *restarts < 0 {
		p.add("--upgrades and --restarts must not be negative")
	}
	switch {
	case *sockets != "systemd" && *sockets != "own":
		p.add("--sockets must be systemd or own")
	case *sockets == "own" && *restarts > 0:
		p.add("--sockets own needs --restarts 0: with nothing holding the socket, a stop/start refuses connections")
	}
	if *interval <= 0 || *steady <= 0 {
		p.add("--interval and --steady must be positive")
	}
	if err := p.err(); err != nil {
		return err
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	// Processes orphaned by an upgrade (the new trackd, once the old one
	// exits) become this process's children, so it can wait for them.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", e)
	}
	dir, err := os.MkdirTemp("", "trackload-restarts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sv, err := newSupervisor(hl.bin, dir, strings.Fields(*extra), *startTimeout, *logFile, *sockets == "own")
	if err != nil {
		return err
	}
	defer sv.close()
	if err := sv.start(ctx); err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "trackload restarts: %d upgrades and %d restarts of %s at %s under %d conns, op %s, sockets %s\n",
			*upgrades, *restarts, hl.bin, sv.url(), hl.conns, hl.opName, *sockets)
	}

	oracle := &memOracle{}
	load := func(d time.Duration, stop <-chan struct{}) (*loadResult, error) {
		return runLoad(ctx, loadOptions{
			Duration: d,
			URL:      sv.url(), Site: sv.site, Key: sv.key,
			Conns: hl.conns, Op: op, Batch: hl.batch, Size: hl.siz,
			Timeout: 10 * time.Second, ErrorBackoff: 10 * time.Millisecond,
			Oracle: oracle, Stop: stop,
		})
	}
	res := &restartResult{Upgrades: *upgrades, Restarts: *restarts}
	if res.Steady, err = load(*steady, nil); err != nil {
		return fmt.Errorf("restarts: steady load: %w", err)
	}

	stopLoad := make(chan struct{})
	type loadDone struct {
		res *loadResult
		err error
	}
	loaded := make(chan loadDone, 1)
	go func() { // owned here: ends after stopLoad is closed (or ctx ends)
		r, err := load(0, stopLoad)
		loaded <- loadDone{r, err}
	}()
	var upMS, restartMS []float64
	cycleErr := func() error {
		for i := 0; i < max(*upgrades, *restarts); i++ {
			for _, upgrade := range []bool{true, false} {
				if (upgrade && i >= *upgrades) || (!upgrade && i >= *restarts) {
					continue
				}
				if !pause(ctx, *interval) {
					return ctx.Err()
				}
				t0 := time.Now()
				if upgrade {
					if err := sv.upgrade(ctx); err != nil {
						return fmt.Errorf("upgrade %d: %w", len(upMS)+1, err)
					}
					upMS = append(upMS, float64(time.Since(t0).Microseconds())/1000)
				} else {
					if err := sv.restart(ctx); err != nil {
						return fmt.Errorf("restart %d: %w", len(restartMS)+1, err)
					}
					restartMS = append(restartMS, float64(time.Since(t0).Microseconds())/1000)
				}
			}
		}
		pause(ctx, *interval)
		return nil
	}()
	close(stopLoad)
	ld := <-loaded
	if cycleErr != nil {
		return fmt.Errorf("restarts: %w (trackd log: %s)", cycleErr, sv.logTail())
	}
	if ld.err != nil {
		return fmt.Errorf("restarts: load: %w", ld.err)
	}
	res.During = ld.res
	res.Upgrade, res.Restart = spreadOf(upMS), spreadOf(restartMS)
	res.Failed = res.Steady.Errors() + res.During.Errors() + res.Steady.Canceled + res.During.Canceled

	ids := oracle.IDs()
	res.Acknowledged = int64(len(ids))
	if res.Verify, err = verifyStream(ctx, ids, verifyOptions{NATSURL: sv.natsURL(), Timeout: *verifyTimeout}); err != nil {
		return fmt.Errorf("restarts: verify: %w", err)
	}
	stopErr := sv.stop(ctx)
	res.Elapsed = time.Since(began).Seconds()
	if err := writeResult(stdout, *asJSON, res, func() { printRestarts(stdout, res) }); err != nil {
		return err
	}
	if stopErr != nil {
		fmt.Fprintf(stderr, "trackload: restarts: final stop: %v\n", stopErr)
		return cli.ErrCheckFailed
	}
	if res.Failed > 0 || res.Acknowledged == 0 {
		return cli.ErrCheckFailed
	}
	return verdict(res.Verify, true)
}

const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER, linux/prctl.h

func printRestarts(w io.Writer, r *restartResult) {
	fmt.Fprintf(w, "upgrades   %d (SIGUSR2 to the new process serving: min %s, median %s, max %s)\n",
		r.Upgrades, fmtMS(r.Upgrade.Min), fmtMS(r.Upgrade.Median), fmtMS(r.Upgrade.Max))
	fmt.Fprintf(w, "restarts   %d (SIGTERM to the next process serving: min %s, median %s, max %s)\n",
		r.Restarts, fmtMS(r.Restart.Min), fmtMS(r.Restart.Median), fmtMS(r.Restart.Max))
	for _, x := range []struct {
		name string
		l    *loadResult
	}{{"steady", r.Steady}, {"during", r.During}} {
		fmt.Fprintf(w, "%-10s %d requests in %.1fs (%.0f/s), %d ok; latency p50 %s p99 %s p99.9 %s max %s; errors %s\n",
			x.name, x.l.Requests, x.l.Elapsed, x.l.ReqPerS, x.l.OK,
			fmtMS(x.l.Latency.P50), fmtMS(x.l.Latency.P99), fmtMS(x.l.Latency.P999), fmtMS(x.l.Latency.Max), errorSummary(x.l))
	}
	fmt.Fprintf(w, "acknowledged %d events (the oracle)\n", r.Acknowledged)
	printVerify(w, r.Verify)
	switch {
	case r.Failed > 0:
		fmt.Fprintf(w, "FAIL: %d requests failed\n", r.Failed)
	case r.Verify.Lost > 0 || r.Verify.Duplicated > 0:
		fmt.Fprintf(w, "FAIL: %d acknowledged events lost, %d duplicated\n", r.Verify.Lost, r.Verify.Duplicated)
	default:
		fmt.Fprintln(w, "PASS: no request failed; every acknowledged event is in the stream once")
	}
}

// supervisor runs trackd the way systemd does with trackd.socket and
// trackd.service (Type=notify, NotifyAccess=all): it holds the listening
// sockets and passes them to each process it starts, and learns from
// sd_notify datagrams which process serves. With own set, it runs trackd
// as a plain command instead: trackd listens itself, and the pid file in
// its data dir tells which process serves.
type supervisor struct {
	own          bool
	bin, dataDir string
	extra        []string
	wait         time.Duration
	site, key    string
	nats         string
	api, admin   *os.File // the listening sockets
	apiAddr      string
	notify       *net.UnixConn
	msgs         chan map[string]string
	log          *os.File
	logName      string

	pid int // the process that serves (MAINPID)
}

func newSupervisor(bin, dir string, extra []string, wait time.Duration, logName string, own bool) (*supervisor, error) {
	sv := &supervisor{own: own, bin: bin, dataDir: filepath.Join(dir, "data"), extra: extra, wait: wait,
		site: "trackload", key: randomHex(10), msgs: make(chan map[string]string, 64)}
	var err error
	if sv.nats, err = freePort(); err != nil {
		return nil, err
	}
	sv.logName = cmp.Or(logName, filepath.Join(dir, "trackd.log"))
	if sv.log, err = os.Create(sv.logName); err != nil {
		sv.close()
		return nil, err
	}
	if own {
		if sv.apiAddr, err = freePort(); err != nil {
			sv.close()
			return nil, err
		}
		return sv, nil
	}
	for _, x := range []struct {
		f    **os.File
		addr *string
	}{{&sv.api, &sv.apiAddr}, {&sv.admin, nil}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			sv.close()
			return nil, err
		}
		if x.addr != nil {
			*x.addr = ln.Addr().String()
		}
		*x.f, err = ln.(*net.TCPListener).File()
		ln.Close() // the duplicate in *x.f keeps the socket
		if err != nil {
			sv.close()
			return nil, err
		}
	}
	sv.notify, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify.sock"), Net: "unixgram"})
	if err != nil {
		sv.close()
		return nil, err
	}
	go sv.readNotify()
	return sv, nil
}

func (sv *supervisor) url() string     { return "http://" + sv.apiAddr }
func (sv *supervisor) natsURL() string { return "nats://" + sv.nats }

// readNotify passes each sd_notify datagram on as its KEY=VALUE pairs;
// it ends when the socket is closed.
func (sv *supervisor) readNotify() {
	defer close(sv.msgs)
	buf := make([]byte, 4096)
	for {
		n, err := sv.notify.Read(buf)
		if err != nil {
			return
		}
		m := map[string]string{}
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				m[k] = v
			}
		}
		select {
		case sv.msgs <- m:
		default: // 64 messages nobody read: the harness is stuck anyway
		}
	}
}

// awaitReady waits for READY=1 from a process other than notPID, and
// makes it the serving one. During an upgrade, STOPPING=1 fails it: systemd
// would stop the whole service on it.
func (sv *supervisor) awaitReady(ctx context.Context, notPID int, upgrading bool) error {
	t := time.NewTimer(sv.wait)
	defer t.Stop()
	for {
		select {
		case m, ok := <-sv.msgs:
			if !ok {
				return errors.New("notify socket closed")
			}
			pid, _ := strconv.Atoi(m["MAINPID"])
			if upgrading && m["STOPPING"] == "1" {
				return errors.New("STOPPING=1 during an upgrade: systemd would stop the service")
			}
			if m["READY"] == "1" && pid > 0 && pid != notPID {
				sv.pid = pid
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no process became ready within %v", sv.wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// start starts a trackd. As systemd would, it starts it on the sockets,
// through a shell that sets LISTEN_PID to its own PID and then becomes
// trackd, and waits for READY=1; with own sockets, it runs trackd as a
// plain command and waits for its pid file.
func (sv *supervisor) start(ctx context.Context) error {
	serve := append([]string{"serve", "--data-dir", sv.dataDir, "--listen", sv.apiAddr, "--admin-listen", "127.0.0.1:0",
		"--nats-listen", sv.nats, "--workspace", sv.site + ":" + sv.key}, sv.extra...)
	env := cli.WithoutEnv(os.Environ(), "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
	var cmd *exec.Cmd
	if sv.own {
		cmd = exec.Command(sv.bin, serve...)
	} else {
		cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, sv.bin}, serve...)...)
		cmd.ExtraFiles = []*os.File{sv.api, sv.admin}
		env = append(env, "LISTEN_FDS=2", "LISTEN_FDNAMES=api:admin", "NOTIFY_SOCKET="+sv.notify.LocalAddr().String())
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = sv.log, sv.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start trackd: %w", err)
	}
	if err := sv.awaitServing(ctx, 0, false); err != nil {
		cmd.Process.Kill()
		return fmt.Errorf("trackd did not start: %w; log: %s", err, sv.logTail())
	}
	if sv.pid != cmd.Process.Pid {
		return fmt.Errorf("pid %d serves, not the started %d", sv.pid, cmd.Process.Pid)
	}
	return nil
}

// awaitServing waits until a process other than notPID serves, and makes
// it the serving one: from sd_notify, or with own sockets the pid file.
func (sv *supervisor) awaitServing(ctx context.Context, notPID int, upgrading bool) error {
	if sv.own {
		return sv.awaitPIDFile(ctx, notPID)
	}
	return sv.awaitReady(ctx, notPID, upgrading)
}

// upgrade sends SIGUSR2 and waits until the new process serves and the old
// one has exited cleanly.
func (sv *supervisor) upgrade(ctx context.Context) error {
	old := sv.pid
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		return err
	}
	if err := sv.awaitServing(ctx, old, true); err != nil {
		return err
	}
	return sv.reap(ctx, old)
}

// awaitPIDFile waits until the data dir's pid file (written by a trackd
// once it serves) names a live process other than notPID, and makes it the
// serving one. It reads the file every 5 ms: nothing else tells a process
// that does not own trackd's sockets when one serves.
func (sv *supervisor) awaitPIDFile(ctx context.Context, notPID int) error {
	deadline := time.Now().Add(sv.wait)
	for {
		if b, err := os.ReadFile(filepath.Join(sv.dataDir, "trackd.pid")); err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 && pid != notPID && syscall.Kill(pid, 0) == nil {
				sv.pid = pid
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no process wrote the pid file within %v", sv.wait)
		}
		if !pause(ctx, 5*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// restart stops the serving process (SIGTERM), waits for its exit, and
// starts the next one on the same sockets.
func (sv *supervisor) restart(ctx context.Context) error {
	if err := sv.stop(ctx); err != nil {
		return err
	}
	return sv.start(ctx)
}

// stop stops the serving process gracefully and waits for its exit.
func (sv *supervisor) stop(ctx context.Context) error {
	if sv.pid == 0 {
		return nil
	}
	pid := sv.pid
	sv.pid = 0
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	return sv.reap(ctx, pid)
}

// reap waits for pid, a child of this process (started by it, or adopted
// as the subreaper), to exit, and reports an unclean exit. The wait is
// bounded: after it, the process is killed.
func (sv *supervisor) reap(ctx context.Context, pid int) error {
	done := make(chan error, 1)
	go func() { // ends when pid exits (it is killed below if it hangs)
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				done <- fmt.Errorf("wait for %d: %w", pid, err)
				return
			}
			if !ws.Exited() || ws.ExitStatus() != 0 {
				done <- fmt.Errorf("trackd %d exited uncleanly (%v); log: %s", pid, exitDesc(ws), sv.logTail())
				return
			}
			done <- nil
			return
		}
	}()
	t := time.NewTimer(sv.wait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	case <-ctx.Done():
	}
	syscall.Kill(pid, syscall.SIGKILL)
	<-done
	return fmt.Errorf("trackd %d did not exit within %v; killed", pid, sv.wait)
}

func exitDesc(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

// logTail is the end of the trackd processes' shared log.
func (sv *supervisor) logTail() string {
	b, _ := os.ReadFile(sv.logName)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return strings.TrimSpace(string(b))
}

// close kills a trackd still serving and releases the sockets.
func (sv *supervisor) close() {
	if sv.pid != 0 {
		syscall.Kill(sv.pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(sv.pid, &ws, 0, nil)
		sv.pid = 0
	}
	for _, f := range []*os.File{sv.api, sv.admin, sv.log} {
		if f != nil {
			f.Close()
		}
	}
	if sv.notify != nil {
		sv.notify.Close()
	}
}
