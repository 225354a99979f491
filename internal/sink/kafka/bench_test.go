package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

// BenchmarkSend measures Send of batches of ~300-byte bodies against an
// in-process kfake broker (TCP on loopback, in-memory log, no fsync), in
// records/s: the client's and the loopback's ceiling, not a real broker's.
func BenchmarkSend(b *testing.B) {
	for _, bc := range []struct {
		name       string
		batch      int
		partitions int32
		blackhole  bool
	}{
		{"batch=500/partitions=6", 500, 6, false},
		{"batch=100/partitions=6", 100, 6, false},
		{"batch=500/partitions=1", 500, 1, false},
		{"batch=2000/partitions=6", 2000, 6, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := []kfake.Opt{kfake.SeedTopics(bc.partitions, DefaultTopic)}
			if bc.blackhole {
				opts = append(opts, kfake.BlackholeProduce())
			}
			c := newCluster(b, opts...)
			s, err := New(context.Background(), Options{Brokers: c.ListenAddrs()})
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
					recs[i].ID = fmt.Sprintf("01JD%012d%010d", n, i)
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
