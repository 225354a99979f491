package trackapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckJSON(t *testing.T) {
	tests := []struct {
		in   string
		want jsonProblem
	}{
		{`{}`, jsonOK}, {` null `, jsonOK}, {`[1,-2.5e+3,"a\u00e9\n",true,false,null,{}]`, jsonOK},
		{`0`, jsonOK}, {`-0.0E-1`, jsonOK},
		{``, jsonSyntax}, {`{`, jsonSyntax}, {`{"a"}`, jsonSyntax}, {`{"a":}`, jsonSyntax}, {`[1,]`, jsonSyntax},
		{`01`, jsonSyntax}, {`1.`, jsonSyntax}, {`.5`, jsonSyntax}, {`+1`, jsonSyntax}, {`"\x"`, jsonSyntax},
		{`"\u12"`, jsonSyntax}, {"\"a\x01\"", jsonSyntax}, {`tru`, jsonSyntax}, {`nulll`, jsonSyntax},
		{`{} {}`, jsonSyntax}, {`{"a":1 "b":2}`, jsonSyntax}, {`NaN`, jsonSyntax}, {`-`, jsonSyntax}, {`1e`, jsonSyntax},
		{strings.Repeat("[", 32) + strings.Repeat("]", 32), jsonOK},
		{strings.Repeat("[", 33) + strings.Repeat("]", 33), jsonTooDeep},
	}
	for _, tt := range tests {
		if got := checkJSON([]byte(tt.in), 32); got != tt.want {
			t.Errorf("checkJSON(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestMembersAndElements(t *testing.T) {
	obj := []byte(`{ "a" : 1 , "b\"c":{"x":[1,2,"]"]}, "d":"}" ,"e":[] }`)
	m := newMembers(obj)
	var keys, vals []string
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		keys = append(keys, unescape(k))
		vals = append(vals, string(v))
	}
	if strings.Join(keys, "|") != `a|b"c|d|e` || strings.Join(vals, "|") != `1|{"x":[1,2,"]"]}|"}"|[]` {
		t.Errorf("keys %q vals %q", keys, vals)
	}
	el := newElements([]byte(`[ 1, "a,b" ,{"c":[2]} , null ]`))
	var got []string
	for v, ok := el.next(); ok; v, ok = el.next() {
		got = append(got, string(v))
	}
	if strings.Join(got, "|") != `1|"a,b"|{"c":[2]}|null` {
		t.Errorf("elements %q", got)
	}
	if n := newElements([]byte(`[ ]`)); func() bool { _, ok := n.next(); return ok }() {
		t.Error("empty array has an element")
	}
	if !keyIs([]byte(`na\u006de`), "name") || keyIs([]byte(`nam`), "name") {
		t.Error("keyIs")
	}
	if strLen([]byte(`\u00e9`)) != 2 {
		t.Error("strLen")
	}
}

// FuzzCheckJSON compares the validator with encoding/json and checks that the
// walker visits exactly what encoding/json decodes.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"c\u0041"}]}`, `[`, `"\ud800"`, `1e5`, ` {"a" : null } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := checkJSON(b, 1000)
		want := json.Valid(b)
		if !utf8.Valid(b) {
			return // callers reject invalid UTF-8 before checkJSON
		}
		if (got == jsonOK) != want {
			t.Fatalf("checkJSON(%q) = %d, json.Valid = %v", b, got, want)
		}
		if got != jsonOK {
			return
		}
		v := trimWS(b)
		if kind(v) == '{' {
			var ref map[string]json.RawMessage
			if err := json.Unmarshal(v, &ref); err != nil {
				t.Fatal(err)
			}
			seen := map[string]string{}
			m := newMembers(v)
			for k, val, ok := m.next(); ok; k, val, ok = m.next() {
				seen[unescape(k)] = string(val)
			}
			if len(seen) != len(ref) {
				t.Fatalf("%q: walker saw %d keys, json %d", b, len(seen), len(ref))
			}
			for k, rv := range ref {
				if string(trimWS(rv)) != seen[k] {
					t.Fatalf("%q: key %q: walker %q, json %q", b, k, seen[k], rv)
				}
			}
		}
		if kind(v) == '[' {
			var ref []json.RawMessage
			if err := json.Unmarshal(v, &ref); err != nil {
				t.Fatal(err)
			}
			el := newElements(v)
			i := 0
			for val, ok := el.next(); ok; val, ok = el.next() {
				if i >= len(ref) || string(trimWS(ref[i])) != string(val) {
					t.Fatalf("%q: element %d = %q", b, i, val)
				}
				i++
			}
			if i != len(ref) {
				t.Fatalf("%q: walker saw %d elements, json %d", b, i, len(ref))
			}
		}
	})
}
