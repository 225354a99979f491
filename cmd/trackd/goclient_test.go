package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	customerio "github.com/customerio/go-customerio/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trackd/trackd/internal/spool"
)

// TestGoClient runs the official Go client (go-customerio v3.10.0),
// unchanged, against a real trackd (serve, with its spool), calls every
// track method it has, and checks each call's records in the spool. The
// credentials contain characters that make the client's URL-safe base64
// differ from the standard alphabet.
func TestGoClient(t *testing.T) {
	const site, key = "abc", ">>>???"
	dataDir := t.TempDir()
	base, _, stop := startServe(t, dataDir, "--workspace", site+":"+key, "--forward=false")
	c := customerio.NewTrackClient(site, key, customerio.WithURL(base))
	ctx := context.Background()
	ts := time.Unix(1700000000, 0)

	type want struct {
		op   string
		meta map[string]string
		body string // JSON; compared semantically ("" = empty body)
	}
	tests := []struct {
		name string
		call func() error
		want []want
	}{
		{"Identify", func() error { return c.Identify("u1", map[string]any{"email": "a@b.c", "plan": "pro"}) },
			[]want{{"v1.identify", map[string]string{"identifier": "u1"}, `{"email":"a@b.c","plan":"pro"}`}}},
		{"Identify nil attributes", func() error { return c.Identify("u/1@x", nil) },
			[]want{{"v1.identify", map[string]string{"identifier": "u/1@x"}, `null`}}},
		{"Track", func() error {
			return c.Track("u1", "purchase", map[string]any{"price": 9.5}, customerio.WithEventID("01ARZ3NDEKTSV4RRFFQ69G5FAV"), customerio.WithEventTimestamp(ts))
		}, []want{{"v1.event", map[string]string{"identifier": "u1", "timestamp": "1700000000"}, `{"name":"purchase","data":{"price":9.5},"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","timestamp":1700000000}`}}},
		{"Track nil data", func() error { return c.Track("u1", "ping", nil) },
			[]want{{"v1.event", map[string]string{"identifier": "u1"}, `{"name":"ping","data":null}`}}},
		{"Track page", func() error { return c.Track("u1", "/home", nil, customerio.WithEventType(customerio.TrackTypePage)) },
			[]want{{"v1.event", nil, `{"name":"/home","data":null,"type":"page"}`}}},
		{"TrackAnonymous", func() error { return c.TrackAnonymous("anon-1", "visit", map[string]any{"a": 1}) },
			[]want{{"v1.anonymous_event", map[string]string{"anonymous_id": "anon-1"}, `{"name":"visit","data":{"a":1},"anonymous_id":"anon-1"}`}}},
		{"Delete", func() error { return c.Delete("u1") },
			[]want{{"v1.delete", map[string]string{"identifier": "u1"}, ``}}},
		{"AddDevice", func() error {
			return c.AddDevice("u1", "tok-1", "ios", map[string]any{"last_used": 1700000000, "app_version": "1.0"})
		}, []want{{"v1.device.add", map[string]string{"identifier": "u1", "device_id": "tok-1", "timestamp": "1700000000"},
			`{"device":{"id":"tok-1","platform":"ios","last_used":"1700000000","attributes":{"app_version":"1.0"}}}`}}},
		{"AddDevice no data", func() error { return c.AddDevice("u1", "tok-2", "android", nil) },
			[]want{{"v1.device.add", map[string]string{"device_id": "tok-2"}, `{"device":{"id":"tok-2","platform":"android","attributes":null}}`}}},
		{"DeleteDevice", func() error { return c.DeleteDevice("u1", "tok-1") },
			[]want{{"v1.device.delete", map[string]string{"identifier": "u1", "device_id": "tok-1"}, ``}}},
		{"MergeCustomers", func() error {
			return c.MergeCustomers(customerio.Identifier{Type: customerio.IdentifierTypeID, Value: "a"}, customerio.Identifier{Type: customerio.IdentifierTypeEmail, Value: "b@c.d"})
		}, []want{{"v1.merge", nil, `{"primary":{"id":"a"},"secondary":{"email":"b@c.d"}}`}}},
		{"AddPeopleToSegment", func() error {
			return c.AddPeopleToSegment(ctx, 7, []string{"a", "b"}, customerio.WithSegmentIDType(customerio.IdentifierTypeEmail))
		}, []want{{"v1.segment.add", map[string]string{"segment_id": "7", "id_type": "email"}, `{"ids":["a","b"]}`}}},
		{"RemovePeopleFromSegment", func() error { return c.RemovePeopleFromSegment(ctx, 7, []string{"a"}) },
			[]want{{"v1.segment.remove", map[string]string{"segment_id": "7", "id_type": "id"}, `{"ids":["a"]}`}}},
	}
	for _, tt := range tests {
		if err := tt.call(); err != nil {
			stop()
			t.Fatalf("%s: client error: %v", tt.name, err)
		}
	}
	bad := customerio.NewTrackClient(site, "nope", customerio.WithURL(base))
	err := bad.Identify("u1", nil)
	if cerr, ok := err.(*customerio.CustomerIOError); !ok || cerr.StatusCode() != 401 {
		t.Errorf("wrong key: err = %v, want a CustomerIOError 401", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The spool holds each call's records, in call order, and nothing else.
	recs := readRecords(t, dataDir)
	for _, tt := range tests {
		for _, w := range tt.want {
			if len(recs) == 0 {
				t.Fatalf("%s: no record for %s in the spool", tt.name, w.op)
			}
			r := recs[0]
			recs = recs[1:]
			if r.Op != w.op || r.Workspace != site {
				t.Errorf("%s: op %q workspace %q, want %q %q", tt.name, r.Op, r.Workspace, w.op, site)
			}
			for k, v := range w.meta {
				if got, _ := r.Get(k); got != v {
					t.Errorf("%s: meta[%s] = %q, want %q", tt.name, k, got, v)
				}
			}
			if ua, _ := r.Get("user_agent"); ua == "" {
				t.Errorf("%s: no user_agent", tt.name)
			}
			checkJSONEqual(t, tt.name, w.body, r)
		}
	}
	if len(recs) != 0 {
		t.Errorf("%d unexpected records in the spool, first %+v", len(recs), recs[0])
	}
}

func checkJSONEqual(t *testing.T, name, want string, r spool.Record) {
	t.Helper()
	if want == "" {
		if len(r.Body) != 0 {
			t.Errorf("%s: body = %q, want empty", name, r.Body)
		}
		return
	}
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(r.Body, &g); err != nil {
		t.Fatalf("%s: stored body %q: %v", name, r.Body, err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("%s: stored body (-want +got):\n%s", name, diff)
	}
}
