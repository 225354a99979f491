package trackapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/trackapi"
)

type nopStore struct{}

func (nopStore) Append(context.Context, []spool.Record) error { return nil }

// trackBody is a ~300 B v1 track body.
var trackBody = []byte(`{"name":"purchase","id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","timestamp":1700000000,"data":{"price":23.45,"currency":"EUR","sku":"SKU-1234567","qty":2,"coupon":"WINTER","category":"shoes","color":"blue","size":"42","referrer":"https://example.com/landing?utm=mail","ok":true}}`)

func batchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"person","action":"event","identifiers":{"id":"user-%06d"},"name":"purchase","timestamp":1700000000,"attributes":{"price":23.45,"currency":"EUR","sku":"SKU-1234567","qty":2,"coupon":"WINTER","category":"shoes","color":"blue","size":"42"}}`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func benchServer(b *testing.B, h http.Handler, path string, body []byte) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	authz := basic(site1, key1)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(32) // 64 client goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(body))
			req.Header.Set("Authorization", authz)
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}

func newBenchHandler(b *testing.B) http.Handler {
	h, err := trackapi.New(trackapi.Options{Store: nopStore{}, Auth: newDirectory(b), Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// newSpoolHandler is the handler over a real, durable spool (fdatasync
// group commit) in a temporary directory.
func newSpoolHandler(b *testing.B) http.Handler {
	var commits, records atomic.Int64
	var took atomic.Int64
	sp, err := spool.Open(b.TempDir(), spool.Options{OnCommit: func(_ int, recs, _ int64, d time.Duration) {
		commits.Add(1)
		records.Add(recs)
		took.Add(int64(d))
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sp.Close()
		if n := commits.Load(); n > 0 {
			b.ReportMetric(float64(records.Load())/float64(n), "records/commit")
			b.ReportMetric(float64(took.Load())/float64(n)/1e3, "µs/commit")
		}
	})
	h, err := trackapi.New(trackapi.Options{Store: sp, Auth: newDirectory(b), Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// plain is the baseline: read the body, answer {}.
var plain = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write([]byte("{}"))
})

// BenchmarkHTTP compares the full trackd handler with plain net/http over
// a real loopback listener (64 client goroutines; client and server share
// the CPUs): with a no-op store (the HTTP path alone) and with the real
// spool (durable: every 200 after an fdatasync).
func BenchmarkHTTP(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchServer(b, plain, "/api/v1/customers/u1/events", trackBody) })
	b.Run("v1track", func(b *testing.B) { benchServer(b, newBenchHandler(b), "/api/v1/customers/u1/events", trackBody) })
	b.Run("v1track-spool", func(b *testing.B) { benchServer(b, newSpoolHandler(b), "/api/v1/customers/u1/events", trackBody) })
	batch := batchBody(100)
	b.Run("plain-batch100", func(b *testing.B) { benchServer(b, plain, "/api/v2/batch", batch) })
	b.Run("v2batch100", func(b *testing.B) { benchServer(b, newBenchHandler(b), "/api/v2/batch", batch) })
	b.Run("v2batch100-spool", func(b *testing.B) { benchServer(b, newSpoolHandler(b), "/api/v2/batch", batch) })
}

// benchWriter is a minimal ResponseWriter for handler-only benchmarks.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(c int)           { w.code = c }

// BenchmarkHandler measures the handler alone (no network): the cost and
// allocations trackd adds per request.
func BenchmarkHandler(b *testing.B) {
	for _, c := range []struct {
		name, path string
		body       []byte
	}{
		{"v1track", "/api/v1/customers/u1/events", trackBody},
		{"v2batch100", "/api/v2/batch", batchBody(100)},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newBenchHandler(b)
			authz := basic(site1, key1)
			rd := bytes.NewReader(c.body)
			req, _ := http.NewRequest("POST", "http://x"+c.path, rd)
			req.Header.Set("Authorization", authz)
			req.RemoteAddr = "127.0.0.1:5555"
			w := &benchWriter{h: http.Header{}}
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(c.body)
				req.Body = io.NopCloser(rd)
				req.ContentLength = int64(len(c.body))
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.code != 200 {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}
