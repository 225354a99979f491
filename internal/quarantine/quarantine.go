// Package quarantine keeps what trackd could not handle, on disk, so that
// the cause is visible at once and nothing is lost silently: a request whose
// handling panicked (with the request, credentials removed, and the stack),
// and, for the forwarder, a record a destination refused for good.
//
// Each entry is one JSON file, written crash-atomically, under
// <dir>/<kind>/<id>.json, where id is time-ordered. The store is bounded: past
// MaxEntries entries of a kind, new entries are counted as dropped (and
// logged by the caller) instead of filling the disk.
package quarantine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trackd/trackd/internal/spool"
	"github.com/trackd/trackd/internal/vfs"
)

// Kinds of entries.
const (
	KindPanic  = "panics"  // a request whose handling panicked
	KindRecord = "records" // a record a destination refused for good
)

// Attempt is one failed delivery attempt of a quarantined record.
type Attempt struct {
	Time  time.Time `json:"time"`
	Error string    `json:"error"`
}

// Record is a quarantined spool record, whole, so it can be replayed.
type Record struct {
	ID         string      `json:"id"`
	Workspace  string      `json:"workspace"`
	Op         string      `json:"op"`
	ReceivedAt int64       `json:"received_at"`
	Meta       [][2]string `json:"meta,omitempty"`
	// Body is set when the body is not valid UTF-8; BodyText otherwise.
	Body     []byte `json:"body,omitempty"`
	BodyText string `json:"body_text,omitempty"`
}

// Entry is one quarantined item. Fields not relevant to a kind are empty.
type Entry struct {
	ID     string    `json:"id"`
	Kind   string    `json:"kind"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`

	// The request, for KindPanic.
	RequestID string              `json:"request_id,omitempty"`
	Route     string              `json:"route,omitempty"`
	Workspace string              `json:"workspace,omitempty"`
	Method    string              `json:"method,omitempty"`
	URI       string              `json:"uri,omitempty"`
	Remote    string              `json:"remote,omitempty"`
	Header    map[string][]string `json:"header,omitempty"`
	// Body is the request body as read (decompressed); BodyText is set
	// instead when it is valid UTF-8, for readability.
	Body     []byte `json:"body,omitempty"`
	BodyText string `json:"body_text,omitempty"`
	Panic    string `json:"panic,omitempty"`
	Stack    string `json:"stack,omitempty"`

	// The record, for KindRecord: where it was going and what happened.
	Destination string    `json:"destination,omitempty"`
	Attempts    []Attempt `json:"attempts,omitempty"`
	Record      *Record   `json:"record,omitempty"`
}

// Options configure a Store. Zero values are the documented defaults.
type Options struct {
	// FS is the filesystem; default vfs.OS{}.
	FS vfs.FS
	// MaxEntries bounds the entries kept per kind; default 10000.
	MaxEntries int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// ErrFull is returned by Put when the kind already holds MaxEntries.
var ErrFull = errors.New("quarantine: full")

// Store is a quarantine directory. It is safe for concurrent use.
type Store struct {
	fs   vfs.FS
	dir  string
	max  int
	now  func() time.Time
	mu   sync.Mutex     // guards n and last
	n    map[string]int // entries per kind
	last int64          // the last ID's time, to keep IDs increasing
}

// Open opens (creating if needed) the quarantine in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS{}
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{fs: opts.FS, dir: dir, max: opts.MaxEntries, now: opts.Now, n: map[string]int{}}
	if err := vfs.MkdirAllSync(s.fs, dir, 0o700); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	kinds, err := s.fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	for _, k := range kinds {
		names, err := s.fs.ReadDir(path.Join(dir, k))
		if err != nil {
			continue // not a directory
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".json") {
				s.n[k]++
			}
		}
	}
	return s, nil
}

// Put stores e durably and returns its ID. It fills in ID and Time when
// empty.
func (s *Store) Put(e Entry) (string, error) {
	if e.Kind == "" || strings.ContainsAny(e.Kind, "/.") {
		return "", fmt.Errorf("quarantine: bad kind %q", e.Kind)
	}
	now := s.now()
	if e.Time.IsZero() {
		e.Time = now
	}
	s.mu.Lock()
	if s.n[e.Kind] >= s.max {
		s.mu.Unlock()
		return "", ErrFull
	}
	s.n[e.Kind]++
	// IDs sort by time: nanoseconds, made strictly increasing.
	t := now.UnixNano()
	if t <= s.last {
		t = s.last + 1
	}
	s.last = t
	s.mu.Unlock()
	if e.ID == "" {
		e.ID = fmt.Sprintf("%019d", t)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err == nil {
		kdir := path.Join(s.dir, e.Kind)
		if err = vfs.MkdirAllSync(s.fs, kdir, 0o700); err == nil {
			err = vfs.WriteFileAtomic(s.fs, kdir, e.ID+".json", append(b, '\n'))
		}
	}
	if err != nil {
		s.mu.Lock()
		s.n[e.Kind]--
		s.mu.Unlock()
		return "", fmt.Errorf("quarantine: %w", err)
	}
	return e.ID, nil
}

// Count returns the number of entries of a kind.
func (s *Store) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[kind]
}

// List returns the IDs of a kind's entries, oldest first.
func (s *Store) List(kind string) ([]string, error) {
	names, err := s.fs.ReadDir(path.Join(s.dir, kind))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range names {
		if id, ok := strings.CutSuffix(n, ".json"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Get reads one entry.
func (s *Store) Get(kind, id string) (Entry, error) {
	var e Entry
	if strings.ContainsAny(id, "/.") || strings.ContainsAny(kind, "/.") {
		return e, fmt.Errorf("quarantine: bad id %q", id)
	}
	f, err := s.fs.OpenFile(path.Join(s.dir, kind, id+".json"), os.O_RDONLY, 0)
	if err != nil {
		return e, err
	}
	defer f.Close()
	err = json.NewDecoder(f).Decode(&e)
	return e, err
}

// Delete removes one entry, durably.
func (s *Store) Delete(kind, id string) error {
	if strings.ContainsAny(id, "/.") || strings.ContainsAny(kind, "/.") || id == "" {
		return fmt.Errorf("quarantine: bad id %q", id)
	}
	kdir := path.Join(s.dir, kind)
	if err := s.fs.Remove(path.Join(kdir, id+".json")); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	if err := s.fs.SyncDir(kdir); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	s.mu.Lock()
	s.n[kind]--
	s.mu.Unlock()
	return nil
}

// ToSpool returns the quarantined record as a spool record, to replay it.
func (r *Record) ToSpool() spool.Record {
	rec := spool.Record{ID: r.ID, Workspace: r.Workspace, Op: r.Op, ReceivedAt: r.ReceivedAt, Body: r.Body}
	if r.BodyText != "" {
		rec.Body = []byte(r.BodyText)
	}
	for _, kv := range r.Meta {
		rec.Meta = append(rec.Meta, spool.KV{Key: kv[0], Value: kv[1]})
	}
	return rec
}
