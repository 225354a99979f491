package trackapi

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/spool"
)

// v2 operations: type → action → record op.
var v2Ops = map[string]map[string]string{
	"person": {
		"identify":             "v2.person.identify",
		"delete":               "v2.person.delete",
		"event":                "v2.person.event",
		"screen":               "v2.person.screen",
		"page":                 "v2.person.page",
		"add_relationships":    "v2.person.add_relationships",
		"delete_relationships": "v2.person.delete_relationships",
		"add_device":           "v2.person.add_device",
		"delete_device":        "v2.person.delete_device",
		"merge":                "v2.person.merge",
		"suppress":             "v2.person.suppress",
		"unsuppress":           "v2.person.unsuppress",
	},
	"object": {
		"identify":             "v2.object.identify",
		"identify_anonymous":   "v2.object.identify_anonymous",
		"delete":               "v2.object.delete",
		"add_relationships":    "v2.object.add_relationships",
		"delete_relationships": "v2.object.delete_relationships",
	},
	"delivery": {
		"event": "v2.delivery.event",
	},
}

// v2Item is a validated v2 operation.
type v2Item struct {
	op          string
	id          string // client dedup id (ULID) or ""
	ts          string
	identifiers string // raw JSON of identifiers
}

// checkItem validates one v2 operation object (entity body or batch item).
func (ex *exchange) checkItem(b []byte) (v2Item, *apiError) {
	lim := &ex.s.lim
	var it v2Item
	if kind(b) != '{' {
		return it, errType("", "a JSON object")
	}
	var typ, action, idents, name, attrs, device, rels, primary, secondary []byte
	m := newMembers(b)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		switch {
		case keyIs(k, "type"):
			typ = v
		case keyIs(k, "action"):
			action = v
		case keyIs(k, "identifiers"):
			idents = v
		case keyIs(k, "name"):
			name = v
		case keyIs(k, "attributes"):
			attrs = v
		case keyIs(k, "device"):
			device = v
		case keyIs(k, "cio_relationships"):
			rels = v
		case keyIs(k, "primary"):
			primary = v
		case keyIs(k, "secondary"):
			secondary = v
		case keyIs(k, "id"):
			if kind(v) != '"' {
				return it, errType("id", "a string")
			}
			it.id = clientID(v)
		case keyIs(k, "timestamp"):
			if !isUnixTime(v) {
				return it, errType("timestamp", "a unix timestamp (integer)")
			}
			it.ts = unixTime(v)
		}
	}
	if typ == nil || kind(typ) == 'n' {
		return it, errMissing("type")
	}
	t, ok := strRaw(typ)
	if !ok {
		return it, errType("type", "a string")
	}
	actions := lookup(v2Ops, t)
	if actions == nil {
		return it, errInvalid("type", "must be one of person, object, delivery")
	}
	if action == nil || kind(action) == 'n' {
		return it, errMissing("action")
	}
	a, ok := strRaw(action)
	if !ok {
		return it, errType("action", "a string")
	}
	it.op = lookup(actions, a)
	if it.op == "" {
		return it, errInvalid("action", "is not a valid action for this type")
	}

	// identifiers
	if it.op != "v2.person.merge" {
		if idents == nil || kind(idents) == 'n' {
			return it, errMissing("identifiers")
		}
		var e *apiError
		switch {
		case strings.HasPrefix(it.op, "v2.person."):
			e = ex.personIdentifiers(idents)
		case strings.HasPrefix(it.op, "v2.object."):
			e = ex.objectIdentifiers(idents)
		default:
			e = ex.deliveryIdentifiers(idents)
		}
		if e != nil {
			return it, e
		}
		it.identifiers = canonicalIdentifiers(idents)
	}

	// attributes
	if attrs != nil && kind(attrs) != 'n' {
		if kind(attrs) != '{' {
			return it, errType("attributes", "an object")
		}
		switch it.op {
		case "v2.person.event", "v2.person.screen", "v2.person.page", "v2.delivery.event":
			if len(attrs) > lim.EventData {
				return it, errTooLong("attributes", lim.EventData)
			}
		default:
			if e := ex.checkAttrs(attrs, "attributes", reservedAttr); e != nil {
				return it, e
			}
		}
	}

	// per-operation requirements
	switch it.op {
	case "v2.person.event", "v2.person.screen", "v2.person.page":
		if e := ex.eventName(name); e != nil {
			return it, e
		}
	case "v2.delivery.event":
		if name == nil || kind(name) == 'n' {
			return it, errMissing("name")
		}
		if !oneOf(name, pushEvents) {
			return it, errInvalid("name", "must be one of opened, converted, delivered")
		}
		if attrs == nil || kind(attrs) != '{' {
			return it, errMissing("attributes.device_token")
		}
		found := false
		am := newMembers(attrs)
		for k, v, ok := am.next(); ok; k, v, ok = am.next() {
			if keyIs(k, "device_token") {
				if e := ex.identValue("attributes.device_token", v, false); e != nil && e.reason != ReasonFieldTooLong {
					return it, e
				}
				found = true
			}
		}
		if !found {
			return it, errMissing("attributes.device_token")
		}
	case "v2.person.add_device", "v2.person.delete_device":
		if e := ex.v2Device(device, it.op == "v2.person.add_device"); e != nil {
			return it, e
		}
	case "v2.person.merge":
		if e := ex.personRef("primary", primary); e != nil {
			return it, e
		}
		if e := ex.personRef("secondary", secondary); e != nil {
			return it, e
		}
	case "v2.person.add_relationships", "v2.person.delete_relationships",
		"v2.object.add_relationships", "v2.object.delete_relationships":
		if rels == nil || kind(rels) == 'n' {
			return it, errMissing("cio_relationships")
		}
	}
	if rels != nil && kind(rels) != 'n' {
		if e := ex.relationships("cio_relationships", rels); e != nil {
			return it, e
		}
	}
	return it, nil
}

// relationships checks a relationship list: an array of objects,
// each with an identifiers object of one or more non-blank string (or
// number) values, and optionally relationship_attributes, an object of
// attributes.
func (ex *exchange) relationships(field string, v []byte) *apiError {
	if kind(v) != '[' {
		return errType(field, "an array")
	}
	n := 0
	el := newElements(v)
	for rel, ok := el.next(); ok; rel, ok = el.next() {
		at := field + "[" + strconv.Itoa(n) + "]"
		n++
		if kind(rel) != '{' {
			return errType(at, "an object")
		}
		var idents []byte
		m := newMembers(rel)
		for k, val, ok := m.next(); ok; k, val, ok = m.next() {
			switch {
			case keyIs(k, "identifiers"):
				idents = val
			case keyIs(k, "relationship_attributes"):
				switch kind(val) {
				case 'n':
				case '{':
					if e := ex.checkAttrs(val, at+".relationship_attributes", nil); e != nil {
						return e
					}
				default:
					return errType(at+".relationship_attributes", "an object")
				}
			}
		}
		if idents == nil || kind(idents) == 'n' {
			return errMissing(at + ".identifiers")
		}
		if kind(idents) != '{' {
			return errType(at+".identifiers", "an object")
		}
		keys := 0
		im := newMembers(idents)
		for k, val, ok := im.next(); ok; k, val, ok = im.next() {
			keys++
			if e := ex.identValue(at+".identifiers."+unescape(k), val, true); e != nil {
				return e
			}
		}
		if keys == 0 {
			return errMissing(at + ".identifiers")
		}
	}
	return nil
}

func (ex *exchange) eventName(name []byte) *apiError {
	if name == nil || kind(name) == 'n' {
		return errMissing("name")
	}
	raw, ok := strRaw(name)
	if !ok {
		return errType("name", "a string")
	}
	raw = bytes.TrimSpace(raw)
	if isBlank(raw) {
		return errMissing("name")
	}
	if strLen(raw) > ex.s.lim.EventName {
		return errTooLong("name", ex.s.lim.EventName)
	}
	return nil
}

// personIdentifiers: exactly one of id, email, phone, cio_id (and
// anonymous_id, which Segment's destination sends).
func (ex *exchange) personIdentifiers(v []byte) *apiError {
	if kind(v) != '{' {
		return errType("identifiers", "an object")
	}
	n := 0
	m := newMembers(v)
	for k, val, ok := m.next(); ok; k, val, ok = m.next() {
		n++
		switch {
		case keyIs(k, "id"), keyIs(k, "email"), keyIs(k, "phone"), keyIs(k, "cio_id"), keyIs(k, "anonymous_id"):
			if e := ex.identValueKey("identifiers", k, val, keyIs(k, "id")); e != nil {
				return e
			}
		default:
			return errInvalid(fieldName("identifiers", k), "is not a person identifier (id, email, phone, cio_id)")
		}
	}
	if n != 1 {
		return errInvalid("identifiers", "must have exactly one of id, email, phone, cio_id")
	}
	return nil
}

// objectIdentifiers: {object_type_id, object_id} or {cio_object_id}.
func (ex *exchange) objectIdentifiers(v []byte) *apiError {
	if kind(v) != '{' {
		return errType("identifiers", "an object")
	}
	var typeID, objID, cioID bool
	m := newMembers(v)
	for k, val, ok := m.next(); ok; k, val, ok = m.next() {
		switch {
		case keyIs(k, "object_type_id") && !typeID:
			typeID = true
		case keyIs(k, "object_id") && !objID:
			objID = true
		case keyIs(k, "cio_object_id") && !cioID:
			cioID = true
		case keyIs(k, "object_type_id"), keyIs(k, "object_id"), keyIs(k, "cio_object_id"):
			return errInvalid(fieldName("identifiers", k), "is given twice")
		default:
			return errInvalid(fieldName("identifiers", k), "is not an object identifier")
		}
		if e := ex.identValueKey("identifiers", k, val, true); e != nil {
			return e
		}
	}
	switch {
	case cioID && !typeID && !objID:
	case typeID && objID && !cioID:
	default:
		return errInvalid("identifiers", "must be {object_type_id, object_id} or {cio_object_id}")
	}
	return nil
}

func (ex *exchange) deliveryIdentifiers(v []byte) *apiError {
	if kind(v) != '{' {
		return errType("identifiers", "an object")
	}
	found := false
	m := newMembers(v)
	for k, val, ok := m.next(); ok; k, val, ok = m.next() {
		if !keyIs(k, "id") {
			return errInvalid(fieldName("identifiers", k), "is not a delivery identifier")
		}
		if found {
			return errInvalid("identifiers.id", "is given twice")
		}
		if e := ex.identValue("identifiers.id", val, false); e != nil {
			return e
		}
		found = true
	}
	if !found {
		return errMissing("identifiers.id")
	}
	return nil
}

func (ex *exchange) v2Device(v []byte, add bool) *apiError {
	if v == nil || kind(v) == 'n' {
		return errMissing("device")
	}
	if kind(v) != '{' {
		return errType("device", "an object")
	}
	var token, platform bool
	m := newMembers(v)
	for k, val, ok := m.next(); ok; k, val, ok = m.next() {
		switch {
		case keyIs(k, "token"):
			raw, ok := strRaw(val)
			if !ok {
				return errType("device.token", "a string")
			}
			if isBlank(raw) {
				return errMissing("device.token")
			}
			if strLen(raw) > ex.s.lim.AttributeValue {
				return errTooLong("device.token", ex.s.lim.AttributeValue)
			}
			token = true
		case keyIs(k, "platform"):
			if !isPlatform(val) {
				return errInvalid("device.platform", "must be ios or android")
			}
			platform = true
		case keyIs(k, "last_used"):
			if _, ok := lastUsed(val); !ok {
				return errType("device.last_used", "a unix timestamp")
			}
		case keyIs(k, "attributes"):
			switch kind(val) {
			case 'n':
			case '{':
				if e := ex.checkAttrs(val, "device.attributes", nil); e != nil {
					return e
				}
			default:
				return errType("device.attributes", "an object")
			}
		}
	}
	if !token {
		return errMissing("device.token")
	}
	if add && !platform {
		return errMissing("device.platform")
	}
	return nil
}

func (ex *exchange) v2Record(it v2Item, body []byte, index string) spool.Record {
	extra := [...]spool.KV{{Key: "identifiers", Value: it.identifiers}, {Key: "timestamp", Value: it.ts}, {Key: "batch_index", Value: index}}
	return ex.newRecord(it.op, "v2", it.id, body, extra[:])
}

func handleEntity(ex *exchange) ([]spool.Record, *apiError) {
	it, e := ex.checkItem(ex.body)
	if e != nil {
		if e.field == "" && e.reason == ReasonInvalidType {
			e.field = "body"
		}
		return nil, e
	}
	return []spool.Record{ex.v2Record(it, ex.storedBody(), "")}, nil
}

// maxItemErrors bounds the item errors a batch answer lists (a 500 KB
// batch of empty objects is ~170k invalid items: listing each made a 15 MB
// answer and ~25 MB of memory per request); the rest are summarised in one
// more entry, reason too_many_errors.
const maxItemErrors = 1000

func handleBatch(ex *exchange) ([]spool.Record, *apiError) {
	lim := &ex.s.lim
	if kind(ex.body) != '{' {
		return nil, errType("body", "a JSON object with a batch array")
	}
	var batch []byte
	m := newMembers(ex.body)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		if keyIs(k, "batch") {
			batch = v
		}
	}
	if batch == nil || kind(batch) == 'n' {
		return nil, errMissing("batch")
	}
	if kind(batch) != '[' {
		return nil, errType("batch", "an array")
	}
	// One private copy of the body; each record's Body is a view into it.
	owned := bytes.Clone(ex.body)
	var recs []spool.Record
	var errs []itemError
	unlisted, firstUnlisted := 0, 0 // invalid items past maxItemErrors
	refuse := func(e itemError) {
		if len(errs) < maxItemErrors {
			errs = append(errs, e)
			return
		}
		if unlisted == 0 {
			firstUnlisted = e.BatchIndex
		}
		unlisted++
	}
	el := newElements(batch)
	idx := 0
	for v, ok := el.next(); ok; v, ok = el.next() {
		i := idx
		idx++
		if int64(len(v)) > lim.BatchItem {
			refuse(itemError{BatchIndex: i, Reason: ReasonTooLarge, Field: "",
				Message: "item is larger than " + itoa(lim.BatchItem) + " bytes"})
			continue
		}
		it, e := ex.checkItem(v)
		if e != nil {
			refuse(itemError{BatchIndex: i, Reason: e.reason, Field: e.field, Message: e.msg})
			continue
		}
		start := cap(ex.body) - cap(v) // v is a subslice of ex.body
		if recs == nil {
			recs = make([]spool.Record, 0, 16)
		}
		recs = append(recs, ex.v2Record(it, owned[start:start+len(v):start+len(v)], itoa(int64(i))))
	}
	if idx == 0 {
		return nil, errInvalid("batch", "must have at least one item")
	}
	if unlisted > 0 {
		errs = append(errs, itemError{BatchIndex: firstUnlisted, Reason: ReasonTooManyErrors, Field: "batch",
			Message: itoa(int64(unlisted)) + " more items are invalid, from this batch_index on; only the first " +
				itoa(maxItemErrors) + " are listed"})
	}
	if len(recs) == 0 {
		return nil, &apiError{status: http.StatusBadRequest, reason: errs[0].Reason, items: errs}
	}
	if len(errs) > 0 {
		ex.partial = errs
	}
	return recs, nil
}

// canonicalIdentifiers returns a validated identifiers object as compact
// JSON, its keys in order, its values strings (an integer ID 42 is "42")
// without needless escapes, so that
// one person or object has one subject (and so one Kafka key and partition)
// however the client spaced, ordered or escaped it.
func canonicalIdentifiers(obj []byte) string {
	type pair struct {
		k string
		v []byte
	}
	var buf [4]pair
	ps := buf[:0]
	m := newMembers(obj)
	for k, v, ok := m.next(); ok; k, v, ok = m.next() {
		ps = append(ps, pair{unescape(k), v})
	}
	slices.SortFunc(ps, func(a, b pair) int { return strings.Compare(a.k, b.k) })
	b := make([]byte, 0, len(obj))
	b = append(b, '{')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = envelope.AppendJSONString(b, p.k)
		b = append(b, ':')
		if raw, ok := strRaw(p.v); ok {
			b = envelope.AppendJSONString(b, unescape(raw))
		} else { // an integer (identValue): the same person as its string form
			n := string(p.v)
			if n == "-0" {
				n = "0"
			}
			b = envelope.AppendJSONString(b, n)
		}
	}
	return string(append(b, '}'))
}
