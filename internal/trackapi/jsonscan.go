package trackapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds a small JSON validator and a walker over validated JSON.
// Validation is one pass with no allocation; the walker then visits object
// members and array elements as raw byte slices of the original body, so the
// stored body is always the client's bytes.

// jsonProblem is what checkJSON found.
type jsonProblem uint8

const (
	jsonOK jsonProblem = iota
	jsonSyntax
	jsonTooDeep
)

// checkJSON reports whether b is exactly one JSON value (RFC 8259, surrounding
// whitespace allowed) with at most maxDepth nested objects/arrays. It does not
// check UTF-8; callers do that first with utf8.Valid.
func checkJSON(b []byte, maxDepth int) jsonProblem {
	p := jsonParser{b: b, maxDepth: maxDepth}
	if !p.value(0) {
		if p.deep {
			return jsonTooDeep
		}
		return jsonSyntax
	}
	p.ws()
	if p.i != len(p.b) {
		return jsonSyntax
	}
	return jsonOK
}

type jsonParser struct {
	b        []byte
	i        int
	maxDepth int
	deep     bool
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (p *jsonParser) ws() {
	for p.i < len(p.b) && isWS(p.b[p.i]) {
		p.i++
	}
}

func (p *jsonParser) value(depth int) bool {
	p.ws()
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; c {
	case '{':
		if depth >= p.maxDepth {
			p.deep = true
			return false
		}
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			return true
		}
		for {
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != '"' || !p.str() {
				return false
			}
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return false
			}
			p.i++
			if !p.value(depth + 1) {
				return false
			}
			p.ws()
			if p.i >= len(p.b) {
				return false
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case '}':
				p.i++
				return true
			default:
				return false
			}
		}
	case '[':
		if depth >= p.maxDepth {
			p.deep = true
			return false
		}
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return true
		}
		for {
			if !p.value(depth + 1) {
				return false
			}
			p.ws()
			if p.i >= len(p.b) {
				return false
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case ']':
				p.i++
				return true
			default:
				return false
			}
		}
	case '"':
		return p.str()
	case 't':
		return p.lit("true")
	case 'f':
		return p.lit("false")
	case 'n':
		return p.lit("null")
	default:
		return p.num()
	}
}

func (p *jsonParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str consumes a string starting at the opening quote.
func (p *jsonParser) str() bool {
	p.i++ // opening quote
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return true
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return false
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if len(p.b)-p.i < 5 {
					return false
				}
				for _, h := range p.b[p.i+1 : p.i+5] {
					if !isHex(h) {
						return false
					}
				}
				p.i += 5
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			p.i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (p *jsonParser) num() bool {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return false
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	p.i = i
	return true
}

// --- walking validated JSON ---

// trimWS returns b without leading and trailing JSON whitespace.
func trimWS(b []byte) []byte {
	for len(b) > 0 && isWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// kind returns the first byte of a raw value: '{', '[', '"', 't', 'f', 'n',
// or '0' for a number.
func kind(v []byte) byte {
	if len(v) == 0 {
		return 0
	}
	switch c := v[0]; c {
	case '{', '[', '"', 't', 'f', 'n':
		return c
	default:
		return '0'
	}
}

// skipValue returns the index just past the value starting at b[i]. b must be
// valid JSON.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

func skipString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		j += i
		// The quote ends the string unless an odd run of backslashes
		// precedes it. The run cannot extend before i: b[i-1] is a quote.
		n := 0
		for k := j - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		i = j + 1
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// members iterates over a validated JSON object's members.
type members struct {
	b []byte
	i int
}

func newMembers(obj []byte) members { return members{b: obj, i: 1} }

// next returns the next key (the raw string contents, escapes not decoded)
// and value (raw bytes).
func (m *members) next() (key, val []byte, ok bool) {
	b := m.b
	i := skipWS(b, m.i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, nil, false
	}
	end := skipString(b, i)
	key = b[i+1 : end-1]
	i = skipWS(b, end)
	i = skipWS(b, i+1) // ':'
	vend := skipValue(b, i)
	val = b[i:vend]
	m.i = vend
	return key, val, true
}

// elements iterates over a validated JSON array's elements.
type elements struct {
	b []byte
	i int
}

func newElements(arr []byte) elements { return elements{b: arr, i: 1} }

func (e *elements) next() (val []byte, ok bool) {
	b := e.b
	i := skipWS(b, e.i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] == ']' {
		return nil, false
	}
	end := skipValue(b, i)
	e.i = end
	return b[i:end], true
}

// lookup indexes m by the decoded raw string without allocating in the
// common (unescaped) case.
func lookup[V any](m map[string]V, raw []byte) V {
	if bytes.IndexByte(raw, '\\') < 0 {
		return m[string(raw)]
	}
	return m[unescape(raw)]
}

// keyIs reports whether the raw key equals s after unescaping.
func keyIs(raw []byte, s string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == s
	}
	return unescape(raw) == s
}

// unescape decodes the contents of a validated JSON string (without quotes).
func unescape(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(q, '"')
	q = append(q, raw...)
	q = append(q, '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return string(raw)
	}
	return s
}

// strLen is the decoded byte length of a raw string's contents.
func strLen(raw []byte) int {
	if bytes.IndexByte(raw, '\\') < 0 {
		return len(raw)
	}
	return len(unescape(raw))
}

// strVal returns the decoded string if v is a JSON string.
func strVal(v []byte) (string, bool) {
	if kind(v) != '"' {
		return "", false
	}
	return unescape(v[1 : len(v)-1]), true
}

// strRaw returns the raw contents of v if it is a JSON string.
func strRaw(v []byte) ([]byte, bool) {
	if kind(v) != '"' {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

// isContent reports whether r is neither white space nor a control
// character.
func isContent(r rune) bool { return !unicode.IsSpace(r) && !unicode.IsControl(r) }

// isBlank reports whether the raw contents of a JSON string (or a path
// parameter) hold nothing but white space and control characters, escaped
// ("\u0020", "\t") or not.
func isBlank(raw []byte) bool {
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			// Escapes, or non-ASCII white space and controls (U+00A0,
			// U+0085, U+2028...): decode and look at the runes.
			return strings.IndexFunc(unescape(raw), isContent) < 0
		}
		if c > ' ' && c != 0x7f {
			return false
		}
	}
	return true
}
