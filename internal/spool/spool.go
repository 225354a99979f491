// Package spool is trackd's durable local log: every accepted request is
// appended to it, fsynced, before the client gets its answer, and stays there
// until every destination has acknowledged it and a retention window has
// passed. FORMAT.md beside this file specifies the files and the crash
// states.
//
// One committer goroutine owns the open segment. Append encodes its group of
// records in the caller's goroutine, queues it, and waits; the committer
// writes everything queued with one write and one sync, as soon as the
// previous sync returned (group commit, natural batching). Readers tail the
// spool from any Position, including the open segment, without blocking the
// writer. Each destination keeps one durable cursor.
package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sync"
	"time"

	"github.com/trackd/trackd/internal/vfs"
)

// Errors returned by Append. ErrFull and ErrDiskLow are backpressure: the
// API answers 503 with Retry-After, and Append succeeds again by itself once
// space returns. ErrFailed is sticky: the spool refuses every later Append
// until it is reopened.
var (
	ErrClosed   = errors.New("spool: closed")
	ErrFull     = errors.New("spool: byte budget reached")
	ErrDiskLow  = errors.New("spool: free disk space below the minimum headroom")
	ErrFailed   = errors.New("spool: failed")
	ErrTooLarge = errors.New("spool: record larger than a frame")
	ErrLocked   = errors.New("spool: locked by another process")
	ErrReadOnly = errors.New("spool: opened read-only")
	// ErrBusy is backpressure too: more than Options.MaxPending bytes wait
	// for a commit, which happens when the disk stops answering syncs.
	ErrBusy = errors.New("spool: too many bytes waiting for a commit (the disk is slow or stalled)")
)

// SyncMode says how a commit is made durable.
type SyncMode int

const (
	// SyncData preallocates each segment and commits with fdatasync. The
	// default: measured fastest here (see BENCHMARKS.md).
	SyncData SyncMode = iota
	// SyncFull appends to a growing file and commits with fsync.
	SyncFull
	// SyncNone never syncs: a commit is in the page cache only. An explicit
	// weaker mode (DESIGN §2.1 "memory"); a crash of the machine loses
	// acknowledged records.
	SyncNone
)

func (m SyncMode) String() string {
	switch m {
	case SyncData:
		return "fdatasync"
	case SyncFull:
		return "fsync"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// Options configure a spool. Zero values are the documented defaults.
type Options struct {
	// FS is the filesystem. Default vfs.OS{}.
	FS vfs.FS
	// SegmentSize is the size at which a segment rolls. Default 64 MiB.
	SegmentSize int64
	// MaxBytes is the byte budget for the spool's data; past it Append
	// fails with ErrFull. Default 16 GiB; negative means no budget.
	MaxBytes int64
	// MinFree is the free disk space Append keeps; below it Append fails
	// with ErrDiskLow. Default 512 MiB; negative means no headroom check.
	MinFree int64
	// Retention is how long a segment is kept after every cursor passed
	// it, to cover a back end's unsynced window. Default 15 minutes;
	// negative means delete as soon as every cursor passed.
	Retention time.Duration
	// Sync is how commits are made durable. Default SyncData.
	Sync SyncMode
	// ReadOnly opens the spool for inspection: recovery reports what it
	// would repair but changes nothing, and Append fails.
	ReadOnly bool
	// Deep makes recovery read every sealed segment in full instead of
	// trusting the manifest (what `trackd spool verify` does).
	Deep bool
	// Logger receives recovery and failure reports. Default discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxPending bounds the bytes waiting for a commit (queued while the
	// one before is being synced); past it Append fails with ErrBusy, so
	// that a disk that stops answering holds bounded memory. Default 64
	// MiB; negative means no bound. A group alone is always admitted.
	MaxPending int64
	// OnCommit, if set, is called by the committer after each successful
	// commit with its size and how long its write and sync took.
	OnCommit func(groups int, records, bytes int64, took time.Duration)
}

func (o *Options) setDefaults() {
	if o.FS == nil {
		o.FS = vfs.OS{}
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
	if o.SegmentSize < segmentHeaderSize+frameHeaderSize+MaxFramePayload {
		o.SegmentSize = segmentHeaderSize + frameHeaderSize + MaxFramePayload
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 16 << 30
	}
	if o.MinFree == 0 {
		o.MinFree = 512 << 20
	}
	if o.Retention == 0 {
		o.Retention = 15 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPending == 0 {
		o.MaxPending = 64 << 20
	}
}

// How often Append re-reads the free disk space.
const (
	freeRefreshInterval = 100 * time.Millisecond
	freeRefreshBytes    = 4 << 20
)

// Spool is an open spool. Its methods are safe for concurrent use.
type Spool struct {
	fs     vfs.FS
	dir    string
	opts   Options
	lock   io.Closer
	report Report

	// metaMu serialises MANIFEST rewrites (roll and Collect). Taken
	// before mu, never while holding mu.
	metaMu sync.Mutex
	// cursorMu serialises cursor file writes. Taken before mu.
	cursorMu sync.Mutex

	// mu guards the fields below it.
	mu        sync.Mutex
	wake      *sync.Cond // signalled when pending becomes non-nil or closing
	pending   *commitBatch
	pendBytes int64
	err       error // sticky failure
	closing   bool
	firstSeq  uint64
	sealed    []sealedEntry // sealed segments, in order; change with setSealedLocked
	sealedSum int64         // data bytes in sealed
	open      segmentStats  // the open segment
	tailCh    chan struct{} // closed and replaced at every commit
	closedCh  chan struct{} // closed by Close
	cursors   map[string]cursorFile
	free      int64 // free disk bytes at freeAt, less what was written since
	freeAt    time.Time
	freeBytes int64 // bytes written since freeAt
	commits   uint64
	// commitSince is when the commit under way started (zero when none):
	// a commit that takes seconds means the disk stopped answering.
	commitSince time.Time
	runBytes    int64 // bytes of the commit under way (part of pendBytes)

	// resume is where this process started appending (the open segment's
	// end at Open): a reader that meets damage before it in that segment
	// skips to it, not past the segment, since what this process wrote
	// from there on is intact (set by Open, read-only after).
	resume Position

	// Owned by the committer goroutine (and by Open before it starts).
	f    vfs.File // the open segment, nil when read-only
	wbuf []byte
	done chan struct{} // closed when the committer has exited
}

// segmentStats describes the open segment.
type segmentStats struct {
	seq             uint64
	size            int64 // committed end
	records         int64
	firstAt, lastAt int64
}

// commitBatch is the groups one commit writes; every Append in it waits on
// done and then reads err.
type commitBatch struct {
	bufs            []*[]byte
	bytes           int64
	records         int64
	firstAt, lastAt int64
	done            chan struct{}
	err             error
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Open opens (creating if needed) the spool in dir, recovering it from
// whatever state a crash left. Damage it found and repaired or skipped is in
// Report(); it is not an error: the spool serves.
func Open(dir string, opts Options) (*Spool, error) {
	opts.setDefaults()
	s := &Spool{
		fs:       opts.FS,
		dir:      dir,
		opts:     opts,
		tailCh:   make(chan struct{}),
		closedCh: make(chan struct{}),
		cursors:  make(map[string]cursorFile),
		done:     make(chan struct{}),
	}
	s.wake = sync.NewCond(&s.mu)
	if !opts.ReadOnly {
		if err := vfs.MkdirAllSync(s.fs, dir, 0o755); err != nil {
			return nil, fmt.Errorf("open spool: %w", err)
		}
	} else if _, err := s.fs.Stat(dir); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	lockFn := s.fs.Lock
	if opts.ReadOnly {
		lockFn = s.fs.RLock // never creates anything in a read-only open
	}
	lock, err := lockFn(path.Join(dir, lockName))
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			return nil, fmt.Errorf("open spool %s: %w (is trackd running on this data dir?)", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open spool: %w", err)
	}
	s.lock = lock
	if err := s.recover(); err != nil {
		if s.f != nil {
			s.f.Close()
		}
		lock.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	for _, d := range s.report.Damage {
		opts.Logger.Warn("spool damage", "file", d.File, "offset", d.Offset, "reason", d.Reason)
	}
	s.resume = Position{Seq: s.open.seq, Offset: s.open.size}
	if opts.ReadOnly {
		close(s.done)
	} else {
		go s.commitLoop()
	}
	return s, nil
}

// Report returns what recovery found when the spool was opened.
func (s *Spool) Report() Report { return s.report }

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Append stores one group of records (one request) and returns when it is
// durable: all of them or none; an error means none was stored. ctx is
// consulted before the group is queued only: once queued, Append waits for
// its commit (a sync) whatever ctx does, so that its answer is the truth
// (a client that half-closes its connection cancels the request's context
// while the group is being stored; answering 503 then would make it send
// again a group that is stored).
func (s *Spool) Append(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	firstAt, lastAt := recs[0].ReceivedAt, recs[0].ReceivedAt
	for i := range recs {
		r := &recs[i]
		n := r.encodedSize()
		if len(r.Meta) > maxMetaPairs {
			*bp = buf
			bufPool.Put(bp)
			return fmt.Errorf("record %d of %d: %d metadata pairs, at most %d: %w", i, len(recs), len(r.Meta), maxMetaPairs, ErrTooLarge)
		}
		if n > MaxFramePayload {
			*bp = buf
			bufPool.Put(bp)
			return fmt.Errorf("record %d of %d: %d bytes: %w", i, len(recs), n, ErrTooLarge)
		}
		typ := frameRecord
		if i == len(recs)-1 {
			typ = frameLast
		}
		buf = appendFrameFunc(buf, typ, n, r.appendTo)
		firstAt, lastAt = min(firstAt, r.ReceivedAt), max(lastAt, r.ReceivedAt)
	}
	*bp = buf

	s.mu.Lock()
	if err := s.admitLocked(int64(len(buf))); err != nil {
		s.mu.Unlock()
		bufPool.Put(bp)
		return err
	}
	b := s.pending
	if b == nil {
		b = &commitBatch{done: make(chan struct{}), firstAt: firstAt, lastAt: lastAt}
		s.pending = b
		s.wake.Signal()
	}
	b.bufs = append(b.bufs, bp)
	b.bytes += int64(len(buf))
	b.records += int64(len(recs))
	b.firstAt, b.lastAt = min(b.firstAt, firstAt), max(b.lastAt, lastAt)
	s.pendBytes += int64(len(buf))
	s.mu.Unlock()

	<-b.done
	return b.err
}

// admitLocked decides whether n more bytes may be queued.
func (s *Spool) admitLocked(n int64) error {
	switch {
	case s.err != nil:
		return s.err
	case s.closing:
		return ErrClosed
	case s.opts.ReadOnly:
		return ErrReadOnly
	}
	if s.opts.MaxBytes > 0 && s.dataBytesLocked()+s.pendBytes+n > s.opts.MaxBytes {
		return ErrFull
	}
	// Only what waits behind the running commit counts, so that a large
	// group is admitted whenever nothing waits.
	if queued := s.pendBytes - s.runBytes; s.opts.MaxPending > 0 && queued > 0 && queued+n > s.opts.MaxPending {
		return ErrBusy
	}
	if s.opts.MinFree > 0 {
		now := s.opts.Now()
		if now.Sub(s.freeAt) >= freeRefreshInterval || s.freeBytes >= freeRefreshBytes || now.Before(s.freeAt) {
			if free, err := s.fs.Free(s.dir); err == nil {
				s.free, s.freeAt, s.freeBytes = int64(min(free, 1<<62)), now, 0
			}
		}
		if s.free-s.freeBytes-s.pendBytes-n < s.opts.MinFree {
			return ErrDiskLow
		}
	}
	return nil
}

func (s *Spool) dataBytesLocked() int64 { return s.sealedSum + s.open.size }

// setSealedLocked replaces the list of sealed segments.
func (s *Spool) setSealedLocked(sealed []sealedEntry) {
	s.sealed, s.sealedSum = sealed, 0
	for _, e := range sealed {
		s.sealedSum += e.Size
	}
}

// commitLoop is the committer: it takes whatever is pending, writes and
// syncs it, and wakes the waiters, until the spool closes and nothing is
// pending.
func (s *Spool) commitLoop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for s.pending == nil && !s.closing {
			s.wake.Wait()
		}
		b := s.pending
		s.pending = nil
		if b != nil {
			s.commitSince, s.runBytes = s.opts.Now(), b.bytes
		}
		s.mu.Unlock()
		if b == nil {
			return
		}
		s.commit(b)
	}
}

// commit writes one batch, syncs it and publishes it.
func (s *Spool) commit(b *commitBatch) {
	err := s.stickyErr()
	if err == nil && s.open.size > segmentHeaderSize && s.open.size+b.bytes > s.opts.SegmentSize {
		if err = s.roll(); err != nil {
			err = s.fail(err)
		}
	}
	var start time.Time
	if err == nil {
		start = time.Now()
		s.wbuf = s.wbuf[:0]
		for _, bp := range b.bufs {
			s.wbuf = append(s.wbuf, *bp...)
		}
		if _, werr := s.f.WriteAt(s.wbuf, s.open.size); werr != nil {
			err = s.fail(fmt.Errorf("write segment %d: %w", s.open.seq, werr))
		} else if serr := s.syncData(); serr != nil {
			err = s.fail(fmt.Errorf("sync segment %d: %w", s.open.seq, serr))
		}
		if cap(s.wbuf) > 16<<20 {
			s.wbuf = nil // do not pin a rare huge batch
		}
	}
	for _, bp := range b.bufs {
		if cap(*bp) <= 1<<20 {
			bufPool.Put(bp)
		}
	}
	if err == nil && s.opts.OnCommit != nil {
		s.opts.OnCommit(len(b.bufs), b.records, b.bytes, time.Since(start))
	}

	s.mu.Lock()
	s.pendBytes -= b.bytes
	s.commitSince, s.runBytes = time.Time{}, 0
	if err == nil {
		o := &s.open
		if o.records == 0 {
			o.firstAt, o.lastAt = b.firstAt, b.lastAt
		} else {
			o.firstAt, o.lastAt = min(o.firstAt, b.firstAt), max(o.lastAt, b.lastAt)
		}
		o.records += b.records
		o.size += b.bytes
		s.freeBytes += b.bytes
		s.commits++
		close(s.tailCh)
		s.tailCh = make(chan struct{})
	}
	s.mu.Unlock()
	b.err = err
	close(b.done)
}

func (s *Spool) syncData() error {
	switch s.opts.Sync {
	case SyncData:
		return s.f.Datasync()
	case SyncFull:
		return s.f.Sync()
	}
	return nil
}

func (s *Spool) stickyErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail makes err sticky and returns the sticky error.
func (s *Spool) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = &failedError{err}
		s.opts.Logger.Error("spool failed; refusing appends until restart", "err", err)
	}
	return s.err
}

// failedError is the sticky error: errors.Is(err, ErrFailed) holds, and the
// cause is kept.
type failedError struct{ cause error }

func (e *failedError) Error() string        { return "spool: failed: " + e.cause.Error() }
func (e *failedError) Unwrap() []error      { return []error{ErrFailed, e.cause} }
func (e *failedError) Is(target error) bool { return target == ErrFailed }

// roll seals the open segment and starts the next one (FORMAT.md §8).
// Called by the committer only.
func (s *Spool) roll() error {
	o := s.open
	if s.opts.Sync == SyncData {
		if err := s.f.Truncate(o.size); err != nil {
			return fmt.Errorf("seal segment %d: %w", o.seq, err)
		}
	}
	if s.opts.Sync != SyncNone {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("seal segment %d: %w", o.seq, err)
		}
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("seal segment %d: %w", o.seq, err)
	}
	s.f = nil
	entry := sealedEntry{Seq: o.seq, Size: o.size, Records: o.records, FirstAt: o.firstAt, LastAt: o.lastAt}
	s.metaMu.Lock()
	s.mu.Lock()
	m := s.manifestLocked()
	s.mu.Unlock()
	m.Sealed = append(m.Sealed, entry)
	err := writeManifest(s.fs, s.dir, &m)
	if err == nil {
		s.mu.Lock()
		s.setSealedLocked(append(s.sealed, entry))
		s.open = segmentStats{seq: o.seq + 1, size: segmentHeaderSize}
		s.mu.Unlock()
	}
	s.metaMu.Unlock()
	if err != nil {
		return err
	}
	f, err := s.createSegment(o.seq + 1)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

// manifestLocked returns a copy of the manifest as it stands.
func (s *Spool) manifestLocked() manifest {
	return manifest{FirstSeq: s.firstSeq, Sealed: append([]sealedEntry(nil), s.sealed...)}
}

// createSegment creates segment seq durably and leaves it open for writing.
func (s *Spool) createSegment(seq uint64) (vfs.File, error) {
	name := path.Join(s.dir, segmentName(seq))
	f, err := s.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment %d: %w", seq, err)
	}
	err = func() error {
		if _, err := f.WriteAt(encodeSegmentHeader(seq, s.opts.Now().UnixNano()), 0); err != nil {
			return err
		}
		if s.opts.Sync == SyncData {
			if err := f.Preallocate(0, s.opts.SegmentSize); err != nil {
				return err
			}
		}
		if s.opts.Sync != SyncNone {
			if err := f.Sync(); err != nil {
				return err
			}
			return s.fs.SyncDir(s.dir)
		}
		return nil
	}()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create segment %d: %w", seq, err)
	}
	return f, nil
}

// Close stops the spool: appends already queued are committed, later ones
// fail with ErrClosed, blocked readers return ErrClosed, and the lock is
// released. Close does not sync anything beyond what commits already did.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.wake.Broadcast()
	close(s.closedCh) // wake blocked readers
	s.mu.Unlock()
	<-s.done
	var err error
	if s.f != nil {
		if !s.opts.ReadOnly { // read-only changes nothing, the manifest included
			s.checkpoint()
		}
		err = s.f.Close()
		s.f = nil
	}
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

// checkpoint records in the manifest what the open segment holds, once it
// is all durable, so that the next open need not scan it (FORMAT.md §5).
// It runs in Close, after the last commit. A failure costs only that scan.
func (s *Spool) checkpoint() {
	if s.stickyErr() != nil {
		return
	}
	hdr := make([]byte, segmentHeaderSize)
	if _, err := s.f.ReadAt(hdr, 0); err != nil {
		s.opts.Logger.Warn("spool: no checkpoint at close; the next open scans the open segment", "err", err)
		return
	}
	if err := s.f.Datasync(); err != nil {
		s.opts.Logger.Warn("spool: no checkpoint at close; the next open scans the open segment", "err", err)
		return
	}
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	s.mu.Lock()
	m := s.manifestLocked()
	o := s.open
	s.mu.Unlock()
	m.Open = &sealedEntry{Seq: o.seq, Size: o.size, Records: o.records, FirstAt: o.firstAt, LastAt: o.lastAt,
		Created: segmentCreated(hdr)}
	if err := writeManifest(s.fs, s.dir, &m); err != nil {
		s.opts.Logger.Warn("spool: no checkpoint at close; the next open scans the open segment", "err", err)
	}
}

// Err returns the sticky failure, or nil while the spool accepts appends.
func (s *Spool) Err() error { return s.stickyErr() }

// Stats is a snapshot of the spool's state.
type Stats struct {
	Segments int
	Bytes    int64 // data bytes in all segments
	Records  int64 // records in all segments
	OldestAt int64 // received-at of the oldest record held, Unix ns; 0 if none
	Tail     Position
	FreeDisk int64 // free disk bytes at the last check
	Commits  uint64
	Failed   error // the sticky failure, if any
	// CommitRunning is how long the commit under way has taken so far
	// (0 when none is): seconds mean the disk is not answering syncs.
	CommitRunning time.Duration
}

// Stats returns a snapshot of the spool's state.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Segments: len(s.sealed) + 1,
		Bytes:    s.dataBytesLocked(),
		Records:  s.open.records,
		Tail:     Position{Seq: s.open.seq, Offset: s.open.size},
		FreeDisk: s.free - s.freeBytes,
		Commits:  s.commits,
		Failed:   s.err,
	}
	if !s.commitSince.IsZero() {
		st.CommitRunning = max(s.opts.Now().Sub(s.commitSince), 0)
	}
	for _, e := range s.sealed {
		st.Records += e.Records
		if st.OldestAt == 0 && e.Records > 0 {
			st.OldestAt = e.FirstAt
		}
	}
	if st.OldestAt == 0 && s.open.records > 0 {
		st.OldestAt = s.open.firstAt
	}
	return st
}
