package trackapi_test

// Conformance to Customer.io's published OpenAPI document for the Track API
// (testdata/track-openapi.json, a verbatim copy of
// shared/reference/track-openapi.json; its known faults are listed in
// shared/reference/track-openapi.md).
//
// For every operation of the document, every request-body example it gives
// is sent to a real trackd listener with every documented value of the
// operation's parameters, and the request and trackd's answer are checked
// with libopenapi-validator: a 2xx the operation declares, the declared
// content, nothing but the example stored (byte for byte; per item for
// v2 batch). Operations secured by Tracking-API-Key answer 401 with
// {"meta":{"error":"Unauthorized request"}} to missing and wrong
// credentials; the open ones (security: []) need none.
//
// Where the document gives no whole-body example for an operation
// (add_device, metrics, pushMetrics, unsubscribe, submitForm), bodies are
// composed from its schema: property examples, each oneOf alternative's
// example, the first enum value of enum properties, a placeholder for a
// required value without example (see oasDoc.compose). The x-codeSamples
// "{}" placeholders of pushMetrics and unsubscribe are not examples and are
// not sent (trackd answers them 400 missing_field; see badinput_test.go).
//
// The document's faults, and what trackd does with them (asserted below):
//
//	operation        | document gives                        | fault                                   | trackd answers
//	-----------------+---------------------------------------+-----------------------------------------+-------------------------------------------
//	identify, track, | path parameter `identifier` example   | a number in a string parameter          | 200: a path segment is text; sent as
//	delete, devices, | 12345 (oneOf alternative "id")        |                                         | /customers/12345 like any id
//	suppress, ...    |                                       |                                         |
//	track            | eventsRequest oneOf/2 ("screen")      | lacks anonymous_id, which that          | 200: a screen view of an identified
//	                 | example {"name":"homepage",           | alternative requires (a slip: the       | person needs no anonymous_id (lenient,
//	                 | "type":"screen",...}                  | person is in the path)                  | as the real API plausibly is)
//	submitForm       | data oneOf/1 ("identify by id")       | integer id; customer_id is a string     | 204: data.id may be a number (trackd fix;
//	                 | example {"id":12345,...}              | and form values "must be strings"       | other form values must still be strings)
//	entity           | person_merge example {"primary":...,  | lacks type and action, which its schema | 400 missing_field "type" (v2 shape,
//	                 | "secondary":...}                      | requires and which select the operation | declared); the example completed with
//	                 |                                       |                                         | type person / action merge → 200
//	entity           | object_identify_anonymous example     | anonymous_id at the top level, not in   | 200: schema-valid (extra properties
//	                 | with a top-level anonymous_id         | cio_relationships (track-api.md §4)     | allowed); stored verbatim
//	submitForm       | responses                             | secured but declares no 401             | 401 all the same; the validator must
//	                 |                                       |                                         | report only the undeclared status
//	most             | 200 / 401 responses                   | no body schema                          | 200 {} and 401 body checked by hand
//	                 |                                       |                                         | (track-api.md §3, §2)
//
// Overlapping oneOfs (any valid value matches more than one alternative) are
// read as anyOf: oasOverlaps lists them by JSON pointer, and the validator
// is built from the document with exactly those keywords renamed. A request
// that the unpatched document rejects while the patched one accepts must
// be rejected there with a oneOf matching several alternatives (the
// validator's anyOf reports flatten every alternative's failures, so the
// unpatched errors cannot be matched one by one). One overlap is not in
// track-openapi.md: anonymousEventsRequest's "Standard anonymous event"
// alternative allows type page and screen, so the page and screen examples
// match two alternatives.
//
// Routes: every path+method of the document is routed by trackd
// (TestOpenAPIEveryOperationRouted). trackd's routes that the document does
// not have: GET /auth (undocumented credential check, track-api.md §1) and
// POST /push/events (pushMetrics without the /api/v1 prefix, as the Ruby
// client sends it, track-api.md §3).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/trackd/trackd/internal/spool"
)

// oasFile is a verbatim copy of shared/reference/track-openapi.json.
const oasFile = "testdata/track-openapi.json"

// oasOperations is the number of operations the document has.
const oasOperations = 18

// oasOverlaps are the document's oneOfs whose alternatives overlap, read as
// anyOf (track-openapi.md).
var oasOverlaps = []struct{ ptr, what string }{
	{"/components/parameters/track_customer_id/schema/oneOf", "identifier path parameter: any string is an id, an email and a cio_id"},
	{"/components/parameters/trackEvent_customer_id/schema/oneOf", "identifier path parameter of track"},
	{"/paths/~1api~1v1~1merge_customers/post/requestBody/content/application~1json/schema/properties/primary/oneOf", "merge primary: {\"email\":…} matches the id alternative too"},
	{"/paths/~1api~1v1~1merge_customers/post/requestBody/content/application~1json/schema/properties/secondary/oneOf", "merge secondary"},
	{"/components/schemas/person_merge/properties/primary/oneOf", "v2 merge primary"},
	{"/components/schemas/person_merge/properties/secondary/oneOf", "v2 merge secondary"},
	{"/paths/~1api~1v1~1metrics/post/requestBody/content/application~1json/schema/oneOf", "metrics body: the channel alternatives share metric values"},
	{"/components/schemas/v2_cio_relationships/items/properties/identifiers/oneOf", "cio_relationships[].identifiers (object relationships, entity and batch): no alternative requires its key"},
	{"/components/schemas/anonymousEventsRequest/oneOf", "trackAnonymous body: the standard alternative allows type page and screen (not in track-openapi.md)"},
}

// oasFault is an example that fails its own schema, and trackd's answer.
type oasFault struct {
	op, example string // operation ID; the example's name (oasExample.name)
	// The validator must report the fault: a schema error whose keyword
	// location ends with keyword and whose reason contains reason.
	keyword, reason string
	status          int    // trackd's answer
	trackdReason    string // X-Trackd-Reason when status is 4xx
	// complete, if set, repairs the example; the result must validate and
	// be accepted.
	complete func(map[string]any)
}

var oasFaults = []oasFault{
	{op: "track", example: "eventsRequest/oneOf/2 example",
		keyword: "/oneOf/2/required", reason: "anonymous_id", status: 200},
	{op: "submitForm", example: "data/oneOf/1 example",
		keyword: "/properties/data/oneOf/1/properties/id/$ref/type", reason: "got number", status: 204},
	{op: "entity", example: "person_merge example",
		keyword: "/oneOf/0/$ref/oneOf/9/$ref/required", reason: "'type', 'action'", status: 400, trackdReason: "missing_field",
		complete: func(m map[string]any) { m["type"], m["action"] = "person", "merge" }},
}

type oasDoc struct {
	raw    map[string]any // the document, numbers as json.Number
	strict validator.Validator
	v      validator.Validator // oasOverlaps read as anyOf
	ops    []*oasOp
}

type oasOp struct {
	id, method, path string // path is the template, e.g. /api/v1/customers/{identifier}
	secured          bool
	node             map[string]any
	params           []map[string]any // path-level and operation-level, resolved
	bodies           []oasExample
}

type oasExample struct {
	name  string // where the document gives it
	value any
}

var (
	oasOnce   sync.Once
	oasLoaded *oasDoc
	oasErr    error
)

func loadOAS(t *testing.T) *oasDoc {
	t.Helper()
	oasOnce.Do(func() { oasLoaded, oasErr = readOAS() })
	if oasErr != nil {
		t.Fatal(oasErr)
	}
	return oasLoaded
}

func decodeJSON(b []byte) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	err := dec.Decode(&m)
	return m, err
}

func newOASValidator(b []byte) (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		return nil, fmt.Errorf("libopenapi: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("libopenapi-validator: %v", errs)
	}
	return v, nil
}

// pointer returns the parent object of a JSON pointer's target and the
// target's key.
func pointer(doc map[string]any, ptr string) (map[string]any, string, error) {
	segs := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	cur := doc
	for i, seg := range segs {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		if i == len(segs)-1 {
			return cur, seg, nil
		}
		next, ok := cur[seg].(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("%s: no object at %q", ptr, seg)
		}
		cur = next
	}
	panic("unreachable")
}

func readOAS() (*oasDoc, error) {
	b, err := os.ReadFile(oasFile)
	if err != nil {
		return nil, err
	}
	d := &oasDoc{}
	if d.raw, err = decodeJSON(b); err != nil {
		return nil, fmt.Errorf("%s: %v", oasFile, err)
	}
	if d.strict, err = newOASValidator(b); err != nil {
		return nil, err
	}
	// The document with the overlapping oneOfs read as anyOf.
	patched, _ := decodeJSON(b)
	for _, o := range oasOverlaps {
		parent, key, err := pointer(patched, o.ptr)
		if err != nil {
			return nil, err
		}
		alts, ok := parent[key].([]any)
		if key != "oneOf" || !ok || len(alts) < 2 {
			return nil, fmt.Errorf("oasOverlaps: %s is not a oneOf in %s (stale entry?)", o.ptr, oasFile)
		}
		delete(parent, key)
		parent["anyOf"] = alts
	}
	pb, err := json.Marshal(patched)
	if err != nil {
		return nil, err
	}
	if d.v, err = newOASValidator(pb); err != nil {
		return nil, err
	}

	paths := d.raw["paths"].(map[string]any)
	for _, p := range sortedKeys(paths) {
		item := paths[p].(map[string]any)
		var common []map[string]any
		if ps, ok := item["parameters"].([]any); ok {
			for _, x := range ps {
				common = append(common, d.resolve(x.(map[string]any)))
			}
		}
		for _, m := range []string{"get", "put", "post", "delete", "patch", "head", "options"} {
			node, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			op := &oasOp{id: node["operationId"].(string), method: strings.ToUpper(m), path: p, node: node}
			op.params = append(op.params, common...)
			if ps, ok := node["parameters"].([]any); ok {
				for _, x := range ps {
					op.params = append(op.params, d.resolve(x.(map[string]any)))
				}
			}
			sec, declared := node["security"].([]any)
			if !declared {
				sec, _ = d.raw["security"].([]any)
			}
			for _, s := range sec {
				if _, ok := s.(map[string]any)["Tracking-API-Key"]; ok {
					op.secured = true
				}
			}
			op.bodies = d.bodyExamples(node)
			d.ops = append(d.ops, op)
		}
	}
	return d, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// resolve follows local $refs ("#/components/...").
func (d *oasDoc) resolve(n map[string]any) map[string]any {
	for i := 0; i < 32; i++ {
		ref, ok := n["$ref"].(string)
		if !ok {
			return n
		}
		parent, key, err := pointer(d.raw, strings.TrimPrefix(ref, "#"))
		if err != nil {
			panic(err)
		}
		n = parent[key].(map[string]any)
	}
	panic("$ref loop")
}

// refName names a schema reached through $ref after its component, else
// returns where.
func refName(s map[string]any, where string) string {
	if ref, ok := s["$ref"].(string); ok {
		return ref[strings.LastIndex(ref, "/")+1:]
	}
	return where
}

// bodyExamples returns the request-body examples the document gives for an
// operation: the media type's example and examples, and the example(s) of
// its schema and of every oneOf/anyOf alternative of it. When the document
// gives no whole-body example, the bodies are composed from the schema.
func (d *oasDoc) bodyExamples(op map[string]any) []oasExample {
	rb, ok := op["requestBody"].(map[string]any)
	if !ok {
		return nil
	}
	mt, ok := d.resolve(rb)["content"].(map[string]any)["application/json"].(map[string]any)
	if !ok {
		return nil
	}
	var out []oasExample
	if ex, ok := mt["example"]; ok {
		out = append(out, oasExample{"requestBody example", ex})
	}
	if exs, ok := mt["examples"].(map[string]any); ok {
		for _, k := range sortedKeys(exs) {
			out = append(out, oasExample{"requestBody examples/" + k, d.resolve(exs[k].(map[string]any))["value"]})
		}
	}
	if schema, ok := mt["schema"].(map[string]any); ok {
		out = append(out, d.schemaExamples(schema, "schema")...)
		if len(out) == 0 {
			out = d.compose(schema, "schema", true)
		}
	}
	// The same example reached twice is sent once.
	seen := map[string]bool{}
	var uniq []oasExample
	for _, e := range out {
		b := string(marshal(e.value))
		if !seen[b] {
			seen[b] = true
			uniq = append(uniq, e)
		}
	}
	return uniq
}

// schemaExamples collects the whole-value examples of a schema: its own
// example / examples, and those of its oneOf / anyOf alternatives. where
// names the place in messages ("eventsRequest/oneOf/2").
func (d *oasDoc) schemaExamples(s map[string]any, where string) []oasExample {
	where = refName(s, where)
	s = d.resolve(s)
	var out []oasExample
	if ex, ok := s["example"]; ok {
		out = append(out, oasExample{where + " example", ex})
	}
	if exs, ok := s["examples"].([]any); ok {
		for i, ex := range exs {
			out = append(out, oasExample{fmt.Sprintf("%s examples/%d", where, i), ex})
		}
	}
	for _, kw := range []string{"oneOf", "anyOf"} {
		if alts, ok := s[kw].([]any); ok {
			for i, a := range alts {
				out = append(out, d.schemaExamples(a.(map[string]any), fmt.Sprintf("%s/%s/%d", where, kw, i))...)
			}
		}
	}
	return out
}

// compose builds values for a schema that has no example of its own: each
// oneOf/anyOf alternative gives its own value(s); allOf members are merged;
// an object gets each property that has an example (a property with several
// gives one object per example), each required property and each enum
// property (its first value); a required scalar without example gets a
// placeholder of its type. It returns nil for an optional value the
// document says nothing concrete about, and skips readOnly values.
func (d *oasDoc) compose(s map[string]any, where string, required bool) []oasExample {
	where = refName(s, where)
	s = d.resolve(s)
	if exs := d.schemaExamples(s, where); len(exs) > 0 {
		return exs
	}
	if ro, _ := s["readOnly"].(bool); ro {
		return nil
	}
	for _, kw := range []string{"oneOf", "anyOf"} {
		if alts, ok := s[kw].([]any); ok {
			var out []oasExample
			for i, a := range alts {
				out = append(out, d.compose(a.(map[string]any), fmt.Sprintf("%s/%s/%d", where, kw, i), required)...)
			}
			return out
		}
	}
	if members, ok := s["allOf"].([]any); ok {
		merged := map[string]any{}
		for i, m := range members {
			vs := d.compose(m.(map[string]any), fmt.Sprintf("%s/allOf/%d", where, i), true)
			if len(vs) > 0 {
				if obj, ok := vs[0].value.(map[string]any); ok {
					for k, v := range obj {
						merged[k] = v
					}
				}
			}
		}
		return []oasExample{{where + " composed", merged}}
	}
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 {
		return []oasExample{{where + " enum[0]", enum[0]}}
	}
	typ, _ := s["type"].(string)
	if props, ok := s["properties"].(map[string]any); ok || typ == "object" {
		req := map[string]bool{}
		if rs, ok := s["required"].([]any); ok {
			for _, r := range rs {
				req[r.(string)] = true
			}
		}
		base := map[string]any{}
		name := where + " composed"
		type variant struct {
			key string
			ex  oasExample
		}
		var variants []variant
		for _, k := range sortedKeys(props) {
			vs := d.compose(props[k].(map[string]any), k, req[k])
			if len(vs) == 0 {
				continue
			}
			base[k] = vs[0].value
			if len(vs) > 1 {
				name = where + " composed with " + vs[0].name
				for _, v := range vs[1:] {
					variants = append(variants, variant{k, v})
				}
			}
		}
		if len(base) == 0 && !required {
			return nil
		}
		out := []oasExample{{name, base}}
		for _, v := range variants {
			o := map[string]any{}
			for k, x := range base {
				o[k] = x
			}
			o[v.key] = v.ex.value
			out = append(out, oasExample{where + " composed with " + v.ex.name, o})
		}
		return out
	}
	if !required {
		return nil
	}
	switch typ {
	case "string":
		return []oasExample{{where + " placeholder", "example"}}
	case "integer", "number":
		return []oasExample{{where + " placeholder", json.Number("1")}}
	case "boolean":
		return []oasExample{{where + " placeholder", true}}
	}
	return nil
}

// marshal renders an example as a client sends it (compact JSON).
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// paramValues gives the values to send for a parameter: the examples the
// document gives for it (a number rendered as text: a path segment is
// text), its enum values, else a sensible value. An optional query
// parameter is also left out (nil entry).
func (d *oasDoc) paramValues(p map[string]any) []*string {
	var out []*string
	add := func(v any) {
		s := fmt.Sprint(v)
		if !slices.ContainsFunc(out, func(x *string) bool { return x != nil && *x == s }) {
			out = append(out, &s)
		}
	}
	if req, _ := p["required"].(bool); !req {
		out = append(out, nil)
	}
	if ex, ok := p["example"]; ok {
		add(ex)
	}
	if exs, ok := p["examples"].(map[string]any); ok {
		for _, k := range sortedKeys(exs) {
			add(d.resolve(exs[k].(map[string]any))["value"])
		}
	}
	schema := d.resolve(p["schema"].(map[string]any))
	for _, e := range d.schemaExamples(schema, "schema") {
		add(e.value)
	}
	if enum, ok := schema["enum"].([]any); ok {
		for _, e := range enum {
			add(e)
		}
	}
	if !slices.ContainsFunc(out, func(x *string) bool { return x != nil }) && p["in"] == "path" {
		v, ok := map[string]string{
			"device_id":   "a83b219c-e756-4c5b-a8e3-d1a5c5b2f3c1", // person_add_device's token
			"delivery_id": "RPILAgUBcRhIBqSfeiIwdIYJKxTY",         // the metrics' delivery_id example
			"segment_id":  "7",                                    // an int32
			"form_id":     "contact_us",
		}[p["name"].(string)]
		if !ok {
			panic("no value for path parameter " + p["name"].(string))
		}
		add(v)
	}
	return out
}

// oasCall is one request built from the document.
type oasCall struct {
	op      *oasOp
	name    string // for messages
	path    string // escaped, with query
	body    []byte // nil: no body
	example *oasExample
}

// calls returns the cross product of the operation's body examples and its
// parameters' values.
func (d *oasDoc) calls(op *oasOp) []oasCall {
	calls := []oasCall{{op: op, path: op.path}}
	for _, p := range op.params {
		name := p["name"].(string)
		var next []oasCall
		for _, c := range calls {
			for _, v := range d.paramValues(p) {
				n := c
				switch {
				case p["in"] == "path":
					n.path = strings.Replace(n.path, "{"+name+"}", url.PathEscape(*v), 1)
					n.name += fmt.Sprintf(" %s=%s", name, *v)
				case p["in"] == "query" && v != nil:
					sep := "?"
					if strings.Contains(n.path, "?") {
						sep = "&"
					}
					n.path += sep + url.QueryEscape(name) + "=" + url.QueryEscape(*v)
					n.name += fmt.Sprintf(" %s=%s", name, *v)
				case p["in"] == "query":
					n.name += " no " + name
				default:
					panic(fmt.Sprintf("parameter %s in %v", name, p["in"]))
				}
				next = append(next, n)
			}
		}
		calls = next
	}
	if len(op.bodies) == 0 {
		for i := range calls {
			calls[i].name = "no body" + calls[i].name
		}
		return calls
	}
	var out []oasCall
	for _, c := range calls {
		for i := range op.bodies {
			n := c
			n.example = &op.bodies[i]
			n.body = marshal(op.bodies[i].value)
			n.name = op.bodies[i].name + n.name
			out = append(out, n)
		}
	}
	return out
}

// declared reports whether the operation declares the status.
func (op *oasOp) declared(status int) bool {
	_, ok := op.node["responses"].(map[string]any)[fmt.Sprint(status)]
	return ok
}

// oasServer is the document's server; the validator matches paths only.
const oasServer = "https://track.customer.io"

// oasExchange is one request sent to trackd and its answer, with copies
// for the validator.
type oasExchange struct {
	req     *http.Request // addressed to oasServer
	reqBody []byte
	res     *http.Response
	body    []byte
}

func (f *fixture) send(t *testing.T, method, path, authz string, body []byte) oasExchange {
	t.Helper()
	build := func(base string) *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		r, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			r.Header.Set("Content-Type", "application/json")
		}
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		return r
	}
	res, err := f.srv.Client().Do(build(f.srv.URL))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	x := oasExchange{req: build(oasServer), reqBody: body, res: res, body: b}
	res.Request = x.req
	return x
}

func (x oasExchange) rewind() {
	if x.reqBody != nil {
		x.req.Body = io.NopCloser(bytes.NewReader(x.reqBody))
	}
	x.res.Body = io.NopCloser(bytes.NewReader(x.body))
}

func (x oasExchange) validateRequest(v validator.Validator) []*verrors.ValidationError {
	x.rewind()
	_, errs := v.ValidateHttpRequestSync(x.req)
	return errs
}

func (x oasExchange) validateResponse(v validator.Validator) []*verrors.ValidationError {
	x.rewind()
	_, errs := v.ValidateHttpResponse(x.req, x.res)
	return errs
}

func describe(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n\t[%s/%s] %s: %s", e.ValidationType, e.ValidationSubType, e.Message, e.Reason)
		for i, f := range e.SchemaValidationErrors {
			if i == 20 {
				fmt.Fprintf(&b, "\n\t\t… %d more", len(e.SchemaValidationErrors)-i)
				break
			}
			fmt.Fprintf(&b, "\n\t\tkeyword %s at %s: %s", f.KeywordLocation, f.FieldPath, f.Reason)
		}
	}
	return b.String()
}

// keywordMatches compares a validator keyword location with a suffix,
// ignoring "/$ref" hops.
func keywordMatches(loc, suffix string) bool {
	return strings.HasSuffix(strings.ReplaceAll(loc, "/$ref", ""), strings.ReplaceAll(suffix, "/$ref", ""))
}

// seen reports whether errs hold a schema error matching the fault.
func (fl *oasFault) seen(errs []*verrors.ValidationError) bool {
	for _, e := range errs {
		for _, f := range e.SchemaValidationErrors {
			if keywordMatches(f.KeywordLocation, fl.keyword) && strings.Contains(f.Reason, fl.reason) {
				return true
			}
		}
	}
	return false
}

// onlyOverlaps reports whether the unpatched document's errors include a
// oneOf matching several alternatives; it is called for requests that the
// patched document accepts, so that is what the unpatched one rejects.
func onlyOverlaps(errs []*verrors.ValidationError) bool {
	for _, e := range errs {
		for _, f := range e.SchemaValidationErrors {
			if strings.HasSuffix(f.KeywordLocation, "/oneOf") && strings.Contains(f.Reason, "'oneOf' failed, subschemas") && strings.HasSuffix(f.Reason, "matched") {
				return true
			}
		}
	}
	return false
}

const unauthorizedBody = `{"meta":{"error":"Unauthorized request"}}`

// TestOpenAPIExamples sends every request-body example of every operation
// to trackd and validates the requests and the answers.
func TestOpenAPIExamples(t *testing.T) {
	d := loadOAS(t)
	f := newFixture(t, nil)
	if len(d.ops) != oasOperations {
		t.Fatalf("%s has %d operations, want %d", oasFile, len(d.ops), oasOperations)
	}
	faultsSeen := map[int]bool{}
	for _, op := range d.ops {
		t.Run(op.id, func(t *testing.T) {
			calls := d.calls(op)
			ok2xx := 0
			for _, c := range calls {
				authz := ""
				if op.secured {
					authz = basic(site1, key1)
				}
				fault := -1
				if c.example != nil {
					for i, fl := range oasFaults {
						if fl.op == op.id && strings.HasSuffix(c.example.name, fl.example) {
							fault = i
						}
					}
				}
				want := http.StatusOK
				if op.id == "submitForm" {
					want = http.StatusNoContent
				}
				if fault >= 0 {
					want = oasFaults[fault].status
				}
				x := f.send(t, op.method, c.path, authz, c.body)
				recs := f.store.take()
				where := fmt.Sprintf("%s %s [%s]", op.method, c.path, c.name)

				// The request, against the document.
				errs := x.validateRequest(d.v)
				if fault >= 0 {
					fl := &oasFaults[fault]
					if !fl.seen(errs) {
						t.Errorf("%s: known fault (%s: %s) not reported by the validator; errors:%s", where, fl.keyword, fl.reason, describe(errs))
					}
					faultsSeen[fault] = true
					// Only the body's error is the fault; the rest
					// (parameters, security) must be clean.
					errs = slices.DeleteFunc(errs, func(e *verrors.ValidationError) bool {
						return fl.seen([]*verrors.ValidationError{e})
					})
				}
				if len(errs) > 0 {
					t.Errorf("%s: request does not validate:%s", where, describe(errs))
				} else if fault < 0 {
					if strict := x.validateRequest(d.strict); len(strict) > 0 && !onlyOverlaps(strict) {
						t.Errorf("%s: the unpatched document rejects the request for more than an overlapping oneOf:%s", where, describe(strict))
					}
				}

				// trackd's answer.
				if x.res.StatusCode != want {
					t.Errorf("%s: status %d, want %d; body %s", where, x.res.StatusCode, want, x.body)
					continue
				}
				if fault >= 0 && oasFaults[fault].trackdReason != "" {
					if got := x.res.Header.Get("X-Trackd-Reason"); got != oasFaults[fault].trackdReason {
						t.Errorf("%s: X-Trackd-Reason %q, want %q", where, got, oasFaults[fault].trackdReason)
					}
				}
				if !op.declared(x.res.StatusCode) {
					t.Errorf("%s: status %d is not declared for %s", where, x.res.StatusCode, op.id)
				}
				if errs := x.validateResponse(d.v); len(errs) > 0 {
					t.Errorf("%s: response %d %s does not validate:%s", where, x.res.StatusCode, x.body, describe(errs))
				}
				ct := x.res.Header.Get("Content-Type")
				switch {
				case want == http.StatusNoContent:
					if len(x.body) != 0 {
						t.Errorf("%s: 204 with body %q", where, x.body)
					}
				case want == http.StatusOK && op.id == "getRegion":
					var region struct {
						URL, Region   string
						EnvironmentID int64 `json:"environment_id"`
					}
					if err := strictUnmarshal(x.body, &region); err != nil || region.URL == "" || region.Region == "" || region.EnvironmentID <= 0 {
						t.Errorf("%s: region body %s (%v)", where, x.body, err)
					}
				case want == http.StatusOK:
					if string(x.body) != "{}" {
						t.Errorf("%s: body %q, want {}", where, x.body)
					}
				}
				if want != http.StatusNoContent && !strings.HasPrefix(ct, "application/json") {
					t.Errorf("%s: Content-Type %q", where, ct)
				}

				// What was stored.
				if x.res.StatusCode >= 300 {
					if len(recs) != 0 {
						t.Errorf("%s: %d records stored for a %d", where, len(recs), x.res.StatusCode)
					}
				} else {
					ok2xx++
					checkStored(t, where, op, c, recs, x)
				}

				// A faulty example, completed, is accepted.
				if fault >= 0 && oasFaults[fault].complete != nil {
					m, _ := decodeJSON(c.body)
					oasFaults[fault].complete(m)
					body := marshal(m)
					y := f.send(t, op.method, c.path, authz, body)
					recs := f.store.take()
					where := where + " completed"
					if errs := y.validateRequest(d.v); len(errs) > 0 {
						t.Errorf("%s: request does not validate:%s", where, describe(errs))
					}
					if y.res.StatusCode != http.StatusOK || string(y.body) != "{}" {
						t.Errorf("%s: %d %s, want 200 {}", where, y.res.StatusCode, y.body)
					} else if errs := y.validateResponse(d.v); len(errs) > 0 {
						t.Errorf("%s: response does not validate:%s", where, describe(errs))
					}
					if len(recs) != 1 || !bytes.Equal(recs[0].Body, body) {
						t.Errorf("%s: stored %d records, want the body", where, len(recs))
					}
				}
			}
			if ok2xx == 0 {
				t.Errorf("%s: no example was accepted", op.id)
			}
		})
	}
	for i, fl := range oasFaults {
		if !faultsSeen[i] {
			t.Errorf("known fault of %s example %q was not met: is oasFaults stale?", fl.op, fl.example)
		}
	}
}

// checkStored verifies the records of an accepted call: one per call (one
// per item for v2 batch), each holding exactly the bytes sent.
func checkStored(t *testing.T, where string, op *oasOp, c oasCall, recs []spool.Record, x oasExchange) {
	t.Helper()
	if op.id == "getRegion" {
		if len(recs) != 0 {
			t.Errorf("%s: %d records stored", where, len(recs))
		}
		return
	}
	want := [][]byte{c.body}
	if op.id == "batch" {
		want = nil
		for _, item := range c.example.value.(map[string]any)["batch"].([]any) {
			want = append(want, marshal(item))
		}
	}
	if len(recs) != len(want) {
		t.Errorf("%s: %d records stored, want %d", where, len(recs), len(want))
		return
	}
	for i, r := range recs {
		if !bytes.Equal(r.Body, want[i]) {
			t.Errorf("%s: record %d body\n\t%s\nwant\n\t%s", where, i, r.Body, want[i])
		}
		if r.Workspace != site1 && op.secured {
			t.Errorf("%s: record %d workspace %q", where, i, r.Workspace)
		}
	}
	if got := x.res.Header.Get("X-Durability"); got != "fsync" {
		t.Errorf("%s: X-Durability %q", where, got)
	}
}

// TestOpenAPIUnauthorized: operations with the Tracking-API-Key scheme
// answer 401 {"meta":{"error":"Unauthorized request"}} to missing and wrong
// credentials and store nothing; those with security: [] need none and
// ignore wrong ones.
func TestOpenAPIUnauthorized(t *testing.T) {
	d := loadOAS(t)
	f := newFixture(t, nil)
	open := 0
	for _, op := range d.ops {
		c := d.calls(op)[0]
		for _, cred := range []struct{ name, authz string }{
			{"no credentials", ""},
			{"wrong key", basic(site1, "not-the-key")},
			{"unknown site", basic("no-such-site", key1)},
			{"other site's key", basic(site1, key2)},
			{"not basic", "Bearer " + key1},
		} {
			x := f.send(t, op.method, c.path, cred.authz, c.body)
			recs := f.store.take()
			where := fmt.Sprintf("%s %s %s (%s)", op.id, op.method, c.path, cred.name)
			if !op.secured {
				if x.res.StatusCode != http.StatusOK || len(recs) != 1 {
					t.Errorf("%s: open operation answered %d %s, stored %d", where, x.res.StatusCode, x.body, len(recs))
				}
				if errs := x.validateResponse(d.v); len(errs) > 0 {
					t.Errorf("%s: response does not validate:%s", where, describe(errs))
				}
				continue
			}
			if x.res.StatusCode != http.StatusUnauthorized || string(x.body) != unauthorizedBody {
				t.Errorf("%s: %d %s, want 401 %s", where, x.res.StatusCode, x.body, unauthorizedBody)
			}
			if ct := x.res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s: Content-Type %q", where, ct)
			}
			if len(recs) != 0 {
				t.Errorf("%s: %d records stored", where, len(recs))
			}
			if !op.declared(http.StatusUnauthorized) {
				// submitForm: secured, but the document declares no 401
				// (track-openapi.md); the validator must say just that.
				if op.id != "submitForm" {
					t.Errorf("%s: 401 not declared (a new fault of the document?)", where)
				}
				errs := x.validateResponse(d.v)
				if len(errs) != 1 || errs[0].ValidationType != "response" || errs[0].ValidationSubType != "statusCode" {
					t.Errorf("%s: want only the undeclared 401 reported:%s", where, describe(errs))
				}
				continue
			}
			if errs := x.validateResponse(d.v); len(errs) > 0 {
				t.Errorf("%s: response does not validate:%s", where, describe(errs))
			}
		}
		if !op.secured {
			open++
		}
	}
	if open != 3 {
		t.Errorf("%d open operations, want 3 (metrics, pushMetrics, unsubscribe)", open)
	}
}

// trackdExtraRoutes are trackd's routes that the document does not have.
var trackdExtraRoutes = []struct{ method, path, why string }{
	{"GET", "/auth", "undocumented credential check (track-api.md §1)"},
	{"POST", "/push/events", "pushMetrics without /api/v1, as the Ruby client sends it (track-api.md §3)"},
}

// TestOpenAPIEveryOperationRouted: every path+method of the document is
// routed by trackd (never 404 or 405), and trackd's extra routes are not in
// the document.
func TestOpenAPIEveryOperationRouted(t *testing.T) {
	d := loadOAS(t)
	f := newFixture(t, nil)
	inDoc := map[string]bool{}
	for _, op := range d.ops {
		inDoc[op.method+" "+op.path] = true
		c := d.calls(op)[0]
		// No body and valid credentials: any answer but "no such route".
		x := f.send(t, op.method, c.path, basic(site1, key1), nil)
		f.store.take()
		reason := x.res.Header.Get("X-Trackd-Reason")
		if x.res.StatusCode == http.StatusNotFound || x.res.StatusCode == http.StatusMethodNotAllowed ||
			reason == "not_found" || reason == "method_not_allowed" {
			t.Errorf("%s %s (%s) is not routed: %d %s", op.method, c.path, op.id, x.res.StatusCode, x.body)
		}
	}
	for _, r := range trackdExtraRoutes {
		if inDoc[r.method+" "+r.path] {
			t.Errorf("%s %s is in the document now; drop it from trackdExtraRoutes", r.method, r.path)
		}
		x := f.send(t, r.method, r.path, basic(site1, key1), nil)
		if x.res.StatusCode == http.StatusNotFound || x.res.StatusCode == http.StatusMethodNotAllowed {
			t.Errorf("%s %s (%s): %d", r.method, r.path, r.why, x.res.StatusCode)
		}
	}
}

// TestOpenAPIBatchPartial: the document's batch example with an invalid item
// added answers the declared 207, listing that item by batch_index; the
// valid items are stored, each as sent.
func TestOpenAPIBatchPartial(t *testing.T) {
	d := loadOAS(t)
	f := newFixture(t, nil)
	var op *oasOp
	for _, o := range d.ops {
		if o.id == "batch" {
			op = o
		}
	}
	if op == nil || len(op.bodies) == 0 {
		t.Fatal("no batch example in the document")
	}
	items := slices.Clone(op.bodies[0].value.(map[string]any)["batch"].([]any))
	bad := map[string]any{"type": "person", "action": "identify"} // no identifiers
	items = append(items[:1:1], append([]any{bad}, items[1:]...)...)
	body := marshal(map[string]any{"batch": items})
	x := f.send(t, "POST", "/api/v2/batch", basic(site1, key1), body)
	recs := f.store.take()
	if x.res.StatusCode != http.StatusMultiStatus {
		t.Fatalf("status %d, want 207; body %s", x.res.StatusCode, x.body)
	}
	if errs := x.validateResponse(d.v); len(errs) > 0 {
		t.Errorf("207 response does not validate:%s", describe(errs))
	}
	var res struct {
		Errors []struct {
			BatchIndex *int `json:"batch_index"`
			Field      string
		}
	}
	if err := json.Unmarshal(x.body, &res); err != nil || len(res.Errors) != 1 || res.Errors[0].BatchIndex == nil || *res.Errors[0].BatchIndex != 1 {
		t.Errorf("207 body %s: want one error with batch_index 1 (%v)", x.body, err)
	}
	var want [][]byte
	for i, it := range items {
		if i != 1 {
			want = append(want, marshal(it))
		}
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records stored, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if !bytes.Equal(r.Body, want[i]) {
			t.Errorf("record %d body %s, want %s", i, r.Body, want[i])
		}
	}
}
