package trackapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/auth"
	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/trackapi"
)

const (
	site1, key1 = "site1", "key1"
	site2, key2 = "site2eu", "key2"
)

// memStore records what was appended; err makes Append fail.
type memStore struct {
	mu    sync.Mutex
	recs  []spool.Record
	err   error
	calls int
}

func (m *memStore) Append(ctx context.Context, recs []spool.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return m.err
	}
	m.recs = append(m.recs, recs...)
	return nil
}

func (m *memStore) take() []spool.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recs
	m.recs = nil
	return r
}

func (m *memStore) setErr(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}

// recObserver counts rejections by reason.
type recObserver struct {
	mu       sync.Mutex
	rejected map[string]int
	served   int
}

func (o *recObserver) Served(route, method string, status int, d time.Duration) {
	o.mu.Lock()
	o.served++
	o.mu.Unlock()
}

func (o *recObserver) Rejected(route, workspace, reason string) {
	o.mu.Lock()
	if o.rejected == nil {
		o.rejected = map[string]int{}
	}
	o.rejected[reason]++
	o.mu.Unlock()
}

type fixture struct {
	srv   *httptest.Server
	h     *trackapi.Server
	store *memStore
	obs   *recObserver
	dir   *auth.Directory
}

func newFixture(t testing.TB, mod func(*trackapi.Options)) *fixture {
	t.Helper()
	dir, err := auth.NewDirectory([]auth.Workspace{
		{SiteID: site1, APIKey: key1},
		{SiteID: site2, APIKey: key2, Region: "eu"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: &memStore{}, obs: &recObserver{}, dir: dir}
	opts := trackapi.Options{Store: f.store, Auth: dir, Observer: f.obs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&opts)
	}
	h, err := trackapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// req describes one request. auth "" means valid credentials of site1;
// "-" means no Authorization header.
type req struct {
	method, path, body string
	auth               string
	header             map[string]string
	rawBody            []byte // used instead of body when set
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t testing.TB, r req) resp {
	t.Helper()
	var body io.Reader
	switch {
	case r.rawBody != nil:
		body = bytes.NewReader(r.rawBody)
	case r.body != "":
		body = bytes.NewReader([]byte(r.body))
	}
	hr, err := http.NewRequest(r.method, f.srv.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	switch r.auth {
	case "":
		hr.Header.Set("Authorization", basic(site1, key1))
	case "-":
	default:
		hr.Header.Set("Authorization", r.auth)
	}
	if r.body != "" || r.rawBody != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := f.srv.Client().Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// checkShape verifies an error body has the path's shape: "v1", "merge"
// (also 401) or "v2".
func checkShape(t testing.TB, shape string, body []byte) {
	t.Helper()
	switch shape {
	case "v1":
		var v struct {
			Meta struct {
				Errors []string `json:"errors"`
			} `json:"meta"`
		}
		if err := strictUnmarshal(body, &v); err != nil || len(v.Meta.Errors) != 1 || v.Meta.Errors[0] == "" {
			t.Errorf("body %s is not v1 shape {\"meta\":{\"errors\":[...]}} (%v)", body, err)
		}
	case "merge":
		var v struct {
			Meta struct {
				Error string `json:"error"`
			} `json:"meta"`
		}
		if err := strictUnmarshal(body, &v); err != nil || v.Meta.Error == "" {
			t.Errorf("body %s is not {\"meta\":{\"error\":...}} (%v)", body, err)
		}
	case "v2":
		var v struct {
			Errors []map[string]any `json:"errors"`
		}
		if err := strictUnmarshal(body, &v); err != nil || len(v.Errors) == 0 {
			t.Errorf("body %s is not v2 shape (%v)", body, err)
			return
		}
		for _, e := range v.Errors {
			for _, k := range []string{"reason", "field", "message"} {
				if _, ok := e[k].(string); !ok {
					t.Errorf("v2 error %v lacks string %q", e, k)
				}
			}
		}
	default:
		t.Fatalf("unknown shape %q", shape)
	}
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func metaMap(r spool.Record) map[string]string {
	m := map[string]string{}
	for _, kv := range r.Meta {
		m[kv.Key] = kv.Value
	}
	return m
}

type trackapiOptions = trackapi.Options

type storeFunc func(ctx context.Context, recs []spool.Record) error

func (f storeFunc) Append(ctx context.Context, recs []spool.Record) error { return f(ctx, recs) }

type context_ = context.Context

func newDirectory(t testing.TB) *auth.Directory {
	d, err := auth.NewDirectory([]auth.Workspace{{SiteID: site1, APIKey: key1}, {SiteID: site2, APIKey: key2, Region: "eu"}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
