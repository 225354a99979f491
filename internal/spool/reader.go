package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/trackd/trackd/internal/vfs"
)

// ErrNoMore is returned by Reader.TryNext when it has read everything
// committed so far.
var ErrNoMore = errors.New("spool: no more records")

// readChunk is how much a Reader reads at a time.
const readChunk = 256 << 10

// Reader reads records in order from a Position onwards, following the
// spool as it grows. It never blocks the writer: it reads committed bytes
// through its own file handle. A Reader is for one goroutine.
type Reader struct {
	s   *Spool
	pos Position // next frame to read

	// pending holds the rest of a group decoded whole, pendingEnd the
	// offset just past each of its records.
	pending    []Record
	pendingEnd []int64

	f     vfs.File // segment pos.Seq, or nil
	fseq  uint64
	buf   []byte // bytes of segment fseq starting at file offset bufOff
	bufAt int64
}

// NewReader returns a reader positioned at from. The zero Position (or any
// position before the oldest segment held) starts at the oldest record.
func (s *Spool) NewReader(from Position) *Reader {
	r := &Reader{s: s, buf: make([]byte, 0, readChunk)}
	s.mu.Lock()
	first := s.firstSeq
	if len(s.sealed) > 0 {
		first = s.sealed[0].Seq
	}
	s.mu.Unlock()
	if from.Seq < first {
		from = Position{Seq: first}
	}
	r.moveTo(from)
	return r
}

// Pos returns the position just after the last record returned: the value
// to store with SetCursor once that record is acknowledged.
func (r *Reader) Pos() Position { return r.pos }

// Close releases the reader's file.
func (r *Reader) Close() error {
	if r.f != nil {
		err := r.f.Close()
		r.f = nil
		return err
	}
	return nil
}

// Next returns the next record, waiting for one to be committed if needed.
// It returns ctx's error when ctx ends, ErrClosed when the spool closes, and
// a *CorruptionError at a damaged frame (call SkipSegment to go on).
func (r *Reader) Next(ctx context.Context) (Record, error) {
	for {
		rec, wait, err := r.next()
		if err != ErrNoMore {
			return rec, err
		}
		select {
		case <-wait:
		case <-r.s.closedCh:
			return Record{}, ErrClosed
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

// TryNext returns the next committed record, or ErrNoMore if the reader has
// caught up.
func (r *Reader) TryNext() (Record, error) {
	rec, _, err := r.next()
	return rec, err
}

// SkipSegment moves the reader past damage it cannot read: to the start of
// the next segment, or, in the segment this process appends to, to where
// its own appends began.
func (r *Reader) SkipSegment() {
	if res := r.s.resume; r.pos.Seq == res.Seq && r.pos.Offset < res.Offset {
		// Damage in what an earlier process wrote to the segment this
		// one appends to (unchecked at Open when a checkpoint vouched for
		// it): skip to where this process's own writes begin; skipping
		// the segment would skip them too, until it rolled.
		r.moveTo(res)
		return
	}
	r.moveTo(Position{Seq: r.pos.Seq + 1})
}

func (r *Reader) moveTo(p Position) {
	if p.Offset < segmentHeaderSize {
		p.Offset = segmentHeaderSize
	}
	r.pos = p
	r.pending, r.pendingEnd = r.pending[:0], r.pendingEnd[:0]
	r.buf = r.buf[:0]
	r.bufAt = p.Offset
}

// next returns a record, or ErrNoMore with a channel closed at the next
// commit.
func (r *Reader) next() (Record, <-chan struct{}, error) {
	if len(r.pending) > 0 {
		return r.popPending(), nil, nil
	}
	for {
		// Where does readable data end for pos.Seq?
		s := r.s
		s.mu.Lock()
		first := s.firstSeq
		if len(s.sealed) > 0 {
			first = s.sealed[0].Seq
		}
		if r.pos.Seq < first || r.pos.Offset < segmentHeaderSize {
			s.mu.Unlock()
			r.moveTo(Position{Seq: max(r.pos.Seq, first), Offset: r.pos.Offset})
			s.mu.Lock()
		}
		var end int64
		sealed := false
		if r.pos.Seq == s.open.seq {
			end = s.open.size
		} else if r.pos.Seq < s.open.seq {
			end, sealed = -1, true
			for _, e := range s.sealed {
				if e.Seq == r.pos.Seq {
					end = e.Size
				}
			}
		} else {
			end = -2 // past the tail: nothing yet
		}
		wait := s.tailCh
		s.mu.Unlock()

		switch {
		case end == -1: // missing (damaged or deleted): go on
			r.moveTo(Position{Seq: r.pos.Seq + 1})
			continue
		case end == -2:
			return Record{}, wait, ErrNoMore
		case r.pos.Offset >= end && sealed:
			r.moveTo(Position{Seq: r.pos.Seq + 1})
			continue
		case r.pos.Offset >= end:
			return Record{}, wait, ErrNoMore
		}

		// Decode a whole group before returning any of it: a group is all
		// or nothing (FORMAT.md §3), even where bytes rotted in a sealed
		// segment the manifest vouched for.
		rel := r.pos.Offset - r.bufAt
		if rel < 0 || rel > int64(len(r.buf)) {
			r.buf, r.bufAt = r.buf[:0], r.pos.Offset
		}
		seq, at := r.pos.Seq, r.pos.Offset
		name := segmentName(seq)
		corrupt := func(off int64, reason string) (Record, <-chan struct{}, error) {
			r.pending = r.pending[:0]
			return Record{}, nil, &CorruptionError{Segment: seq, File: name, Offset: off, Reason: reason}
		}
		r.pending, r.pendingEnd = r.pending[:0], r.pendingEnd[:0]
		for last := false; !last; {
			if at >= end {
				return corrupt(at, "group cut off by the end of the segment's data")
			}
			avail := r.buf[at-r.bufAt : min(int64(len(r.buf)), end-r.bufAt)]
			typ, payload, n, err := decodeFrame(avail)
			if err == errShortFrame || (err == errEnd && len(avail) == 0) {
				if ferr := r.fill(end); ferr != nil {
					r.pending = r.pending[:0]
					return Record{}, nil, ferr
				}
				if r.pos.Seq != seq {
					break // the segment went away under us; start over
				}
				continue
			}
			switch {
			case err == errEnd:
				return corrupt(at, "zeroed bytes before the end of data")
			case err != nil:
				return corrupt(at, err.Error())
			case typ != frameRecord && typ != frameLast:
				return corrupt(at, fmt.Sprintf("frame type %d in a segment", typ))
			}
			rec, err := decodeRecord(payload)
			if err != nil {
				return corrupt(at, "undecodable record: "+err.Error())
			}
			at += int64(n)
			r.pending = append(r.pending, rec)
			r.pendingEnd = append(r.pendingEnd, at)
			last = typ == frameLast
		}
		if r.pos.Seq != seq || len(r.pending) == 0 {
			r.pending = r.pending[:0]
			continue
		}
		return r.popPending(), nil, nil
	}
}

// popPending returns the next record of the decoded group and moves past it.
func (r *Reader) popPending() Record {
	rec := r.pending[0]
	r.pos.Offset = r.pendingEnd[0]
	r.pending, r.pendingEnd = r.pending[1:], r.pendingEnd[1:]
	return rec
}

// fill reads more of segment pos.Seq into the buffer, up to end.
func (r *Reader) fill(end int64) error {
	if r.f == nil || r.fseq != r.pos.Seq {
		if r.f != nil {
			r.f.Close()
			r.f = nil
		}
		f, err := r.s.fs.OpenFile(path.Join(r.s.dir, segmentName(r.pos.Seq)), os.O_RDONLY, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Deleted by retention under us: go on with the next.
				r.moveTo(Position{Seq: r.pos.Seq + 1})
				return nil
			}
			return fmt.Errorf("spool: read segment %d: %w", r.pos.Seq, err)
		}
		r.f, r.fseq = f, r.pos.Seq
	}
	// Keep the unread bytes of the current frame, drop the rest, and make
	// room: a frame may be up to frameHeaderSize+MaxFramePayload long.
	rel := r.pos.Offset - r.bufAt
	r.buf = append(r.buf[:0], r.buf[rel:]...)
	r.bufAt = r.pos.Offset
	if cap(r.buf)-len(r.buf) < readChunk/4 {
		nb := make([]byte, len(r.buf), len(r.buf)+readChunk)
		copy(nb, r.buf)
		r.buf = nb
	}
	want := min(end-r.bufAt-int64(len(r.buf)), int64(cap(r.buf)-len(r.buf)))
	n, err := r.f.ReadAt(r.buf[len(r.buf):len(r.buf)+int(want)], r.bufAt+int64(len(r.buf)))
	r.buf = r.buf[:len(r.buf)+n]
	if n == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return &CorruptionError{Segment: r.pos.Seq, File: segmentName(r.pos.Seq), Offset: r.bufAt + int64(len(r.buf)), Reason: "segment shorter than its recorded size"}
		}
		return fmt.Errorf("spool: read segment %d: %w", r.pos.Seq, err)
	}
	return nil
}
