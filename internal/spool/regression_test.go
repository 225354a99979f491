package spool

// Regression tests for the bugs a review of the spool found (each comment
// says what was wrong; each test failed before its fix).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/vfs"
)

// reviewCorrupt overwrites bytes of a file in a MemFS, durably.
func reviewCorrupt(t *testing.T, fsys *vfs.MemFS, name string, off int64, b []byte) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// Append accepts a record with more metadata pairs than checkRecord allows.
// The group is acknowledged, then recovery calls it "undecodable", cuts the
// open segment there and moves it and every later acknowledged group into
// damaged/.
func TestReviewMetaPairsOverLimitAckedThenCut(t *testing.T) {
	mem := vfs.NewMemFS()
	opts := Options{FS: mem, Retention: -1}
	s := mustOpen(t, crashDir, opts)
	ctx := context.Background()
	if err := s.Append(ctx, []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	big := rec(1)
	for i := 0; i < maxMetaPairs+1; i++ {
		big.Meta = append(big.Meta, KV{Key: fmt.Sprint("k", i), Value: "v"})
	}
	err := s.Append(ctx, []Record{big})
	if err != nil {
		return // rejected up front: fine
	}
	if err := s.Append(ctx, []Record{rec(2)}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpen(t, crashDir, opts)
	defer s.Close()
	r := s.NewReader(Position{})
	defer r.Close()
	var ids []string
	for {
		got, err := r.TryNext()
		if errors.Is(err, ErrNoMore) {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		ids = append(ids, got.ID)
	}
	if len(ids) != 3 {
		t.Fatalf("Append acknowledged 3 groups, a reopened spool holds %v; damage: %v", ids, s.Report().Damage)
	}
}

// A read-only open (trackd spool verify) must not change the directory, but
// Lock creates the LOCK file (and opens it O_RDWR, which fails on a read-only
// mount).
func TestReviewReadOnlyOpenCreatesLockFile(t *testing.T) {
	mem := vfs.NewMemFS()
	s := mustOpen(t, crashDir, Options{FS: mem})
	if err := s.Append(context.Background(), []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := mem.Remove(path.Join(crashDir, lockName)); err != nil {
		t.Fatal(err)
	}
	before, _ := mem.ReadDir(crashDir)
	ro, err := Open(crashDir, Options{FS: mem, ReadOnly: true, Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	after, _ := mem.ReadDir(crashDir)
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Fatalf("read-only open changed the directory: before %v after %v", before, after)
	}
}

// Recovery copies a torn tail to damaged/SEQ-OFFSET.bin with O_TRUNC. After
// a recovery the next commit starts at the same offset; if that write is
// torn too, the second recovery overwrites the first copy: damaged bytes are
// deleted, against FORMAT.md §1/§8.
func TestReviewRecoveryOverwritesEarlierDamagedCopy(t *testing.T) {
	mem := vfs.NewMemFS()
	opts := Options{FS: mem, Sync: SyncFull}
	s := mustOpen(t, crashDir, opts)
	if err := s.Append(context.Background(), []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	end := s.Stats().Tail.Offset
	s.Close()
	seg := path.Join(crashDir, segmentName(1))
	first := []byte("first torn tail, kept for forensics")
	reviewCorrupt(t, mem, seg, end, first)
	s = mustOpen(t, crashDir, opts)
	s.Close()
	second := []byte("second torn tail")
	reviewCorrupt(t, mem, seg, end, second)
	s = mustOpen(t, crashDir, opts)
	s.Close()

	names, _ := mem.ReadDir(path.Join(crashDir, damagedDir))
	found := false
	for _, n := range names {
		f, err := mem.OpenFile(path.Join(crashDir, damagedDir, n), os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(f)
		f.Close()
		if bytes.Contains(buf.Bytes(), first) {
			found = true
		}
	}
	if !found {
		t.Fatalf("the first damaged copy was overwritten; damaged/ holds %v", names)
	}
}

// A reader returns the first records of a group before it checks that the
// group's last frame is intact. In a sealed segment (trusted, not scanned at
// open) with a bad last frame, a destination receives a partial group,
// against FORMAT.md §3.
func TestReviewReaderReturnsPartialGroupFromSealedSegment(t *testing.T) {
	mem := vfs.NewMemFS()
	opts := Options{FS: mem, Sync: SyncFull, SegmentSize: 1, Retention: -1} // minimum size
	s := mustOpen(t, crashDir, opts)
	ctx := context.Background()
	group := groupRecords(1, 1, 3)
	if err := s.Append(ctx, group); err != nil {
		t.Fatal(err)
	}
	groupEnd := s.Stats().Tail.Offset
	filler := rec(100)
	filler.Body = make([]byte, MaxFramePayload-200)
	if err := s.Append(ctx, []Record{filler}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []Record{rec(101)}); err != nil { // rolls
		t.Fatal(err)
	}
	if st := s.Stats(); st.Tail.Seq != 2 {
		t.Fatalf("want segment 1 sealed, tail %v", st.Tail)
	}
	s.Close()
	// Bit rot in the payload of the group's last (type-2) frame.
	reviewCorrupt(t, mem, path.Join(crashDir, segmentName(1)), groupEnd-2, []byte{0xff})

	s = mustOpen(t, crashDir, opts)
	defer s.Close()
	r := s.NewReader(Position{})
	defer r.Close()
	var got []string
	for {
		rec, err := r.TryNext()
		if err != nil {
			break
		}
		got = append(got, rec.ID)
	}
	for _, id := range got {
		if strings.HasPrefix(id, "w1-g1-") {
			t.Fatalf("reader returned %v: records of a group whose last frame is damaged", got)
		}
	}
}

// Recovery drops a cursor whose file is damaged ("its destination restarts
// from the oldest record"), but then retention no longer waits for that
// destination: with any other cursor present, Collect deletes what the
// damaged destination never acknowledged.
func TestReviewDamagedCursorStopsHoldingRetention(t *testing.T) {
	mem := vfs.NewMemFS()
	opts := Options{FS: mem, Sync: SyncNone, SegmentSize: 1, Retention: -1}
	s := mustOpen(t, crashDir, opts)
	ctx := context.Background()
	n := 0
	for s.Stats().Segments < 4 {
		r := rec(n)
		r.Body = make([]byte, 200<<10)
		if err := s.Append(ctx, []Record{r}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := s.SetCursor("b", Position{Seq: 1, Offset: segmentHeaderSize}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor("a", s.Stats().Tail); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Damage cursor.b (a flipped bit: its CRC no longer matches).
	reviewCorrupt(t, mem, path.Join(crashDir, cursorPrefix+"b"), frameHeaderSize+2, []byte{'#'})

	s = mustOpen(t, crashDir, opts)
	defer s.Close()
	if _, ok := s.Cursor("b"); ok {
		t.Skip("damaged cursor kept")
	}
	if _, err := s.Collect(); err != nil {
		t.Fatal(err)
	}
	if got := len(readAll(t, s)); got != n {
		t.Fatalf("destination b (damaged cursor, restarts from the oldest record) can read %d of %d records it never acknowledged", got, n)
	}
}

// Two SetCursor calls for one name race: the forward-only check is made
// before cursorMu, so a lower position can be written after a higher one.
// The durable cursor then goes backwards while memory (and Collect) use the
// higher one.
func TestReviewConcurrentSetCursorDurableGoesBackward(t *testing.T) {
	mem := vfs.NewMemFS()
	block := make(chan struct{})
	entered := make(chan struct{})
	var once sync.Once
	inj := func(op vfs.Op, name string) error {
		if op == vfs.OpOpen && strings.HasSuffix(name, cursorPrefix+"d"+tmpSuffix) {
			first := false
			once.Do(func() { first = true })
			if first {
				close(entered)
				<-block
			}
		}
		return nil
	}
	opts := Options{FS: vfs.NewErrorFS(mem, inj), Sync: SyncNone}
	s := mustOpen(t, crashDir, opts)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if err := s.Append(ctx, []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	high := s.Stats().Tail
	low := Position{Seq: high.Seq, Offset: segmentHeaderSize}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.SetCursor("d", high) }()
	<-entered // high holds cursorMu, blocked writing its file
	go func() { defer wg.Done(); s.SetCursor("d", low) }()
	time.Sleep(100 * time.Millisecond) // low passed its check and waits on cursorMu
	close(block)
	wg.Wait()
	if p, _ := s.Cursor("d"); p != high {
		t.Fatalf("in-memory cursor %v, want %v", p, high)
	}
	s.Close()
	s = mustOpen(t, crashDir, Options{FS: mem, Sync: SyncNone})
	defer s.Close()
	if p, _ := s.Cursor("d"); p != high {
		t.Fatalf("durable cursor went backwards: %v after SetCursor(%v) and SetCursor(%v) both returned", p, high, low)
	}
}

// RemoveCursor does not validate its name: "cursor." + name is joined to
// the directory and cleaned, so a name with ".." removes other files.
func TestReviewRemoveCursorUnvalidatedName(t *testing.T) {
	mem := vfs.NewMemFS()
	s := mustOpen(t, crashDir, Options{FS: mem})
	defer s.Close()
	err := s.RemoveCursor("/../" + manifestName)
	if _, serr := mem.Stat(path.Join(crashDir, manifestName)); serr != nil {
		t.Fatalf("RemoveCursor(%q) = %v removed the MANIFEST", "/../"+manifestName, err)
	}
}

// writeManifest does not check the payload limit that readManifest
// enforces: a spool with more than ~9,500 sealed segments (e.g. a 1 TiB
// budget with 64 MiB segments) writes a MANIFEST that every later open
// rejects as corrupt, then rebuilds by scanning every segment and loses
// every acked_at.
func TestReviewLargeManifestUnreadable(t *testing.T) {
	mem := vfs.NewMemFS()
	if err := mem.MkdirAll(crashDir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := manifest{FirstSeq: 1}
	hdr := func(seq uint64) []byte { return encodeSegmentHeader(seq, 1) }
	const n = 12000
	for seq := uint64(1); seq <= n; seq++ {
		f, err := mem.OpenFile(path.Join(crashDir, segmentName(seq)), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(hdr(seq), 0)
		f.Close()
		m.Sealed = append(m.Sealed, sealedEntry{Seq: seq, Size: segmentHeaderSize, Records: 0, FirstAt: 1764143472000000000, LastAt: 1764143490000000000, AckedAt: 1764143490000000000})
	}
	if err := writeManifest(mem, crashDir, &m); err != nil {
		t.Fatalf("writeManifest: %v", err) // an error here would at least be honest
	}
	if _, err := readManifest(mem, crashDir); err != nil {
		t.Fatalf("a manifest of %d sealed segments written by writeManifest is unreadable: %v", n, err)
	}
}

// Crash (here: an error) during recovery after the torn last segment was
// moved to damaged/ but before the next segment was created: the next open
// creates a segment with the moved-aside sequence number again, though
// FORMAT.md §1 says numbers are never reused (and a later move-aside of the
// new one would rename over damaged/SEQ-0.bin).
func TestReviewMovedAsideSequenceReused(t *testing.T) {
	mem := vfs.NewMemFS()
	s := mustOpen(t, crashDir, Options{FS: mem})
	if err := s.Append(context.Background(), []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Segment 2 with a torn header, as a crash during its creation leaves.
	f, err := mem.OpenFile(path.Join(crashDir, segmentName(2)), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("TRKSP"), 0)
	f.Sync()
	f.Close()
	mem.SyncDir(crashDir)

	// Recovery moves 2 aside, then fails creating 3.
	inj := func(op vfs.Op, name string) error {
		if op == vfs.OpOpen && strings.HasSuffix(name, segmentName(3)) {
			return vfs.ErrInjectedIO
		}
		return nil
	}
	if _, err := Open(crashDir, Options{FS: vfs.NewErrorFS(mem, inj)}); err == nil {
		t.Fatal("open succeeded")
	}
	crashed := mem.Crash(vfs.CrashOptions{})
	s = mustOpen(t, crashDir, Options{FS: crashed})
	defer s.Close()
	if seq := s.Stats().Tail.Seq; seq <= 2 {
		t.Fatalf("open segment is %d, reusing the sequence number of the segment moved to damaged/", seq)
	}
}

// SetCursor, RemoveCursor and Collect do not check that the spool is
// closed. After Close released the LOCK another opener owns the directory,
// yet the closed Spool still rewrites its MANIFEST and deletes segments
// (serve.go's retention goroutine is only cancelled, not waited for, before
// sp.Close).
func TestReviewClosedSpoolStillMutatesDirectory(t *testing.T) {
	mem := vfs.NewMemFS()
	opts := Options{FS: mem, Sync: SyncNone, SegmentSize: 1, Retention: -1}
	s1 := mustOpen(t, crashDir, opts)
	ctx := context.Background()
	for s1.Stats().Segments < 3 {
		r := rec(0)
		r.Body = make([]byte, 300<<10)
		if err := s1.Append(ctx, []Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.SetCursor("a", s1.Stats().Tail); err != nil {
		t.Fatal(err)
	}
	s1.Close()

	s2 := mustOpen(t, crashDir, opts) // holds the lock now
	defer s2.Close()
	before, _ := mem.ReadDir(crashDir)
	n, errCollect := s1.Collect()
	errSet := s1.SetCursor("b", Position{})
	after, _ := mem.ReadDir(crashDir)
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Fatalf("closed spool changed a directory another Spool holds the lock on (SetCursor: %v, Collect: %d, %v): before %v after %v", errSet, n, errCollect, before, after)
	}
}

// Recovery moves a cursor that is past the end of the spool back to the end
// only in memory; the cursor file keeps the old position. Once new,
// acknowledged records grow the spool past that position, the next open
// accepts the stale cursor and the destination skips the new records
// before it. (Here the spool shrank because of bit rot in the open segment;
// SyncNone or a reused sequence number do it too.)
func TestReviewMovedBackCursorNotPersisted(t *testing.T) {
	mem := vfs.NewMemFS()
	opts := Options{FS: mem, Sync: SyncFull, Retention: -1}
	s := mustOpen(t, crashDir, opts)
	ctx := context.Background()
	var offs []int64
	for i := 0; i < 10; i++ {
		offs = append(offs, s.Stats().Tail.Offset)
		if err := s.Append(ctx, []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetCursor("d", s.Stats().Tail); err != nil {
		t.Fatal(err)
	}
	s.Close()
	reviewCorrupt(t, mem, path.Join(crashDir, segmentName(1)), offs[3]+frameHeaderSize+3, []byte{0xee})

	s = mustOpen(t, crashDir, opts)
	moved, _ := s.Cursor("d")
	var fresh []string
	for i := 100; i < 130; i++ {
		if err := s.Append(ctx, []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, rec(i).ID)
	}
	s.Close()

	s = mustOpen(t, crashDir, opts)
	defer s.Close()
	start, _ := s.Cursor("d")
	r := s.NewReader(start)
	defer r.Close()
	got := map[string]bool{}
	for {
		rec, err := r.TryNext()
		if err != nil {
			break
		}
		got[rec.ID] = true
	}
	for _, id := range fresh {
		if !got[id] {
			t.Fatalf("cursor was moved back to %v in memory, but reopened at %v: acknowledged record %s is behind the destination's cursor", moved, start, id)
		}
	}
}
