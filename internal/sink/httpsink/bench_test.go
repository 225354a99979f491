package httpsink

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/sink/sinktest"
	"github.com/trackd/trackd/internal/spool"
)

// BenchmarkSend measures Send of 500 records of ~300-byte bodies to an
// httptest receiver on loopback that reads each request and answers 200, in
// records/s: batch mode (one POST of 500, or five of 100) and single mode
// (500 POSTs).
func BenchmarkSend(b *testing.B) {
	for _, bc := range []struct {
		name     string
		mode     string
		maxBatch int
	}{
		{"batch/post=500", ModeBatch, 500},
		{"batch/post=100", ModeBatch, 100},
		{"single", ModeSingle, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusOK)
			}))
			defer srv.Close()
			s := newSink(b, srv.URL, Options{Mode: bc.mode, MaxBatch: bc.maxBatch,
				Headers: map[string]string{"Authorization": "Bearer bench"}})
			recs := benchRecords(500)
			ctx := testCtx(b)
			b.SetBytes(int64(len(recs[0].Body) * len(recs)))
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
