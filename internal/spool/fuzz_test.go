package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path"
	"runtime"
	"testing"

	"github.com/trackd/trackd/internal/vfs"
)

// validFrame is an independent check of a frame's bytes: the CRC over type,
// length and payload, computed here without decodeFrame.
func validFrame(b []byte) bool {
	if len(b) < frameHeaderSize {
		return false
	}
	n := binary.LittleEndian.Uint32(b[1:5])
	if int(n) != len(b)-frameHeaderSize || n > MaxFramePayload {
		return false
	}
	c := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	c.Write(b[:5])
	c.Write(b[9:])
	return c.Sum32() == binary.LittleEndian.Uint32(b[5:9])
}

func FuzzDecodeFrame(f *testing.F) {
	r := rec(1)
	f.Add(appendFrame(nil, frameLast, r.appendTo(nil)))
	f.Add(appendFrame(nil, frameRecord, nil))
	f.Add([]byte{frameLast, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Add(make([]byte, 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, payload, n, err := decodeFrame(b)
		if err != nil {
			return
		}
		if n > len(b) || n > frameHeaderSize+MaxFramePayload || n != frameHeaderSize+len(payload) {
			t.Fatalf("frame size %d of %d bytes", n, len(b))
		}
		if !validFrame(b[:n]) || typ == frameInvalid {
			t.Fatalf("decodeFrame accepted a frame that fails its CRC")
		}
		if rec, err := decodeRecord(payload); err == nil {
			// A decoded record re-encodes to something that decodes the same.
			again, err := decodeRecord(rec.appendTo(nil))
			if err != nil || !sameRecord(rec, again) {
				t.Fatalf("record does not round-trip: %v", err)
			}
		}
	})
}

func TestDecodeFrameHugeLengthDoesNotAllocate(t *testing.T) {
	b := []byte{frameLast, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5}
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, _, err := decodeFrame(b); err == nil {
			t.Fatal("accepted a frame longer than its data")
		}
	})
	if allocs != 0 {
		t.Fatalf("decodeFrame allocated %v times", allocs)
	}
}

// FuzzRecover writes arbitrary bytes as the open segment (after a valid
// header, or instead of it) and opens the spool: recovery must not panic,
// must not allocate in proportion to lengths the bytes claim, and every
// record a reader returns must be a frame that passes its CRC.
func FuzzRecover(f *testing.F) {
	var seg []byte
	for i := 0; i < 5; i++ {
		r := rec(i)
		seg = appendFrame(seg, frameLast, r.appendTo(nil))
	}
	f.Add(seg, true)
	f.Add(seg[:len(seg)-3], true)
	f.Add(append(bytes.Clone(seg), 0, 0, 0, 7, 7), true)
	f.Add(append(encodeSegmentHeader(1, 0), seg...), false)
	f.Add([]byte{frameRecord, 0xff, 0xff, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, data []byte, withHeader bool) {
		fsys := vfs.NewMemFS()
		dir := "/spool"
		if err := fsys.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		content := data
		if withHeader {
			content = append(encodeSegmentHeader(1, 0), data...)
		}
		fl, err := fsys.OpenFile(path.Join(dir, segmentName(1)), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fl.Write(content)
		fl.Sync()
		fl.Close()
		fsys.SyncDir(dir)

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, ro := range []bool{true, false} {
			s, err := Open(dir, Options{FS: fsys, ReadOnly: ro, Sync: SyncNone})
			if err != nil {
				t.Fatalf("open (read-only %v): %v", ro, err)
			}
			r := s.NewReader(Position{})
			for {
				at := r.Pos()
				_, err := r.TryNext()
				if errors.Is(err, ErrNoMore) {
					break
				}
				var ce *CorruptionError
				if errors.As(err, &ce) {
					r.SkipSegment()
					continue
				}
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if at.Seq == 0 || at.Offset < segmentHeaderSize {
					at = Position{Seq: 1, Offset: segmentHeaderSize}
				}
				end := r.Pos().Offset
				if at.Seq != 1 || r.Pos().Seq != 1 || end > int64(len(content)) || !validFrame(content[at.Offset:end]) {
					t.Fatalf("returned a record at %v..%v that is not a valid frame of the input", at, r.Pos())
				}
			}
			r.Close()
			s.Close()
		}
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20+uint64(4*len(content)) {
			t.Fatalf("recovery allocated %d bytes for %d bytes of input", grew, len(content))
		}
	})
}

// TestWriteSampleSpool writes a small spool with a cursor and checks it
// verifies clean. With TRACKD_TEST_SPOOL_OUT set it writes it there (as a
// data dir), for CI to run `trackd spool verify` and `dump` on it.
func TestWriteSampleSpool(t *testing.T) {
	dataDir := os.Getenv("TRACKD_TEST_SPOOL_OUT")
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	dir := path.Join(dataDir, "spool")
	s := mustOpen(t, dir, Options{SegmentSize: 1 << 20})
	ctx := context.Background()
	for i := 0; i < 20000; i += 5 {
		if err := s.Append(ctx, []Record{rec(i), rec(i + 1), rec(i + 2), rec(i + 3), rec(i + 4)}); err != nil {
			t.Fatal(err)
		}
	}
	r := s.NewReader(Position{})
	for i := 0; i < 1000; i++ {
		if _, err := r.TryNext(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetCursor("jetstream", r.Pos()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, Options{ReadOnly: true, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rep := v.Report()
	if !rep.Clean() || rep.Records != 20000 || rep.Segments < 2 {
		t.Fatalf("verify report: %+v", rep)
	}
}
