package sinktest

import (
	"fmt"
	"strings"
	"time"

	"github.com/trackd/trackd/internal/spool"
)

var recordOps = []string{"v1.identify", "v1.event", "v2.person.event", "v1.delete", "v1.device.add"}

// Records returns n records numbered from first, for sink tests: over a few
// workspaces (one with characters NATS treats specially), operations and 7
// persons, with ~300-byte bodies that keep whitespace and escapes as sent;
// v1.delete has no body.
func Records(first, n int) []spool.Record {
	recs := make([]spool.Record, 0, n)
	for i := first; i < first+n; i++ {
		op := recordOps[i%len(recordOps)]
		r := spool.Record{
			ID:         fmt.Sprintf("01JD%022d", i),
			Workspace:  []string{"46be54768e7d49ab2628", "site.two", "site three"}[i%3],
			Op:         op,
			ReceivedAt: time.Date(2025, 1, 2, 3, 4, 5, i, time.UTC).UnixNano(),
			Meta: []spool.KV{
				{Key: "region", Value: "us"},
				{Key: "api", Value: op[:2]},
				{Key: "identifier", Value: fmt.Sprintf("person-%d", i%7)},
				{Key: "request_id", Value: fmt.Sprintf("req-%d", i)},
				{Key: "user_agent", Value: "Customer.io Go Client/3.10.0 (+ tests)"},
				{Key: "client_ip", Value: "192.0.2.7"},
				{Key: "timestamp", Value: "1735787045"},
			},
		}
		if op != "v1.delete" {
			pad := strings.Repeat("x", 180)
			r.Body = fmt.Appendf(nil, "{\"name\": \"event-%d\",\n \"data\":{\"n\":%d,\"s\":\"\\u00e9\u6f22 \\\"q\\\" <&>\",\"pad\":%q}}", i, i, pad)
		}
		recs = append(recs, r)
	}
	return recs
}

// BenchRecords returns n v1 event records with ~300-byte bodies, for sink
// benchmarks.
func BenchRecords(n int) []spool.Record {
	recs := Records(0, n)
	for i := range recs {
		recs[i].Op = "v1.event"
		recs[i].Body = fmt.Appendf(nil, `{"name":"purchase","data":{"order_id":"ord-%08d","amount":129.95,"currency":"EUR",`+
			`"items":[{"sku":"SKU-1042","qty":2},{"sku":"SKU-2210","qty":1}],"coupon":"SPRING25",`+
			`"page":"https://shop.example.com/checkout/complete?ref=newsletter","ab":"variant-b"},"timestamp":1735787045}`, i)
	}
	return recs
}
