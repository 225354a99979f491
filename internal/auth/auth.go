// Package auth holds the workspaces trackd serves and checks their Track API
// credentials: HTTP Basic with the site ID as user name and the API key as
// password.
//
// The Directory is read on every request and replaced as a whole on reload
// (SIGHUP), so reads take no lock.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// Workspace is one Customer.io workspace: its Track API credentials and the
// region it is homed in.
type Workspace struct {
	SiteID string
	APIKey string
	// Region is the workspace's home region ("us", "eu"); empty means the
	// serving node's own region.
	Region string
}

// A Directory maps site IDs to workspaces. It is safe for concurrent use;
// Replace swaps the whole set atomically.
type Directory struct {
	t atomic.Pointer[table]
}

type table struct {
	bySite map[string]entry
	list   []Workspace
}

type entry struct {
	ws  Workspace
	sum [sha256.Size]byte // SHA-256 of the API key, compared in constant time
}

// dummySum is compared against when the site ID is unknown, so that an
// unknown site and a wrong key take the same path.
var dummySum = sha256.Sum256([]byte("trackd: no such workspace"))

// NewDirectory returns a Directory holding ws. See Replace for the rules.
func NewDirectory(ws []Workspace) (*Directory, error) {
	d := new(Directory)
	if err := d.Replace(ws); err != nil {
		return nil, err
	}
	return d, nil
}

// Replace validates ws and, if every entry is valid, makes it the directory's
// contents in one atomic step; otherwise the directory is unchanged. Every
// problem is reported at once. Site IDs must be unique, non-empty and free of
// ':'; keys non-empty; neither may contain control characters.
func (d *Directory) Replace(ws []Workspace) error {
	t := &table{bySite: make(map[string]entry, len(ws)), list: make([]Workspace, len(ws))}
	copy(t.list, ws)
	var errs []error
	for i, w := range ws {
		switch {
		case w.SiteID == "":
			errs = append(errs, fmt.Errorf("workspace %d: empty site ID", i))
			continue
		case strings.ContainsRune(w.SiteID, ':'):
			errs = append(errs, fmt.Errorf("workspace %q: site ID contains ':'", w.SiteID))
		case hasControl(w.SiteID):
			errs = append(errs, fmt.Errorf("workspace %d: site ID contains control characters", i))
		}
		switch {
		case w.APIKey == "":
			errs = append(errs, fmt.Errorf("workspace %q: empty API key", w.SiteID))
		case hasControl(w.APIKey):
			errs = append(errs, fmt.Errorf("workspace %q: API key contains control characters", w.SiteID))
		}
		if _, dup := t.bySite[w.SiteID]; dup {
			errs = append(errs, fmt.Errorf("workspace %q: duplicate site ID", w.SiteID))
			continue
		}
		t.bySite[w.SiteID] = entry{ws: w, sum: sha256.Sum256([]byte(w.APIKey))}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d.t.Store(t)
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7F {
			return true
		}
	}
	return false
}

// Workspaces returns a copy of the current list.
func (d *Directory) Workspaces() []Workspace {
	t := d.t.Load()
	if t == nil {
		return nil
	}
	out := make([]Workspace, len(t.list))
	copy(out, t.list)
	return out
}

// Lookup returns the workspace with the given site ID. It does not check
// credentials.
func (d *Directory) Lookup(siteID string) (Workspace, bool) {
	t := d.t.Load()
	if t == nil {
		return Workspace{}, false
	}
	e, ok := t.bySite[siteID]
	return e.ws, ok
}

// Check reports whether user:pass are valid credentials and returns the
// workspace. The key comparison is constant-time, over SHA-256 digests so
// that the key's length does not leak either; an unknown site ID does the
// same work as a wrong key.
func (d *Directory) Check(user, pass string) (Workspace, bool) {
	return d.check([]byte(user), []byte(pass))
}

func (d *Directory) check(user, pass []byte) (Workspace, bool) {
	t := d.t.Load()
	var e entry
	found := 0
	if t != nil {
		if v, ok := t.bySite[string(user)]; ok {
			e, found = v, 1
		}
	}
	want := dummySum
	if found == 1 {
		want = e.sum
	}
	got := sha256.Sum256(pass)
	match := subtle.ConstantTimeCompare(got[:], want[:])
	if found&match != 1 {
		return Workspace{}, false
	}
	return e.ws, true
}

// Authenticate checks the request's Basic credentials.
func (d *Directory) Authenticate(r *http.Request) (Workspace, bool) {
	var buf [maxHeader]byte
	user, pass, ok := parseBasic(r.Header.Get("Authorization"), &buf)
	if !ok {
		// Same work as a failed check, so "no header" is not distinguishable
		// by timing from "wrong key".
		d.check(nil, nil)
		return Workspace{}, false
	}
	return d.check(user, pass)
}

// maxHeader bounds the Authorization value decoded (far above any real site
// ID and key).
const maxHeader = 1024

// ParseBasic parses an HTTP Basic Authorization header value. The scheme is
// case-insensitive. The credentials are decoded with standard base64, then
// URL-safe base64 (which the Go client sends), each padded or unpadded. It
// fails for a value without ':' after decoding.
func ParseBasic(header string) (user, pass string, ok bool) {
	var buf [maxHeader]byte
	u, p, ok := parseBasic(header, &buf)
	if !ok {
		return "", "", false
	}
	return string(u), string(p), true
}

// parseBasic decodes into buf and returns views into it.
func parseBasic(header string, buf *[maxHeader]byte) (user, pass []byte, ok bool) {
	const prefix = "basic "
	if len(header) < len(prefix) || len(header) > maxHeader || !strings.EqualFold(header[:len(prefix)], prefix) {
		return nil, nil, false
	}
	enc := strings.TrimLeft(header[len(prefix):], " ")
	enc = strings.TrimRight(enc, " ")
	if enc == "" || len(enc) > base64.StdEncoding.EncodedLen(maxHeader) {
		return nil, nil, false
	}
	var n int
	var err error
	decoded := false
	for _, e := range [...]*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		n, err = e.Decode(buf[:], []byte(enc))
		if err == nil {
			decoded = true
			break
		}
	}
	if !decoded {
		return nil, nil, false
	}
	cred := buf[:n]
	i := -1
	for j, c := range cred {
		if c == ':' {
			i = j
			break
		}
	}
	if i < 0 {
		return nil, nil, false
	}
	return cred[:i], cred[i+1:], true
}
