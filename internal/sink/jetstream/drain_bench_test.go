package jetstream

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
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
// while no forwarder runs (the back end "down"), then one forwarder drains
// them into the embedded JetStream. It reports records/s and the live heap
// with the backlog spooled and after the drain.
//
//	TRACKD_DRAIN_RECORDS=1000000 go test -run '^$' -bench BenchmarkDrain -benchtime 1x ./internal/sink/jetstream/
func BenchmarkDrain(b *testing.B) {
	n := 200_000
	if v := os.Getenv("TRACKD_DRAIN_RECORDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for b.Loop() {
		b.StopTimer()
		sp, err := spool.Open(b.TempDir(), spool.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
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
		e, err := StartEmbedded(EmbeddedOptions{Dir: b.TempDir(), Listen: "127.0.0.1:-1"})
		if err != nil {
			b.Fatal(err)
		}
		s, err := New(ctx, Options{URL: e.ClientURL()})
		if err != nil {
			b.Fatal(err)
		}
		f, err := forward.New(forward.Options{Spool: sp, Sink: s, Quarantine: discardQuarantine{}})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := f.Drain(ctx); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		b.StopTimer()
		if got := f.Stats().Delivered; got != uint64(n) {
			b.Fatalf("delivered %d of %d", got, n)
		}
		b.ReportMetric(float64(n)/el.Seconds(), "records/s")
		b.ReportMetric(float64(heapSpooled)/(1<<20), "MiB-heap-spooled")
		b.ReportMetric(float64(liveHeap())/(1<<20), "MiB-heap-drained")
		s.Close()
		e.Shutdown()
		sp.Close()
		cancel()
		b.StartTimer()
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
