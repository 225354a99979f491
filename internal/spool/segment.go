package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"

	"github.com/trackd/trackd/internal/vfs"
)

// Segment header; see FORMAT.md §2.
const (
	segmentMagic      = "TRKSPOOL"
	segmentVersion    = 1
	segmentHeaderSize = 32
	segmentSuffix     = ".seg"
)

func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentSuffix) }

// parseSegmentName returns the sequence number of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil && seq > 0
}

func encodeSegmentHeader(seq uint64, created int64) []byte {
	h := make([]byte, segmentHeaderSize)
	copy(h, segmentMagic)
	binary.LittleEndian.PutUint16(h[8:], segmentVersion)
	binary.LittleEndian.PutUint16(h[10:], segmentHeaderSize)
	binary.LittleEndian.PutUint64(h[12:], seq)
	binary.LittleEndian.PutUint64(h[20:], uint64(created))
	binary.LittleEndian.PutUint32(h[28:], crc32.Checksum(h[:28], castagnoli))
	return h
}

// checkSegmentHeader validates a segment header read from disk.
func checkSegmentHeader(h []byte, seq uint64) error {
	switch {
	case len(h) < segmentHeaderSize:
		return errors.New("segment header cut off")
	case string(h[:8]) != segmentMagic:
		return errors.New("bad segment magic")
	case binary.LittleEndian.Uint32(h[28:]) != crc32.Checksum(h[:28], castagnoli):
		return errors.New("segment header checksum mismatch")
	case binary.LittleEndian.Uint16(h[8:]) != segmentVersion:
		return fmt.Errorf("unsupported segment version %d", binary.LittleEndian.Uint16(h[8:]))
	case binary.LittleEndian.Uint16(h[10:]) != segmentHeaderSize:
		return errors.New("bad segment header size")
	case binary.LittleEndian.Uint64(h[12:]) != seq:
		return fmt.Errorf("segment header names sequence %d", binary.LittleEndian.Uint64(h[12:]))
	}
	return nil
}

// segmentCreated is the creation time in a valid segment header.
func segmentCreated(h []byte) int64 { return int64(binary.LittleEndian.Uint64(h[20:])) }

// scanResult is what a scan of a segment's frames found.
type scanResult struct {
	// end is the offset just past the last complete group.
	end int64
	// records counts the records in complete groups; firstAt and lastAt
	// are their smallest and largest received-at times.
	records         int64
	firstAt, lastAt int64
	// damage is non-nil if bytes other than zeros follow end: a torn
	// write after a crash, or corruption.
	damage *CorruptionError
	// damageEnd is one past the last non-zero byte of the damaged region.
	damageEnd int64
}

// scanChunk is how much a scan reads at a time.
const scanChunk = 1 << 20

// scanSegment reads the frames of a segment from offset from (past the
// header) to size, the file's length, and finds where its complete groups
// end. It decodes every record, so a record that passes its CRC but does not
// decode is damage too. It allocates O(scanChunk + MaxFramePayload) at most.
func scanSegment(f vfs.File, name string, seq uint64, from, size int64) (scanResult, error) {
	res := scanResult{end: from}
	buf := make([]byte, 0, scanChunk+frameHeaderSize+MaxFramePayload)
	bufOff := from // file offset of buf[0]
	pos := from    // next frame's file offset
	var groupRecords int64
	var gFirst, gLast int64
	fill := func() (bool, error) {
		// Drop consumed bytes and read more; report whether anything was added.
		consumed := int(pos - bufOff)
		buf = append(buf[:0], buf[consumed:]...)
		bufOff = pos
		readAt := bufOff + int64(len(buf))
		if readAt >= size {
			return false, nil
		}
		want := min(int64(cap(buf)-len(buf)), size-readAt)
		n, err := f.ReadAt(buf[len(buf):len(buf)+int(want)], readAt)
		buf = buf[:len(buf)+n]
		if err != nil && !errors.Is(err, io.EOF) {
			return n > 0, fmt.Errorf("read %s: %w", name, err)
		}
		return n > 0, nil
	}
	var bad string
	for {
		typ, payload, n, err := decodeFrame(buf[pos-bufOff:])
		if err == errShortFrame || (err == errEnd && len(buf[pos-bufOff:]) == 0) {
			more, ferr := fill()
			if ferr != nil {
				return res, ferr
			}
			if more {
				continue
			}
			if err == errShortFrame {
				bad = "frame cut off by end of file"
			}
			break
		}
		if err == errEnd {
			break
		}
		if err != nil {
			bad = err.Error()
			break
		}
		if typ != frameRecord && typ != frameLast {
			bad = fmt.Sprintf("frame type %d in a segment", typ)
			break
		}
		if derr := checkRecord(payload); derr != nil {
			bad = "undecodable record: " + derr.Error()
			break
		}
		at := recordReceivedAt(payload)
		if groupRecords == 0 {
			gFirst, gLast = at, at
		} else {
			gFirst, gLast = min(gFirst, at), max(gLast, at)
		}
		groupRecords++
		pos += int64(n)
		if typ == frameLast {
			if res.records == 0 {
				res.firstAt, res.lastAt = gFirst, gLast
			} else {
				res.firstAt, res.lastAt = min(res.firstAt, gFirst), max(res.lastAt, gLast)
			}
			res.records += groupRecords
			res.end = pos
			groupRecords, gFirst, gLast = 0, 0, 0
		}
	}
	if bad == "" && groupRecords > 0 {
		bad = "group without its last frame"
	}
	// Whatever follows the last complete group should be zeros (or nothing).
	dEnd, err := lastNonZero(f, res.end, size)
	if err != nil {
		return res, fmt.Errorf("read %s: %w", name, err)
	}
	if dEnd > res.end {
		if bad == "" {
			bad = "bytes after the end of data"
		}
		res.damage = &CorruptionError{Segment: seq, File: name, Offset: res.end, Reason: bad}
		res.damageEnd = dEnd
	}
	return res, nil
}

// lastNonZero returns one past the offset of the last non-zero byte in
// [from, size), or from if there is none.
func lastNonZero(f vfs.File, from, size int64) (int64, error) {
	ds, ok := f.(vfs.DataSeeker)
	if !ok {
		return readLastNonZero(f, from, size)
	}
	// Space reserved for the segment and never written reads as zeros: a
	// file system that tracks it (ext4, XFS) lets the search skip it
	// instead of reading tens of MiB of zeros at every open. It reports
	// cached pages as data too, and reading brings pages in (readahead), so
	// the regions that may hold data are all listed before any is read.
	var regions [][2]int64
	for pos := from; pos < size; {
		off, err := ds.SeekData(pos)
		if errors.Is(err, io.EOF) || (err == nil && off >= size) {
			break
		}
		if err != nil || off < pos || len(regions) == maxDataRegions {
			return readLastNonZero(f, from, size) // the file system cannot tell
		}
		end, err := ds.SeekHole(off)
		if err != nil || end <= off {
			return readLastNonZero(f, from, size)
		}
		end = min(end, size)
		regions = append(regions, [2]int64{off, end})
		pos = end
	}
	for i := len(regions) - 1; i >= 0; i-- {
		e, err := readLastNonZero(f, regions[i][0], regions[i][1])
		if err != nil || e > regions[i][0] {
			return e, err
		}
	}
	return from, nil
}

// maxDataRegions bounds the regions lastNonZero lists; past it, it reads
// everything.
const maxDataRegions = 1024

// readLastNonZero is lastNonZero by reading every byte.
func readLastNonZero(f vfs.File, from, size int64) (int64, error) {
	buf := make([]byte, zeroChunk)
	for end := size; end > from; {
		start := max(from, end-int64(len(buf)))
		b := buf[:end-start]
		n, err := f.ReadAt(b, start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if n < len(b) {
			// The file is shorter than expected; look at what is there.
			end = start + int64(n)
			b = b[:n]
			if n == 0 {
				continue
			}
		}
		if bytes.Equal(b, zeros[:len(b)]) { // the common case, at memcmp speed
			end = start
			continue
		}
		for j := len(b) - 1; j >= 0; j-- {
			if b[j] != 0 {
				return start + int64(j) + 1, nil
			}
		}
	}
	return from, nil
}

// zeroChunk is how much of a segment's unused (zero) tail lastNonZero reads
// at a time.
const zeroChunk = 1 << 20

var zeros = make([]byte, zeroChunk)
