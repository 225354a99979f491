package trackapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestMixedBadAndGoodTraffic sends 10,000 bad requests of every class that
// an HTTP client can produce while good traffic flows: every good request is
// answered 200 and stored, no bad one is stored, and the server keeps
// serving.
func TestMixedBadAndGoodTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	f := newFixture(t, nil)
	long := strings.Repeat("x", 40<<10)
	bad := []req{
		{method: "PUT", path: "/api/v1/customers/u"},
		{method: "PUT", path: "/api/v1/customers/u", body: "   "},
		{method: "POST", path: "/api/v1/customers/u/events", body: `{"name":`},
		{method: "POST", path: "/api/v1/customers/u/events", body: `[]`},
		{method: "PUT", path: "/api/v1/customers/u", rawBody: []byte("{\"a\":\"\xff\"}")},
		{method: "PUT", path: "/api/v1/customers/u", body: nest(50)},
		{method: "PUT", path: "/api/v1/customers/u", body: `{"a":"` + long + `"}`},
		{method: "PUT", path: "/api/v1/customers/u", rawBody: gz(t, make([]byte, 4<<20)), header: map[string]string{"Content-Encoding": "gzip"}},
		{method: "PUT", path: "/api/v1/customers/u", body: "{}", header: map[string]string{"Content-Encoding": "br"}},
		{method: "PUT", path: "/api/v1/customers/u", body: "{}", auth: basic(site1, "wrong")},
		{method: "POST", path: "/api/v1/customers/u/events", body: `{"name":"` + strings.Repeat("n", 101) + `"}`},
		{method: "POST", path: "/api/v2/batch", body: `{"batch":[{"type":"person"}]}`},
		{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{}}`},
	}
	const total = 10000
	const workers = 16
	var good, goodOK, badCount atomic.Int64
	statusByClass := make([]map[int]int, len(bad))
	for i := range statusByClass {
		statusByClass[i] = map[int]int{}
	}
	var mu sync.Mutex
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}
	send := func(r req) int {
		var body io.Reader
		if r.rawBody != nil {
			body = bytes.NewReader(r.rawBody)
		} else if r.body != "" {
			body = strings.NewReader(r.body)
		}
		hr, _ := http.NewRequest(r.method, f.srv.URL+r.path, body)
		if r.auth == "" {
			hr.Header.Set("Authorization", basic(site1, key1))
		} else {
			hr.Header.Set("Authorization", r.auth)
		}
		for k, v := range r.header {
			hr.Header.Set(k, v)
		}
		res, err := client.Do(hr)
		if err != nil {
			t.Errorf("%s %s: %v", r.method, r.path, err)
			return 0
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				c := int(i) % len(bad)
				st := send(bad[c])
				badCount.Add(1)
				mu.Lock()
				statusByClass[c][st]++
				mu.Unlock()
				if i%4 == 0 {
					good.Add(1)
					if send(req{method: "POST", path: "/api/v1/customers/good/events", body: fmt.Sprintf(`{"name":"ok","data":{"i":%d}}`, i)}) == 200 {
						goodOK.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	recs := f.store.take()
	for _, r := range recs {
		if metaMap(r)["identifier"] != "good" {
			t.Fatalf("a bad request was stored: %s %q", r.Op, r.Body)
		}
	}
	if goodOK.Load() != good.Load() || int64(len(recs)) != good.Load() {
		t.Errorf("good: sent %d, 200 %d, stored %d", good.Load(), goodOK.Load(), len(recs))
	}
	for i, m := range statusByClass {
		for st := range m {
			if st < 400 || st >= 500 {
				t.Errorf("bad class %d (%s %s) got status %d", i, bad[i].method, bad[i].path, st)
			}
		}
	}
	t.Logf("bad requests %d, good %d (all 200 and stored); statuses by class: %v", badCount.Load(), good.Load(), statusByClass)
	f.obs.mu.Lock()
	t.Logf("rejections by reason: %v", f.obs.rejected)
	f.obs.mu.Unlock()
}
