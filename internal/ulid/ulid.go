// Package ulid generates ULIDs (https://github.com/ulid/spec): 128-bit,
// lexicographically sortable identifiers made of a 48-bit millisecond Unix
// timestamp and 80 random bits, written as 26 Crockford base32 characters.
//
// A Generator is monotonic: within one millisecond (or when the clock steps
// back) each new ID is the previous one plus one, so IDs from one Generator
// are strictly increasing. The random part of each new millisecond comes from
// crypto/rand.
package ulid

import (
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"time"
)

// ULID is a 16-byte ULID: 6 bytes of big-endian milliseconds, 10 random bytes.
type ULID [16]byte

// EncodedLen is the length of a ULID's string form.
const EncodedLen = 26

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// maxTime is the largest timestamp a ULID can hold (2^48-1 ms).
const maxTime = 1<<48 - 1

// ErrInvalid is returned by Parse for a string that is not a ULID.
var ErrInvalid = errors.New("ulid: invalid")

// dec maps an ASCII byte to its Crockford value, or 0xFF. Lower case is
// accepted; I, L and O are not (Crockford's aliases are not part of the ULID spec).
var dec = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := 0; i < len(alphabet); i++ {
		c := alphabet[i]
		t[c] = byte(i)
		if c >= 'A' && c <= 'Z' {
			t[c+'a'-'A'] = byte(i)
		}
	}
	return t
}()

// Time returns the ULID's timestamp in milliseconds since the Unix epoch.
func (u ULID) Time() uint64 {
	return uint64(u[0])<<40 | uint64(u[1])<<32 | uint64(u[2])<<24 |
		uint64(u[3])<<16 | uint64(u[4])<<8 | uint64(u[5])
}

// String returns the canonical 26-character upper-case form.
func (u ULID) String() string {
	var b [EncodedLen]byte
	u.encode(&b)
	return string(b[:])
}

// AppendText appends the canonical form to dst.
func (u ULID) AppendText(dst []byte) ([]byte, error) {
	var b [EncodedLen]byte
	u.encode(&b)
	return append(dst, b[:]...), nil
}

func (u ULID) encode(d *[EncodedLen]byte) {
	// 10 characters of timestamp (48 bits, the first character holds 3 bits).
	d[0] = alphabet[(u[0]&224)>>5]
	d[1] = alphabet[u[0]&31]
	d[2] = alphabet[(u[1]&248)>>3]
	d[3] = alphabet[((u[1]&7)<<2)|((u[2]&192)>>6)]
	d[4] = alphabet[(u[2]&62)>>1]
	d[5] = alphabet[((u[2]&1)<<4)|((u[3]&240)>>4)]
	d[6] = alphabet[((u[3]&15)<<1)|((u[4]&128)>>7)]
	d[7] = alphabet[(u[4]&124)>>2]
	d[8] = alphabet[((u[4]&3)<<3)|((u[5]&224)>>5)]
	d[9] = alphabet[u[5]&31]
	// 16 characters of randomness (80 bits).
	d[10] = alphabet[(u[6]&248)>>3]
	d[11] = alphabet[((u[6]&7)<<2)|((u[7]&192)>>6)]
	d[12] = alphabet[(u[7]&62)>>1]
	d[13] = alphabet[((u[7]&1)<<4)|((u[8]&240)>>4)]
	d[14] = alphabet[((u[8]&15)<<1)|((u[9]&128)>>7)]
	d[15] = alphabet[(u[9]&124)>>2]
	d[16] = alphabet[((u[9]&3)<<3)|((u[10]&224)>>5)]
	d[17] = alphabet[u[10]&31]
	d[18] = alphabet[(u[11]&248)>>3]
	d[19] = alphabet[((u[11]&7)<<2)|((u[12]&192)>>6)]
	d[20] = alphabet[(u[12]&62)>>1]
	d[21] = alphabet[((u[12]&1)<<4)|((u[13]&240)>>4)]
	d[22] = alphabet[((u[13]&15)<<1)|((u[14]&128)>>7)]
	d[23] = alphabet[(u[14]&124)>>2]
	d[24] = alphabet[((u[14]&3)<<3)|((u[15]&224)>>5)]
	d[25] = alphabet[u[15]&31]
}

// Parse decodes a 26-character ULID (either case). It rejects other lengths,
// characters outside the alphabet, and values above the 128-bit range.
func Parse(s string) (ULID, error) {
	var u ULID
	if len(s) != EncodedLen {
		return u, ErrInvalid
	}
	var v [EncodedLen]byte
	for i := 0; i < EncodedLen; i++ {
		c := dec[s[i]]
		if c == 0xFF {
			return u, ErrInvalid
		}
		v[i] = c
	}
	// The first character carries only 3 bits; anything above 7 overflows.
	if v[0] > 7 {
		return u, ErrInvalid
	}
	u[0] = (v[0] << 5) | v[1]
	u[1] = (v[2] << 3) | (v[3] >> 2)
	u[2] = (v[3] << 6) | (v[4] << 1) | (v[5] >> 4)
	u[3] = (v[5] << 4) | (v[6] >> 1)
	u[4] = (v[6] << 7) | (v[7] << 2) | (v[8] >> 3)
	u[5] = (v[8] << 5) | v[9]
	u[6] = (v[10] << 3) | (v[11] >> 2)
	u[7] = (v[11] << 6) | (v[12] << 1) | (v[13] >> 4)
	u[8] = (v[13] << 4) | (v[14] >> 1)
	u[9] = (v[14] << 7) | (v[15] << 2) | (v[16] >> 3)
	u[10] = (v[16] << 5) | v[17]
	u[11] = (v[18] << 3) | (v[19] >> 2)
	u[12] = (v[19] << 6) | (v[20] << 1) | (v[21] >> 4)
	u[13] = (v[21] << 4) | (v[22] >> 1)
	u[14] = (v[22] << 7) | (v[23] << 2) | (v[24] >> 3)
	u[15] = (v[24] << 5) | v[25]
	return u, nil
}

// Valid reports whether s is a well-formed ULID string.
func Valid(s string) bool {
	_, err := Parse(s)
	return err == nil
}

// A Generator makes monotonic ULIDs. It is safe for concurrent use.
type Generator struct {
	now     func() time.Time
	entropy io.Reader

	mu   sync.Mutex // guards last and buf
	last ULID       // the previous ID; its time is the high-water mark
	buf  [10 * 64]byte
	off  int // next unused byte in buf; len(buf) means empty
}

// NewGenerator returns a Generator reading the clock from now and random
// bytes from entropy; nil means time.Now and crypto/rand.Reader.
func NewGenerator(now func() time.Time, entropy io.Reader) *Generator {
	if now == nil {
		now = time.Now
	}
	if entropy == nil {
		entropy = rand.Reader
	}
	g := &Generator{now: now, entropy: entropy}
	g.off = len(g.buf)
	return g
}

// New returns the next ULID. Within one millisecond, or if the clock went
// back, it is the previous ULID plus one; if the 80 random bits overflow, the
// timestamp advances by one millisecond (the clock is borrowed from, never
// repeated). It panics only if the entropy source fails, which crypto/rand
// never does on a supported system.
func (g *Generator) New() ULID {
	ms := g.now().UnixMilli()
	if ms < 0 {
		ms = 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	last := g.last.Time()
	if uint64(ms) <= last {
		if incr(&g.last) {
			return g.last
		}
		// Random part overflowed: move to the next millisecond.
		ms = int64(last) + 1
	}
	if ms > maxTime {
		panic("ulid: time out of range")
	}
	var u ULID
	u[0] = byte(ms >> 40)
	u[1] = byte(ms >> 32)
	u[2] = byte(ms >> 24)
	u[3] = byte(ms >> 16)
	u[4] = byte(ms >> 8)
	u[5] = byte(ms)
	if g.off+10 > len(g.buf) {
		if _, err := io.ReadFull(g.entropy, g.buf[:]); err != nil {
			panic("ulid: entropy: " + err.Error())
		}
		g.off = 0
	}
	copy(u[6:], g.buf[g.off:g.off+10])
	g.off += 10
	// Leave headroom so that incrementing within a millisecond practically
	// never overflows: clear the top bit of the random part.
	u[6] &= 0x7F
	g.last = u
	return u
}

// NewString returns the next ULID in its string form.
func (g *Generator) NewString() string { return g.New().String() }

// incr adds one to the 80-bit random part in place and reports whether it
// did so without overflowing.
func incr(u *ULID) bool {
	for i := 15; i >= 6; i-- {
		u[i]++
		if u[i] != 0 {
			return true
		}
	}
	return false
}
