package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/trackd/trackd/internal/vfs"
)

// Report is what recovery found when a spool was opened.
type Report struct {
	Segments int
	Records  int64
	Bytes    int64
	OldestAt int64 // received-at of the oldest record, Unix ns; 0 if none
	Cursors  map[string]Position
	// Damage lists everything that was not as a clean shutdown leaves it,
	// including a torn tail after a crash (its Reason starts with
	// "torn tail"). Recovery kept the damaged bytes (see Repairs).
	Damage []*CorruptionError
	// Repairs lists what recovery changed (nothing when read-only).
	Repairs []string
}

// Clean reports whether recovery found no damage at all.
func (r Report) Clean() bool { return len(r.Damage) == 0 }

// recover rebuilds the spool's state from its directory (FORMAT.md §8).
// Read-only, it changes nothing and reports what it would do.
func (s *Spool) recover() error {
	fsys, dir, ro := s.fs, s.dir, s.opts.ReadOnly
	rep := &s.report
	damage := func(seq uint64, file string, off int64, reason string) {
		rep.Damage = append(rep.Damage, &CorruptionError{Segment: seq, File: file, Offset: off, Reason: reason})
	}
	repaired := func(format string, args ...any) {
		rep.Repairs = append(rep.Repairs, fmt.Sprintf(format, args...))
	}

	names, err := fsys.ReadDir(dir)
	if err != nil {
		return err
	}
	var segs []uint64
	var cursorNames []string
	for _, name := range names {
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			if !ro {
				if err := fsys.Remove(path.Join(dir, name)); err != nil {
					return err
				}
				repaired("removed leftover %s", name)
			}
		case strings.HasPrefix(name, cursorPrefix):
			if n := strings.TrimPrefix(name, cursorPrefix); ValidCursorName(n) {
				cursorNames = append(cursorNames, n)
			}
		default:
			if seq, ok := parseSegmentName(name); ok {
				segs = append(segs, seq)
			}
		}
	}

	fresh := len(segs) == 0
	man, err := readManifest(fsys, dir)
	rewrite := false
	var ce *CorruptionError
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		if !fresh {
			damage(0, manifestName, 0, "manifest missing; rebuilt by scanning every segment")
		}
		man, rewrite = &manifest{FirstSeq: 1}, true
	case errors.As(err, &ce):
		ce.Reason += "; rebuilt by scanning every segment"
		rep.Damage = append(rep.Damage, ce)
		man, rewrite = &manifest{FirstSeq: 1}, true
	default:
		return err
	}
	if rewrite && len(segs) > 0 {
		man.FirstSeq = segs[0]
	}

	// Segments below first_seq were being deleted by retention.
	onDisk := make(map[uint64]bool)
	var live []uint64
	removed := false
	for _, seq := range segs {
		if seq >= man.FirstSeq {
			live = append(live, seq)
			onDisk[seq] = true
			continue
		}
		if !ro {
			if err := fsys.Remove(path.Join(dir, segmentName(seq))); err != nil {
				return err
			}
			removed = true
			repaired("removed segment %d, below first_seq %d", seq, man.FirstSeq)
		}
	}
	if removed {
		if err := fsys.SyncDir(dir); err != nil {
			return err
		}
	}

	// Sealed segments are trusted, unless Deep.
	lastSealed := man.FirstSeq - 1
	listed := make(map[uint64]bool)
	for _, e := range man.Sealed {
		lastSealed = e.Seq
		listed[e.Seq] = true
		name := segmentName(e.Seq)
		if !onDisk[e.Seq] {
			damage(e.Seq, name, 0, "sealed segment missing")
			rewrite = true
			continue
		}
		fi, err := fsys.Stat(path.Join(dir, name))
		if err != nil {
			return err
		}
		if fi.Size() < e.Size {
			damage(e.Seq, name, fi.Size(), fmt.Sprintf("sealed segment is %d bytes, the manifest says %d", fi.Size(), e.Size))
		} else if s.opts.Deep {
			if err := s.verifySealed(e, damage); err != nil {
				return err
			}
		}
		s.sealed = append(s.sealed, e)
	}
	var unlisted []uint64
	for _, seq := range live {
		if seq > lastSealed {
			unlisted = append(unlisted, seq)
		} else if !listed[seq] {
			damage(seq, segmentName(seq), 0, "segment not in the manifest; left alone")
		}
	}

	// Unlisted segments are scanned: all but the last are sealed, the last
	// is the open one.
	nextSeq := max(lastSealed, s.highestDamagedSeq()) + 1
	if len(live) > 0 {
		nextSeq = max(nextSeq, live[len(live)-1]+1)
	}
	for i, seq := range unlisted {
		last := i == len(unlisted)-1
		var cp *sealedEntry
		if last && !s.opts.Deep {
			cp = man.Open
		}
		st, f, err := s.recoverUnlisted(seq, last, cp, damage, repaired)
		if err != nil {
			return err
		}
		if f == nil && st.size == 0 {
			continue // moved aside
		}
		if last && f != nil {
			s.open, s.f = st, f
			nextSeq = 0
			continue
		}
		if f != nil {
			f.Close()
		}
		s.sealed = append(s.sealed, sealedEntry{Seq: st.seq, Size: st.size, Records: st.records, FirstAt: st.firstAt, LastAt: st.lastAt})
		rewrite = true
	}
	s.setSealedLocked(s.sealed)
	if nextSeq != 0 {
		nextSeq = max(nextSeq, s.highestDamagedSeq()+1)
	}
	s.firstSeq = man.FirstSeq
	if len(s.sealed) > 0 {
		s.firstSeq = min(s.firstSeq, s.sealed[0].Seq)
	}

	if !ro {
		if rewrite || fresh {
			m := s.manifestLocked()
			if err := writeManifest(fsys, dir, &m); err != nil {
				return err
			}
			if !fresh {
				repaired("rewrote the manifest")
			}
		}
		if nextSeq != 0 {
			f, err := s.createSegment(nextSeq)
			if err != nil {
				return err
			}
			s.open, s.f = segmentStats{seq: nextSeq, size: segmentHeaderSize}, f
		}
	} else if nextSeq != 0 {
		// Read-only and no open segment: an empty one that is not there.
		s.open = segmentStats{seq: nextSeq, size: segmentHeaderSize}
	}

	// Cursors.
	rep.Cursors = make(map[string]Position)
	tail := Position{Seq: s.open.seq, Offset: s.open.size}
	for _, n := range cursorNames {
		c, err := readCursor(fsys, dir, n)
		rewriteCursor := false
		switch {
		case errors.As(err, &ce):
			// Its destination restarts from the oldest record, and the
			// cursor keeps holding back retention meanwhile.
			ce.Reason += "; cursor reset to the oldest record"
			rep.Damage = append(rep.Damage, ce)
			c, rewriteCursor = cursorFile{Name: n}, true
		case err != nil:
			return err
		case tail.Less(c.Position):
			damage(c.Seq, cursorPrefix+n, c.Offset, fmt.Sprintf("cursor %s is past the end of the spool %s; moved back to the end", c.Position, tail))
			c.Position, rewriteCursor = tail, true
		}
		if rewriteCursor && !ro {
			c.UpdatedAt = s.opts.Now().UnixNano()
			if err := writeCursor(fsys, dir, c); err != nil {
				return err
			}
			repaired("rewrote cursor %s at %s", n, c.Position)
		}
		s.cursors[n] = c
		rep.Cursors[n] = c.Position
	}

	st := s.Stats()
	rep.Segments, rep.Records, rep.Bytes, rep.OldestAt = st.Segments, st.Records, st.Bytes, st.OldestAt
	if ro && s.f == nil && len(unlisted) == 0 && nextSeq != 0 {
		rep.Segments-- // the open segment does not exist yet
	}
	return nil
}

// verifySealed reads a sealed segment in full and reports any difference
// from what the manifest says.
func (s *Spool) verifySealed(e sealedEntry, damage func(uint64, string, int64, string)) error {
	name := segmentName(e.Seq)
	f, err := s.fs.OpenFile(path.Join(s.dir, name), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, segmentHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := checkSegmentHeader(hdr, e.Seq); err != nil {
		damage(e.Seq, name, 0, err.Error())
		return nil
	}
	res, err := scanSegment(f, name, e.Seq, segmentHeaderSize, e.Size)
	if err != nil {
		return err
	}
	switch {
	case res.damage != nil:
		rep := *res.damage
		damage(rep.Segment, rep.File, rep.Offset, rep.Reason)
	case res.end != e.Size:
		damage(e.Seq, name, res.end, fmt.Sprintf("data ends at %d, the manifest says %d", res.end, e.Size))
	case res.records != e.Records:
		damage(e.Seq, name, 0, fmt.Sprintf("%d records, the manifest says %d", res.records, e.Records))
	}
	return nil
}

// recoverUnlisted scans a segment the manifest does not vouch for, cuts off
// a damaged tail (keeping a copy), and returns its state. For the last
// segment it returns the file open for writing (nil when read-only). A
// segment with a bad header is moved aside: it returns a zero state and no
// file. A checkpoint cp of this segment (from a clean close) spares
// scanning the bytes it vouches for.
func (s *Spool) recoverUnlisted(seq uint64, last bool, cp *sealedEntry, damage func(uint64, string, int64, string), repaired func(string, ...any)) (segmentStats, vfs.File, error) {
	ro := s.opts.ReadOnly
	name := segmentName(seq)
	p := path.Join(s.dir, name)
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := s.fs.OpenFile(p, flag, 0)
	if err != nil {
		return segmentStats{}, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return segmentStats{}, nil, err
	}
	size := fi.Size()
	hdr := make([]byte, segmentHeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return segmentStats{}, nil, err
	}
	if herr := checkSegmentHeader(hdr, seq); herr != nil {
		reason := herr.Error()
		if last {
			reason = "torn segment creation: " + reason
		}
		damage(seq, name, 0, reason+"; segment moved to "+damagedDir+"/")
		f.Close()
		if !ro {
			if err := s.moveAside(seq, reason); err != nil {
				return segmentStats{}, nil, err
			}
			repaired("moved segment %d to %s/", seq, damagedDir)
		}
		return segmentStats{}, nil, nil
	}
	from := int64(segmentHeaderSize)
	if cp != nil && cp.Seq == seq && cp.Created == segmentCreated(hdr) && cp.Size >= from && cp.Size <= size {
		from = cp.Size
	} else {
		cp = nil
	}
	res, err := scanSegment(f, name, seq, from, size)
	if err != nil {
		f.Close()
		return segmentStats{}, nil, err
	}
	st := segmentStats{seq: seq, size: res.end, records: res.records, firstAt: res.firstAt, lastAt: res.lastAt}
	if cp != nil && cp.Records > 0 {
		if st.records == 0 {
			st.firstAt, st.lastAt = cp.FirstAt, cp.LastAt
		} else {
			st.firstAt, st.lastAt = min(st.firstAt, cp.FirstAt), max(st.lastAt, cp.LastAt)
		}
		st.records += cp.Records
	}
	if res.damage != nil {
		if last {
			res.damage.Reason = "torn tail: " + res.damage.Reason
		}
		rep := *res.damage
		damage(rep.Segment, rep.File, rep.Offset, rep.Reason)
	}
	if ro {
		return st, f, nil
	}
	cut := size > res.end && (res.damage != nil || !last || s.opts.Sync != SyncData)
	if res.damage != nil {
		kept, err := s.copyAside(f, seq, res.end, res.damageEnd, res.damage.Reason)
		if err != nil {
			// Without a copy the bytes stay where they are: the segment
			// is sealed at its last good group and left untouched.
			s.opts.Logger.Error("spool: cannot keep damaged bytes aside; sealing the segment as it is", "segment", seq, "err", err)
			repaired("sealed segment %d at %d without cutting its damaged tail (copy failed: %v)", seq, res.end, err)
			f.Close()
			return st, nil, nil
		}
		repaired("cut segment %d at %d; damaged bytes kept in %s", seq, res.end, kept)
	}
	if cut {
		if err := f.Truncate(res.end); err != nil {
			f.Close()
			return segmentStats{}, nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return segmentStats{}, nil, err
		}
	}
	if last && s.opts.Sync == SyncData {
		if err := f.Preallocate(0, s.opts.SegmentSize); err != nil {
			f.Close()
			return segmentStats{}, nil, err
		}
	}
	return st, f, nil
}

// copyAside copies bytes [from, to) of segment seq into damaged/ with a note
// saying why, durably, and returns the copy's name.
func (s *Spool) copyAside(f vfs.File, seq uint64, from, to int64, reason string) (string, error) {
	ddir := path.Join(s.dir, damagedDir)
	if err := vfs.MkdirAllSync(s.fs, ddir, 0o755); err != nil {
		return "", err
	}
	base, out, err := s.createAside(ddir, fmt.Sprintf("%020d-%d", seq, from))
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, io.NewSectionReader(f, from, to-from))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	note := fmt.Sprintf("segment %d, bytes %d to %d: %s\n", seq, from, to, reason)
	if err := vfs.WriteFileAtomic(s.fs, ddir, base+".txt", []byte(note)); err != nil {
		return "", err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return "", err
	}
	return path.Join(damagedDir, base+".bin"), nil
}

// moveAside moves a whole segment into damaged/ with a note.
func (s *Spool) moveAside(seq uint64, reason string) error {
	ddir := path.Join(s.dir, damagedDir)
	if err := vfs.MkdirAllSync(s.fs, ddir, 0o755); err != nil {
		return err
	}
	base, out, err := s.createAside(ddir, fmt.Sprintf("%020d-0", seq))
	if err != nil {
		return err
	}
	out.Close() // a placeholder that reserves the name; the rename replaces it
	note := fmt.Sprintf("segment %d, whole file: %s\n", seq, reason)
	if err := vfs.WriteFileAtomic(s.fs, ddir, base+".txt", []byte(note)); err != nil {
		return err
	}
	if err := s.fs.Rename(path.Join(s.dir, segmentName(seq)), path.Join(ddir, base+".bin")); err != nil {
		return err
	}
	if err := s.fs.SyncDir(ddir); err != nil {
		return err
	}
	return s.fs.SyncDir(s.dir)
}

// createAside creates a new file in damaged/ named base.bin, or base.N.bin
// if that exists: damaged bytes kept earlier are never overwritten.
func (s *Spool) createAside(ddir, base string) (string, vfs.File, error) {
	name := base
	for i := 1; ; i++ {
		f, err := s.fs.OpenFile(path.Join(ddir, name+".bin"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			return name, f, nil
		}
		if !errors.Is(err, os.ErrExist) || i > 1000 {
			return "", nil, err
		}
		name = fmt.Sprintf("%s.%d", base, i)
	}
}

// highestDamagedSeq returns the highest segment sequence number among the
// files in damaged/, so a number moved aside is never used again.
func (s *Spool) highestDamagedSeq() uint64 {
	names, err := s.fs.ReadDir(path.Join(s.dir, damagedDir))
	if err != nil {
		return 0
	}
	var hi uint64
	for _, n := range names {
		digits, _, ok := strings.Cut(n, "-")
		if !ok || len(digits) != 20 {
			continue
		}
		if seq, err := strconv.ParseUint(digits, 10, 64); err == nil {
			hi = max(hi, seq)
		}
	}
	return hi
}
