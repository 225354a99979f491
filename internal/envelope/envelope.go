// Package envelope maps a spool record to the CloudEvents 1.0 envelope every
// back end receives (docs/ENVELOPE.md is the contract with consumers): the
// record's metadata become CloudEvents attributes, and the validated request
// body, byte for byte, is the event data. Binary mode carries the attributes
// as headers (NATS "ce-" headers, Kafka "ce_" headers); structured mode (HTTP)
// is one JSON object per event.
package envelope

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trackd/trackd/internal/spool"
)

// SpecVersion is the CloudEvents version.
const SpecVersion = "1.0"

// TypePrefix starts every event type: TypePrefix + the record's operation,
// e.g. "io.customer.track.v1.identify", "io.customer.track.v2.person.event".
const TypePrefix = "io.customer.track."

// Attr is one CloudEvents attribute.
type Attr struct{ Name, Value string }

// metaNames maps record metadata keys to extension attribute names
// (CloudEvents names are lower-case letters and digits). Keys not listed
// lose their underscores; the common ones are listed so that mapping them
// allocates nothing.
var metaNames = map[string]string{
	"api":          "apiversion",
	"timestamp":    "clienttimestamp",
	"request_id":   "requestid",
	"user_agent":   "useragent",
	"client_ip":    "clientip",
	"node_region":  "noderegion",
	"batch_index":  "batchindex",
	"device_id":    "deviceid",
	"segment_id":   "segmentid",
	"id_type":      "idtype",
	"form_id":      "formid",
	"delivery_id":  "deliveryid",
	"anonymous_id": "anonymousid",
}

// Attributes returns the record's CloudEvents attributes in a fixed order:
// the required and optional context attributes first (id, source,
// specversion, type, time, subject, datacontenttype when there is data),
// then the extensions: workspace, operation, and one per metadata pair.
func Attributes(r *spool.Record) []Attr {
	return AppendAttributes(make([]Attr, 0, 9+len(r.Meta)), r)
}

// AppendAttributes appends the record's attributes, as Attributes returns
// them, to attrs: a sink that encodes many records reuses one slice.
func AppendAttributes(attrs []Attr, r *spool.Record) []Attr {
	region, _ := r.Get("region")
	attrs = append(attrs,
		Attr{"id", r.ID},
		Attr{"source", Source(region, r.Workspace)},
		Attr{"specversion", SpecVersion},
		Attr{"type", TypePrefix + r.Op},
		Attr{"time", time.Unix(0, r.ReceivedAt).UTC().Format(time.RFC3339Nano)},
	)
	if s := Subject(r); s != "" {
		attrs = append(attrs, Attr{"subject", s})
	}
	if len(r.Body) > 0 {
		attrs = append(attrs, Attr{"datacontenttype", "application/json"})
	}
	attrs = append(attrs, Attr{"workspace", r.Workspace}, Attr{"operation", r.Op})
	for _, kv := range r.Meta {
		name, ok := metaNames[kv.Key]
		if !ok {
			name = strings.ReplaceAll(kv.Key, "_", "")
		}
		if validName(name) {
			attrs = append(attrs, Attr{name, kv.Value})
		}
	}
	return attrs
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Source is the event source: the node's region and the workspace.
func Source(region, workspace string) string {
	if region == "" {
		region = "unknown"
	}
	return "/trackd/" + region + "/" + workspace
}

// Subject is who the event is about: the v1 path identifier (person ID,
// email or cio_ id), else the v2 identifiers object (canonical JSON),
// else the delivery ID or anonymous ID; empty if none.
func Subject(r *spool.Record) string {
	for _, k := range []string{"identifier", "identifiers", "delivery_id", "anonymous_id"} {
		if v, ok := r.Get(k); ok && v != "" {
			return v
		}
	}
	return ""
}

// PartitionKey keeps one person's events in order where the back end
// orders by key (a Kafka partition, a NATS subject): the workspace and the
// event's subject (or its ID when it has none).
func PartitionKey(r *spool.Record) string {
	s := Subject(r)
	if s == "" {
		s = r.ID
	}
	return r.Workspace + "/" + s
}

// Structured returns the record as one structured-mode CloudEvents JSON
// object: the attributes as members, and the body under "data" (raw JSON)
// or, when the body is not JSON, under "data_base64" (never happens for
// validated bodies; defensive).
func Structured(r *spool.Record) []byte {
	attrs := Attributes(r)
	b := make([]byte, 0, 256+len(r.Body))
	b = append(b, '{')
	for i, a := range attrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, a.Name)
		b = append(b, ':')
		b = AppendJSONString(b, a.Value)
	}
	switch {
	case len(r.Body) == 0:
	case json.Valid(r.Body):
		b = append(b, `,"data":`...)
		b = append(b, r.Body...)
	default:
		enc, _ := json.Marshal(r.Body) // []byte marshals as base64
		b = append(b, `,"data_base64":`...)
		b = append(b, enc...)
	}
	return append(b, '}')
}

// AppendJSONString appends s as a JSON string, escaping only what JSON
// requires (quote, backslash, control characters) plus U+2028 and U+2029;
// invalid UTF-8 becomes U+FFFD, as encoding/json writes it.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// NATSSubject is the subject a record is published on:
// <prefix>.<region>.<workspace>.<operation>, e.g.
// "trackd.us.46be54768e7d49ab2628.v1.identify". Tokens that NATS treats
// specially ('.', '*', '>', spaces) are replaced by '_' in the workspace.
func NATSSubject(prefix string, r *spool.Record) string {
	region, _ := r.Get("region")
	if region == "" {
		region = "unknown"
	}
	return prefix + "." + token(region) + "." + token(r.Workspace) + "." + r.Op
}

func token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(c rune) rune {
		switch {
		case c == '.' || c == '*' || c == '>' || c <= ' ' || c == 0x7f:
			return '_'
		}
		return c
	}, s)
}
