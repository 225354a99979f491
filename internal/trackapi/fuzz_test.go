package trackapi_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/trackapi"
)

// documented is every status the server may answer (without a panic, and
// with a store that never fails).
var documented = map[int]bool{200: true, 204: true, 207: true, 400: true, 401: true, 404: true, 405: true,
	408: true, 413: true, 415: true, 429: true}

var fuzzMethods = []string{"GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS"}

var fuzzPaths = []string{
	"/auth", "/api/v1/accounts/region", "/api/v1/customers/u1", "/api/v1/customers/u1/devices",
	"/api/v1/customers/u1/devices/d1", "/api/v1/customers/u1/suppress", "/api/v1/customers/u1/unsuppress",
	"/api/v1/customers/u1/events", "/api/v1/events", "/api/v1/merge_customers", "/api/v1/forms/f1/submit",
	"/api/v1/metrics", "/api/v1/push/events", "/push/events", "/unsubscribe/d1",
	"/api/v1/segments/3/add_customers", "/api/v1/segments/3/remove_customers?id_type=email",
	"/api/v2/entity", "/api/v2/batch",
}

// FuzzHandler drives method, path, credentials, Content-Encoding and body
// through the whole handler chain: it never panics, answers only documented
// statuses, and stores nothing unless it answered 2xx.
func FuzzHandler(f *testing.F) {
	seeds := []string{
		`{}`, `null`, `{"name":"x"}`, `{"device":{"id":"t","platform":"ios"}}`,
		`{"primary":{"id":"a"},"secondary":{"id":"b"}}`, `{"data":{"email":"a"}}`,
		`{"delivery_id":"d","metric":"opened","event":"opened"}`, `{"unsubscribe":true}`, `{"ids":["a"]}`,
		`{"type":"person","action":"identify","identifiers":{"id":"1"}}`,
		`{"batch":[{"type":"person","action":"event","identifiers":{"id":"1"},"name":"n"},{"type":"x"}]}`,
		``, ` `, `{`, `[]`, "\xff", `{"a":` + string(bytes.Repeat([]byte("["), 40)),
	}
	for i, s := range seeds {
		f.Add(uint8(i), uint8(i), uint8(0), false, []byte(s), "")
		f.Add(uint8(i+1), uint8(i*3), uint8(1), true, []byte(s), "x")
	}
	var panics atomic.Int64
	var stored atomic.Int64
	store := storeFunc(func(_ context_, recs []spool.Record) error {
		for _, r := range recs {
			if r.Op == "" || r.ID == "" {
				panic("record without op or id")
			}
		}
		stored.Add(int64(len(recs)))
		return nil
	})
	dir := newDirectory(f)
	h, err := trackapi.New(trackapi.Options{
		Store:   store,
		Auth:    dir,
		OnPanic: func(trackapi.PanicInfo) { panics.Add(1) },
		Logger:  discardLogger(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, pathIdx, enc uint8, authed bool, body []byte, suffix string) {
		path := fuzzPaths[int(pathIdx)%len(fuzzPaths)]
		if suffix != "" {
			path += suffix
		}
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		payload := body
		r, err := http.NewRequest(m, "http://trackd"+path, bytes.NewReader(payload))
		if err != nil {
			return
		}
		switch enc % 4 {
		case 1:
			var b bytes.Buffer
			w := gzip.NewWriter(&b)
			w.Write(body)
			w.Close()
			r, _ = http.NewRequest(m, "http://trackd"+path, bytes.NewReader(b.Bytes()))
			if r == nil {
				return
			}
			r.Header.Set("Content-Encoding", "gzip")
		case 2:
			r.Header.Set("Content-Encoding", "gzip") // not actually gzip
		case 3:
			r.Header.Set("Content-Encoding", "br")
		}
		if authed {
			r.Header.Set("Authorization", basic(site1, key1))
		}
		r.RemoteAddr = "192.0.2.1:1234"
		before, beforePanics := stored.Load(), panics.Load()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if panics.Load() != beforePanics {
			t.Fatalf("handler panicked on %s %s %q", m, path, body)
		}
		if !documented[w.Code] {
			t.Fatalf("%s %s %q: undocumented status %d", m, path, body, w.Code)
		}
		n := stored.Load() - before
		if w.Code/100 != 2 && n != 0 {
			t.Fatalf("%s %s %q: status %d but stored %d", m, path, body, w.Code, n)
		}
		if w.Header().Get("X-Request-Id") == "" {
			t.Fatal("no X-Request-Id")
		}
		if w.Code >= 400 && w.Header().Get("X-Trackd-Reason") == "" {
			t.Fatalf("status %d without reason", w.Code)
		}
	})
}
