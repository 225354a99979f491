package trackapi_test

import (
	"context"
	"encoding/json"
	"time"

	"net/http"
	"strings"
	"testing"

	"github.com/trackd/trackd/internal/spool"

	"github.com/google/go-cmp/cmp"
)

const ulidA = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

func TestEndpointsSuccess(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantBody   string
		wantOps    []string
		wantMeta   map[string]string // subset of the first record's meta
		wantBodies []string          // stored bodies; nil means the request body
		wantID     string            // first record's ID, when the client's
	}{
		{name: "auth", req: req{method: "GET", path: "/auth"}, wantStatus: 200, wantBody: "{}"},
		{name: "identify", req: req{method: "PUT", path: "/api/v1/customers/u1", body: `{"email":"a@b.c","plan":"pro","_timestamp":1700000000}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.identify"},
			wantMeta: map[string]string{"identifier": "u1", "timestamp": "1700000000", "api": "v1", "region": "us"}},
		{name: "identify null (go client nil attributes)", req: req{method: "PUT", path: "/api/v1/customers/u1", body: `null`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.identify"}},
		{name: "identify empty object", req: req{method: "PUT", path: "/api/v1/customers/u1", body: `{}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.identify"}},
		{name: "identify escaped identifier", req: req{method: "PUT", path: "/api/v1/customers/a%2Fb%40c.d", body: `{}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.identify"}, wantMeta: map[string]string{"identifier": "a/b@c.d"}},
		{name: "delete", req: req{method: "DELETE", path: "/api/v1/customers/u1"},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.delete"}, wantBodies: []string{""}},
		{name: "delete with {}", req: req{method: "DELETE", path: "/api/v1/customers/u1", body: `{}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.delete"}},
		{name: "add device", req: req{method: "PUT", path: "/api/v1/customers/u1/devices", body: `{"device":{"id":"tok","platform":"ios","last_used":"1700000000","attributes":{"app_version":"1.2"}}}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.device.add"}, wantMeta: map[string]string{"device_id": "tok", "timestamp": "1700000000"}},
		{name: "delete device", req: req{method: "DELETE", path: "/api/v1/customers/u1/devices/tok%2F1"},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.device.delete"}, wantMeta: map[string]string{"device_id": "tok/1", "identifier": "u1"}, wantBodies: []string{""}},
		{name: "suppress no body", req: req{method: "POST", path: "/api/v1/customers/u1/suppress"},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.suppress"}, wantBodies: []string{""}},
		{name: "suppress {}", req: req{method: "POST", path: "/api/v1/customers/u1/suppress", body: "{}"},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.suppress"}},
		{name: "unsuppress", req: req{method: "POST", path: "/api/v1/customers/u1/unsuppress"},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.unsuppress"}, wantBodies: []string{""}},
		{name: "track", req: req{method: "POST", path: "/api/v1/customers/u1/events", body: `{"name":"purchase","id":"` + ulidA + `","timestamp":1700000001,"data":{"price":23.45}}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.event"}, wantID: ulidA, wantMeta: map[string]string{"timestamp": "1700000001"}},
		{name: "track page", req: req{method: "POST", path: "/api/v1/customers/u1/events", body: `{"name":"/home","type":"page"}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.event"}},
		{name: "track non-ULID id gets a new ID", req: req{method: "POST", path: "/api/v1/customers/u1/events", body: `{"name":"x","id":"not-a-ulid"}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.event"}},
		{name: "track anonymous", req: req{method: "POST", path: "/api/v1/events", body: `{"name":"signup","anonymous_id":"anon1","data":null}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.anonymous_event"}, wantMeta: map[string]string{"anonymous_id": "anon1"}},
		{name: "merge", req: req{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{"id":"a"},"secondary":{"email":"b@c.d"}}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.merge"}},
		{name: "form submit", req: req{method: "POST", path: "/api/v1/forms/contact/submit", body: `{"data":{"email":"a@b.c","name":"Ann"}}`},
			wantStatus: 204, wantBody: "", wantOps: []string{"v1.form"}, wantMeta: map[string]string{"form_id": "contact"}},
		{name: "metric (no auth)", req: req{method: "POST", path: "/api/v1/metrics", auth: "-", body: `{"delivery_id":"d1","metric":"clicked","timestamp":1700000000,"href":"https://x"}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.metric"}, wantMeta: map[string]string{"delivery_id": "d1"}},
		{name: "push event (no auth)", req: req{method: "POST", path: "/api/v1/push/events", auth: "-", body: `{"delivery_id":"d1","event":"opened","device_id":"tok"}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.push_metric"}},
		{name: "push event root path (ruby)", req: req{method: "POST", path: "/push/events", auth: "-", body: `{"delivery_id":"d1","event":"delivered"}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.push_metric"}},
		{name: "unsubscribe (no auth)", req: req{method: "POST", path: "/unsubscribe/d1", auth: "-", body: `{"unsubscribe":true}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.unsubscribe"}, wantMeta: map[string]string{"delivery_id": "d1"}},
		{name: "segment add", req: req{method: "POST", path: "/api/v1/segments/7/add_customers?id_type=email", body: `{"ids":["a@b.c","d@e.f"]}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.segment.add"}, wantMeta: map[string]string{"segment_id": "7", "id_type": "email"}},
		{name: "segment id normalised", req: req{method: "POST", path: "/api/v1/segments/+007/add_customers", body: `{"ids":["1"]}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.segment.add"}, wantMeta: map[string]string{"segment_id": "7", "id_type": "id"}},
		{name: "segment remove", req: req{method: "POST", path: "/api/v1/segments/7/remove_customers", body: `{"ids":["1"]}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v1.segment.remove"}, wantMeta: map[string]string{"id_type": "id"}},
		{name: "v2 entity person identify", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"identify","identifiers":{"id":"42"},"attributes":{"plan":"pro"},"timestamp":1700000000}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v2.person.identify"}, wantMeta: map[string]string{"identifiers": `{"id":"42"}`, "api": "v2", "timestamp": "1700000000"}},
		{name: "v2 entity object identify", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"object","action":"identify","identifiers":{"object_type_id":"1","object_id":"acme"},"attributes":{"name":"Acme"}}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v2.object.identify"}},
		{name: "v2 entity delivery event", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"delivery","action":"event","identifiers":{"id":"d1"},"name":"opened","attributes":{"device_token":"tok"}}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v2.delivery.event"}},
		{name: "v2 entity merge", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"merge","primary":{"id":"a"},"secondary":{"cio_id":"b"}}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v2.person.merge"}},
		{name: "v2 batch", req: req{method: "POST", path: "/api/v2/batch", body: `{"batch":[{"type":"person","action":"event","identifiers":{"email":"a@b.c"},"name":"x","id":"` + ulidA + `"}, {"type":"person","action":"add_device","identifiers":{"id":"1"},"device":{"token":"t","platform":"android"}}]}`},
			wantStatus: 200, wantBody: "{}", wantOps: []string{"v2.person.event", "v2.person.add_device"}, wantID: ulidA,
			wantBodies: []string{`{"type":"person","action":"event","identifiers":{"email":"a@b.c"},"name":"x","id":"` + ulidA + `"}`, `{"type":"person","action":"add_device","identifiers":{"id":"1"},"device":{"token":"t","platform":"android"}}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.do(t, tt.req)
			if got.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", got.status, tt.wantStatus, got.body)
			}
			if string(got.body) != tt.wantBody {
				t.Errorf("body = %q, want %q", got.body, tt.wantBody)
			}
			if tt.wantStatus == 200 {
				if ct := got.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
			if got.header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			recs := f.store.take()
			var ops []string
			for _, r := range recs {
				ops = append(ops, r.Op)
			}
			if diff := cmp.Diff(tt.wantOps, ops); diff != "" {
				t.Fatalf("stored ops (-want +got):\n%s", diff)
			}
			if len(recs) == 0 {
				if got.header.Get("X-Durability") != "" {
					t.Error("X-Durability on a response that stored nothing")
				}
				return
			}
			if got.header.Get("X-Durability") != "fsync" {
				t.Errorf("X-Durability = %q", got.header.Get("X-Durability"))
			}
			wantBodies := tt.wantBodies
			if wantBodies == nil {
				wantBodies = []string{tt.req.body}
			}
			for i, r := range recs {
				if string(r.Body) != wantBodies[i] {
					t.Errorf("record %d body = %q, want %q", i, r.Body, wantBodies[i])
				}
				if r.ID == "" || r.ReceivedAt == 0 {
					t.Errorf("record %d lacks ID or ReceivedAt: %+v", i, r)
				}
				m := metaMap(r)
				if m["request_id"] != got.header.Get("X-Request-Id") {
					t.Errorf("meta request_id %q != header %q", m["request_id"], got.header.Get("X-Request-Id"))
				}
				if m["client_ip"] != "127.0.0.1" || m["user_agent"] == "" {
					t.Errorf("meta lacks client_ip/user_agent: %v", m)
				}
			}
			if tt.wantID != "" && recs[0].ID != tt.wantID {
				t.Errorf("ID = %q, want client's %q", recs[0].ID, tt.wantID)
			}
			if tt.req.auth != "-" && recs[0].Workspace != site1 {
				t.Errorf("Workspace = %q", recs[0].Workspace)
			}
			m := metaMap(recs[0])
			for k, v := range tt.wantMeta {
				if m[k] != v {
					t.Errorf("meta[%q] = %q, want %q (all: %v)", k, m[k], v, m)
				}
			}
		})
	}
}

func TestRegion(t *testing.T) {
	f := newFixture(t, nil)
	type region struct {
		URL           string `json:"url"`
		Region        string `json:"region"`
		EnvironmentID int64  `json:"environment_id"`
	}
	get := func(auth string) region {
		r := f.do(t, req{method: "GET", path: "/api/v1/accounts/region", auth: auth})
		if r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		var v region
		if err := strictUnmarshal(r.body, &v); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		return v
	}
	us := get("")
	if us.URL != "https://track.customer.io" || us.Region != "us" || us.EnvironmentID <= 0 {
		t.Errorf("us = %+v", us)
	}
	eu := get(basic(site2, key2))
	if eu.URL != "https://track-eu.customer.io" || eu.Region != "eu" || eu.EnvironmentID <= 0 || eu.EnvironmentID == us.EnvironmentID {
		t.Errorf("eu = %+v", eu)
	}
	if again := get(""); again != us {
		t.Errorf("environment id not stable: %+v then %+v", us, again)
	}
	r := f.do(t, req{method: "GET", path: "/api/v1/accounts/region", auth: "-"})
	if r.status != 401 {
		t.Errorf("no credentials: status %d", r.status)
	}
}

func TestRecordRegionMeta(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do(t, req{method: "PUT", path: "/api/v1/customers/x", body: "{}", auth: basic(site2, key2)})
	if r.status != 200 {
		t.Fatal(r.status)
	}
	recs := f.store.take()
	m := metaMap(recs[0])
	if recs[0].Workspace != site2 || m["region"] != "eu" || m["node_region"] != "us" {
		t.Errorf("workspace %q meta %v", recs[0].Workspace, m)
	}
}

var authedRoutes = []req{
	{method: "GET", path: "/auth"},
	{method: "GET", path: "/api/v1/accounts/region"},
	{method: "PUT", path: "/api/v1/customers/u1", body: "{}"},
	{method: "DELETE", path: "/api/v1/customers/u1"},
	{method: "PUT", path: "/api/v1/customers/u1/devices", body: `{"device":{"id":"t","platform":"ios"}}`},
	{method: "DELETE", path: "/api/v1/customers/u1/devices/t"},
	{method: "POST", path: "/api/v1/customers/u1/suppress"},
	{method: "POST", path: "/api/v1/customers/u1/unsuppress"},
	{method: "POST", path: "/api/v1/customers/u1/events", body: `{"name":"x"}`},
	{method: "POST", path: "/api/v1/events", body: `{"name":"x"}`},
	{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{"id":"a"},"secondary":{"id":"b"}}`},
	{method: "POST", path: "/api/v1/forms/f/submit", body: `{"data":{"email":"a@b.c"}}`},
	{method: "POST", path: "/api/v1/segments/1/add_customers", body: `{"ids":["a"]}`},
	{method: "POST", path: "/api/v1/segments/1/remove_customers", body: `{"ids":["a"]}`},
	{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"delete","identifiers":{"id":"a"}}`},
	{method: "POST", path: "/api/v2/batch", body: `{"batch":[{"type":"person","action":"delete","identifiers":{"id":"a"}}]}`},
}

func TestUnauthorized(t *testing.T) {
	f := newFixture(t, nil)
	for _, r := range authedRoutes {
		for _, cred := range []struct{ name, header string }{
			{"none", "-"},
			{"wrong key", basic(site1, "nope")},
			{"other site's key", basic(site1, key2)},
			{"unknown site", basic("zzz", key1)},
			{"bearer", "Bearer " + key1},
			{"garbage", "Basic %%%"},
		} {
			t.Run(r.method+" "+r.path+" "+cred.name, func(t *testing.T) {
				r.auth = cred.header
				got := f.do(t, r)
				if got.status != 401 {
					t.Fatalf("status = %d, body %s", got.status, got.body)
				}
				if string(got.body) != `{"meta":{"error":"Unauthorized request"}}` {
					t.Errorf("body = %s", got.body)
				}
				if got.header.Get("Content-Type") != "application/json; charset=utf-8" || got.header.Get("X-Trackd-Reason") != "unauthorized" {
					t.Errorf("headers = %v", got.header)
				}
				if n := len(f.store.take()); n != 0 {
					t.Errorf("stored %d records", n)
				}
			})
		}
		t.Run(r.method+" "+r.path+" url-safe base64", func(t *testing.T) {
			r.auth = "Basic " + strings.NewReplacer("+", "-", "/", "_").Replace(basic(site1, key1)[6:])
			if got := f.do(t, r); got.status/100 != 2 {
				t.Errorf("status %d %s", got.status, got.body)
			}
			f.store.take()
		})
	}
}

func TestOpenEndpointsIgnoreBadCredentials(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do(t, req{method: "POST", path: "/api/v1/metrics", auth: basic("x", "y"), body: `{"delivery_id":"d","metric":"opened"}`})
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if recs := f.store.take(); len(recs) != 1 || recs[0].Workspace != "" {
		t.Errorf("records %+v", recs)
	}
	// Valid credentials attribute the record.
	f.do(t, req{method: "POST", path: "/api/v1/metrics", body: `{"delivery_id":"d","metric":"opened"}`})
	if recs := f.store.take(); len(recs) != 1 || recs[0].Workspace != site1 {
		t.Errorf("records %+v", recs)
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		req    req
		status int
		shape  string
		allow  string
	}{
		{"unknown path", req{method: "GET", path: "/nope"}, 404, "v1", ""},
		{"unknown v2 path", req{method: "POST", path: "/api/v2/nope", body: "{}"}, 404, "v2", ""},
		{"dot-dot identifier", req{method: "PUT", path: "/api/v1/customers/..", body: "{}"}, 404, "v1", ""},
		{"double slash", req{method: "PUT", path: "//api/v1/customers/x", body: "{}"}, 404, "v1", ""},
		{"GET identify", req{method: "GET", path: "/api/v1/customers/x"}, 405, "v1", "PUT, DELETE"},
		{"GET batch", req{method: "GET", path: "/api/v2/batch"}, 405, "v2", "POST"},
		{"PUT merge", req{method: "PUT", path: "/api/v1/merge_customers", body: "{}"}, 405, "merge", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.do(t, tt.req)
			if got.status != tt.status {
				t.Fatalf("status %d, body %s", got.status, got.body)
			}
			checkShape(t, tt.shape, got.body)
			if tt.allow != "" {
				a := strings.Split(got.header.Get("Allow"), ", ")
				for _, m := range strings.Split(tt.allow, ", ") {
					if !strings.Contains(got.header.Get("Allow"), m) {
						t.Errorf("Allow = %v, want %s", a, tt.allow)
					}
				}
			}
			if n := len(f.store.take()); n != 0 {
				t.Errorf("stored %d", n)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do(t, req{method: "PUT", path: "/api/v1/customers/x", body: "{}", header: map[string]string{"X-Request-Id": "abc-123"}})
	if r.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("client request id not kept: %q", r.header.Get("X-Request-Id"))
	}
	if m := metaMap(f.store.take()[0]); m["request_id"] != "abc-123" {
		t.Errorf("meta request_id %q", m["request_id"])
	}
	for _, bad := range []string{strings.Repeat("a", 65), "has space", "é"} {
		r := f.do(t, req{method: "GET", path: "/auth", auth: "-", header: map[string]string{"X-Request-Id": bad}})
		if id := r.header.Get("X-Request-Id"); id == bad || len(id) != 26 {
			t.Errorf("bad client id %q: got %q", bad, id)
		}
	}
	// On errors too.
	r = f.do(t, req{method: "GET", path: "/nope"})
	if r.header.Get("X-Request-Id") == "" {
		t.Error("no request id on 404")
	}
}

func TestDurabilityOption(t *testing.T) {
	f := newFixture(t, func(o *trackapiOptions) { o.Durability = "memory" })
	r := f.do(t, req{method: "PUT", path: "/api/v1/customers/x", body: "{}"})
	if r.header.Get("X-Durability") != "memory" {
		t.Errorf("X-Durability = %q", r.header.Get("X-Durability"))
	}
}

func TestBatchPartial(t *testing.T) {
	f := newFixture(t, nil)
	good0 := `{"type":"person","action":"identify","identifiers":{"id":"1"},"attributes":{"a":1}}`
	bad1 := `{"type":"person","action":"event","identifiers":{"id":"1"}}`
	good2 := `{"type":"object","action":"delete","identifiers":{"cio_object_id":"o1"}}`
	bad3 := `{"type":"person","action":"identify"}`
	bad4 := `{"type":"robot","action":"identify","identifiers":{"id":"1"}}`
	bad5 := `[1]`
	big := `{"type":"person","action":"identify","identifiers":{"id":"1"},"attributes":{"a":"` + strings.Repeat("x", 33<<10) + `"}}`
	body := `{"batch":[` + strings.Join([]string{good0, bad1, good2, bad3, bad4, bad5, big}, ",") + `]}`
	r := f.do(t, req{method: "POST", path: "/api/v2/batch", body: body})
	if r.status != 207 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	var got struct {
		Errors []struct {
			BatchIndex int    `json:"batch_index"`
			Reason     string `json:"reason"`
			Field      string `json:"field"`
			Message    string `json:"message"`
		} `json:"errors"`
	}
	if err := strictUnmarshal(r.body, &got); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	type e struct {
		I             int
		Reason, Field string
	}
	var es []e
	for _, x := range got.Errors {
		es = append(es, e{x.BatchIndex, x.Reason, x.Field})
		if x.Message == "" {
			t.Errorf("empty message for %d", x.BatchIndex)
		}
	}
	want := []e{{1, "missing_field", "name"}, {3, "missing_field", "identifiers"}, {4, "invalid_field", "type"}, {5, "invalid_type", ""}, {6, "too_large", ""}}
	if diff := cmp.Diff(want, es); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if r.header.Get("X-Durability") != "fsync" {
		t.Error("207 without X-Durability")
	}
	recs := f.store.take()
	if len(recs) != 2 || string(recs[0].Body) != good0 || string(recs[1].Body) != good2 {
		t.Fatalf("stored %d records: %+v", len(recs), recs)
	}
	if metaMap(recs[0])["batch_index"] != "0" || metaMap(recs[1])["batch_index"] != "2" {
		t.Errorf("batch_index meta: %v %v", recs[0].Meta, recs[1].Meta)
	}

	// All invalid: 400 in v2 shape, with batch_index, nothing stored.
	r = f.do(t, req{method: "POST", path: "/api/v2/batch", body: `{"batch":[` + bad1 + `,` + bad3 + `]}`})
	if r.status != 400 {
		t.Fatalf("all invalid: status %d %s", r.status, r.body)
	}
	checkShape(t, "v2", r.body)
	var all struct {
		Errors []map[string]any `json:"errors"`
	}
	json.Unmarshal(r.body, &all)
	if len(all.Errors) != 2 || all.Errors[1]["batch_index"] != float64(1) {
		t.Errorf("all-invalid errors %s", r.body)
	}
	if n := len(f.store.take()); n != 0 {
		t.Errorf("stored %d", n)
	}
}

func TestSuccessIsOnlyAfterAppend(t *testing.T) {
	entered, gate := make(chan struct{}), make(chan struct{})
	st := storeFunc(func(ctx context.Context, recs []spool.Record) error {
		close(entered)
		<-gate
		return nil
	})
	f := newFixture(t, func(o *trackapiOptions) { o.Store = st })
	done := make(chan resp, 1)
	go func() { done <- f.do(t, req{method: "PUT", path: "/api/v1/customers/x", body: "{}"}) }()
	<-entered
	select {
	case r := <-done:
		t.Fatalf("answered %d before Append returned", r.status)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	if r := <-done; r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
}

// TestIdentifiersCanonical: the identifiers attribute (the subject, so the
// Kafka key) is one string per person or object however the client spaced,
// ordered or escaped the object; the body stays byte for byte.
func TestIdentifiersCanonical(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		want     string
		variants []string
	}{
		{`{"id":"42"}`, []string{`{"id":"42"}`, `{ "id" : "42" }`, "{\n\t\"id\": \"42\"\n}", `{"id":"4\u0032"}`, `{"\u0069d":"42"}`, `{"id":42}`}},
		{`{"object_id":"acme","object_type_id":"1"}`, []string{`{"object_type_id":"1","object_id":"acme"}`, `{"object_id": "acme", "object_type_id": "1"}`, `{"object_type_id":1,"object_id":"acme"}`}},
		{`{"id":"0"}`, []string{`{"id":0}`, `{"id":-0}`, `{"id":"0"}`}},
		{`{"email":"a\"b<c>@example.com"}`, []string{`{"email":"a\"b<c>@example.com"}`, `{"email":"a\u0022b\u003cc\u003e@example.com"}`}},
	} {
		for _, v := range tc.variants {
			body := `{"type":"person","action":"identify","identifiers":` + v + `}`
			if strings.Contains(tc.want, "object_id") {
				body = `{"type":"object","action":"identify","identifiers":` + v + `}`
			}
			if got := f.do(t, req{method: "POST", path: "/api/v2/entity", body: body}); got.status != 200 {
				t.Fatalf("%s: %d %s", body, got.status, got.body)
			}
			recs := f.store.take()
			if len(recs) != 1 {
				t.Fatalf("%s: stored %d", body, len(recs))
			}
			if got, _ := recs[0].Get("identifiers"); got != tc.want {
				t.Errorf("%s: identifiers %s, want %s", v, got, tc.want)
			}
			if string(recs[0].Body) != body {
				t.Errorf("body %q, want %q", recs[0].Body, body)
			}
		}
	}
}
