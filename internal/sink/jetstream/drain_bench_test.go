package jetstream

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/quarantine"
	"github.com/trackd/trackd/internal/spool"
)

type discardQuarantine struct{}

func (discardQuarantine) Put(quarantine.Entry) (string, error) { return "", nil }

// BenchmarkDrain measures how fast a backlog leaves the spool: N records
// (TRACKD_DRAIN_RECORDS, default 200 000, ~300-byte bodies) are spooled
// once while no forwarder runs (the back end "down"); then each case
// drains all of them into a fresh embedded JetStream, from the start (its
// cursor removed), in the same process. Cases:
//
//   - window=1: one batch in flight, the forwarder without pipelining (the
//     baseline of the same run);
//   - window=8: the default window;
//   - window=8/dedup=2m: the default with nats-server's default duplicate
//     window instead of EmbeddedDuplicateWindow (memory);
//   - window=8/memlimit=100MiB: the default under a soft memory limit
//     (GOMEMLIMIT, debug.SetMemoryLimit) of 100 MiB.
//
// It reports records/s, the process's CPU time per record (trackd and the
// embedded server together), the peak in-use heap during the drain
// (sampled every 50 ms), the peak RSS during the drain (Linux), and the live
// heap with the backlog spooled and after the drain.
//
//	TRACKD_DRAIN_RECORDS=1000000 go test -run '^$' -bench BenchmarkDrain -benchtime 1x -count 3 ./internal/sink/jetstream/
func BenchmarkDrain(b *testing.B) {
	n := 200_000
	if v := os.Getenv("TRACKD_DRAIN_RECORDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	sp, err := spool.Open(b.TempDir(), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	g := benchRecords(100)
	for i := 0; i < n; i += len(g) {
		for j := range g {
			g[j].ID = fmt.Sprintf("01JD%012d%010d", i, j)
		}
		if err := sp.Append(ctx, g); err != nil {
			b.Fatal(err)
		}
	}
	heapSpooled := liveHeap()

	for _, bc := range []struct {
		name     string
		window   int
		dedup    time.Duration
		memLimit int64
	}{
		{"window=1", 1, EmbeddedDuplicateWindow, 0},
		{"window=8", 8, EmbeddedDuplicateWindow, 0},
		{"window=8/dedup=2m", 8, DefaultDuplicateWindow, 0},
		{"window=8/memlimit=100MiB", 8, EmbeddedDuplicateWindow, 100 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.memLimit > 0 {
				defer debug.SetMemoryLimit(debug.SetMemoryLimit(bc.memLimit))
			}
			for b.Loop() {
				b.StopTimer()
				e, err := StartEmbedded(EmbeddedOptions{Dir: b.TempDir(), Listen: "127.0.0.1:-1"})
				if err != nil {
					b.Fatal(err)
				}
				s, err := New(ctx, Options{URL: e.ClientURL(), DuplicateWindow: bc.dedup})
				if err != nil {
					b.Fatal(err)
				}
				if err := sp.RemoveCursor(s.Name()); err != nil {
					b.Fatal(err)
				}
				f, err := forward.New(forward.Options{Spool: sp, Sink: s, Quarantine: discardQuarantine{}, Window: bc.window})
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				debug.FreeOSMemory()
				resetPeakRSS()
				peak := sampleHeap()
				cpu0 := cpuTime()
				start := time.Now()
				b.StartTimer()
				if err := f.Drain(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				el, cpu := time.Since(start), cpuTime()-cpu0
				peakHeap := peak()
				if got := f.Stats().Delivered; got != uint64(n) {
					b.Fatalf("delivered %d of %d", got, n)
				}
				b.ReportMetric(float64(n)/el.Seconds(), "records/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/record")
				b.ReportMetric(float64(peakHeap)/(1<<20), "MiB-peak-heap")
				if rss := peakRSS(); rss > 0 {
					b.ReportMetric(float64(rss)/(1<<20), "MiB-peak-rss")
				}
				b.ReportMetric(float64(heapSpooled)/(1<<20), "MiB-heap-spooled")
				b.ReportMetric(float64(liveHeap())/(1<<20), "MiB-heap-drained")
				s.Close()
				e.Shutdown()
				b.StartTimer()
			}
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// sampleHeap samples the in-use heap every 50 ms until the returned
// function is called, which returns the peak.
func sampleHeap() func() uint64 {
	var (
		peak uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(stop)
		wg.Wait()
		return peak
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets the kernel's peak RSS of the process (Linux; a no-op
// elsewhere).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns the process's peak RSS in bytes since resetPeakRSS (0 if
// unknown).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
