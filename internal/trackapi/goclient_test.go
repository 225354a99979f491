package trackapi_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	customerio "github.com/customerio/go-customerio/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/trackd/trackd/internal/auth"
	"github.com/trackd/trackd/internal/spool"
)

// TestGoClient runs the official Go client, unchanged, against trackd. The
// credentials contain characters that make its URL-safe base64 differ from
// the standard alphabet.
func TestGoClient(t *testing.T) {
	const site, key = "abc", ">>>???"
	f := newFixture(t, nil)
	if err := f.dir.Replace([]auth.Workspace{{SiteID: site, APIKey: key}}); err != nil {
		t.Fatal(err)
	}
	c := customerio.NewTrackClient(site, key, customerio.WithURL(f.srv.URL))
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
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err != nil {
				t.Fatalf("client error: %v", err)
			}
			recs := f.store.take()
			if len(recs) != len(tt.want) {
				t.Fatalf("stored %d records, want %d", len(recs), len(tt.want))
			}
			for i, w := range tt.want {
				r := recs[i]
				if r.Op != w.op || r.Workspace != site {
					t.Errorf("op %q workspace %q, want %q %q", r.Op, r.Workspace, w.op, site)
				}
				m := metaMap(r)
				for k, v := range w.meta {
					if m[k] != v {
						t.Errorf("meta[%s] = %q, want %q", k, m[k], v)
					}
				}
				if m["user_agent"] == "" {
					t.Error("no user_agent")
				}
				checkJSONEqual(t, w.body, r)
			}
		})
	}

	t.Run("wrong key is a CustomerIOError 401", func(t *testing.T) {
		bad := customerio.NewTrackClient(site, "nope", customerio.WithURL(f.srv.URL))
		err := bad.Identify("u1", nil)
		cerr, ok := err.(*customerio.CustomerIOError)
		if !ok || cerr.StatusCode() != 401 {
			t.Fatalf("err = %v", err)
		}
		if n := len(f.store.take()); n != 0 {
			t.Errorf("stored %d", n)
		}
	})
}

func checkJSONEqual(t *testing.T, want string, r spool.Record) {
	t.Helper()
	if want == "" {
		if len(r.Body) != 0 {
			t.Errorf("body = %q, want empty", r.Body)
		}
		return
	}
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(r.Body, &g); err != nil {
		t.Fatalf("stored body %q: %v", r.Body, err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("stored body (-want +got):\n%s", diff)
	}
}
