package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

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

// benchRecords returns n records with ~300-byte v1 event bodies.
func benchRecords(n int) []spool.Record {
	recs := testRecords(0, n)
	for i := range recs {
		recs[i].Op = "v1.event"
		recs[i].Body = fmt.Appendf(nil, `{"name":"purchase","data":{"order_id":"ord-%08d","amount":129.95,"currency":"EUR",`+
			`"items":[{"sku":"SKU-1042","qty":2},{"sku":"SKU-2210","qty":1}],"coupon":"SPRING25",`+
			`"page":"https://shop.example.com/checkout/complete?ref=newsletter","ab":"variant-b"},"timestamp":1735787045}`, i)
	}
	return recs
}
