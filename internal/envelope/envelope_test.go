package envelope

import (
	"encoding/json"
	"testing"

	"github.com/trackd/trackd/internal/spool"
)

func TestAttributesAndStructured(t *testing.T) {
	r := spool.Record{
		ID: "01JD000000000000000000000A", Workspace: "site.1", Op: "v1.identify", ReceivedAt: 1_700_000_000_123_456_789,
		Meta: []spool.KV{{Key: "region", Value: "eu"}, {Key: "api", Value: "v1"}, {Key: "identifier", Value: "42"},
			{Key: "timestamp", Value: "1700000000"}, {Key: "user_agent", Value: "ua"}, {Key: "Bad-Key", Value: "dropped"}},
		Body: []byte(`{"email":"a@b.c"}`),
	}
	got := map[string]string{}
	for _, a := range Attributes(&r) {
		if _, dup := got[a.Name]; dup {
			t.Fatalf("attribute %s twice", a.Name)
		}
		got[a.Name] = a.Value
	}
	want := map[string]string{
		"id": r.ID, "source": "/trackd/eu/site.1", "specversion": "1.0", "type": "io.customer.track.v1.identify",
		"time": "2023-11-14T22:13:20.123456789Z", "subject": "42", "datacontenttype": "application/json",
		"workspace": "site.1", "operation": "v1.identify", "region": "eu", "apiversion": "v1", "identifier": "42",
		"clienttimestamp": "1700000000", "useragent": "ua",
	}
	if len(got) != len(want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if s := NATSSubject("trackd", &r); s != "trackd.eu.site_1.v1.identify" {
		t.Errorf("subject %q", s)
	}
	if k := PartitionKey(&r); k != "site.1/42" {
		t.Errorf("partition key %q", k)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(Structured(&r), &ev); err != nil {
		t.Fatal(err)
	}
	if string(ev["data"]) != string(r.Body) || string(ev["id"]) != `"`+r.ID+`"` {
		t.Errorf("structured %s", Structured(&r))
	}
}

func TestStructuredEscapes(t *testing.T) {
	for _, v := range []string{"plain", `quote " and \ back`, "<tag>&", "ctl\x01\n", "ünïcödé 漢", "\xff invalid"} {
		r := spool.Record{ID: "x", Workspace: "w", Op: "v1.event", Meta: []spool.KV{{Key: "user_agent", Value: v}}, Body: []byte(`{}`)}
		var ev map[string]any
		if err := json.Unmarshal(Structured(&r), &ev); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		want, _ := json.Marshal(v)
		var w string
		json.Unmarshal(want, &w)
		if ev["useragent"] != w {
			t.Errorf("useragent %q, want %q", ev["useragent"], w)
		}
	}
}

// TestAppendJSONString: the output is what encoding/json decodes back to the
// input (U+FFFD for invalid UTF-8), with no needless escapes.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `a"b\c`, "<a&b>", "tab\tnl\ncr\r\x00\x1f\x7f", "é ü 日本 🎉", "\u2028\u2029", "bad\xffutf8\xc3"} {
		got := AppendJSONString([]byte("x"), s)
		if got[0] != 'x' {
			t.Fatalf("prefix lost: %q", got)
		}
		var back string
		if err := json.Unmarshal(got[1:], &back); err != nil {
			t.Fatalf("%q: %s: %v", s, got[1:], err)
		}
		ref, _ := json.Marshal(s) // encoding/json's reading of s
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if back != want {
			t.Errorf("%q: decoded %q, want %q", s, back, want)
		}
	}
	if got := string(AppendJSONString(nil, `<a&b> "q"`)); got != `"<a&b> \"q\""` {
		t.Errorf("got %s", got)
	}
}
