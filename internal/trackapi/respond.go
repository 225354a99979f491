package trackapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Reason codes (X-Trackd-Reason and Observer.Rejected). They are stable:
// dashboards and alerts use them.
const (
	ReasonUnauthorized        = "unauthorized"
	ReasonEmptyBody           = "empty_body"
	ReasonInvalidJSON         = "invalid_json"
	ReasonInvalidType         = "invalid_type"
	ReasonInvalidUTF8         = "invalid_utf8"
	ReasonTooDeep             = "too_deep"
	ReasonTooLarge            = "too_large"
	ReasonUnsupportedEncoding = "unsupported_encoding"
	ReasonInvalidEncoding     = "invalid_encoding" // corrupt gzip
	ReasonTruncatedBody       = "truncated_body"
	ReasonTimeout             = "timeout"
	ReasonReadError           = "read_error"
	ReasonFieldTooLong        = "field_too_long"
	ReasonTooManyAttributes   = "too_many_attributes"
	ReasonMissingField        = "missing_field"
	ReasonTooManyErrors       = "too_many_errors"
	ReasonInvalidField        = "invalid_field"
	ReasonRateLimited         = "rate_limited"
	ReasonUnavailable         = "unavailable"
	ReasonInternalError       = "internal_error"
	ReasonNotFound            = "not_found"
	ReasonMethodNotAllowed    = "method_not_allowed"
	ReasonTooManyConnections  = "too_many_connections"
	ReasonBadRequest          = "bad_request" // a request net/http could not parse
)

// apiError is a rejection: status, reason code, the field concerned (if
// any) and a message safe to show the client.
// discardGrace bounds how long the unwanted rest of a refused body is
// read (and discarded) before the connection closes.
const discardGrace = 2 * time.Second

type apiError struct {
	status     int
	reason     string
	field      string
	msg        string
	retryAfter time.Duration
	closeConn  bool
	items      []itemError // v2 batch: per-item errors
}

type itemError struct {
	BatchIndex int    `json:"batch_index"`
	Reason     string `json:"reason"`
	Field      string `json:"field"`
	Message    string `json:"message"`
}

var errUnauthorized = &apiError{status: http.StatusUnauthorized, reason: ReasonUnauthorized, msg: "Unauthorized request"}

var (
	hdrJSON     = []string{"application/json; charset=utf-8"}
	hdrClose    = []string{"close"}
	bodyEmptyOK = []byte("{}")
)

// ok answers a successful request.
func (ex *exchange) ok(status int, stored bool) {
	h := ex.Header()
	if stored {
		h["X-Durability"] = ex.s.durability
	}
	if status == http.StatusNoContent {
		ex.WriteHeader(status)
		return
	}
	h["Content-Type"] = hdrJSON
	ex.WriteHeader(status)
	ex.Write(bodyEmptyOK)
}

// okJSON answers 200 with a JSON body.
func (ex *exchange) okJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	ex.Header()["Content-Type"] = hdrJSON
	ex.WriteHeader(http.StatusOK)
	ex.Write(b)
}

type v1Errors struct {
	Meta struct {
		Errors []string `json:"errors"`
	} `json:"meta"`
}

type v1Error struct {
	Meta struct {
		Error string `json:"error"`
	} `json:"meta"`
}

type v2Error struct {
	Reason  string `json:"reason"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

type v2Errors struct {
	Errors any `json:"errors"`
}

// fail answers a rejected request in the path's shape and reports it.
func (ex *exchange) fail(e *apiError) {
	if ex.wroteHeader {
		return
	}
	ex.reason = e.reason
	sh := shapeV1
	if ex.rt != nil {
		sh = ex.rt.shape
	}
	h := ex.Header()
	h["Content-Type"] = hdrJSON
	h.Set("X-Trackd-Reason", e.reason)
	if e.retryAfter > 0 {
		secs := int64((e.retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	if e.closeConn {
		h["Connection"] = hdrClose
	}
	if !ex.bodyDone && ex.r.ContentLength != 0 && ex.r.Body != nil && ex.r.Body != http.NoBody {
		// The rest of the body is not wanted. net/http still reads up to
		// 256 KiB of it, before it writes this answer (so that a client
		// still sending gets to read the answer instead of a reset), but
		// with no deadline left (the body timeout cleared it, or it was
		// never set: a 401) a client could hold the connection, and a
		// restart's drain, for ever. Bound that: a client that already
		// ran out of time gets none, others a moment. (The next request
		// on the connection gets its own deadlines.)
		if rd := ex.deadliner(); rd != nil {
			d := time.Now().Add(discardGrace)
			if e.reason == ReasonTimeout {
				d = time.Now()
			}
			rd.SetReadDeadline(d)
		}
	}
	ex.s.obs.Rejected(ex.routeName(), ex.ws.SiteID, e.reason)

	msg := e.msg
	if e.field != "" && sh != shapeV2 {
		msg = e.field + ": " + e.msg
	}
	var v any
	switch {
	case e.status == http.StatusUnauthorized:
		var b v1Error
		b.Meta.Error = e.msg
		v = b
	case sh == shapeMerge:
		var b v1Error
		b.Meta.Error = msg
		v = b
	case sh == shapeV2 && e.items != nil:
		v = v2Errors{Errors: e.items}
	case sh == shapeV2:
		v = v2Errors{Errors: []v2Error{{Reason: e.reason, Field: e.field, Message: e.msg}}}
	default:
		var b v1Errors
		b.Meta.Errors = []string{msg}
		v = b
	}
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{"meta":{"errors":["internal error"]}}`)
	}
	ex.WriteHeader(e.status)
	ex.Write(body)
}

// Constructors for the common 400s.

func errMissing(field string) *apiError {
	return &apiError{status: http.StatusBadRequest, reason: ReasonMissingField, field: field, msg: "is required"}
}

func errInvalid(field, why string) *apiError {
	return &apiError{status: http.StatusBadRequest, reason: ReasonInvalidField, field: field, msg: why}
}

func errTooLong(field string, max int) *apiError {
	return &apiError{status: http.StatusBadRequest, reason: ReasonFieldTooLong, field: field,
		msg: "is longer than " + strconv.Itoa(max) + " bytes"}
}

func errType(field, want string) *apiError {
	return &apiError{status: http.StatusBadRequest, reason: ReasonInvalidType, field: field, msg: "must be " + want}
}

// fieldName renders a client-supplied key for an error message: bounded
// and valid UTF-8 (json.Marshal escapes the rest).
func fieldName(prefix string, raw []byte) string {
	k := unescape(raw)
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	k = metaClean(k)
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// multiStatus answers a v2 batch whose valid items were stored and whose
// invalid items are listed with their batch_index.
func (ex *exchange) multiStatus() {
	h := ex.Header()
	h["X-Durability"] = ex.s.durability
	h["Content-Type"] = hdrJSON
	h.Set("X-Trackd-Reason", ex.partial[0].Reason)
	for _, e := range ex.partial {
		ex.s.obs.Rejected(ex.routeName(), ex.ws.SiteID, e.Reason)
	}
	ex.reason = ex.partial[0].Reason
	body, err := json.Marshal(v2Errors{Errors: ex.partial})
	if err != nil {
		panic(err)
	}
	ex.WriteHeader(http.StatusMultiStatus)
	ex.Write(body)
}
