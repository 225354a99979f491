package trackapi

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/ulid"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// newRecord builds one record of this request. extra pairs with an empty
// value are left out.
func (ex *exchange) newRecord(op, api, id string, body []byte, extra []spool.KV) spool.Record {
	s := ex.s
	if id == "" {
		id = s.newID()
	}
	meta := make([]spool.KV, 0, 6+len(extra))
	meta = append(meta, spool.KV{Key: "request_id", Value: ex.reqID}, spool.KV{Key: "api", Value: api})
	region := ex.ws.Region
	if region == "" {
		region = s.region
	}
	meta = append(meta, spool.KV{Key: "region", Value: region})
	if region != s.region {
		meta = append(meta, spool.KV{Key: "node_region", Value: s.region})
	}
	if ua := ex.r.Header.Get("User-Agent"); ua != "" {
		meta = append(meta, spool.KV{Key: "user_agent", Value: metaClean(ua)})
	}
	if ip := s.clientIP(ex.r); ip != "" {
		meta = append(meta, spool.KV{Key: "client_ip", Value: ip})
	}
	for _, kv := range extra {
		if kv.Value != "" {
			meta = append(meta, kv)
		}
	}
	return spool.Record{
		ID:         id,
		Workspace:  ex.ws.SiteID,
		Op:         op,
		ReceivedAt: ex.received.UnixNano(),
		Meta:       meta,
		Body:       body,
	}
}

// storedBody is a private copy of the body as received (untrimmed), or nil
// when it is blank.
func (ex *exchange) storedBody() []byte {
	if len(ex.body) == 0 {
		return nil
	}
	return bytes.Clone(ex.buf)
}

// one returns a single v1 record.
func (ex *exchange) one(op, id string, extra []spool.KV) ([]spool.Record, *apiError) {
	return []spool.Record{ex.newRecord(op, "v1", id, ex.storedBody(), extra)}, nil
}

// pathIdent checks a path parameter used as an identifier.
func (ex *exchange) pathIdent(name string, max int) (string, *apiError) {
	v := ex.r.PathValue(name)
	if strings.IndexFunc(v, isContent) < 0 { // "" or only spaces (%20): no identifier, as in v2
		return "", errMissing(name)
	}
	if !utf8.ValidString(v) {
		return "", &apiError{status: http.StatusBadRequest, reason: ReasonInvalidUTF8, field: name, msg: "is not valid UTF-8"}
	}
	if len(v) > max {
		return "", errTooLong(name, max)
	}
	if e := headerSafe(name, v); e != nil {
		return "", e
	}
	return v, nil
}

// headerSafe checks a value that travels as a header value (an attribute
// of the envelope: NATS trims white space at the ends and turns CR and LF
// into spaces), so that it reaches the back end unchanged.
func headerSafe(field, v string) *apiError {
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return errInvalid(field, "must not contain control characters")
	}
	if strings.TrimSpace(v) != v {
		return errInvalid(field, "must not begin or end with white space")
	}
	return nil
}

// clientID returns the client's dedup id if it is a ULID.
func clientID(raw []byte) string {
	s, ok := strVal(raw)
	if !ok || !ulid.Valid(s) {
		return ""
	}
	return s
}

// --- GET routes ---

func handleAuth(ex *exchange) ([]spool.Record, *apiError) {
	ex.ok(http.StatusOK, false)
	return nil, nil
}

func handleRegion(ex *exchange) ([]spool.Record, *apiError) {
	s := ex.s
	region := ex.ws.Region
	if region == "" {
		region = s.region
	}
	url := s.regionURLs[region]
	if url == "" {
		url = s.regionURLs["us"]
	}
	ex.okJSON(struct {
		URL           string `json:"url"`
		Region        string `json:"region"`
		EnvironmentID int64  `json:"environment_id"`
	}{url, region, s.envID(ex.ws)})
	return nil, nil
}

// --- people ---

// reservedAttr are identify keys whose values are structures, exempt from
// the attribute value limit.
func reservedAttr(k []byte) bool {
	return keyIs(k, "cio_relationships") || keyIs(k, "cio_subscription_preferences")
}

// reservedValue checks the structure of a reservedAttr value (null is
// accepted: no change): cio_relationships is {"action": add_relationships
// or delete_relationships, "relationships": [...]} (see relationships);
// cio_subscription_preferences is an object whose "topics", if any, is an
// object of booleans.
func (ex *exchange) reservedValue(field string, k, v []byte) *apiError {
	if kind(v) == 'n' {
		return nil
	}
	if kind(v) != '{' {
		return errType(field, "an object")
	}
	m := newMembers(v)
	if keyIs(k, "cio_relationships") {
		var rels []byte
		for mk, mv, ok := m.next(); ok; mk, mv, ok = m.next() {
			switch {
			case keyIs(mk, "action"):
				if !oneOf(mv, []string{"add_relationships", "delete_relationships"}) {
					return errInvalid(field+".action", "must be add_relationships or delete_relationships")
				}
			case keyIs(mk, "relationships"):
				rels = mv
			}
		}
		if rels == nil || kind(rels) == 'n' {
			return errMissing(field + ".relationships")
		}
		return ex.relationships(field+".relationships", rels)
	}
	for mk, mv, ok := m.next(); ok; mk, mv, ok = m.next() {
		if !keyIs(mk, "topics") || kind(mv) == 'n' {
			continue
		}
		if kind(mv) != '{' {
			return errType(field+".topics", "an object")
		}
		tm := newMembers(mv)
		for tk, tv, ok := tm.next(); ok; tk, tv, ok = tm.next() {
			if kind(tv) != 't' && kind(tv) != 'f' && kind(tv) != 'n' { // null: back to the default
				return errType(field+".topics."+unescape(tk), "a boolean")
			}
		}
	}
	return nil
}

// checkAttrs validates an attributes object: number of keys, key lengths,
// value lengths. prefix names the object in error fields.
func (ex *exchange) checkAttrs(obj []byte, prefix string, exempt func([]byte) bool) *apiError {
	lim := &ex.s.lim
	m := newMembers(obj)
	n := 0
	for {
		k, v, ok := m.next()
		if !ok {
			return nil
		}
		n++
		if n > lim.Attributes {
			name := prefix
			if name == "" {
				name = "attributes"
			}
			return &apiError{status: http.StatusBadRequest, reason: ReasonTooManyAttributes, field: name,
				msg: "has more than " + strconv.Itoa(lim.Attributes) + " attributes"}
		}
		if len(k) == 0 {
			return errInvalid(fieldName(prefix, k), "attribute name is empty")
		}
		if strLen(k) > lim.AttributeName {
			return errTooLong(fieldName(prefix, k), lim.AttributeName)
		}
		if exempt != nil && exempt(k) {
			if e := ex.reservedValue(fieldName(prefix, k), k, v); e != nil {
				return e
			}
			continue
		}
		vl := len(v)
		if kind(v) == '"' {
			vl = strLen(v[1 : len(v)-1])
		}
		if vl > lim.AttributeValue {
			return errTooLong(fieldName(prefix, k), lim.AttributeValue)
		}
	}
}

func handleIdentify(ex *exchange) ([]spool.Record, *apiError) {
	ident, e := ex.pathIdent("identifier", ex.s.lim.Identifier)
	if e != nil {
		return nil, e
	}
	var ts string
	switch kind(ex.body) {
	case 'n': // the Go client sends null for nil attributes
	case '{':
		if e := ex.checkAttrs(ex.body, "", reservedAttr); e != nil {
			return nil, e
		}
		m := newMembers(ex.body)
		for k, v, ok := m.next(); ok; k, v, ok = m.next() {
			switch {
			case keyIs(k, "_timestamp"):
				if !isUnixTime(v) {
					return nil, errType("_timestamp", "a unix timestamp (integer)")
				}
				ts = unixTime(v)
			case keyIs(k, "id"), keyIs(k, "email"), keyIs(k, "anonymous_id"):
				if s, ok := strRaw(v); ok && strLen(s) > ex.s.lim.Identifier {
					return nil, errTooLong(unescape(k), ex.s.lim.Identifier)
				}
			}
		}
	default:
		return nil, errType("body", "a JSON object")
	}
	extra := [...]spool.KV{{Key: "identifier", Value: ident}, {Key: "timestamp", Value: ts}}
	return ex.one("v1.identify", "", extra[:])
}

// handleBodyless serves DELETE person, DELETE device, suppress and
// unsuppress: the body is optional (checkBody already allowed only nothing,
// an object or null).
func handleBodyless(op string) handler {
	return func(ex *exchange) ([]spool.Record, *apiError) {
		ident, e := ex.pathIdent("identifier", ex.s.lim.Identifier)
		if e != nil {
			return nil, e
		}
		extra := [2]spool.KV{{Key: "identifier", Value: ident}}
		if op == "v1.device.delete" {
			dev, e := ex.pathIdent("device_id", ex.s.lim.AttributeValue)
			if e != nil {
				return nil, e
			}
			extra[1] = spool.KV{Key: "device_id", Value: dev}
		}
		return ex.one(op, "", extra[:])
	}
}

// eventFields validates a v1 event body (track and anonymous track).
func (ex *exchange) eventFields(anonymous bool) (id, ts, anonID string, e *apiError) {
	lim := &ex.s.lim
	if kind(ex.body) != '{' {
		return "", "", "", errType("body", "a JSON object")
	}
	hasName := false
	m := newMembers(ex.body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch {
		case keyIs(k, "name"):
			raw, ok := strRaw(v)
			if !ok {
				return "", "", "", errType("name", "a string")
			}
			name := bytes.TrimSpace(raw)
			if isBlank(name) {
				return "", "", "", errMissing("name")
			}
			if strLen(name) > lim.EventName {
				return "", "", "", errTooLong("name", lim.EventName)
			}
			hasName = true
		case keyIs(k, "data"):
			switch kind(v) {
			case 'n':
			case '{':
				if len(v) > lim.EventData {
					return "", "", "", errTooLong("data", lim.EventData)
				}
			default:
				return "", "", "", errType("data", "an object")
			}
		case keyIs(k, "type"):
			t, ok := strRaw(v)
			if !ok || !(keyIs(t, "event") || keyIs(t, "page") || keyIs(t, "screen")) {
				return "", "", "", errInvalid("type", "must be one of event, page, screen")
			}
		case keyIs(k, "id"):
			if kind(v) != '"' {
				return "", "", "", errType("id", "a string")
			}
			id = clientID(v)
		case keyIs(k, "timestamp"):
			if !isUnixTime(v) {
				return "", "", "", errType("timestamp", "a unix timestamp (integer)")
			}
			ts = unixTime(v)
		case anonymous && keyIs(k, "anonymous_id"):
			switch kind(v) {
			case 'n':
			case '"':
				raw := v[1 : len(v)-1]
				if strLen(raw) > lim.Identifier {
					return "", "", "", errTooLong("anonymous_id", lim.Identifier)
				}
				anonID = unescape(raw)
				if len(raw) > 0 && isBlank(raw) {
					return "", "", "", errInvalid("anonymous_id", "is blank")
				}
				if e := headerSafe("anonymous_id", anonID); e != nil {
					return "", "", "", e
				}
			default:
				return "", "", "", errType("anonymous_id", "a string")
			}
		}
	}
	if !hasName {
		return "", "", "", errMissing("name")
	}
	return id, ts, anonID, nil
}

func handleEvent(ex *exchange) ([]spool.Record, *apiError) {
	ident, e := ex.pathIdent("identifier", ex.s.lim.Identifier)
	if e != nil {
		return nil, e
	}
	id, ts, _, e := ex.eventFields(false)
	if e != nil {
		return nil, e
	}
	extra := [...]spool.KV{{Key: "identifier", Value: ident}, {Key: "timestamp", Value: ts}}
	return ex.one("v1.event", id, extra[:])
}

func handleAnonymousEvent(ex *exchange) ([]spool.Record, *apiError) {
	id, ts, anon, e := ex.eventFields(true)
	if e != nil {
		return nil, e
	}
	extra := [...]spool.KV{{Key: "anonymous_id", Value: anon}, {Key: "timestamp", Value: ts}}
	return ex.one("v1.anonymous_event", id, extra[:])
}

func isPlatform(v []byte) bool {
	s, ok := strRaw(v)
	return ok && (keyIs(s, "ios") || keyIs(s, "android"))
}

func handleAddDevice(ex *exchange) ([]spool.Record, *apiError) {
	lim := &ex.s.lim
	ident, e := ex.pathIdent("identifier", lim.Identifier)
	if e != nil {
		return nil, e
	}
	if kind(ex.body) != '{' {
		return nil, errType("body", "a JSON object")
	}
	var dev []byte
	m := newMembers(ex.body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if keyIs(k, "device") {
			dev = v
		}
	}
	if dev == nil || kind(dev) == 'n' {
		return nil, errMissing("device")
	}
	if kind(dev) != '{' {
		return nil, errType("device", "an object")
	}
	var devID, ts string
	hasPlatform := false
	m = newMembers(dev)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch {
		case keyIs(k, "id"):
			raw, ok := strRaw(v)
			if !ok {
				return nil, errType("device.id", "a string")
			}
			if isBlank(raw) {
				return nil, errMissing("device.id")
			}
			if strLen(raw) > lim.AttributeValue {
				return nil, errTooLong("device.id", lim.AttributeValue)
			}
			devID = unescape(raw)
			if e := headerSafe("device.id", devID); e != nil {
				return nil, e
			}
		case keyIs(k, "platform"):
			if !isPlatform(v) {
				return nil, errInvalid("device.platform", "must be ios or android")
			}
			hasPlatform = true
		case keyIs(k, "last_used"):
			t, ok := lastUsed(v)
			if !ok {
				return nil, errType("device.last_used", "a unix timestamp")
			}
			if t != "" {
				ts = t
			}
		case keyIs(k, "attributes"):
			switch kind(v) {
			case 'n':
			case '{':
				if e := ex.checkAttrs(v, "device.attributes", nil); e != nil {
					return nil, e
				}
			default:
				return nil, errType("device.attributes", "an object")
			}
		}
	}
	if devID == "" {
		return nil, errMissing("device.id")
	}
	if !hasPlatform {
		return nil, errMissing("device.platform")
	}
	extra := [...]spool.KV{{Key: "identifier", Value: ident}, {Key: "device_id", Value: metaClean(devID)}, {Key: "timestamp", Value: ts}}
	return ex.one("v1.device.add", "", extra[:])
}

// lastUsed checks a device's last_used: a unix timestamp as a number, or
// as a string of digits (the Go client sends it so), or null; it returns
// the timestamp ("" for null).
func lastUsed(v []byte) (ts string, ok bool) {
	switch kind(v) {
	case 'n':
		return "", true
	case '0':
		return unixTime(v), isUnixTime(v)
	case '"':
		d := v[1 : len(v)-1]
		return string(d), isDigits(d) && len(d) <= 18
	}
	return "", false
}

// isUnixTime reports whether the JSON value v is an integer literal that
// fits a unix timestamp (int64): no fraction, no exponent, as the API's
// integer fields require (a Go back end decoding into int64 refuses the
// rest).
func isUnixTime(v []byte) bool {
	v = intPart(v)
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	return len(v) <= 18 && isDigits(v)
}

// unixTime is the integer form of a value isUnixTime accepted
// ("1700000000.0" is 1700000000).
func unixTime(v []byte) string { return string(intPart(v)) }

// intPart strips a fraction of zeros from a JSON number (1700000000.0 is
// an integer to JSON Schema, and Python writes floats so); it returns v
// unchanged otherwise.
func intPart(v []byte) []byte {
	i := bytes.IndexByte(v, '.')
	if i < 0 {
		return v
	}
	for _, c := range v[i+1:] {
		if c != '0' {
			return v
		}
	}
	if i+1 == len(v) {
		return v // "1." is not JSON; leave it to fail
	}
	return v[:i]
}

// isInteger reports whether the JSON number v is an integer literal
// (optionally negative), without fraction or exponent.
func isInteger(v []byte) bool {
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func isDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 19 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// personRef validates a merge primary/secondary: exactly one of id, email,
// cio_id with a non-empty string (or, for id, number) value.
func (ex *exchange) personRef(field string, v []byte) *apiError {
	if v == nil || kind(v) == 'n' {
		return errMissing(field)
	}
	if kind(v) != '{' {
		return errType(field, "an object with one of id, email, cio_id")
	}
	n := 0
	m := newMembers(v)
	for k, val, ok := m.next(); ok; k, val, ok = m.next() {
		n++
		if !(keyIs(k, "id") || keyIs(k, "email") || keyIs(k, "cio_id")) {
			return errInvalid(fieldName(field, k), "must be one of id, email, cio_id")
		}
		if e := ex.identValueKey(field, k, val, keyIs(k, "id")); e != nil {
			return e
		}
	}
	if n != 1 {
		return errInvalid(field, "must have exactly one of id, email, cio_id")
	}
	return nil
}

// identValueKey is identValue for a member of an object: the field name is
// rendered only if there is an error.
func (ex *exchange) identValueKey(prefix string, key, v []byte, allowNum bool) *apiError {
	if e := ex.identValue("", v, allowNum); e != nil {
		e.field = fieldName(prefix, key)
		return e
	}
	return nil
}

// identValue checks an identifier value: a non-blank string within the
// identifier limit (numbers allowed where allowNum).
func (ex *exchange) identValue(field string, v []byte, allowNum bool) *apiError {
	switch kind(v) {
	case '"':
		raw := v[1 : len(v)-1]
		if isBlank(raw) {
			return errMissing(field)
		}
		if strLen(raw) > ex.s.lim.Identifier {
			return errTooLong(field, ex.s.lim.Identifier)
		}
		return nil
	case '0':
		if allowNum {
			if len(v) > ex.s.lim.Identifier {
				return errTooLong(field, ex.s.lim.Identifier)
			}
			if !isInteger(v) {
				return errType(field, "a string or an integer")
			}
			return nil
		}
	}
	return errType(field, "a string")
}

func handleMerge(ex *exchange) ([]spool.Record, *apiError) {
	if kind(ex.body) != '{' {
		return nil, errType("body", "a JSON object")
	}
	var primary, secondary []byte
	m := newMembers(ex.body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch {
		case keyIs(k, "primary"):
			primary = v
		case keyIs(k, "secondary"):
			secondary = v
		}
	}
	if e := ex.personRef("primary", primary); e != nil {
		return nil, e
	}
	if e := ex.personRef("secondary", secondary); e != nil {
		return nil, e
	}
	return ex.one("v1.merge", "", nil)
}

func handleForm(ex *exchange) ([]spool.Record, *apiError) {
	lim := &ex.s.lim
	form, e := ex.pathIdent("form_id", lim.Identifier)
	if e != nil {
		return nil, e
	}
	if kind(ex.body) != '{' {
		return nil, errType("body", "a JSON object")
	}
	var data []byte
	m := newMembers(ex.body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if keyIs(k, "data") {
			data = v
		}
	}
	if data == nil || kind(data) == 'n' {
		return nil, errMissing("data")
	}
	if kind(data) != '{' {
		return nil, errType("data", "an object")
	}
	if e := ex.checkAttrs(data, "data", nil); e != nil {
		return nil, e
	}
	idents := 0
	m = newMembers(data)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		// Form values are strings, except that data.id may be a number:
		// the OpenAPI document's own "identify by id" example sends
		// {"id": 12345}, and ids are numbers elsewhere too (merge).
		isID := keyIs(k, "id")
		if kind(v) != '"' && !(isID && kind(v) == '0') {
			return nil, errType(fieldName("data", k), "a string")
		}
		if isID || keyIs(k, "email") {
			idents++
			if e := ex.identValueKey("data", k, v, isID); e != nil {
				return nil, e
			}
		}
	}
	if idents == 0 {
		return nil, errMissing("data.email")
	}
	if idents > 1 {
		return nil, errInvalid("data", "must have exactly one of email, id")
	}
	extra := [...]spool.KV{{Key: "form_id", Value: form}}
	return ex.one("v1.form", "", extra[:])
}

var metricNames = []string{"bounced", "clicked", "converted", "deferred", "delivered", "dropped", "opened", "spammed"}

func oneOf(v []byte, allowed []string) bool {
	raw, ok := strRaw(v)
	if !ok {
		return false
	}
	for _, a := range allowed {
		if keyIs(raw, a) {
			return true
		}
	}
	return false
}

// deliveryFields validates the metrics and push-events bodies.
func (ex *exchange) deliveryFields(nameField string, names []string) (delivery, ts string, e *apiError) {
	if kind(ex.body) != '{' {
		return "", "", errType("body", "a JSON object")
	}
	hasName := false
	m := newMembers(ex.body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch {
		case keyIs(k, "delivery_id"):
			if e := ex.identValue("delivery_id", v, false); e != nil {
				return "", "", e
			}
			delivery, _ = strVal(v)
			if e := headerSafe("delivery_id", delivery); e != nil {
				return "", "", e
			}
		case keyIs(k, nameField):
			if !oneOf(v, names) {
				return "", "", errInvalid(nameField, "is not a known metric")
			}
			hasName = true
		case keyIs(k, "timestamp"):
			if !isUnixTime(v) {
				return "", "", errType("timestamp", "a unix timestamp (integer)")
			}
			ts = unixTime(v)
		case keyIs(k, "recipient") && kind(v) == '0':
			// An SMS recipient may be a number (the OpenAPI document's SMS
			// metric declares an integer).
			if !isDigits(v) {
				return "", "", errType("recipient", "a string or a phone number (integer)")
			}
		case keyIs(k, "recipient"), keyIs(k, "reason"), keyIs(k, "href"), keyIs(k, "device_id"):
			if kind(v) != '"' && kind(v) != 'n' {
				return "", "", errType(unescape(k), "a string")
			}
			if len(v) > ex.s.lim.AttributeValue {
				return "", "", errTooLong(unescape(k), ex.s.lim.AttributeValue)
			}
		}
	}
	if delivery == "" {
		return "", "", errMissing("delivery_id")
	}
	if !hasName {
		return "", "", errMissing(nameField)
	}
	return delivery, ts, nil
}

func handleMetric(ex *exchange) ([]spool.Record, *apiError) {
	d, ts, e := ex.deliveryFields("metric", metricNames)
	if e != nil {
		return nil, e
	}
	extra := [...]spool.KV{{Key: "delivery_id", Value: d}, {Key: "timestamp", Value: ts}}
	return ex.one("v1.metric", "", extra[:])
}

var pushEvents = []string{"opened", "converted", "delivered"}

func handlePushMetric(ex *exchange) ([]spool.Record, *apiError) {
	d, ts, e := ex.deliveryFields("event", pushEvents)
	if e != nil {
		return nil, e
	}
	extra := [...]spool.KV{{Key: "delivery_id", Value: d}, {Key: "timestamp", Value: ts}}
	return ex.one("v1.push_metric", "", extra[:])
}

func handleUnsubscribe(ex *exchange) ([]spool.Record, *apiError) {
	d, e := ex.pathIdent("delivery_id", ex.s.lim.Identifier)
	if e != nil {
		return nil, e
	}
	if kind(ex.body) != '{' {
		return nil, errType("body", "a JSON object")
	}
	found := false
	m := newMembers(ex.body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if keyIs(k, "unsubscribe") {
			if kind(v) != 't' && kind(v) != 'f' {
				return nil, errType("unsubscribe", "a boolean")
			}
			found = true
		}
	}
	if !found {
		return nil, errMissing("unsubscribe")
	}
	extra := [...]spool.KV{{Key: "delivery_id", Value: d}}
	return ex.one("v1.unsubscribe", "", extra[:])
}

func handleSegment(op string) handler {
	return func(ex *exchange) ([]spool.Record, *apiError) {
		lim := &ex.s.lim
		segID, err := strconv.ParseInt(ex.r.PathValue("segment_id"), 10, 32)
		if err != nil || segID <= 0 {
			return nil, errInvalid("segment_id", "must be a positive integer")
		}
		seg := strconv.FormatInt(segID, 10) // one form per segment: "+7" and "007" are 7

		idType := ex.r.URL.Query().Get("id_type")
		switch idType {
		case "", "id", "email", "cio_id":
		default:
			return nil, errInvalid("id_type", "must be one of id, email, cio_id")
		}
		if kind(ex.body) != '{' {
			return nil, errType("body", "a JSON object")
		}
		var ids []byte
		m := newMembers(ex.body)
		for k, v, ok := m.next(); ok; k, v, ok = m.next() {
			if keyIs(k, "ids") {
				ids = v
			}
		}
		if ids == nil || kind(ids) == 'n' {
			return nil, errMissing("ids")
		}
		if kind(ids) != '[' {
			return nil, errType("ids", "an array of strings")
		}
		n := 0
		el := newElements(ids)
		for v, ok := el.next(); ok; v, ok = el.next() {
			n++
			if n > lim.SegmentIDs {
				return nil, errInvalid("ids", "must have at most "+strconv.Itoa(lim.SegmentIDs)+" items")
			}
			if e := ex.identValue("ids", v, false); e != nil {
				return nil, e
			}
		}
		if n == 0 {
			return nil, errInvalid("ids", "must have at least 1 item")
		}
		if idType == "" {
			idType = "id"
		}
		extra := [...]spool.KV{{Key: "segment_id", Value: seg}, {Key: "id_type", Value: idType}}
		return ex.one(op, "", extra[:])
	}
}
