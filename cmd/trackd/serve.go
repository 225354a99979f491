package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/trackd/trackd/internal/admin"
	"github.com/trackd/trackd/internal/auth"
	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/sink/httpsink"
	"github.com/trackd/trackd/internal/sink/jetstream"
	"github.com/trackd/trackd/internal/sink/kafka"
	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/trackapi"
	"github.com/trackd/trackd/internal/vfs"
)

// runServe runs the server until ctx ends (SIGTERM / SIGINT) or an upgrade
// (SIGUSR2) has a new process ready to take over, then stops in order:
// readiness drops; the API listener stops accepting, keep-alive
// connections close after their next answer and in-flight requests finish
// (bounded by --drain-grace and --shutdown-timeout); retention and the
// forwarders stop (each saving its cursor at the last acknowledged
// record); the spool closes (every queued append committed, lock
// released: an upgrade's new process takes over here); the sinks close;
// the embedded NATS server stops last.
//
// Starting, it serves as soon as the spool is open; the embedded NATS
// server and the forwarders start after that, so neither a large JetStream
// store nor an unreachable back end delays taking requests.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadServeConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	var logHandler slog.Handler = slog.NewJSONHandler(stderr, nil)
	if cfg.LogFormat == "text" {
		logHandler = slog.NewTextHandler(stderr, nil)
	}
	log := slog.New(logHandler)
	log.Info("configuration", cfg.logAttrs()...) // secrets masked
	applyMemoryLimit(int64(cfg.MemoryLimit), getenv, log)
	notify := newNotifier(getenv)

	// Signals first: an upgrade or reload asked for while starting waits
	// until trackd serves, and never kills it (their default action).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	inh, err := inheritListeners(getenv)
	if err != nil {
		return err
	}
	defer inh.close()
	// The binary an upgrade starts: the path this one was started by,
	// without following symlinks (a deployment that moves a symlink to a
	// new version upgrades to that version).
	exe, exeErr := upgradeExecutable()
	parent, err := upgradeParentFrom(getenv)
	if err != nil {
		return err
	}

	if err := vfs.MkdirAllSync(vfs.OS{}, cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := admin.NewMetrics(reg)
	tracker := admin.NewTracker(time.Now)
	quar, err := quarantine.Open(filepath.Join(cfg.DataDir, "quarantine"), quarantine.Options{})
	if err != nil {
		return err
	}
	workspaces, created, err := loadWorkspaces(cfg)
	if err != nil {
		return err
	}
	dir, err := auth.NewDirectory(workspaces)
	if err != nil {
		return &cli.UsageError{Problems: []string{err.Error()}}
	}

	// The listeners: handed over by the old process of an upgrade or by
	// systemd, or opened here.
	ln, err := inh.listen(listenerAPI, cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	adminLn, err := inh.listen(listenerAdmin, cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	defer adminLn.Close()
	handover := []namedListener{{listenerAPI, ln}, {listenerAdmin, adminLn}}
	var publicLn net.Listener // the public status view's own, with --public-listen
	if cfg.PublicListen != "" {
		if publicLn, err = inh.listen(listenerPublic, cfg.PublicListen); err != nil {
			return fmt.Errorf("public listen: %w", err)
		}
		defer publicLn.Close()
		handover = append(handover, namedListener{listenerPublic, publicLn})
	}
	inh.close() // sockets handed over that this configuration does not use
	// An admin socket handed over by systemd or an upgrade is checked like
	// --admin-listen: on a non-loopback address it needs credentials.
	if a, ok := adminLn.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() && cfg.AdminUser == "" {
		return &cli.UsageError{Problems: []string{fmt.Sprintf("the admin socket handed to trackd listens on %s, not a loopback address: set --admin-user and --admin-password (or --admin-password-file) so that it requires credentials", a)}}
	}

	// In an upgrade, everything that could fail is done: tell the old
	// process to stop, and wait until it has released the data dir.
	if parent != nil {
		log.Info("upgrade: ready to take over; waiting for the old process to release the data dir")
		if err := parent.ready(2*cfg.ShutdownTimeout + 10*time.Second); err != nil {
			return err
		}
	}

	// The spool's lock makes sure no other trackd uses this data dir.
	opening := time.Now()
	sp, err := openServeSpool(cfg, log, metrics, parent != nil)
	if err != nil {
		return err
	}
	defer sp.Close()
	spoolOpened := time.Since(opening)
	admin.RegisterSpool(reg, sp, time.Now)
	if rep := sp.Report(); !rep.Clean() {
		log.Warn("spool recovered with damage; see `trackd spool verify`", "damage", len(rep.Damage), "repairs", strings.Join(rep.Repairs, "; "))
	}

	api, err := trackapi.New(trackapi.Options{
		Store:      sp,
		Auth:       dir,
		Region:     cfg.Region,
		RateLimit:  cfg.RateLimit,
		RateBurst:  cfg.RateBurst,
		MaxConns:   cmp.Or(cfg.MaxConns, autoMaxConns()),
		Durability: cfg.Durability,
		Classify:   classifyStoreError,
		Logger:     log,
		Observer:   admin.Observers{metrics, tracker, admin.NewRejectLog(log, 10*time.Second, time.Now)},
		OnPanic:    func(p trackapi.PanicInfo) { quarantinePanic(quar, metrics, log, p) },
	})
	if err != nil {
		return err
	}

	var ready atomic.Bool
	// The running destinations, filled in as their forwarders start.
	var sinks []sink.Sink
	var fwds []*forward.Forwarder
	var sinksMu sync.Mutex // guards sinks and fwds
	// Every timeout and the header size limit are set (the handler bounds
	// bodies per path and answers 408 to a trickling body).
	srv := trackapi.NewHTTPServer("", api, trackapi.Timeouts{}, log)
	var drainer trackapi.Drainer
	drainer.Wrap(srv)
	fwdStats := func() []forward.Stats {
		sinksMu.Lock()
		defer sinksMu.Unlock()
		var out []forward.Stats
		for _, f := range fwds {
			out = append(out, f.Stats())
		}
		return out
	}
	public := admin.PublicOptions{
		Region:     cfg.Region,
		Tracker:    tracker,
		Forwarders: fwdStats,
		Incidents:  func() ([]admin.Incident, error) { return admin.LoadIncidents(cfg.DataDir) },
	}
	adminSrv := trackapi.NewHTTPServer("", admin.Handler(admin.HandlerOptions{
		Gatherer:      reg,
		User:          cfg.AdminUser,
		Password:      cfg.adminSecret,
		OnAuthFailure: metrics.AdminAuthFailed,
		Ready: func() error {
			switch {
			case !ready.Load():
				return errors.New("starting or stopping")
			case sp.Err() != nil:
				return errors.New("spool failed; restart needed")
			}
			if d := sp.Stats().CommitRunning; d > commitStall {
				return fmt.Errorf("a spool commit has been waiting %s for the disk", d.Round(time.Second))
			}
			return nil
		},
		Status: &admin.StatusOptions{
			Region:     cfg.Region,
			Tracker:    tracker,
			Spool:      sp.Stats,
			Forwarders: fwdStats,
			Quarantine: func() map[string]int {
				return map[string]int{quarantine.KindRecord: quar.Count(quarantine.KindRecord), quarantine.KindPanic: quar.Count(quarantine.KindPanic)}
			},
		},
		Public: &public,
	}), trackapi.Timeouts{}, log)
	// The public status view on its own listener, for customers. It only
	// reads, so it stops last, when runServe returns.
	if publicLn != nil {
		publicSrv := trackapi.NewHTTPServer("", admin.PublicOnlyHandler(public), trackapi.Timeouts{}, log)
		publicDone := make(chan struct{})
		go func() {
			defer close(publicDone)
			if err := publicSrv.Serve(publicLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				log.Error("public status listener stopped", "err", err)
			}
		}()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if publicSrv.Shutdown(ctx) != nil {
				publicSrv.Close()
			}
			<-publicDone
		}()
		log.Info("public status view listening", "addr", publicLn.Addr().String())
	}

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	serve := func(s *http.Server, l net.Listener) {
		defer wg.Done()
		// A listener closed by draining ends Serve with net.ErrClosed.
		if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errc <- err
		}
	}
	wg.Add(2)
	go serve(srv, api.Listener(ln))
	go serve(adminSrv, &capListener{Listener: adminLn, max: maxAdminConns})

	// Forwarders: one per destination, each on its own cursor. They and
	// the embedded NATS server stop on fwdCtx.
	fwdCtx, stopForward := context.WithCancel(context.Background())
	var fwdWG sync.WaitGroup
	nats := startBackend(fwdCtx, cfg, parent, log)
	dests := destinations(cfg, nats, log)
	for _, d := range dests {
		dm := admin.RegisterDestination(reg, d.name)
		fwdWG.Add(1)
		go func() {
			defer fwdWG.Done()
			// The back end may be unreachable at start: the API serves
			// anyway (records wait in the spool) and this keeps trying.
			var sk sink.Sink
			if !keepTrying(fwdCtx, 30*time.Second, func() (err error) {
				sk, err = d.open(fwdCtx)
				return err
			}, func(err error, attempt int) {
				dm.SetupFailed()
				log.Error("cannot set up the destination; records wait in the spool", "destination", d.name, "err", err, "attempt", attempt)
			}) {
				return
			}
			sinksMu.Lock()
			sinks = append(sinks, sk)
			sinksMu.Unlock()
			var holdback time.Duration
			if js, ok := sk.(*jetstream.Sink); ok && js.AsyncPersist() {
				holdback = asyncHoldback
			}
			f, err := forward.New(forward.Options{Spool: sp, Sink: sk, Quarantine: quar, Logger: log, CursorHoldback: holdback})
			if err != nil {
				log.Error("forwarder", "destination", d.name, "err", err)
				return
			}
			admin.RegisterForwarder(reg, f, sp, time.Now)
			sinksMu.Lock()
			fwds = append(fwds, f)
			sinksMu.Unlock()
			dm.SetUp(true)
			if err := f.Run(fwdCtx); err != nil {
				dm.SetUp(false)
				log.Error("forwarder stopped", "destination", d.name, "err", err)
			}
		}()
	}
	// A cursor of a destination no longer configured holds back retention:
	// say so (removing it is an operator's decision: the destination may
	// only be disabled for a while).
	for name := range sp.Cursors() {
		if !slices.ContainsFunc(dests, func(d destination) bool { return d.name == name }) {
			log.Warn("spool cursor of a destination that is not configured holds back retention; configure the destination again, or, once it is gone for good, stop trackd and delete its cursor file from the spool directory", "destination", name, "file", filepath.Join(spoolDir(cfg.DataDir), "cursor."+name))
		}
	}

	collectCtx, stopCollect := context.WithCancel(context.Background())
	fwdWG.Add(1) // waited for before the spool closes, like the forwarders
	go func() {  // retention
		defer fwdWG.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-collectCtx.Done():
				return
			case <-t.C:
				if _, err := sp.Collect(); err != nil {
					log.Error("spool retention", "err", err)
				}
			}
		}
	}()

	// SIGHUP reloads the workspaces (from the flags, environment and config
	// file as they are now, or the data dir's workspaces.json) and the rate
	// limit (--rate-limit, --rate-burst); a bad
	// configuration is logged and the running one kept. SIGUSR2 starts the
	// binary now on disk and hands it the listeners; if it fails to start,
	// this process goes on serving.
	upgraded := make(chan *upgradeChild, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-collectCtx.Done(): // stopping
				return
			case sig := <-sigs:
				if sig == syscall.SIGUSR2 {
					if exeErr != nil {
						log.Error("upgrade on SIGUSR2: cannot find this program's binary; still serving", "err", exeErr)
						continue
					}
					log.Info("upgrade on SIGUSR2: starting the new binary", "binary", exe)
					child, err := startUpgrade(ctx, exe, os.Args, handover, stdout, stderr, cfg.ShutdownTimeout+30*time.Second)
					if err != nil {
						log.Error("upgrade failed; still serving", "err", err)
						continue
					}
					// Still the main process: tell systemd which one is
					// next, before stopping (a message from this process
					// after that would be ignored, or worse).
					if err := notify.send(fmt.Sprintf("MAINPID=%d", child.cmd.Process.Pid)); err != nil {
						log.Warn("sd_notify", "err", err)
					}
					log.Info("upgrade: the new process is ready; handing over", "pid", child.cmd.Process.Pid)
					upgraded <- child
					return
				}
				rcfg, err := reloadWorkspaces(args, getenv, dir)
				if err != nil {
					log.Error("reload on SIGHUP failed; keeping the running configuration", "err", err)
					continue
				}
				api.SetRateLimit(rcfg.RateLimit, rcfg.RateBurst)
				log.Info("reloaded workspaces and limits on SIGHUP", "workspaces", len(dir.Workspaces()),
					"rate_limit", rcfg.RateLimit, "rate_burst", rcfg.RateBurst)
			}
		}
	}()
	// The process that serves this data dir, for scripts (an upgrade's new
	// process overwrites it; a clean stop removes it).
	if err := writePIDFile(cfg.DataDir); err != nil {
		log.Warn("pid file", "err", err)
	}
	ready.Store(true)
	log.Info("serving", "listen", ln.Addr().String(), "admin", adminLn.Addr().String(), "region", cfg.Region,
		"durability", cfg.Durability, "sockets", cmp.Or(inh.source, "own"),
		"spool_open", spoolOpened.Round(time.Microsecond), "since_spool", time.Since(opening).Round(time.Microsecond))
	// The API serves: tell systemd (READY=1 means what /readyz means). The
	// banner also waits, a bounded time, for the embedded NATS server, so
	// that whoever reads it can consume events at once.
	if err := notify.send("READY=1", fmt.Sprintf("MAINPID=%d", os.Getpid()), "STATUS=serving"); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	if parent != nil {
		if err := parent.serving(); err != nil {
			log.Warn("upgrade: could not tell the old process that this one serves", "err", err)
		}
	}
	printBanner(stdout, ln.Addr(), adminLn.Addr(), nats.await(ctx, 10*time.Second, log), cfg, workspaces, created)

	var runErr error
	var child *upgradeChild
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case child = <-upgraded:
	}
	ready.Store(false)
	if child == nil {
		// Not on a handover: systemd would stop the service (MAINPID is
		// the new process already).
		notify.send("STOPPING=1")
	}
	log.Info("stopping", "handover", child != nil)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// The steps after the drain wait for the disk (the last commit, the
	// cursors, the spool's close): a disk that stopped answering would
	// hold the stop, the data dir's lock and an upgrade's successor for
	// ever. Past a bound, exit: what was acknowledged is synced already,
	// and the kernel releases the lock.
	hung := time.AfterFunc(cfg.ShutdownTimeout+stopStall, func() {
		log.Error("stop did not finish: the disk under the data dir does not answer; exiting", "after", cfg.ShutdownTimeout+stopStall)
		os.Exit(1)
	})
	stopping := time.Now()
	if err := drainer.Drain(sctx, srv, cfg.DrainGrace, ln); err != nil {
		log.Error("API listener did not drain in time", "err", err)
		srv.Close()
	}
	drained := time.Since(stopping)
	stopCollect()
	stopForward()
	fwdWG.Wait()
	if err := sp.Close(); err != nil && runErr == nil {
		runErr = err
	}
	hung.Stop() // the disk answered
	log.Info("spool closed", "drain", drained.Round(time.Microsecond), "total", time.Since(stopping).Round(time.Microsecond))
	if child != nil {
		if err := child.released(); err != nil {
			log.Error("upgrade: could not tell the new process; it takes over when this one exits", "err", err)
		}
	}
	sinksMu.Lock()
	for _, s := range sinks {
		s.Close()
	}
	sinksMu.Unlock()
	adminSrv.Shutdown(sctx)
	wg.Wait()
	// An upgrade that got ready just as a stop began does not take over.
	select {
	case c := <-upgraded:
		log.Info("upgrade: stopping instead; the new process is stopped", "pid", c.cmd.Process.Pid)
		c.abort()
		c.close()
	default:
	}
	nats.stop()
	if child != nil {
		err := child.waitServing(ctx, cfg.ShutdownTimeout)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			// SIGTERM during the handover: stop, the new process too.
			log.Info("upgrade: stopping (SIGTERM) during the handover; the new process is told to stop too", "pid", child.cmd.Process.Pid)
			child.cmd.Process.Signal(syscall.SIGTERM)
			child.close()
			return runErr
		default:
			log.Error("upgrade: "+err.Error(), "pid", child.cmd.Process.Pid)
			// Without systemd nothing would restart the service: this
			// binary takes the sockets back. Under systemd, MAINPID is the
			// failed process, and Restart= starts the service again.
			if getenv("NOTIFY_SOCKET") == "" {
				log.Warn("upgrade: the new process did not serve; running this binary again on the same sockets", "pid", child.cmd.Process.Pid)
				err = errors.Join(err, child.resumeAfterFailedUpgrade())
			}
			child.close()
			return errors.Join(runErr, err)
		}
		child.close()
		log.Info("stopped; the new process serves", "pid", child.cmd.Process.Pid)
		return runErr
	}
	removePIDFile(cfg.DataDir)
	log.Info("stopped")
	return runErr
}

// pidFile, in the data dir, holds the PID of the trackd serving it.
const pidFile = "trackd.pid"

func writePIDFile(dataDir string) error {
	return vfs.WriteFileAtomic(vfs.OS{}, dataDir, pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"))
}

// removePIDFile removes the pid file if it still names this process.
func removePIDFile(dataDir string) {
	name := filepath.Join(dataDir, pidFile)
	if b, err := os.ReadFile(name); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(name)
	}
}

// openServeSpool opens the data dir's spool. The new process of an upgrade
// is told the old one has released it; should the lock still be held (the
// old process closing its descriptors), it retries for a while.
func openServeSpool(cfg *serveConfig, log *slog.Logger, metrics *admin.Metrics, upgrading bool) (*spool.Spool, error) {
	syncMode := spool.SyncData
	if cfg.Durability == "memory" {
		syncMode = spool.SyncNone
	}
	opts := spool.Options{
		SegmentSize: int64(cfg.SpoolSegment),
		MaxBytes:    int64(cfg.SpoolMaxBytes),
		MinFree:     int64(cfg.SpoolMinFree),
		Retention:   cfg.SpoolRetention,
		Sync:        syncMode,
		Logger:      log,
		OnCommit:    metrics.Commit,
	}
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	for {
		sp, err := spool.Open(spoolDir(cfg.DataDir), opts)
		switch {
		case err == nil:
			return sp, nil
		case !errors.Is(err, spool.ErrLocked):
			return nil, err
		case !upgrading || time.Now().After(deadline):
			return nil, fmt.Errorf("%w: another trackd is serving data dir %s", err, cfg.DataDir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backend is the NATS server the jetstream destination uses: the embedded
// one, started in the background once the API serves, or an external one.
type backend struct {
	bannerURL string        // for the banner: where consumers find it
	ready     chan struct{} // closed once url is set
	url       string

	done chan struct{} // closed when the starter goroutine has ended
	emb  *jetstream.Embedded
}

// startBackend starts the embedded NATS server unless an external one is
// configured (or forwarding is off). The new process of an upgrade starts
// it only once the old process, which holds its port and store, has
// exited. A failed start is logged and retried until ctx ends.
func startBackend(ctx context.Context, cfg *serveConfig, parent *upgradeParent, log *slog.Logger) *backend {
	b := &backend{ready: make(chan struct{}), done: make(chan struct{})}
	if !cfg.Forward || cfg.NATSURL != "" {
		b.url, b.bannerURL = cfg.NATSURL, cfg.NATSURL
		close(b.ready)
		close(b.done)
		return b
	}
	host, port, _ := net.SplitHostPort(cfg.NATSListen)
	if host == "" || net.ParseIP(host).IsUnspecified() {
		host = "127.0.0.1"
	}
	if port != "0" {
		b.bannerURL = "nats://" + net.JoinHostPort(host, port)
	}
	go func() {
		defer close(b.done)
		if parent != nil {
			select {
			case <-parent.gone:
			case <-ctx.Done():
				return
			}
		}
		if keepTrying(ctx, 10*time.Second, func() (err error) {
			b.emb, err = jetstream.StartEmbedded(jetstream.EmbeddedOptions{
				Dir:        filepath.Join(cfg.DataDir, "jetstream"),
				Listen:     cfg.NATSListen,
				SyncAlways: cfg.NATSSyncAlways,
				Logger:     log.With("component", "nats"),
			})
			return err
		}, func(err error, attempt int) {
			log.Error("embedded NATS did not start; records wait in the spool; retrying", "err", err, "attempt", attempt)
		}) {
			b.url = b.emb.ClientURL()
			close(b.ready)
			log.Info("embedded NATS JetStream serving", "url", b.url)
		}
	}()
	return b
}

// await waits up to d for the back end's URL; after that, or when ctx
// ends, it returns the configured address (the server may still come up).
func (b *backend) await(ctx context.Context, d time.Duration, log *slog.Logger) string {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.ready:
		return b.url
	case <-t.C:
		log.Warn("the embedded NATS server is not up yet; serving anyway (records wait in the spool)", "waited", d)
	case <-ctx.Done():
	}
	return b.bannerURL
}

// keepTrying calls try until it succeeds, waiting attempt seconds (at most
// maxWait) after each failure, which it reports to failed unless ctx has
// ended. It reports false if ctx ended first.
func keepTrying(ctx context.Context, maxWait time.Duration, try func() error, failed func(err error, attempt int)) bool {
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		failed(err, attempt)
		t := time.NewTimer(min(time.Duration(attempt)*time.Second, maxWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// stop shuts the embedded server down, after its starter has ended (the
// caller cancelled its context).
func (b *backend) stop() {
	<-b.done
	if b.emb != nil {
		b.emb.Shutdown()
	}
}

// destination is a configured back end and how to connect to it.
type destination struct {
	name string
	open func(context.Context) (sink.Sink, error)
}

// asyncHoldback is the forwarder's CursorHoldback for a JetStream stream in
// async persist mode, which acknowledges a message before writing it
// (within milliseconds): trackd does not create streams so (a write error
// there loses messages already acknowledged, without the publisher knowing;
// BENCHMARKS.md §5.5), but one may exist. The sink's default resume check
// (65,536 IDs) covers the CursorInterval (200 ms) plus this holdback of
// records up to ~145k records/s, the rate such a stream drains at here.
const asyncHoldback = 250 * time.Millisecond

func destinations(cfg *serveConfig, nats *backend, log *slog.Logger) []destination {
	var dests []destination
	if cfg.Forward {
		dedup := cfg.natsDedupWindow()
		jsOpts := jetstream.Options{
			ConnOptions: jetstream.ConnOptions{
				CredsFile: cfg.NATSCreds, User: cfg.NATSUser, Password: cfg.NATSPassword, Token: cfg.NATSToken,
				TLSCAFile: cfg.NATSTLSCA, TLSCertFile: cfg.NATSTLSCert, TLSKeyFile: cfg.NATSTLSKey,
			},
			Stream: cfg.NATSStream, SubjectPrefix: cfg.NATSPrefix, Replicas: cfg.NATSReplicas,
			DuplicateWindow: dedup, Logger: log.With("component", "jetstream"),
			MaxAge: cfg.NATSMaxAge, MaxBytes: int64(cfg.NATSMaxBytes),
		}
		dests = append(dests, destination{jetstream.DefaultName, func(ctx context.Context) (sink.Sink, error) {
			select {
			case <-nats.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			o := jsOpts
			o.URL = nats.url
			// The embedded server's dedup state is this process's memory:
			// an older stream's longer window is shortened, unless the
			// window was configured.
			o.ShrinkDuplicateWindow = nats.emb != nil && cfg.NATSDedup == 0
			// The embedded stream is trackd's own: it follows the flags,
			// defaults included. An external one only where they are set.
			o.ApplyMaxAge = nats.emb != nil || cfg.NATSMaxAge > 0
			o.ApplyMaxBytes = nats.emb != nil || cfg.NATSMaxBytes > 0
			return jetstream.New(ctx, o)
		}})
	}
	if cfg.HTTPURL != "" {
		httpOpts := httpsink.Options{URL: cfg.HTTPURL, Mode: cfg.HTTPMode, Headers: cfg.HTTPHeaders.values(), Timeout: cfg.HTTPTimeout,
			Logger: log.With("component", "httpsink")}
		dests = append(dests, destination{name: httpsink.DefaultName, open: func(context.Context) (sink.Sink, error) { return httpsink.New(httpOpts) }})
	}
	if cfg.KafkaBrokers != "" {
		var brokers []string
		for _, b := range strings.Split(cfg.KafkaBrokers, ",") {
			brokers = append(brokers, strings.TrimSpace(b))
		}
		kOpts := kafka.Options{
			Brokers: brokers, Topic: cfg.KafkaTopic, CreateTopic: cfg.KafkaCreateTopic,
			Partitions: int32(cfg.KafkaPartitions), ReplicationFactor: int16(cfg.KafkaReplication),
			TLS:    kafka.TLSOptions{Enable: cfg.KafkaTLS || cfg.KafkaTLSCA != "", CAFile: cfg.KafkaTLSCA, CertFile: cfg.KafkaTLSCert, KeyFile: cfg.KafkaTLSKey},
			SASL:   kafka.SASLOptions{Mechanism: cfg.KafkaSASL, User: cfg.KafkaUser, Password: cfg.KafkaPassword},
			Logger: log.With("component", "kafka"),
		}
		dests = append(dests, destination{name: kafka.DefaultName, open: func(ctx context.Context) (sink.Sink, error) { return kafka.New(ctx, kOpts) }})
	}
	return dests
}

// stopStall is how long the stop may run past --shutdown-timeout before
// the process exits without finishing it (a disk that stopped answering).
const stopStall = 30 * time.Second

// commitStall is how long a spool commit may take before /readyz says the
// node cannot store (a healthy sync takes milliseconds).
const commitStall = 10 * time.Second

// classifyStoreError maps spool errors to the API's answer: always 503 with
// Retry-After (never 502), with a reason an operator can act on.
func classifyStoreError(err error) (int, string, time.Duration) {
	switch {
	case errors.Is(err, spool.ErrFull):
		return http.StatusServiceUnavailable, "spool_full", 5 * time.Second
	case errors.Is(err, spool.ErrDiskLow):
		return http.StatusServiceUnavailable, "disk_low", 5 * time.Second
	case errors.Is(err, spool.ErrFailed):
		return http.StatusServiceUnavailable, "spool_failed", 30 * time.Second
	case errors.Is(err, spool.ErrClosed):
		return http.StatusServiceUnavailable, "shutting_down", time.Second
	case errors.Is(err, spool.ErrBusy):
		return http.StatusServiceUnavailable, "spool_busy", time.Second
	}
	return http.StatusServiceUnavailable, "unavailable", time.Second
}

// quarantinePanic keeps a request whose handling panicked, with its stack,
// in the quarantine (credentials were already removed), and counts it.
func quarantinePanic(q *quarantine.Store, m *admin.Metrics, log *slog.Logger, p trackapi.PanicInfo) {
	m.Panic("http")
	e := quarantine.Entry{
		Kind: quarantine.KindPanic, Time: p.Time, Reason: "panic while handling a request",
		RequestID: p.RequestID, Route: p.Route, Workspace: p.Workspace, Method: p.Method, URI: p.URI,
		Remote: p.Remote, Header: p.Header, Panic: fmt.Sprint(p.Value), Stack: string(p.Stack),
	}
	if utf8.Valid(p.Body) {
		e.BodyText = string(p.Body)
	} else {
		e.Body = p.Body
	}
	id, err := q.Put(e)
	m.Quarantined(quarantine.KindPanic, err == nil)
	if err != nil {
		log.Error("panic while handling a request; could not quarantine it", "request_id", p.RequestID, "route", p.Route, "panic", e.Panic, "err", err, "stack", e.Stack)
		return
	}
	log.Error("panic while handling a request; request quarantined", "request_id", p.RequestID, "route", p.Route, "workspace", p.Workspace, "panic", e.Panic, "quarantine_id", id)
}

// workspacesFile holds the workspaces trackd created for itself.
const workspacesFile = "workspaces.json"

type storedWorkspace struct {
	SiteID string `json:"site_id"`
	APIKey string `json:"api_key"`
	Region string `json:"region,omitempty"`
}

// loadWorkspaces returns the configured workspaces; with none configured,
// those kept in the data dir, creating one there on the first start.
func loadWorkspaces(cfg *serveConfig) (ws []auth.Workspace, created bool, err error) {
	for _, w := range cfg.Workspaces {
		site, key, _ := strings.Cut(w, ":")
		ws = append(ws, auth.Workspace{SiteID: site, APIKey: key})
	}
	if len(ws) > 0 {
		return ws, false, nil
	}
	name := filepath.Join(cfg.DataDir, workspacesFile)
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		w := storedWorkspace{SiteID: randomHex(10), APIKey: randomHex(10)}
		b, _ := json.MarshalIndent(struct {
			Workspaces []storedWorkspace `json:"workspaces"`
		}{[]storedWorkspace{w}}, "", "  ")
		if err := vfs.WriteFileAtomic(vfs.OS{}, cfg.DataDir, workspacesFile, append(b, '\n')); err != nil {
			return nil, false, fmt.Errorf("create workspace: %w", err)
		}
		if err := os.Chmod(name, 0o600); err != nil {
			return nil, false, fmt.Errorf("create workspace: %w", err)
		}
		return []auth.Workspace{{SiteID: w.SiteID, APIKey: w.APIKey}}, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("workspaces: %w", err)
	}
	var f struct {
		Workspaces []storedWorkspace `json:"workspaces"`
	}
	if err := json.Unmarshal(b, &f); err != nil || len(f.Workspaces) == 0 {
		return nil, false, &cli.UsageError{Problems: []string{fmt.Sprintf("%s: want {\"workspaces\":[{\"site_id\":...,\"api_key\":...}]}", name)}}
	}
	for _, w := range f.Workspaces {
		ws = append(ws, auth.Workspace{SiteID: w.SiteID, APIKey: w.APIKey, Region: w.Region})
	}
	return ws, false, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// printBanner tells a newcomer where trackd listens and how to call it. The
// API key is printed only when trackd has just created the workspace.
func printBanner(w io.Writer, api, adminAddr net.Addr, natsURL string, cfg *serveConfig, ws []auth.Workspace, created bool) {
	host := "127.0.0.1"
	if a, ok := api.(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		host = a.IP.String()
	}
	port := 0
	if a, ok := api.(*net.TCPAddr); ok {
		port = a.Port
	}
	base := fmt.Sprintf("http://%s", net.JoinHostPort(host, fmt.Sprint(port)))
	fmt.Fprintf(w, "trackd: Track API listening on %s (region %s, durability %s)\n", api, cfg.Region, cfg.Durability)
	fmt.Fprintf(w, "trackd: admin listening on %s (/metrics, /healthz, /readyz, /debug/pprof/)\n", adminAddr)
	if natsURL != "" {
		fmt.Fprintf(w, "trackd: forwarding to NATS JetStream at %s, stream %s, subjects %s.> (see events: trackd tail --nats-url %s)\n", redactURL(natsURL), cfg.NATSStream, cfg.NATSPrefix, redactURL(natsURL))
	}
	if created {
		fmt.Fprintf(w, "trackd: created workspace (kept in %s)\n", filepath.Join(cfg.DataDir, workspacesFile))
		fmt.Fprintf(w, "  site ID: %s\n  API key: %s\n", ws[0].SiteID, ws[0].APIKey)
		fmt.Fprintf(w, "try it:\n  curl -i -u %s:%s -X PUT %s/api/v1/customers/42 -H 'Content-Type: application/json' -d '{\"email\":\"ada@example.com\"}'\n",
			ws[0].SiteID, ws[0].APIKey, base)
		return
	}
	sites := make([]string, len(ws))
	for i, x := range ws {
		sites[i] = x.SiteID
	}
	fmt.Fprintf(w, "trackd: serving workspaces %s\n", strings.Join(sites, ", "))
}

// redactURL drops credentials from a URL (or comma-separated URLs) before
// it is printed.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		switch {
		case err != nil && strings.Contains(p, "@"):
			parts[i] = "(unparsable URL with credentials)"
		case err == nil && u.User != nil:
			u.User = nil
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// reloadWorkspaces re-reads the configuration and replaces the workspace
// directory's contents, all or nothing; it returns the configuration read,
// for the limits the caller applies.
func reloadWorkspaces(args []string, getenv func(string) string, dir *auth.Directory) (*serveConfig, error) {
	cfg, err := loadServeConfig(args, getenv, io.Discard)
	if err != nil {
		return nil, err
	}
	ws, created, err := loadWorkspaces(cfg)
	if err != nil {
		return nil, err
	}
	if created {
		// The file vanished: a new random workspace would lock every
		// client out. Keep the running workspaces, and the new file too
		// (it is what a next start would use), and say so.
		return nil, fmt.Errorf("%s was missing; a new one with a new workspace was written, but the running workspaces are kept: restore the file (or edit the new one) and reload again", filepath.Join(cfg.DataDir, workspacesFile))
	}
	return cfg, dir.Replace(ws)
}

// defaultMemoryLimit is --memory-limit's default. What trackd holds is
// bounded whatever the backlog (the spool reads with fixed buffers; the
// embedded NATS server's duplicate state is one second of publishes), but
// the collector's headroom is proportional to the live heap: under full
// batch load with forwarding the process peaked at 138-153 MiB without a
// limit and 109-118 MiB with this one (BENCHMARKS.md §5), within the 150 MB
// target.
const defaultMemoryLimit = 100 << 20

// applyMemoryLimit sets the runtime's soft memory limit to limit bytes
// (0: none), unless GOMEMLIMIT is set, which the runtime already applied.
func applyMemoryLimit(limit int64, getenv func(string) string, log *slog.Logger) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		log.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", v)
		return
	}
	if limit <= 0 {
		debug.SetMemoryLimit(math.MaxInt64)
		return
	}
	debug.SetMemoryLimit(limit)
}

// autoMaxConns is --max-conns' default: three quarters of the open-file
// limit above a reserve of 512 (the spool, its cursors and quarantine, the
// embedded NATS server and its clients, the admin listener), between 64 and
// 8192 (~20 KiB of memory each). Connections past the limit would exhaust
// the descriptors the spool needs to roll a segment.
func autoMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	n := (int64(min(rl.Cur, 1<<30)) - 512) * 3 / 4
	return int(min(max(n, 64), 8192))
}
