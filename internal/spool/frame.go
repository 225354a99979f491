package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Frame types; see FORMAT.md §3.
const (
	frameInvalid  byte = 0 // zeroed space: end of data
	frameRecord   byte = 1 // a record, more of its group follow
	frameLast     byte = 2 // a record, the last of its group
	frameManifest byte = 3
	frameCursor   byte = 4
)

const (
	frameHeaderSize = 9
	// MaxFramePayload is the largest frame payload the format allows. A
	// record (body plus metadata) must fit in one frame.
	MaxFramePayload = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends one frame to dst.
func appendFrame(dst []byte, typ byte, payload []byte) []byte {
	var h [frameHeaderSize]byte
	h[0] = typ
	binary.LittleEndian.PutUint32(h[1:5], uint32(len(payload)))
	crc := crc32.Update(crc32.Update(0, castagnoli, h[:5]), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[5:9], crc)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// errEnd reports zeroed space where a frame would start: the end of data.
var errEnd = errors.New("end of data")

// frameError describes why bytes do not form a valid frame.
type frameError struct{ reason string }

func (e *frameError) Error() string { return e.reason }

// decodeFrame decodes the frame at the start of b. It returns the frame's
// type, its payload (aliasing b) and its total size. It returns errEnd if b
// starts with a zero type byte, io.ErrUnexpectedEOF-like *frameError if b is
// too short for the frame it announces, and a *frameError for anything else
// that is not a valid frame. It never allocates.
func decodeFrame(b []byte) (typ byte, payload []byte, size int, err error) {
	return decodeFrameLimit(b, MaxFramePayload)
}

// decodeFrameLimit is decodeFrame with another payload limit (metadata
// files may be larger than a record frame).
func decodeFrameLimit(b []byte, limit uint32) (typ byte, payload []byte, size int, err error) {
	if len(b) == 0 {
		return 0, nil, 0, errEnd
	}
	if b[0] == frameInvalid {
		return 0, nil, 0, errEnd
	}
	if len(b) < frameHeaderSize {
		return 0, nil, 0, errShortFrame
	}
	typ = b[0]
	if typ > frameCursor {
		return 0, nil, 0, errFrameType
	}
	n := binary.LittleEndian.Uint32(b[1:5])
	if n > limit {
		return 0, nil, 0, errFrameTooLong
	}
	if uint64(len(b)-frameHeaderSize) < uint64(n) {
		return 0, nil, 0, errShortFrame
	}
	payload = b[frameHeaderSize : frameHeaderSize+int(n)]
	want := binary.LittleEndian.Uint32(b[5:9])
	if crc32.Update(crc32.Update(0, castagnoli, b[:5]), castagnoli, payload) != want {
		return 0, nil, 0, errFrameChecksum
	}
	return typ, payload, frameHeaderSize + int(n), nil
}

// Frame decoding errors; static so decoding never allocates.
var (
	errShortFrame    = &frameError{"frame cut off by end of data"}
	errFrameType     = &frameError{"unknown frame type"}
	errFrameTooLong  = &frameError{"frame length over the limit"}
	errFrameChecksum = &frameError{"frame checksum mismatch"}
)

// CorruptionError reports damaged bytes in a spool file.
type CorruptionError struct {
	// Segment is the segment's sequence number, 0 for a metadata file.
	Segment uint64
	// File is the file's name within the spool directory.
	File string
	// Offset is the byte offset where the damage starts.
	Offset int64
	// Reason says what is wrong.
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("spool: corruption in %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// appendFrameFunc appends a frame whose n-byte payload enc appends to dst,
// so a record is encoded straight into the output buffer.
func appendFrameFunc(dst []byte, typ byte, n int, enc func([]byte) []byte) []byte {
	start := len(dst)
	dst = append(dst, typ, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = enc(dst)
	if got := len(dst) - start - frameHeaderSize; got != n {
		panic(fmt.Sprintf("spool: record encoded to %d bytes, sized %d", got, n))
	}
	h := dst[start : start+frameHeaderSize]
	binary.LittleEndian.PutUint32(h[1:5], uint32(n))
	crc := crc32.Update(crc32.Update(0, castagnoli, h[:5]), castagnoli, dst[start+frameHeaderSize:])
	binary.LittleEndian.PutUint32(h[5:9], crc)
	return dst
}
