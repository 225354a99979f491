package trackapi_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/trackapi"
)

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func nest(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + "{}" + strings.Repeat("}", depth-1)
}

func attrs(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"a%d":1`, i)
	}
	b.WriteString("}")
	return b.String()
}

// TestBadInput covers the rows of DESIGN §2.2 that a normal HTTP client can
// send; raw-TCP rows are below.
func TestBadInput(t *testing.T) {
	f := newFixture(t, nil)
	long := func(n int) string { return strings.Repeat("x", n) }
	identify := "/api/v1/customers/u1"
	track := "/api/v1/customers/u1/events"
	tests := []struct {
		name   string
		req    req
		status int
		reason string
		shape  string
		field  string // must appear in the error message / field
	}{
		// empty bodies
		{name: "identify empty", req: req{method: "PUT", path: identify}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "identify whitespace", req: req{method: "PUT", path: identify, body: " \n\t\r "}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "track empty", req: req{method: "POST", path: track}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "anonymous empty", req: req{method: "POST", path: "/api/v1/events"}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "device empty", req: req{method: "PUT", path: identify + "/devices"}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "merge empty", req: req{method: "POST", path: "/api/v1/merge_customers"}, status: 400, reason: "empty_body", shape: "merge"},
		{name: "form empty", req: req{method: "POST", path: "/api/v1/forms/f/submit"}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "metric empty", req: req{method: "POST", path: "/api/v1/metrics", auth: "-"}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "push empty", req: req{method: "POST", path: "/push/events", auth: "-"}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "unsubscribe empty", req: req{method: "POST", path: "/unsubscribe/d1", auth: "-"}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "segment empty", req: req{method: "POST", path: "/api/v1/segments/1/add_customers"}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "entity empty", req: req{method: "POST", path: "/api/v2/entity"}, status: 400, reason: "empty_body", shape: "v2"},
		{name: "batch empty", req: req{method: "POST", path: "/api/v2/batch"}, status: 400, reason: "empty_body", shape: "v2"},
		{name: "batch whitespace", req: req{method: "POST", path: "/api/v2/batch", body: "\n\n"}, status: 400, reason: "empty_body", shape: "v2"},
		{name: "gzip of nothing", req: req{method: "POST", path: track, rawBody: gz(t, nil), header: map[string]string{"Content-Encoding": "gzip"}}, status: 400, reason: "empty_body", shape: "v1"},
		{name: "gzip of whitespace", req: req{method: "POST", path: "/api/v2/batch", rawBody: gz(t, []byte("   ")), header: map[string]string{"Content-Encoding": "gzip"}}, status: 400, reason: "empty_body", shape: "v2"},

		// malformed JSON, wrong type, UTF-8, depth
		{name: "malformed", req: req{method: "POST", path: track, body: `{"name":`}, status: 400, reason: "invalid_json", shape: "v1"},
		{name: "trailing garbage", req: req{method: "POST", path: track, body: `{"name":"x"} x`}, status: 400, reason: "invalid_json", shape: "v1"},
		{name: "two values", req: req{method: "POST", path: track, body: `{"name":"x"}{}`}, status: 400, reason: "invalid_json", shape: "v1"},
		{name: "single quotes", req: req{method: "PUT", path: identify, body: `{'a':1}`}, status: 400, reason: "invalid_json", shape: "v1"},
		{name: "trailing comma", req: req{method: "PUT", path: identify, body: `{"a":1,}`}, status: 400, reason: "invalid_json", shape: "v1"},
		{name: "merge malformed", req: req{method: "POST", path: "/api/v1/merge_customers", body: `{`}, status: 400, reason: "invalid_json", shape: "merge"},
		{name: "entity malformed", req: req{method: "POST", path: "/api/v2/entity", body: `nul`}, status: 400, reason: "invalid_json", shape: "v2"},
		{name: "suppress malformed body", req: req{method: "POST", path: identify + "/suppress", body: `{`}, status: 400, reason: "invalid_json", shape: "v1"},
		{name: "identify array", req: req{method: "PUT", path: identify, body: `[]`}, status: 400, reason: "invalid_type", shape: "v1"},
		{name: "identify string", req: req{method: "PUT", path: identify, body: `"x"`}, status: 400, reason: "invalid_type", shape: "v1"},
		{name: "track number", req: req{method: "POST", path: track, body: `42`}, status: 400, reason: "invalid_type", shape: "v1"},
		{name: "track null", req: req{method: "POST", path: track, body: `null`}, status: 400, reason: "invalid_type", shape: "v1"},
		{name: "suppress array", req: req{method: "POST", path: identify + "/suppress", body: `[]`}, status: 400, reason: "invalid_type", shape: "v1"},
		{name: "entity array", req: req{method: "POST", path: "/api/v2/entity", body: `[]`}, status: 400, reason: "invalid_type", shape: "v2"},
		{name: "batch not array", req: req{method: "POST", path: "/api/v2/batch", body: `{"batch":{}}`}, status: 400, reason: "invalid_type", shape: "v2", field: "batch"},
		{name: "invalid utf8", req: req{method: "PUT", path: identify, rawBody: []byte("{\"a\":\"\xff\xfe\"}")}, status: 400, reason: "invalid_utf8", shape: "v1"},
		{name: "invalid utf8 v2", req: req{method: "POST", path: "/api/v2/entity", rawBody: []byte("{\"type\":\"\xc3\"}")}, status: 400, reason: "invalid_utf8", shape: "v2"},
		{name: "too deep", req: req{method: "PUT", path: identify, body: nest(33)}, status: 400, reason: "too_deep", shape: "v1"},
		{name: "too deep arrays", req: req{method: "POST", path: track, body: `{"name":"x","data":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`}, status: 400, reason: "too_deep", shape: "v1"},
		{name: "too deep v2", req: req{method: "POST", path: "/api/v2/batch", body: `{"batch":[` + nest(40) + `]}`}, status: 400, reason: "too_deep", shape: "v2"},

		// size limits
		{name: "v1 body over 32 KiB", req: req{method: "PUT", path: identify, body: `{"a":"` + long(32<<10) + `"}`}, status: 413, reason: "too_large", shape: "v1"},
		{name: "entity over 32 KiB", req: req{method: "POST", path: "/api/v2/entity", body: `{"a":"` + long(32<<10) + `"}`}, status: 413, reason: "too_large", shape: "v2"},
		{name: "batch over 500 KiB", req: req{method: "POST", path: "/api/v2/batch", body: `{"batch":["` + long(500<<10) + `"]}`}, status: 413, reason: "too_large", shape: "v2"},
		{name: "merge over limit", req: req{method: "POST", path: "/api/v1/merge_customers", body: `{"a":"` + long(40<<10) + `"}`}, status: 413, reason: "too_large", shape: "merge"},
		{name: "gzip bomb", req: req{method: "PUT", path: identify, rawBody: gz(t, append([]byte(`{"a":"`), make([]byte, 20<<20)...)), header: map[string]string{"Content-Encoding": "gzip"}}, status: 413, reason: "too_large", shape: "v1"},
		{name: "gzip over limit after decompression", req: req{method: "PUT", path: identify, rawBody: gz(t, []byte(`{"a":"`+long(33<<10)+`"}`)), header: map[string]string{"Content-Encoding": "gzip"}}, status: 413, reason: "too_large", shape: "v1"},

		// encodings
		{name: "brotli", req: req{method: "PUT", path: identify, body: "{}", header: map[string]string{"Content-Encoding": "br"}}, status: 415, reason: "unsupported_encoding", shape: "v1"},
		{name: "deflate v2", req: req{method: "POST", path: "/api/v2/entity", body: "{}", header: map[string]string{"Content-Encoding": "deflate"}}, status: 415, reason: "unsupported_encoding", shape: "v2"},
		{name: "gzip, gzip", req: req{method: "PUT", path: identify, body: "{}", header: map[string]string{"Content-Encoding": "gzip, br"}}, status: 415, reason: "unsupported_encoding", shape: "v1"},
		{name: "corrupt gzip", req: req{method: "PUT", path: identify, body: "{}", header: map[string]string{"Content-Encoding": "gzip"}}, status: 400, reason: "invalid_encoding", shape: "v1"},

		// field limits
		{name: "identifier 151 bytes", req: req{method: "PUT", path: "/api/v1/customers/" + long(151), body: "{}"}, status: 400, reason: "field_too_long", shape: "v1", field: "identifier"},
		{name: "event name 101 bytes", req: req{method: "POST", path: track, body: `{"name":"` + long(101) + `"}`}, status: 400, reason: "field_too_long", shape: "v1", field: "name"},
		{name: "attribute name 151 bytes", req: req{method: "PUT", path: identify, body: `{"` + long(151) + `":1}`}, status: 400, reason: "field_too_long", shape: "v1", field: "xxxx"},
		{name: "attribute value 1001 bytes", req: req{method: "PUT", path: identify, body: `{"plan":"` + long(1001) + `"}`}, status: 400, reason: "field_too_long", shape: "v1", field: "plan"},
		{name: "attribute value escaped counts decoded", req: req{method: "PUT", path: identify, body: `{"plan":"` + strings.Repeat(`\u00e9`, 501) + `"}`}, status: 400, reason: "field_too_long", shape: "v1", field: "plan"},
		{name: "301 attributes", req: req{method: "PUT", path: identify, body: attrs(301)}, status: 400, reason: "too_many_attributes", shape: "v1"},
		{name: "v2 attribute value", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"identify","identifiers":{"id":"1"},"attributes":{"plan":"` + long(1001) + `"}}`}, status: 400, reason: "field_too_long", shape: "v2", field: "attributes.plan"},
		{name: "v2 identifier", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"delete","identifiers":{"id":"` + long(151) + `"}}`}, status: 400, reason: "field_too_long", shape: "v2", field: "identifiers.id"},
		{name: "v2 event name", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"event","identifiers":{"id":"1"},"name":"` + long(101) + `"}`}, status: 400, reason: "field_too_long", shape: "v2", field: "name"},
		{name: "merge identifier", req: req{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{"id":"` + long(151) + `"},"secondary":{"id":"b"}}`}, status: 400, reason: "field_too_long", shape: "merge", field: "primary.id"},

		// missing / invalid fields
		{name: "event without name", req: req{method: "POST", path: track, body: `{"data":{}}`}, status: 400, reason: "missing_field", shape: "v1", field: "name"},
		{name: "event blank name", req: req{method: "POST", path: track, body: `{"name":"  "}`}, status: 400, reason: "missing_field", shape: "v1", field: "name"},
		{name: "event name not string", req: req{method: "POST", path: track, body: `{"name":1}`}, status: 400, reason: "invalid_type", shape: "v1", field: "name"},
		{name: "event bad type", req: req{method: "POST", path: track, body: `{"name":"x","type":"click"}`}, status: 400, reason: "invalid_field", shape: "v1", field: "type"},
		{name: "event data array", req: req{method: "POST", path: track, body: `{"name":"x","data":[]}`}, status: 400, reason: "invalid_type", shape: "v1", field: "data"},
		{name: "anonymous without name", req: req{method: "POST", path: "/api/v1/events", body: `{"anonymous_id":"a"}`}, status: 400, reason: "missing_field", shape: "v1", field: "name"},
		{name: "device missing", req: req{method: "PUT", path: identify + "/devices", body: `{}`}, status: 400, reason: "missing_field", shape: "v1", field: "device"},
		{name: "device id missing", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"platform":"ios"}}`}, status: 400, reason: "missing_field", shape: "v1", field: "device.id"},
		{name: "device platform missing", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"id":"t"}}`}, status: 400, reason: "missing_field", shape: "v1", field: "device.platform"},
		{name: "device platform invalid", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"id":"t","platform":"pc"}}`}, status: 400, reason: "invalid_field", shape: "v1", field: "device.platform"},
		{name: "merge missing secondary", req: req{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{"id":"a"}}`}, status: 400, reason: "missing_field", shape: "merge", field: "secondary"},
		{name: "merge two identifiers", req: req{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{"id":"a","email":"b"},"secondary":{"id":"c"}}`}, status: 400, reason: "invalid_field", shape: "merge", field: "primary"},
		{name: "form without data", req: req{method: "POST", path: "/api/v1/forms/f/submit", body: `{}`}, status: 400, reason: "missing_field", shape: "v1", field: "data"},
		{name: "form without identifier", req: req{method: "POST", path: "/api/v1/forms/f/submit", body: `{"data":{"name":"a"}}`}, status: 400, reason: "missing_field", shape: "v1", field: "data.email"},
		{name: "form non-string value", req: req{method: "POST", path: "/api/v1/forms/f/submit", body: `{"data":{"email":"a@b.c","n":1}}`}, status: 400, reason: "invalid_type", shape: "v1", field: "data.n"},
		{name: "metric missing delivery", req: req{method: "POST", path: "/api/v1/metrics", auth: "-", body: `{"metric":"opened"}`}, status: 400, reason: "missing_field", shape: "v1", field: "delivery_id"},
		{name: "metric unknown", req: req{method: "POST", path: "/api/v1/metrics", auth: "-", body: `{"delivery_id":"d","metric":"eaten"}`}, status: 400, reason: "invalid_field", shape: "v1", field: "metric"},
		{name: "push missing event", req: req{method: "POST", path: "/api/v1/push/events", auth: "-", body: `{"delivery_id":"d"}`}, status: 400, reason: "missing_field", shape: "v1", field: "event"},
		{name: "unsubscribe missing flag", req: req{method: "POST", path: "/unsubscribe/d", auth: "-", body: `{}`}, status: 400, reason: "missing_field", shape: "v1", field: "unsubscribe"},
		{name: "segment id not int", req: req{method: "POST", path: "/api/v1/segments/abc/add_customers", body: `{"ids":["a"]}`}, status: 400, reason: "invalid_field", shape: "v1", field: "segment_id"},
		{name: "segment id_type bad", req: req{method: "POST", path: "/api/v1/segments/1/add_customers?id_type=phone", body: `{"ids":["a"]}`}, status: 400, reason: "invalid_field", shape: "v1", field: "id_type"},
		{name: "segment no ids", req: req{method: "POST", path: "/api/v1/segments/1/add_customers", body: `{"ids":[]}`}, status: 400, reason: "invalid_field", shape: "v1", field: "ids"},
		{name: "segment 1001 ids", req: req{method: "POST", path: "/api/v1/segments/1/add_customers", body: `{"ids":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 1001), ",") + `]}`}, status: 400, reason: "invalid_field", shape: "v1", field: "ids"},
		{name: "segment id numbers", req: req{method: "POST", path: "/api/v1/segments/1/add_customers", body: `{"ids":[1]}`}, status: 400, reason: "invalid_type", shape: "v1", field: "ids"},
		{name: "v2 missing type", req: req{method: "POST", path: "/api/v2/entity", body: `{"action":"identify","identifiers":{"id":"1"}}`}, status: 400, reason: "missing_field", shape: "v2", field: "type"},
		{name: "v2 missing action", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","identifiers":{"id":"1"}}`}, status: 400, reason: "missing_field", shape: "v2", field: "action"},
		{name: "v2 bad action", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"object","action":"event","identifiers":{"object_type_id":"1","object_id":"1"}}`}, status: 400, reason: "invalid_field", shape: "v2", field: "action"},
		{name: "v2 missing identifiers", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"identify"}`}, status: 400, reason: "missing_field", shape: "v2", field: "identifiers"},
		{name: "v2 two identifiers", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"identify","identifiers":{"id":"1","email":"a"}}`}, status: 400, reason: "invalid_field", shape: "v2", field: "identifiers"},
		{name: "v2 device token missing", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_device","identifiers":{"id":"1"},"device":{"platform":"ios"}}`}, status: 400, reason: "missing_field", shape: "v2", field: "device.token"},
		{name: "v2 batch missing", req: req{method: "POST", path: "/api/v2/batch", body: `{}`}, status: 400, reason: "missing_field", shape: "v2", field: "batch"},
		{name: "v2 batch empty array", req: req{method: "POST", path: "/api/v2/batch", body: `{"batch":[]}`}, status: 400, reason: "invalid_field", shape: "v2", field: "batch"},
		// blank path identifiers, as a blank v2 identifier
		{name: "identify blank path id", req: req{method: "PUT", path: "/api/v1/customers/%20%20", body: `{}`}, status: 400, reason: "missing_field", shape: "v1", field: "identifier"},
		{name: "track blank path id", req: req{method: "POST", path: "/api/v1/customers/%09/events", body: `{"name":"x"}`}, status: 400, reason: "missing_field", shape: "v1", field: "identifier"},
		{name: "delete blank path id", req: req{method: "DELETE", path: "/api/v1/customers/%20"}, status: 400, reason: "missing_field", shape: "v1", field: "identifier"},
		{name: "identify path id leading space", req: req{method: "PUT", path: "/api/v1/customers/%20h12", body: `{}`}, status: 400, reason: "invalid_field", shape: "v1", field: "identifier"},
		{name: "identify path id CRLF", req: req{method: "PUT", path: "/api/v1/customers/a%0d%0ab", body: `{}`}, status: 400, reason: "invalid_field", shape: "v1", field: "identifier"},
		{name: "identify path id NUL", req: req{method: "PUT", path: "/api/v1/customers/a%00b", body: `{}`}, status: 400, reason: "invalid_field", shape: "v1", field: "identifier"},
		{name: "unsubscribe blank delivery", req: req{method: "POST", path: "/unsubscribe/%20", auth: "-", body: `{"unsubscribe":true}`}, status: 400, reason: "missing_field", shape: "v1", field: "delivery_id"},
		// escaped blanks are blank
		{name: "track escaped blank name", req: req{method: "POST", path: track, body: `{"name":"\u0020\u0020"}`}, status: 400, reason: "missing_field", shape: "v1", field: "name"},
		{name: "v2 escaped blank identifier", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"identify","identifiers":{"id":"\u0020\t"}}`}, status: 400, reason: "missing_field", shape: "v2", field: "id"},
		{name: "metric tab delivery_id", req: req{method: "POST", path: "/api/v1/metrics", auth: "-", body: `{"delivery_id":"\t","metric":"opened"}`}, status: 400, reason: "missing_field", shape: "v1", field: "delivery_id"},
		{name: "form escaped blank email", req: req{method: "POST", path: "/api/v1/forms/f1/submit", body: `{"data":{"email":"\n"}}`}, status: 400, reason: "missing_field", shape: "v1", field: "email"},
		{name: "segment escaped blank id", req: req{method: "POST", path: "/api/v1/segments/1/add_customers", body: `{"ids":["\u0020"]}`}, status: 400, reason: "missing_field", shape: "v1", field: "ids"},
		{name: "device escaped blank id", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"id":"\u0020","platform":"ios"}}`}, status: 400, reason: "missing_field", shape: "v1", field: "device.id"},
		{name: "anonymous blank id", req: req{method: "POST", path: "/api/v1/events", body: `{"name":"x","anonymous_id":"   "}`}, status: 400, reason: "invalid_field", shape: "v1", field: "anonymous_id"},
		{name: "anonymous id CRLF", req: req{method: "POST", path: "/api/v1/events", body: `{"name":"x","anonymous_id":"a\r\nb"}`}, status: 400, reason: "invalid_field", shape: "v1", field: "anonymous_id"},
		{name: "device id CRLF", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"id":"t\r\nX-Evil: 1","platform":"ios"}}`}, status: 400, reason: "invalid_field", shape: "v1", field: "device.id"},
		{name: "metric delivery_id edge space", req: req{method: "POST", path: "/api/v1/metrics", auth: "-", body: `{"delivery_id":" d1","metric":"opened"}`}, status: 400, reason: "invalid_field", shape: "v1", field: "delivery_id"},
		// timestamps are integers (OpenAPI: "type": "integer")
		{name: "track fractional timestamp", req: req{method: "POST", path: track, body: `{"name":"x","timestamp":1700000000.5}`}, status: 400, reason: "invalid_type", shape: "v1", field: "timestamp"},
		{name: "track exponent timestamp", req: req{method: "POST", path: track, body: `{"name":"x","timestamp":1e9}`}, status: 400, reason: "invalid_type", shape: "v1", field: "timestamp"},
		{name: "track huge timestamp", req: req{method: "POST", path: track, body: `{"name":"x","timestamp":1234567890123456789012}`}, status: 400, reason: "invalid_type", shape: "v1", field: "timestamp"},
		{name: "identify fractional _timestamp", req: req{method: "PUT", path: identify, body: `{"_timestamp":1.5}`}, status: 400, reason: "invalid_type", shape: "v1", field: "_timestamp"},
		{name: "metric fractional timestamp", req: req{method: "POST", path: "/api/v1/metrics", auth: "-", body: `{"delivery_id":"d","metric":"delivered","timestamp":2.5}`}, status: 400, reason: "invalid_type", shape: "v1", field: "timestamp"},
		{name: "v2 fractional timestamp", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"event","name":"x","identifiers":{"id":"1"},"timestamp":1700000000.25}`}, status: 400, reason: "invalid_type", shape: "v2", field: "timestamp"},
		{name: "device fractional last_used", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"id":"t","platform":"ios","last_used":1.5}}`}, status: 400, reason: "invalid_type", shape: "v1", field: "last_used"},
		{name: "v2 device last_used word", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_device","identifiers":{"id":"1"},"device":{"token":"t","platform":"ios","last_used":"yesterday"}}`}, status: 400, reason: "invalid_type", shape: "v2", field: "device.last_used"},
		{name: "v2 device last_used object", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_device","identifiers":{"id":"1"},"device":{"token":"t","platform":"ios","last_used":{"a":1}}}`}, status: 400, reason: "invalid_type", shape: "v2", field: "device.last_used"},
		// relationship and subscription structures
		{name: "v2 relationships not objects", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_relationships","identifiers":{"id":"1"},"cio_relationships":[1,"x",null]}`}, status: 400, reason: "invalid_type", shape: "v2", field: "cio_relationships[0]"},
		{name: "v2 fractional id", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"identify","identifiers":{"id":42.5}}`}, status: 400, reason: "invalid_type", shape: "v2", field: "identifiers.id"},
		{name: "v2 exponent id", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"identify","identifiers":{"id":4.2e1}}`}, status: 400, reason: "invalid_type", shape: "v2", field: "identifiers.id"},
		{name: "v2 repeated object_id", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"object","action":"identify","identifiers":{"object_type_id":"1","object_id":"a","object_id":"b"}}`}, status: 400, reason: "invalid_field", shape: "v2", field: "object_id"},
		{name: "v2 raw NBSP id", req: req{method: "POST", path: "/api/v2/entity", body: "{\"type\":\"person\",\"action\":\"identify\",\"identifiers\":{\"id\":\"\u00a0\"}}"}, status: 400, reason: "missing_field", shape: "v2", field: "id"},
		{name: "v2 raw NEL id", req: req{method: "POST", path: "/api/v2/entity", body: "{\"type\":\"person\",\"action\":\"identify\",\"identifiers\":{\"id\":\"\u0085\"}}"}, status: 400, reason: "missing_field", shape: "v2", field: "id"},
		{name: "device last_used string with a fraction", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"id":"t","platform":"ios","last_used":"1700000000.0"}}`}, status: 400, reason: "invalid_type", shape: "v1", field: "last_used"},
		{name: "v2 delivery repeated id", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"delivery","action":"event","name":"opened","identifiers":{"id":"a","id":"b"}}`}, status: 400, reason: "invalid_field", shape: "v2", field: "identifiers.id"},
		{name: "device last_used string over int64", req: req{method: "PUT", path: identify + "/devices", body: `{"device":{"id":"t","platform":"ios","last_used":"9999999999999999999"}}`}, status: 400, reason: "invalid_type", shape: "v1", field: "last_used"},
		{name: "v2 relationship without identifiers", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_relationships","identifiers":{"id":"1"},"cio_relationships":[{"relationship_attributes":{}}]}`}, status: 400, reason: "missing_field", shape: "v2", field: "cio_relationships[0].identifiers"},
		{name: "v2 relationship blank identifier", req: req{method: "POST", path: "/api/v2/entity", body: `{"type":"object","action":"add_relationships","identifiers":{"object_type_id":"1","object_id":"o"},"cio_relationships":[{"identifiers":{"id":" "}}]}`}, status: 400, reason: "missing_field", shape: "v2", field: "cio_relationships[0].identifiers.id"},
		{name: "identify relationships string", req: req{method: "PUT", path: identify, body: `{"cio_relationships":"x"}`}, status: 400, reason: "invalid_type", shape: "v1", field: "cio_relationships"},
		{name: "identify relationships bad action", req: req{method: "PUT", path: identify, body: `{"cio_relationships":{"action":"nope","relationships":[{"identifiers":{"cio_object_id":"o1"}}]}}`}, status: 400, reason: "invalid_field", shape: "v1", field: "cio_relationships.action"},
		{name: "identify relationships missing list", req: req{method: "PUT", path: identify, body: `{"cio_relationships":{"action":"add_relationships"}}`}, status: 400, reason: "missing_field", shape: "v1", field: "cio_relationships.relationships"},
		{name: "identify subscription preferences string", req: req{method: "PUT", path: identify, body: `{"cio_subscription_preferences":"x"}`}, status: 400, reason: "invalid_type", shape: "v1", field: "cio_subscription_preferences"},
		{name: "identify subscription topic not bool", req: req{method: "PUT", path: identify, body: `{"cio_subscription_preferences":{"topics":{"topic_1":"yes"}}}`}, status: 400, reason: "invalid_type", shape: "v1", field: "topics.topic_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.do(t, tt.req)
			if got.status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", got.status, tt.status, got.body)
			}
			if r := got.header.Get("X-Trackd-Reason"); r != tt.reason {
				t.Errorf("X-Trackd-Reason = %q, want %q", r, tt.reason)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			checkShape(t, tt.shape, got.body)
			if tt.field != "" && !bytes.Contains(got.body, []byte(tt.field)) {
				t.Errorf("body %s does not name %q", got.body, tt.field)
			}
			if got.header.Get("X-Durability") != "" {
				t.Error("X-Durability on a rejection")
			}
			if n := len(f.store.take()); n != 0 {
				t.Errorf("stored %d records for a rejected request", n)
			}
		})
	}
	f.obs.mu.Lock()
	defer f.obs.mu.Unlock()
	for _, r := range []string{"empty_body", "invalid_json", "too_large", "field_too_long", "missing_field"} {
		if f.obs.rejected[r] == 0 {
			t.Errorf("observer saw no %s", r)
		}
	}
}

func TestDepthLimitBoundary(t *testing.T) {
	f := newFixture(t, nil)
	if r := f.do(t, req{method: "PUT", path: "/api/v1/customers/x", body: nest(32)}); r.status != 200 {
		t.Errorf("depth 32: %d %s", r.status, r.body)
	}
	if r := f.do(t, req{method: "PUT", path: "/api/v1/customers/x", body: nest(33)}); r.status != 400 {
		t.Errorf("depth 33: %d", r.status)
	}
}

func TestFieldLimitBoundaries(t *testing.T) {
	f := newFixture(t, nil)
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, r := range []req{
		{method: "PUT", path: "/api/v1/customers/" + long(150), body: `{"` + long(150) + `":"` + long(1000) + `"}`},
		{method: "PUT", path: "/api/v1/customers/x", body: attrs(300)},
		{method: "POST", path: "/api/v1/customers/x/events", body: `{"name":"` + long(100) + `"}`},
		// The structure may exceed the attribute value limit (here ~2.5 KB); its identifiers
		// keep theirs (150 B).
		{method: "PUT", path: "/api/v1/customers/x", body: `{"cio_relationships":{"action":"add_relationships","relationships":[` +
			strings.TrimSuffix(strings.Repeat(`{"identifiers":{"object_type_id":"1","object_id":"`+long(150)+`"}},`, 15), ",") + `]}}`},
	} {
		if got := f.do(t, r); got.status != 200 {
			t.Errorf("%s %.60s: %d %s", r.method, r.path, got.status, got.body)
		}
	}
	if n := len(f.store.take()); n != 4 {
		t.Errorf("stored %d", n)
	}
}

func TestEventDataLimit(t *testing.T) {
	f := newFixture(t, func(o *trackapiOptions) { o.Limits.Body = 256 << 10 })
	data := `{"k":"` + strings.Repeat("x", 100000) + `"}`
	r := f.do(t, req{method: "POST", path: "/api/v1/customers/x/events", body: `{"name":"n","data":` + data + `}`})
	if r.status != 400 || r.header.Get("X-Trackd-Reason") != "field_too_long" || !strings.Contains(string(r.body), "data") {
		t.Errorf("status %d reason %q body %s", r.status, r.header.Get("X-Trackd-Reason"), r.body)
	}
	if n := len(f.store.take()); n != 0 {
		t.Errorf("stored %d", n)
	}
}

func TestGzipAccepted(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(`{"name":"purchase","data":{"x":"` + strings.Repeat("y", 20<<10) + `"}}`)
	r := f.do(t, req{method: "POST", path: "/api/v1/customers/x/events", rawBody: gz(t, body), header: map[string]string{"Content-Encoding": "gzip"}})
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	recs := f.store.take()
	if len(recs) != 1 || !bytes.Equal(recs[0].Body, body) {
		t.Fatalf("stored body differs")
	}
}

func TestGzipBombUsesLittleMemory(t *testing.T) {
	f := newFixture(t, nil)
	bomb := gz(t, make([]byte, 64<<20)) // 64 MiB of zeros, ~64 KiB compressed
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	r := f.do(t, req{method: "PUT", path: "/api/v1/customers/x", rawBody: bomb, header: map[string]string{"Content-Encoding": "gzip"}})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if r.status != 413 || r.header.Get("X-Trackd-Reason") != "too_large" {
		t.Fatalf("status %d reason %q", r.status, r.header.Get("X-Trackd-Reason"))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("allocated %d bytes answering a gzip bomb", alloc)
	}
	t.Logf("gzip bomb answered in %v", elapsed)
}

// rawExchange sends raw bytes on a new connection, half-closes if asked,
// and reads one response.
func rawExchange(t *testing.T, addr, raw string, closeWrite bool) (*http.Response, []byte, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, body, c
}

func TestRawTCP(t *testing.T) {
	f := newFixture(t, nil)
	addr := f.srv.Listener.Addr().String()
	authz := basic(site1, key1)
	tests := []struct {
		name       string
		raw        string
		closeWrite bool
		status     int
		reason     string
		wantClose  bool
	}{
		{"truncated body", "POST /api/v1/customers/x/events HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":\"abc\"", true, 400, "truncated_body", true},
		{"truncated v2", "POST /api/v2/entity HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nContent-Length: 50\r\n\r\n{\"type\":", true, 400, "truncated_body", true},
		{"truncated gzip", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nContent-Encoding: gzip\r\nContent-Length: 500\r\n\r\n" + string(gz(t, []byte(`{"a":1}`))[:10]), true, 400, "truncated_body", true},
		{"chunked empty", "POST /api/v1/customers/x/events HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false, 400, "empty_body", false},
		{"chunked whitespace", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n  \r\n0\r\n\r\n", false, 400, "empty_body", false},
		{"chunked valid", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", false, 200, "", false},
		{"chunked truncated", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"a\":", true, 400, "truncated_body", true},
		{"content-length zero", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nContent-Length: 0\r\n\r\n", false, 400, "empty_body", false},
		{"declared too large", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nContent-Length: 100000000\r\n\r\n{", false, 413, "too_large", true},
		{"suppress no body no length", "POST /api/v1/customers/x/suppress HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\n\r\n", false, 200, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body, c := rawExchange(t, addr, tt.raw, tt.closeWrite)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			if r := res.Header.Get("X-Trackd-Reason"); r != tt.reason {
				t.Errorf("reason %q, want %q", r, tt.reason)
			}
			if tt.status >= 400 {
				checkShape(t, map[bool]string{true: "v2", false: "v1"}[strings.Contains(tt.raw, "/api/v2/")], body)
			}
			if tt.wantClose {
				if !res.Close {
					t.Error("response does not say Connection: close")
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := c.Read(make([]byte, 1)); err == nil {
					t.Errorf("connection still open (read %d bytes)", n)
				}
			}
			recs := f.store.take()
			if tt.status >= 400 && len(recs) != 0 {
				t.Errorf("stored %d records", len(recs))
			}
		})
	}
}

func TestSlowBody(t *testing.T) {
	f := newFixture(t, func(o *trackapiOptions) { o.BodyTimeout = 300 * time.Millisecond })
	addr := f.srv.Listener.Addr().String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 20\r\n\r\n{\"a\"", basic(site1, key1))

	// Another client is served while this one trickles.
	if r := f.do(t, req{method: "PUT", path: "/api/v1/customers/y", body: "{}"}); r.status != 200 {
		t.Errorf("other client got %d", r.status)
	}

	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 408 || res.Header.Get("X-Trackd-Reason") != "timeout" || !res.Close {
		t.Errorf("status %d reason %q close %v", res.StatusCode, res.Header.Get("X-Trackd-Reason"), res.Close)
	}
	// And the server closes the connection: it does not go on waiting for
	// the rest of the body (which never comes) after answering.
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the 408: %v, want the connection closed (EOF)", err)
	}
	checkShape(t, "v1", body)
	recs := f.store.take()
	if len(recs) != 1 || metaMap(recs[0])["identifier"] != "y" {
		t.Errorf("stored %+v", recs)
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Unix(1700000000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFixture(t, func(o *trackapiOptions) { o.RateLimit = 1; o.RateBurst = 2; o.Now = clock })
	id := req{method: "PUT", path: "/api/v1/customers/x", body: "{}"}
	for i := 0; i < 2; i++ {
		if r := f.do(t, id); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	r := f.do(t, id)
	if r.status != 429 || r.header.Get("Retry-After") != "1" || r.header.Get("X-Trackd-Reason") != "rate_limited" {
		t.Fatalf("third: status %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	checkShape(t, "v1", r.body)
	// v2 shape for v2 paths.
	r = f.do(t, req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"delete","identifiers":{"id":"1"}}`})
	if r.status != 429 {
		t.Fatalf("v2: %d", r.status)
	}
	checkShape(t, "v2", r.body)
	// Another workspace is unaffected.
	other := id
	other.auth = basic(site2, key2)
	if r := f.do(t, other); r.status != 200 {
		t.Errorf("other workspace: %d", r.status)
	}
	// Tokens come back with time.
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if r := f.do(t, id); r.status != 200 {
		t.Errorf("after refill: %d", r.status)
	}
	if n := len(f.store.take()); n != 4 {
		t.Errorf("stored %d, want 4", n)
	}
}

func TestStoreErrors(t *testing.T) {
	errFull := errors.New("spool: full")
	errClosed := errors.New("spool: closed")
	classify := func(err error) (int, string, time.Duration) {
		switch {
		case errors.Is(err, errFull):
			return 503, "spool_full", 5 * time.Second
		case errors.Is(err, errClosed):
			return 502, "shutting_down", 0 // 502 is never sent
		}
		return 0, "", 0
	}
	tests := []struct {
		name     string
		classify func(error) (int, string, time.Duration)
		err      error
		reason   string
		retry    string
	}{
		{"default", nil, errors.New("disk on fire"), "unavailable", "1"},
		{"classified full", classify, errFull, "spool_full", "5"},
		{"502 becomes 503", classify, errClosed, "shutting_down", "1"},
		{"unclassified", classify, errors.New("x"), "unavailable", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *trackapiOptions) { o.Classify = tt.classify })
			f.store.setErr(tt.err)
			for _, r := range []struct {
				req   req
				shape string
			}{
				{req{method: "PUT", path: "/api/v1/customers/x", body: "{}"}, "v1"},
				{req{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{"id":"a"},"secondary":{"id":"b"}}`}, "merge"},
				{req{method: "POST", path: "/api/v2/batch", body: `{"batch":[{"type":"person","action":"delete","identifiers":{"id":"1"}}]}`}, "v2"},
			} {
				got := f.do(t, r.req)
				if got.status != 503 || got.header.Get("Retry-After") != tt.retry || got.header.Get("X-Trackd-Reason") != tt.reason {
					t.Errorf("%s: status %d Retry-After %q reason %q", r.req.path, got.status, got.header.Get("Retry-After"), got.header.Get("X-Trackd-Reason"))
				}
				if got.header.Get("X-Durability") != "" {
					t.Error("X-Durability on 503")
				}
				checkShape(t, r.shape, got.body)
			}
		})
	}
}

func TestPanicContained(t *testing.T) {
	var mu sync.Mutex
	var infos []trackapi.PanicInfo
	f := newFixture(t, func(o *trackapiOptions) {
		o.BeforeStore = func(r *http.Request, recs []spool.Record) {
			if r.Header.Get("X-Test-Panic") != "" {
				panic("boom: " + r.Header.Get("X-Test-Panic"))
			}
		}
		o.OnPanic = func(p trackapi.PanicInfo) {
			mu.Lock()
			infos = append(infos, p)
			mu.Unlock()
		}
	})
	for i, tt := range []struct {
		req   req
		shape string
	}{
		{req{method: "POST", path: "/api/v1/customers/x/events", body: `{"name":"crash"}`}, "v1"},
		{req{method: "POST", path: "/api/v1/merge_customers", body: `{"primary":{"id":"a"},"secondary":{"id":"b"}}`}, "merge"},
		{req{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"delete","identifiers":{"id":"1"}}`}, "v2"},
	} {
		tt.req.header = map[string]string{"X-Test-Panic": fmt.Sprint(i), "Cookie": "secret=1"}
		r := f.do(t, tt.req)
		if r.status != 500 || r.header.Get("X-Trackd-Reason") != "internal_error" {
			t.Fatalf("status %d reason %q", r.status, r.header.Get("X-Trackd-Reason"))
		}
		checkShape(t, tt.shape, r.body)
		// The process keeps serving.
		if r := f.do(t, req{method: "PUT", path: "/api/v1/customers/x", body: "{}"}); r.status != 200 {
			t.Fatalf("after panic: %d", r.status)
		}
	}
	if recs := f.store.take(); len(recs) != 3 {
		t.Errorf("stored %d records, want only the 3 good ones", len(recs))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(infos) != 3 {
		t.Fatalf("OnPanic called %d times", len(infos))
	}
	p := infos[0]
	if p.Header.Get("Authorization") != "" || p.Header.Get("Cookie") != "" {
		t.Errorf("credentials kept: %v", p.Header)
	}
	if p.Header.Get("X-Test-Panic") != "0" || string(p.Body) != `{"name":"crash"}` || p.Value != "boom: 0" ||
		!strings.Contains(string(p.Stack), "BeforeStore") && !strings.Contains(string(p.Stack), "panic") ||
		p.Method != "POST" || p.URI != "/api/v1/customers/x/events" || p.Route != "v1.event" || p.Workspace != site1 || p.RequestID == "" {
		t.Errorf("PanicInfo = %+v", p)
	}
}

// serveConns serves f's handler through its own listener (Server.Listener:
// the slow-header 408, the connection limit) with the given timeouts, as
// trackd does, and returns the listener.
func serveConns(t *testing.T, f *fixture, to trackapi.Timeouts) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := trackapi.NewHTTPServer("", f.h, to, discardLogger())
	go srv.Serve(f.h.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return ln
}

func TestSlowHeaders(t *testing.T) {
	f := newFixture(t, nil)
	ln := serveConns(t, f, trackapi.Timeouts{ReadHeader: 200 * time.Millisecond, Idle: 300 * time.Millisecond})

	// A kept-alive connection that goes idle after a request is closed
	// without a stray 408.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n{\"delivery_id\":\"d\",\"metric\":\"opened\"}")
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	idleOut, err := io.ReadAll(idle)
	if err != nil {
		t.Fatalf("idle connection not closed: %v", err)
	}
	if !bytes.HasPrefix(idleOut, []byte("HTTP/1.1 200")) || bytes.Count(idleOut, []byte("HTTP/1.1")) != 1 {
		t.Errorf("idle connection got %q", idleOut)
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\n") // and never finish

	// Another client is served meanwhile.
	res, err := http.Post("http://"+ln.Addr().String()+"/api/v1/metrics", "application/json", strings.NewReader(`{"delivery_id":"d","metric":"opened"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("other client: %d", res.StatusCode)
	}

	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection not closed: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 408")) || !bytes.Contains(b, []byte("X-Trackd-Reason: timeout")) || !bytes.HasSuffix(b, []byte(`"]}}`)) {
		t.Errorf("slow headers answered %q, want a 408 in the v1 error shape", b)
	}
	t.Logf("slow-header connection closed after %v (answer %q)", time.Since(start), b)
	if n := len(f.store.take()); n != 2 {
		t.Errorf("stored %d", n)
	}
	// The 408 is counted like any other answer (the connection was closed
	// after it was written and counted).
	f.obs.mu.Lock()
	timeouts, served := f.obs.rejected["timeout"], f.obs.served
	f.obs.mu.Unlock()
	if timeouts != 1 || served != 3 {
		t.Errorf("observer saw %d timeout rejections and %d answers; want 1 and 3 (two 200s and the 408)", timeouts, served)
	}
}

// TestRefusedBodyNotAwaitedForever: a request refused before its body is
// read (here: no credentials) whose client never sends the body it
// announced gets its answer after a bounded wait, and the connection ends;
// net/http would otherwise wait for the body for ever (the read deadline
// is gone), holding the connection and any drain.
func TestRefusedBodyNotAwaitedForever(t *testing.T) {
	f := newFixture(t, nil)
	c, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/v1/customers/x/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound for the test only; the server waits 2s
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	if res.StatusCode != 401 {
		t.Errorf("status %d, want 401", res.StatusCode)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the answer: %v, want the connection closed (EOF)", err)
	}
}

// TestAcceptedEdgeValues: values next to the refused ones above that the
// API documents as valid are stored.
func TestAcceptedEdgeValues(t *testing.T) {
	f := newFixture(t, nil)
	for _, r := range []req{
		{method: "POST", path: "/api/v1/customers/u1/events", body: `{"name":"x","timestamp":1700000000}`},
		{method: "POST", path: "/api/v1/customers/u1/events", body: `{"name":"x","timestamp":-86400}`},
		{method: "PUT", path: "/api/v1/customers/u1", body: `{"_timestamp":1700000000,"cio_subscription_preferences":{"topics":{"topic_1":true,"topic_2":false}}}`},
		{method: "PUT", path: "/api/v1/customers/u1", body: `{"cio_relationships":{"action":"delete_relationships","relationships":[{"identifiers":{"cio_object_id":"o1"},"relationship_attributes":{"role":"admin"}}]}}`},
		{method: "PUT", path: "/api/v1/customers/u1", body: `{"cio_relationships":null,"cio_subscription_preferences":null}`},
		{method: "PUT", path: "/api/v1/customers/u1/devices", body: `{"device":{"id":"t","platform":"ios","last_used":1700000000}}`},
		{method: "POST", path: "/api/v1/metrics", auth: "-", body: `{"delivery_id":"d","metric":"delivered","recipient":15551234567}`},
		{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_device","identifiers":{"id":"1"},"device":{"token":"t","platform":"ios","last_used":1700000000}}`},
		{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_device","identifiers":{"id":"1"},"device":{"token":"t","platform":"android","last_used":"1700000000"}}`},
		{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_relationships","identifiers":{"id":"1"},"cio_relationships":[{"identifiers":{"object_type_id":"1","object_id":"acme"},"relationship_attributes":{"role":"admin"}}]}`},
		{method: "POST", path: "/api/v2/entity", body: `{"type":"object","action":"add_relationships","identifiers":{"object_type_id":"1","object_id":"acme"},"cio_relationships":[{"identifiers":{"id":"42"}},{"identifiers":{"email":"a@example.com"}}]}`},
		{method: "POST", path: "/api/v2/entity", body: `{"type":"person","action":"add_relationships","identifiers":{"id":"1"},"cio_relationships":[]}`},
		{method: "PUT", path: "/api/v1/customers/u1", body: `{"cio_subscription_preferences":{"topics":{"topic_1":null}}}`},
		{method: "POST", path: "/api/v1/customers/u1/events", body: `{"name":"x","timestamp":1700000000.0}`},
	} {
		if got := f.do(t, r); got.status != 200 {
			t.Errorf("%s %s %s: %d %s", r.method, r.path, r.body, got.status, got.body)
		}
		if n := len(f.store.take()); n != 1 {
			t.Errorf("%s %s %s: stored %d records", r.method, r.path, r.body, n)
		}
	}
}

// TestOptionsStarNoStray408: net/http answers "OPTIONS *" itself (a load
// balancer's health check) and then cancels its pending read with a past
// deadline; that is not a slow client, so no 408 may follow on the
// connection, where a client would take it for its next request's answer.
func TestOptionsStarNoStray408(t *testing.T) {
	f := newFixture(t, nil)
	ln := serveConns(t, f, trackapi.Timeouts{ReadHeader: 5 * time.Second, Idle: 5 * time.Second})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("OPTIONS *: %d", res.StatusCode)
	}
	io.WriteString(c, "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n{\"delivery_id\":\"d\",\"metric\":\"opened\"}")
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Trackd-Reason") != "" {
		t.Fatalf("the request after OPTIONS * got %d %s %s", res.StatusCode, res.Header.Get("X-Trackd-Reason"), body)
	}
	if n := len(f.store.take()); n != 1 {
		t.Errorf("stored %d", n)
	}
}

// TestBatchErrorsBounded: a batch of many invalid items is answered with
// at most maxItemErrors (1000) item errors and one entry summing up the
// rest, not one entry per item (a 500 KB batch of {} made a 15 MB answer).
func TestBatchErrorsBounded(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name  string
		valid bool // one valid item first: 207, else 400
	}{{"all invalid", false}, {"partial", true}} {
		t.Run(tc.name, func(t *testing.T) {
			items := strings.TrimSuffix(strings.Repeat(`{},`, 5000), ",")
			if tc.valid {
				items = `{"type":"person","action":"identify","identifiers":{"id":"1"}},` + items
			}
			got := f.do(t, req{method: "POST", path: "/api/v2/batch", body: `{"batch":[` + items + `]}`})
			want := 400
			if tc.valid {
				want = 207
			}
			if got.status != want {
				t.Fatalf("status %d, want %d", got.status, want)
			}
			var res struct {
				Errors []struct {
					BatchIndex int    `json:"batch_index"`
					Reason     string `json:"reason"`
					Message    string `json:"message"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(got.body, &res); err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) != 1001 {
				t.Fatalf("%d errors listed, want 1000 and a summary", len(res.Errors))
			}
			off := 0
			if tc.valid {
				off = 1
			}
			last := res.Errors[1000]
			if last.Reason != "too_many_errors" || last.BatchIndex != 1000+off || !strings.HasPrefix(last.Message, "4000 more items") {
				t.Errorf("summary %+v", last)
			}
			if res.Errors[999].BatchIndex != 999+off {
				t.Errorf("last listed error at %d", res.Errors[999].BatchIndex)
			}
			if n := len(f.store.take()); n != off {
				t.Errorf("stored %d", n)
			}
		})
	}
}

// TestMalformedRequestsAnsweredInJSON: what net/http refuses before any
// handler (unparsable request line, headers over the limit, an unknown
// transfer coding, no Host) is answered in the v1 JSON error shape with a
// reason, and counted like every other answer.
func TestMalformedRequestsAnsweredInJSON(t *testing.T) {
	f := newFixture(t, nil)
	ln := serveConns(t, f, trackapi.Timeouts{ReadHeader: 5 * time.Second, Idle: 5 * time.Second})
	for _, tc := range []struct {
		name, raw string
		status    int
		reason    string
	}{
		{"garbage request line", "GARBAGE\r\n\r\n", 400, "bad_request"},
		{"no host", "PUT /api/v1/customers/x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400, "bad_request"},
		{"two content lengths", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "bad_request"},
		{"unknown transfer coding", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 501, "unsupported_encoding"},
		{"unknown expectation", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}", 417, "bad_request"},
		{"headers too large", "PUT /api/v1/customers/x HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n", 431, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.obs.mu.Lock()
			before := f.obs.rejected[tc.reason]
			f.obs.mu.Unlock()
			res, body, _ := rawExchange(t, ln.Addr().String(), tc.raw, false)
			if res.StatusCode != tc.status || res.Header.Get("X-Trackd-Reason") != tc.reason {
				t.Fatalf("%d %q %s, want %d %s", res.StatusCode, res.Header.Get("X-Trackd-Reason"), body, tc.status, tc.reason)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			checkShape(t, "v1", body)
			f.obs.mu.Lock()
			after := f.obs.rejected[tc.reason]
			f.obs.mu.Unlock()
			if after != before+1 {
				t.Errorf("%s rejections %d -> %d, want one more", tc.reason, before, after)
			}
		})
	}
	if n := len(f.store.take()); n != 0 {
		t.Errorf("stored %d", n)
	}
}

// TestSetRateLimit: the limit changes at run time (a SIGHUP reload): set,
// it applies to the next request; 0 turns it off.
func TestSetRateLimit(t *testing.T) {
	f := newFixture(t, nil)
	id := req{method: "PUT", path: "/api/v1/customers/x", body: "{}"}
	for i := range 3 {
		if r := f.do(t, id); r.status != 200 {
			t.Fatalf("no limit, request %d: %d", i, r.status)
		}
	}
	f.h.SetRateLimit(0.001, 1) // one request, then one per ~17 minutes
	if r := f.do(t, id); r.status != 200 {
		t.Fatalf("first request under the limit: %d", r.status)
	}
	if r := f.do(t, id); r.status != 429 {
		t.Fatalf("second request under the limit: %d", r.status)
	}
	f.h.SetRateLimit(0, 0)
	if r := f.do(t, id); r.status != 200 {
		t.Fatalf("limit off again: %d", r.status)
	}
}
