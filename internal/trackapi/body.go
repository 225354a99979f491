package trackapi

import (
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// bodyReader wraps the request body: it stops after max bytes (returning
// io.EOF and setting hitMax) and remembers the underlying error, so that a
// truncated connection is told apart from a corrupt gzip stream.
type bodyReader struct {
	r      io.Reader
	n      int64
	max    int64
	hitMax bool
	err    error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.n >= b.max {
		b.hitMax = true
		return 0, io.EOF
	}
	if rem := b.max - b.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

var gzipPool sync.Pool // *gzip.Reader

type readDeadliner interface{ SetReadDeadline(time.Time) error }

// readBody reads the body into ex.buf, decompressing gzip, and never more
// than limit+1 bytes (before or after decompression).
func (ex *exchange) readBody(limit int64) (aerr *apiError) {
	defer func() { ex.bodyDone = aerr == nil }()
	r := ex.r
	gz := false
	if encs := r.Header["Content-Encoding"]; len(encs) > 0 {
		e := strings.TrimSpace(strings.Join(encs, ","))
		switch {
		case e == "" || strings.EqualFold(e, "identity"):
		case strings.EqualFold(e, "gzip") || strings.EqualFold(e, "x-gzip"):
			gz = true
		default:
			return &apiError{status: http.StatusUnsupportedMediaType, reason: ReasonUnsupportedEncoding,
				msg: "unsupported Content-Encoding (only gzip is accepted)", closeConn: r.ContentLength != 0}
		}
	}
	if !gz && r.ContentLength > limit {
		return errTooLarge(limit)
	}
	if r.Body == nil || r.Body == http.NoBody {
		ex.buf = ex.buf[:0]
		return nil
	}

	if t := ex.s.bodyTimeout; t > 0 {
		if rd := ex.deadliner(); rd != nil && rd.SetReadDeadline(time.Now().Add(t)) == nil {
			defer rd.SetReadDeadline(time.Time{})
		}
	}

	rawMax := limit + 1
	if gz {
		// Compressed data is almost never larger than its contents; leave
		// room for incompressible bodies and the gzip framing.
		rawMax = limit + limit/16 + 1024
	}
	ex.src = bodyReader{r: r.Body, max: rawMax}
	var src io.Reader = &ex.src
	if gz {
		zr, _ := gzipPool.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		defer gzipPool.Put(zr)
		if err := zr.Reset(&ex.src); err != nil {
			ex.buf = ex.buf[:0]
			if err == io.EOF && ex.src.err == nil && !ex.src.hitMax {
				return nil // empty body; checkBody decides
			}
			return ex.readError(err, limit)
		}
		src = zr
	}

	buf := ex.buf[:0]
	if want := r.ContentLength + 1; !gz && want > 1 && int64(cap(buf)) < want {
		buf = make([]byte, 0, want)
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				break
			}
			n := 2 * cap(buf)
			if n < 4096 {
				n = 4096
			}
			if int64(n) > limit+1 {
				n = int(limit + 1)
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		room := buf[len(buf):cap(buf)]
		if rem := limit + 1 - int64(len(buf)); int64(len(room)) > rem {
			room = room[:rem]
		}
		n, err := src.Read(room)
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			ex.buf = buf
			return errTooLarge(limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			ex.buf = buf
			return ex.readError(err, limit)
		}
	}
	ex.buf = buf
	if ex.src.hitMax {
		return errTooLarge(limit)
	}
	return nil
}

func (ex *exchange) deadliner() readDeadliner {
	if rd, ok := ex.ResponseWriter.(readDeadliner); ok {
		return rd
	}
	if _, ok := ex.ResponseWriter.(interface{ Unwrap() http.ResponseWriter }); ok {
		return http.NewResponseController(ex.ResponseWriter)
	}
	return nil
}

func errTooLarge(limit int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, reason: ReasonTooLarge,
		msg: "request body is larger than " + itoa(limit) + " bytes", closeConn: true}
}

// readError maps a body read error to the answer.
func (ex *exchange) readError(err error, limit int64) *apiError {
	raw := ex.src.err
	var ne net.Error
	switch {
	case ex.src.hitMax:
		return errTooLarge(limit)
	case raw != nil && errors.Is(raw, io.ErrUnexpectedEOF):
		return &apiError{status: http.StatusBadRequest, reason: ReasonTruncatedBody,
			msg: "request body is shorter than its Content-Length", closeConn: true}
	case raw != nil && errors.As(raw, &ne) && ne.Timeout():
		return &apiError{status: http.StatusRequestTimeout, reason: ReasonTimeout,
			msg: "timed out reading the request body", closeConn: true}
	case raw != nil:
		var mbe *http.MaxBytesError
		if errors.As(raw, &mbe) {
			return errTooLarge(limit)
		}
		return &apiError{status: http.StatusBadRequest, reason: ReasonReadError,
			msg: "could not read the request body", closeConn: true}
	default:
		// The transport delivered the bytes; the gzip stream is bad.
		return &apiError{status: http.StatusBadRequest, reason: ReasonInvalidEncoding,
			msg: "invalid gzip data", closeConn: true}
	}
}

// checkBody applies the rules every body shares: empty, UTF-8, JSON syntax,
// nesting depth, and for optional bodies the top-level type. It sets
// ex.body (trimmed, for validation); ex.buf keeps the bytes as received.
func (ex *exchange) checkBody(rule bodyRule) *apiError {
	b := trimWS(ex.buf)
	if len(b) == 0 {
		if rule == bodyRequired {
			return &apiError{status: http.StatusBadRequest, reason: ReasonEmptyBody, msg: "request body is empty"}
		}
		ex.body, ex.buf = nil, ex.buf[:0]
		return nil
	}
	if !utf8.Valid(b) {
		return &apiError{status: http.StatusBadRequest, reason: ReasonInvalidUTF8, msg: "request body is not valid UTF-8"}
	}
	switch checkJSON(b, ex.s.lim.Depth) {
	case jsonSyntax:
		return &apiError{status: http.StatusBadRequest, reason: ReasonInvalidJSON, msg: "request body is not valid JSON"}
	case jsonTooDeep:
		return &apiError{status: http.StatusBadRequest, reason: ReasonTooDeep,
			msg: "request body is nested deeper than " + itoa(int64(ex.s.lim.Depth)) + " levels"}
	}
	if rule == bodyOptional {
		if k := kind(b); k != '{' && k != 'n' {
			return errType("body", "a JSON object")
		}
	}
	ex.body = b
	return nil
}
