package jetstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

// BenchmarkSend measures Send of 500-record batches of ~300-byte bodies
// against the embedded server (TCP on loopback, file storage), in
// records/s.
func BenchmarkSend(b *testing.B) {
	for _, bc := range []struct {
		name       string
		syncAlways bool
		maxPending int
		batch      int
	}{
		{"batch=500", false, 0, 500},
		{"batch=100", false, 0, 100},
		{"batch=500/pending=128", false, 128, 500},
		{"batch=500/pending=4096", false, 4096, 500},
		{"batch=500/sync-always", true, 0, 500},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := StartEmbedded(EmbeddedOptions{Dir: b.TempDir(), Listen: "127.0.0.1:-1", SyncAlways: bc.syncAlways})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Shutdown()
			s, err := New(context.Background(), Options{URL: e.ClientURL(), MaxPending: bc.maxPending})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			recs := benchRecords(bc.batch)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.SetBytes(int64(len(recs[0].Body) * len(recs)))
			b.ResetTimer()
			start := time.Now()
			for n := 0; b.Loop(); n++ {
				for i := range recs {
					recs[i].ID = fmt.Sprintf("01JD%012d%010d", n, i) // fresh: not deduplicated
				}
				for i, err := range s.Send(ctx, recs) {
					if err != nil {
						b.Fatalf("record %d: %v", i, err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/time.Since(start).Seconds(), "records/s")
		})
	}
}

// benchRecords returns the shared sink benchmark records.
func benchRecords(n int) []spool.Record { return sinktest.BenchRecords(n) }
