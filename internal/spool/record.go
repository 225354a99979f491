package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Record is one stored operation: what a request asked for, as received and
// validated, plus the metadata the back end needs. See FORMAT.md for its
// encoding.
type Record struct {
	// ID is unique and time-ordered (a ULID unless the client supplied
	// its own dedup id). It identifies the record forever: it is the
	// back end's dedup key.
	ID string
	// Workspace is the site ID the request was authenticated as.
	Workspace string
	// Op names the operation, e.g. "v1.identify", "v2.person.event".
	Op string
	// ReceivedAt is when trackd received the request, in Unix nanoseconds.
	ReceivedAt int64
	// Meta is request metadata as key/value pairs (request ID, user agent,
	// client IP, path parameters...). Keys are short ASCII names.
	Meta []KV
	// Body is the validated request body (or batch item), byte for byte.
	Body []byte
}

// KV is one metadata pair.
type KV struct {
	Key, Value string
}

// Get returns the value of the first pair with the given key.
func (r *Record) Get(key string) (string, bool) {
	for _, kv := range r.Meta {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

const (
	recordVersion = 1
	maxMetaPairs  = 64
)

// encodedSize returns the payload size of r's encoding.
func (r *Record) encodedSize() int {
	n := 1 + 8 + uvarintLen(len(r.ID)) + len(r.ID) + uvarintLen(len(r.Workspace)) + len(r.Workspace) +
		uvarintLen(len(r.Op)) + len(r.Op) + uvarintLen(len(r.Meta))
	for _, kv := range r.Meta {
		n += uvarintLen(len(kv.Key)) + len(kv.Key) + uvarintLen(len(kv.Value)) + len(kv.Value)
	}
	return n + len(r.Body)
}

// appendTo appends r's encoding (FORMAT.md §4) to dst.
func (r *Record) appendTo(dst []byte) []byte {
	dst = append(dst, recordVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.ReceivedAt))
	dst = appendString(dst, r.ID)
	dst = appendString(dst, r.Workspace)
	dst = appendString(dst, r.Op)
	dst = binary.AppendUvarint(dst, uint64(len(r.Meta)))
	for _, kv := range r.Meta {
		dst = appendString(dst, kv.Key)
		dst = appendString(dst, kv.Value)
	}
	return append(dst, r.Body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// decodeRecord decodes a record payload. The returned record's strings and
// body share one copy of p, so p may be reused afterwards.
func decodeRecord(p []byte) (Record, error) {
	if err := checkRecord(p); err != nil {
		return Record{}, err
	}
	own := make([]byte, len(p)) // one allocation backs every field
	copy(own, p)
	return parseRecord(own)
}

// checkRecord reports whether p is a well-formed record payload, without
// allocating.
func checkRecord(p []byte) error {
	if len(p) < 9 {
		return errors.New("record too short")
	}
	if p[0] != recordVersion {
		return fmt.Errorf("unknown record version %d", p[0])
	}
	d := decoder{b: p[9:]}
	d.skip()
	d.skip()
	d.skip()
	m := d.uvarint()
	if d.err == nil && m > maxMetaPairs {
		return fmt.Errorf("record has %d metadata pairs, over the limit", m)
	}
	for i := uint64(0); i < m && d.err == nil; i++ {
		d.skip()
		d.skip()
	}
	return d.err
}

// recordReceivedAt returns the received-at time of a checked payload.
func recordReceivedAt(p []byte) int64 { return int64(binary.LittleEndian.Uint64(p[1:9])) }

// parseRecord decodes a payload already accepted by checkRecord. Strings
// and body alias p, which must not change afterwards.
func parseRecord(p []byte) (Record, error) {
	var r Record
	r.ReceivedAt = recordReceivedAt(p)
	d := decoder{b: p[9:]}
	r.ID = d.str()
	r.Workspace = d.str()
	r.Op = d.str()
	if m := d.uvarint(); m > 0 {
		r.Meta = make([]KV, 0, m)
		for i := uint64(0); i < m && d.err == nil; i++ {
			k := d.str()
			v := d.str()
			r.Meta = append(r.Meta, KV{Key: k, Value: v})
		}
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) > 0 {
		r.Body = d.b[:len(d.b):len(d.b)]
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("record: bad length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) skip() {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errors.New("record: field longer than record")
	}
	if d.err == nil {
		d.b = d.b[n:]
	}
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errors.New("record: field longer than record")
		return ""
	}
	s := unsafe.String(unsafe.SliceData(d.b), int(n))
	if n == 0 {
		s = ""
	}
	d.b = d.b[n:]
	return s
}
