package spool

import (
	"errors"
	"fmt"
	"os"
	"path"
	"time"
)

// Cursor returns the durable position of the named destination's cursor,
// and whether it exists. A destination with no cursor starts at the oldest
// record held.
func (s *Spool) Cursor(name string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cursors[name]
	return c.Position, ok
}

// Cursors returns every cursor's position.
func (s *Spool) Cursors() map[string]Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]Position, len(s.cursors))
	for n, c := range s.cursors {
		m[n] = c.Position
	}
	return m
}

// SetCursor durably records that the named destination has acknowledged
// every record before pos (a Reader's Pos after the last acked record). It
// returns when the cursor file is synced. Cursors only move forward; a pos
// behind the current one is ignored.
func (s *Spool) SetCursor(name string, pos Position) error {
	if !ValidCursorName(name) {
		return fmt.Errorf("spool: bad cursor name %q", name)
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	s.cursorMu.Lock()
	defer s.cursorMu.Unlock()
	s.mu.Lock()
	closing := s.closing
	tail := Position{Seq: s.open.seq, Offset: s.open.size}
	cur, ok := s.cursors[name]
	s.mu.Unlock()
	if closing {
		return ErrClosed
	}
	if tail.Less(pos) {
		return fmt.Errorf("spool: cursor %s: position %s is past the end %s", name, pos, tail)
	}
	if ok && pos.Less(cur.Position) {
		return nil
	}
	c := cursorFile{Name: name, Position: pos, UpdatedAt: s.opts.Now().UnixNano()}
	if err := writeCursor(s.fs, s.dir, c); err != nil {
		return fmt.Errorf("spool: cursor %s: %w", name, err)
	}
	s.mu.Lock()
	if old, ok := s.cursors[name]; !ok || !pos.Less(old.Position) {
		s.cursors[name] = c
	}
	s.mu.Unlock()
	return nil
}

// RemoveCursor deletes a destination's cursor, e.g. when the destination is
// removed from the configuration, so that it no longer holds back
// retention.
func (s *Spool) RemoveCursor(name string) error {
	if !ValidCursorName(name) {
		return fmt.Errorf("spool: bad cursor name %q", name)
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	s.cursorMu.Lock()
	defer s.cursorMu.Unlock()
	if s.isClosing() {
		return ErrClosed
	}
	if err := s.fs.Remove(path.Join(s.dir, cursorPrefix+name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.cursors, name)
	s.mu.Unlock()
	return nil
}

// Collect applies retention: it deletes the oldest sealed segments that
// every cursor has passed for at least the retention window, and returns
// how many it deleted. With no cursor at all nothing is deleted: records
// wait for a destination. Call it periodically; it is cheap when there is
// nothing to do.
func (s *Spool) Collect() (int, error) {
	if s.opts.ReadOnly {
		return 0, ErrReadOnly
	}
	now := s.opts.Now()
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	if len(s.cursors) == 0 || len(s.sealed) == 0 {
		s.mu.Unlock()
		return 0, nil
	}
	var low Position
	first := true
	for _, c := range s.cursors {
		if first || c.Position.Less(low) {
			low, first = c.Position, false
		}
	}
	m := s.manifestLocked()
	s.mu.Unlock()

	changed, cut := false, 0
	for i := range m.Sealed {
		e := &m.Sealed[i]
		if !(e.Seq < low.Seq || (e.Seq == low.Seq && low.Offset >= e.Size)) {
			break
		}
		if e.AckedAt == 0 {
			e.AckedAt, changed = now.UnixNano(), true
		}
		if cut == i && (s.opts.Retention < 0 || now.Sub(time.Unix(0, e.AckedAt)) >= s.opts.Retention) {
			cut = i + 1
		}
	}
	if !changed && cut == 0 {
		return 0, nil
	}
	gone := append([]sealedEntry(nil), m.Sealed[:cut]...)
	if cut > 0 {
		m.FirstSeq = gone[cut-1].Seq + 1
		m.Sealed = m.Sealed[cut:]
	}
	if err := writeManifest(s.fs, s.dir, &m); err != nil {
		return 0, fmt.Errorf("spool: retention: %w", err)
	}
	s.mu.Lock()
	// Only Collect and roll change these, both under metaMu: roll may have
	// appended no entry meanwhile, so m is current.
	s.firstSeq = m.FirstSeq
	s.setSealedLocked(m.Sealed)
	s.mu.Unlock()
	for _, e := range gone {
		if err := s.fs.Remove(path.Join(s.dir, segmentName(e.Seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("spool: retention: %w", err)
		}
	}
	if len(gone) > 0 {
		if err := s.fs.SyncDir(s.dir); err != nil {
			return 0, fmt.Errorf("spool: retention: %w", err)
		}
	}
	return len(gone), nil
}

// Behind returns how many data bytes of the spool lie after pos: a
// destination's backlog when pos is its cursor.
func (s *Spool) Behind(pos Position) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	off := max(pos.Offset, segmentHeaderSize)
	for _, e := range s.sealed {
		switch {
		case e.Seq > pos.Seq:
			n += e.Size - segmentHeaderSize
		case e.Seq == pos.Seq:
			n += max(0, e.Size-off)
		}
	}
	switch {
	case s.open.seq > pos.Seq:
		n += s.open.size - segmentHeaderSize
	case s.open.seq == pos.Seq:
		n += max(0, s.open.size-off)
	}
	return n
}

func (s *Spool) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
