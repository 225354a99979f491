package trackapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/trackd/trackd/internal/spool"
)

// shape selects the error body format of a path.
type shape uint8

const (
	shapeV1    shape = iota // {"meta":{"errors":["..."]}}
	shapeMerge              // {"meta":{"error":"..."}}
	shapeV2                 // {"errors":[{"reason","field","message"}]}
)

// bodyRule says what a route expects as body.
type bodyRule uint8

const (
	bodyNone     bodyRule = iota // not read (GET)
	bodyRequired                 // empty or whitespace-only is empty_body
	bodyOptional                 // empty accepted; otherwise a JSON object or null
)

// handler validates ex.body and returns the records to store, or an error.
// Handlers for routes that store nothing (GET) write their own response and
// return nil, nil.
type handler func(ex *exchange) ([]spool.Record, *apiError)

type route struct {
	s       *Server
	name    string // operation name; also the metrics route label
	shape   shape
	open    bool // no authentication needed
	body    bodyRule
	limit   int64
	success int // 200, or 204 for forms
	h       handler
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	add := func(pattern, name string, sh shape, open bool, body bodyRule, limit int64, success int, h handler) {
		mux.Handle(pattern, &route{s: s, name: name, shape: sh, open: open, body: body, limit: limit, success: success, h: h})
	}
	v1 := s.lim.Body
	ok := http.StatusOK

	// Undocumented credential check and region lookup.
	add("GET /auth", "auth", shapeV1, false, bodyNone, 0, ok, handleAuth)
	add("GET /api/v1/accounts/region", "v1.region", shapeV1, false, bodyNone, 0, ok, handleRegion)

	// People.
	add("PUT /api/v1/customers/{identifier}", "v1.identify", shapeV1, false, bodyRequired, v1, ok, handleIdentify)
	add("DELETE /api/v1/customers/{identifier}", "v1.delete", shapeV1, false, bodyOptional, v1, ok, handleBodyless("v1.delete"))
	add("PUT /api/v1/customers/{identifier}/devices", "v1.device.add", shapeV1, false, bodyRequired, v1, ok, handleAddDevice)
	add("DELETE /api/v1/customers/{identifier}/devices/{device_id}", "v1.device.delete", shapeV1, false, bodyOptional, v1, ok, handleBodyless("v1.device.delete"))
	add("POST /api/v1/customers/{identifier}/suppress", "v1.suppress", shapeV1, false, bodyOptional, v1, ok, handleBodyless("v1.suppress"))
	add("POST /api/v1/customers/{identifier}/unsuppress", "v1.unsuppress", shapeV1, false, bodyOptional, v1, ok, handleBodyless("v1.unsuppress"))
	add("POST /api/v1/customers/{identifier}/events", "v1.event", shapeV1, false, bodyRequired, v1, ok, handleEvent)
	add("POST /api/v1/events", "v1.anonymous_event", shapeV1, false, bodyRequired, v1, ok, handleAnonymousEvent)
	add("POST /api/v1/merge_customers", "v1.merge", shapeMerge, false, bodyRequired, v1, ok, handleMerge)

	// Forms, segments.
	add("POST /api/v1/forms/{form_id}/submit", "v1.form", shapeV1, false, bodyRequired, v1, http.StatusNoContent, handleForm)
	add("POST /api/v1/segments/{segment_id}/add_customers", "v1.segment.add", shapeV1, false, bodyRequired, v1, ok, handleSegment("v1.segment.add"))
	add("POST /api/v1/segments/{segment_id}/remove_customers", "v1.segment.remove", shapeV1, false, bodyRequired, v1, ok, handleSegment("v1.segment.remove"))

	// Open endpoints (no credentials needed).
	add("POST /api/v1/metrics", "v1.metric", shapeV1, true, bodyRequired, v1, ok, handleMetric)
	add("POST /api/v1/push/events", "v1.push_metric", shapeV1, true, bodyRequired, v1, ok, handlePushMetric)
	add("POST /push/events", "v1.push_metric", shapeV1, true, bodyRequired, v1, ok, handlePushMetric)
	add("POST /unsubscribe/{delivery_id}", "v1.unsubscribe", shapeV1, true, bodyRequired, v1, ok, handleUnsubscribe)

	// v2.
	add("POST /api/v2/entity", "v2.entity", shapeV2, false, bodyRequired, v1, ok, handleEntity)
	add("POST /api/v2/batch", "v2.batch", shapeV2, false, bodyRequired, s.lim.Batch, ok, handleBatch)

	// Known paths with another method: 405 in the path's shape. Method-less
	// patterns are less specific than the ones above, so they only catch
	// the rest.
	allow := map[string][]string{}
	for _, p := range []string{
		"GET /auth", "GET /api/v1/accounts/region",
		"PUT /api/v1/customers/{identifier}", "DELETE /api/v1/customers/{identifier}",
		"PUT /api/v1/customers/{identifier}/devices",
		"DELETE /api/v1/customers/{identifier}/devices/{device_id}",
		"POST /api/v1/customers/{identifier}/suppress", "POST /api/v1/customers/{identifier}/unsuppress",
		"POST /api/v1/customers/{identifier}/events", "POST /api/v1/events", "POST /api/v1/merge_customers",
		"POST /api/v1/forms/{form_id}/submit",
		"POST /api/v1/segments/{segment_id}/add_customers", "POST /api/v1/segments/{segment_id}/remove_customers",
		"POST /api/v1/metrics", "POST /api/v1/push/events", "POST /push/events", "POST /unsubscribe/{delivery_id}",
		"POST /api/v2/entity", "POST /api/v2/batch",
	} {
		method, path, _ := strings.Cut(p, " ")
		if method == http.MethodGet {
			allow[path] = append(allow[path], http.MethodHead)
		}
		allow[path] = append(allow[path], method)
	}
	for path, methods := range allow {
		sh := shapeV1
		if strings.HasPrefix(path, "/api/v2/") {
			sh = shapeV2
		} else if path == "/api/v1/merge_customers" {
			sh = shapeMerge
		}
		mux.Handle(path, &route{s: s, name: "method_not_allowed", shape: sh, open: true, h: methodNotAllowed(strings.Join(methods, ", "))})
	}
	mux.Handle("/", &route{s: s, name: "not_found", shape: shapeV1, open: true, h: notFound})
	s.mux = mux
}

func methodNotAllowed(allow string) handler {
	return func(ex *exchange) ([]spool.Record, *apiError) {
		ex.Header().Set("Allow", allow)
		return nil, &apiError{status: http.StatusMethodNotAllowed, reason: "method_not_allowed", msg: "method not allowed"}
	}
}

func notFound(ex *exchange) ([]spool.Record, *apiError) {
	if strings.HasPrefix(ex.r.URL.Path, "/api/v2/") {
		ex.rt = &route{name: "not_found", shape: shapeV2}
	}
	return nil, &apiError{status: http.StatusNotFound, reason: "not_found", msg: "not found"}
}

// ServeHTTP runs one route: authenticate, rate-limit, read and validate the
// body, store, answer.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex, ok := w.(*exchange)
	if !ok {
		// Only reachable if a route is served outside Server.ServeHTTP.
		rt.s.ServeHTTP(w, r)
		return
	}
	ex.rt = rt
	s := rt.s
	ex.received = s.now()

	if !rt.open {
		if s.auth == nil {
			ex.fail(errUnauthorized)
			return
		}
		ws, ok := s.auth.Authenticate(r)
		if !ok {
			ex.fail(errUnauthorized)
			return
		}
		ex.ws, ex.authed = ws, true
	} else if rt.body != bodyNone && s.auth != nil && r.Header.Get("Authorization") != "" {
		// Clients send credentials to open endpoints too; use them when
		// valid to attribute the record, never reject for them.
		if ws, ok := s.auth.Authenticate(r); ok {
			ex.ws, ex.authed = ws, true
		}
	}

	if rl := s.rate.Load(); rl != nil && rt.h != nil && rt.name != "not_found" && rt.name != "method_not_allowed" {
		key := ex.ws.SiteID
		if !ex.authed {
			key = "ip:" + s.clientIP(r)
		}
		if ok, wait := rl.Allow(key, ex.received); !ok {
			ex.fail(&apiError{status: http.StatusTooManyRequests, reason: "rate_limited", msg: "too many requests", retryAfter: wait})
			return
		}
	}

	if rt.body != bodyNone {
		if e := ex.readBody(rt.limit); e != nil {
			ex.fail(e)
			return
		}
		if e := ex.checkBody(rt.body); e != nil {
			ex.fail(e)
			return
		}
	}

	recs, e := rt.h(ex)
	if e != nil {
		ex.fail(e)
		return
	}
	if recs == nil {
		return // the handler answered (GET routes)
	}
	if s.beforeStore != nil {
		s.beforeStore(r, recs)
	}
	if err := s.store.Append(r.Context(), recs); err != nil {
		status, reason, retry := s.classify(err)
		if status < 500 || status == http.StatusBadGateway || status > 599 {
			status = http.StatusServiceUnavailable
		}
		if reason == "" {
			reason = "unavailable"
		}
		if retry <= 0 {
			retry = time.Second
		}
		s.log.Warn("trackapi: store failed", "request_id", ex.reqID, "route", rt.name, "err", err)
		ex.fail(&apiError{status: status, reason: reason, msg: "temporarily unavailable, retry later", retryAfter: retry})
		return
	}
	if ex.partial != nil {
		ex.multiStatus()
		return
	}
	ex.ok(rt.success, true)
}
