package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/trackd/trackd/internal/ulid"
)

// The oracle is the list of IDs of every event a server acknowledged with a
// 200: the events it promised never to lose. `trackload run --oracle FILE`
// appends them to FILE, one ULID per line; `trackload verify` checks them
// against the back end. Requests without client IDs (v1 identify) are not
// in it: their record IDs are given by the server and the client never
// learns them.

// fileOracle appends acknowledged IDs to a file.
type fileOracle struct {
	mu  sync.Mutex // guards w, n and err
	f   *os.File
	w   *bufio.Writer
	n   int64
	err error // the first write error; sticky
}

func openFileOracle(path string) (*fileOracle, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	return &fileOracle{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (o *fileOracle) Ack(ids []ulid.ULID) {
	var line [ulid.EncodedLen + 1]byte
	line[ulid.EncodedLen] = '\n'
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		b, _ := id.AppendText(line[:0])
		if _, err := o.w.Write(b[:ulid.EncodedLen+1]); err != nil && o.err == nil {
			o.err = err
		}
	}
	o.n += int64(len(ids))
}

// Close flushes, syncs and closes the file, and reports the first error.
func (o *fileOracle) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.w.Flush(); err != nil && o.err == nil {
		o.err = err
	}
	if err := o.f.Sync(); err != nil && o.err == nil {
		o.err = err
	}
	if err := o.f.Close(); err != nil && o.err == nil {
		o.err = err
	}
	if o.err != nil {
		return fmt.Errorf("oracle: %w", o.err)
	}
	return nil
}

// memOracle keeps acknowledged IDs in memory (chaos).
type memOracle struct {
	mu  sync.Mutex // guards ids
	ids []ulid.ULID
}

func (o *memOracle) Ack(ids []ulid.ULID) {
	o.mu.Lock()
	o.ids = append(o.ids, ids...)
	o.mu.Unlock()
}

func (o *memOracle) IDs() []ulid.ULID {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]ulid.ULID(nil), o.ids...)
}

// readOracle reads an oracle file: one ULID per line; blank lines are
// skipped, and an ID listed twice (two runs appending) counts once. A line
// that is not a ULID is an error, except a torn last line (a run killed
// while writing), which is skipped and reported.
func readOracle(path string) (ids []ulid.ULID, torn bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("oracle: %w", err)
	}
	defer f.Close()
	seen := map[ulid.ULID]struct{}{}
	sc := bufio.NewScanner(f)
	var bad string
	badLine := 0
	for line := 1; sc.Scan(); line++ {
		if bad != "" {
			return nil, false, fmt.Errorf("oracle %s line %d: not a ULID: %q", path, badLine, bad)
		}
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		id, err := ulid.Parse(s)
		if err != nil {
			bad, badLine = s, line
			continue
		}
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			ids = append(ids, id)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("oracle %s: %w", path, err)
	}
	return ids, bad != "", nil
}
