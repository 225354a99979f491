package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"

	"github.com/trackd/trackd/internal/vfs"
)

const (
	manifestName = "MANIFEST"
	lockName     = "LOCK"
	cursorPrefix = "cursor."
	tmpSuffix    = ".tmp"
	damagedDir   = "damaged"
	// maxMetaPayload bounds a metadata file's frame (a MANIFEST of ~500k
	// sealed segments).
	maxMetaPayload = 64 << 20
	maxMetaFile    = frameHeaderSize + maxMetaPayload
)

// readFrameFile reads a metadata file holding one frame of type typ and
// returns its payload. A missing file is os.ErrNotExist; a damaged one is a
// *CorruptionError.
func readFrameFile(fsys vfs.FS, dir, name string, typ byte) ([]byte, error) {
	f, err := fsys.OpenFile(path.Join(dir, name), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetaFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	gotTyp, payload, n, err := decodeFrameLimit(b, maxMetaPayload)
	switch {
	case errors.Is(err, errEnd):
		return nil, &CorruptionError{File: name, Reason: "empty or zeroed file"}
	case err != nil:
		return nil, &CorruptionError{File: name, Reason: err.Error()}
	case gotTyp != typ:
		return nil, &CorruptionError{File: name, Reason: fmt.Sprintf("frame type %d, want %d", gotTyp, typ)}
	case n != len(b):
		return nil, &CorruptionError{File: name, Offset: int64(n), Reason: "bytes after the frame"}
	}
	return payload, nil
}

// manifest is the MANIFEST's content (FORMAT.md §5).
type manifest struct {
	Version  int           `json:"version"`
	FirstSeq uint64        `json:"first_seq"`
	Sealed   []sealedEntry `json:"sealed"`
	// Open, written by a clean Close, vouches for the first Size bytes of
	// the open segment Seq (with their records and times), so that the
	// next open scans only what follows them. The segment is append-only:
	// what a checkpoint vouches for stays true until the segment is sealed
	// (then Seq is no longer the open segment and it is ignored).
	Open *sealedEntry `json:"open,omitempty"`
}

// sealedEntry describes a sealed segment.
type sealedEntry struct {
	Seq     uint64 `json:"seq"`
	Size    int64  `json:"size"`
	Records int64  `json:"records"`
	FirstAt int64  `json:"first_at"`
	LastAt  int64  `json:"last_at"`
	AckedAt int64  `json:"acked_at"`
	// Created, in a checkpoint (manifest "open") only, is the creation
	// time in the segment's header: it ties the checkpoint to that file.
	Created int64 `json:"created,omitempty"`
}

func writeManifest(fsys vfs.FS, dir string, m *manifest) error {
	m.Version = 1
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxMetaPayload {
		return fmt.Errorf("manifest of %d segments is %d bytes, over %d: use larger segments", len(m.Sealed), len(b), maxMetaPayload)
	}
	return vfs.WriteFileAtomic(fsys, dir, manifestName, appendFrame(nil, frameManifest, b))
}

func readManifest(fsys vfs.FS, dir string) (*manifest, error) {
	p, err := readFrameFile(fsys, dir, manifestName, frameManifest)
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, &CorruptionError{File: manifestName, Offset: frameHeaderSize, Reason: "bad manifest: " + err.Error()}
	}
	if m.FirstSeq == 0 {
		return nil, &CorruptionError{File: manifestName, Reason: "first_seq is 0"}
	}
	if m.Version != 1 {
		return nil, &CorruptionError{File: manifestName, Reason: fmt.Sprintf("unsupported manifest version %d", m.Version)}
	}
	for i, e := range m.Sealed {
		if e.Size < segmentHeaderSize || (i > 0 && e.Seq <= m.Sealed[i-1].Seq) || e.Seq < m.FirstSeq {
			return nil, &CorruptionError{File: manifestName, Reason: fmt.Sprintf("bad sealed entry for segment %d", e.Seq)}
		}
	}
	return &m, nil
}

// Position is a place in the spool: byte Offset of segment Seq. The zero
// Position is the start of the spool.
type Position struct {
	Seq    uint64 `json:"seq"`
	Offset int64  `json:"offset"`
}

// Less reports whether p is before q.
func (p Position) Less(q Position) bool {
	return p.Seq < q.Seq || (p.Seq == q.Seq && p.Offset < q.Offset)
}

func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Seq, p.Offset) }

// cursorFile is a cursor file's content (FORMAT.md §6).
type cursorFile struct {
	Name string `json:"name"`
	Position
	UpdatedAt int64 `json:"updated_at"`
}

var cursorNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ValidCursorName reports whether name can name a cursor.
func ValidCursorName(name string) bool { return cursorNameRE.MatchString(name) }

func writeCursor(fsys vfs.FS, dir string, c cursorFile) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return vfs.WriteFileAtomic(fsys, dir, cursorPrefix+c.Name, appendFrame(nil, frameCursor, b))
}

func readCursor(fsys vfs.FS, dir, name string) (cursorFile, error) {
	var c cursorFile
	p, err := readFrameFile(fsys, dir, cursorPrefix+name, frameCursor)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(p, &c); err != nil || c.Name != name {
		return cursorFile{}, &CorruptionError{File: cursorPrefix + name, Offset: frameHeaderSize, Reason: "bad cursor"}
	}
	return c, nil
}
