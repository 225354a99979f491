package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/vfs"
)

func rec(i int) Record {
	return Record{
		ID:         fmt.Sprintf("id-%08d", i),
		Workspace:  "ws1",
		Op:         "v1.event",
		ReceivedAt: int64(1_700_000_000_000_000_000 + i),
		Meta:       []KV{{"request_id", fmt.Sprintf("req-%d", i)}, {"user_agent", "test"}},
		Body:       fmt.Appendf(nil, `{"name":"purchase","data":{"n":%d}}`, i),
	}
}

func mustOpen(t *testing.T, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// readAll reads every committed record from the start.
func readAll(t *testing.T, s *Spool) []Record {
	t.Helper()
	r := s.NewReader(Position{})
	defer r.Close()
	var out []Record
	for {
		rec, err := r.TryNext()
		if errors.Is(err, ErrNoMore) {
			return out
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, rec)
	}
}

func sameRecord(a, b Record) bool {
	if a.ID != b.ID || a.Workspace != b.Workspace || a.Op != b.Op || a.ReceivedAt != b.ReceivedAt || string(a.Body) != string(b.Body) || len(a.Meta) != len(b.Meta) {
		return false
	}
	for i := range a.Meta {
		if a.Meta[i] != b.Meta[i] {
			return false
		}
	}
	return true
}

func TestAppendReadReopen(t *testing.T) {
	for _, mode := range []SyncMode{SyncData, SyncFull, SyncNone} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SegmentSize: 2 << 20}
			s := mustOpen(t, dir, opts)
			var want []Record
			ctx := context.Background()
			for i := 0; i < 20000; i += 4 {
				g := []Record{rec(i), rec(i + 1), rec(i + 2), rec(i + 3)}
				if err := s.Append(ctx, g); err != nil {
					t.Fatal(err)
				}
				want = append(want, g...)
			}
			check := func(s *Spool) {
				got := readAll(t, s)
				if len(got) != len(want) {
					t.Fatalf("read %d records, want %d", len(got), len(want))
				}
				for i := range got {
					if !sameRecord(got[i], want[i]) {
						t.Fatalf("record %d: got %+v want %+v", i, got[i], want[i])
					}
				}
			}
			check(s)
			st := s.Stats()
			if st.Segments < 2 || st.Records != int64(len(want)) {
				t.Fatalf("stats %+v: want >1 segment and %d records", st, len(want))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, dir, opts)
			defer s.Close()
			if rep := s.Report(); !rep.Clean() {
				t.Fatalf("clean reopen reported damage: %v", rep.Damage[0])
			}
			check(s)
			if st2 := s.Stats(); st2.Records != st.Records || st2.Bytes != st.Bytes {
				t.Fatalf("after reopen stats %+v, before %+v", st2, st)
			}
		})
	}
}

func TestLockExcludesSecondOpener(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	defer s.Close()
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	_, err = Open(dir, Options{ReadOnly: true})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only Open while held: %v, want ErrLocked", err)
	}
}

func TestReaderTailsWriter(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{SegmentSize: 1 << 20, Sync: SyncNone})
	defer s.Close()
	const n = 30000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := s.Append(ctx, []Record{rec(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	r := s.NewReader(Position{})
	defer r.Close()
	for i := 0; i < n; i++ {
		got, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next %d: %v", i, err)
		}
		if got.ID != rec(i).ID {
			t.Fatalf("record %d: got %s", i, got.ID)
		}
	}
	wg.Wait()
}

func TestCursorAndRetention(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	opts := Options{SegmentSize: 1 << 20, Retention: time.Minute, Now: clock, Sync: SyncNone}
	s := mustOpen(t, dir, opts)
	ctx := context.Background()
	for i := 0; i < 20000; i++ {
		if err := s.Append(ctx, []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	segs := s.Stats().Segments
	if segs < 3 {
		t.Fatalf("want several segments, have %d", segs)
	}
	if n, err := s.Collect(); err != nil || n != 0 {
		t.Fatalf("Collect with no cursor: %d, %v; want nothing deleted", n, err)
	}
	r := s.NewReader(Position{})
	for i := 0; i < 15000; i++ {
		if _, err := r.TryNext(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetCursor("dest", r.Pos()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Collect(); err != nil || n != 0 {
		t.Fatalf("Collect inside the window: %d, %v; want nothing deleted", n, err)
	}
	now = now.Add(2 * time.Minute)
	n, err := s.Collect()
	if err != nil || n == 0 {
		t.Fatalf("Collect after the window: %d, %v; want segments deleted", n, err)
	}
	// A second cursor at the start holds everything else back.
	if err := s.SetCursor("other", Position{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	if n, err := s.Collect(); err != nil || n != 0 {
		t.Fatalf("Collect with a cursor at the start: %d, %v", n, err)
	}
	got := readAll(t, s)
	if len(got) == 0 || got[len(got)-1].ID != rec(19999).ID {
		t.Fatalf("records after retention: %d", len(got))
	}
	first := got[0].ID
	r.Close()
	s.Close()

	s = mustOpen(t, dir, opts)
	defer s.Close()
	if !s.Report().Clean() {
		t.Fatalf("damage after retention: %v", s.Report().Damage)
	}
	if p, ok := s.Cursor("dest"); !ok || p.Seq == 0 {
		t.Fatalf("cursor after reopen: %v %v", p, ok)
	}
	got = readAll(t, s)
	if got[0].ID != first || got[len(got)-1].ID != rec(19999).ID {
		t.Fatalf("after reopen: first %s last %s", got[0].ID, got[len(got)-1].ID)
	}
}

func TestBudgetBackpressure(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{SegmentSize: 1 << 20, MaxBytes: 3 << 20, Retention: -1, Sync: SyncNone})
	defer s.Close()
	ctx := context.Background()
	var i int
	for ; i < 1_000_000; i++ {
		err := s.Append(ctx, []Record{rec(i)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if i == 1_000_000 {
		t.Fatal("budget never reached")
	}
	// Consume everything, let retention free space: appends work again.
	r := s.NewReader(Position{})
	defer r.Close()
	for {
		if _, err := r.TryNext(); err != nil {
			break
		}
	}
	if err := s.SetCursor("d", r.Pos()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Collect(); err != nil || n == 0 {
		t.Fatalf("Collect: %d %v", n, err)
	}
	if err := s.Append(ctx, []Record{rec(i)}); err != nil {
		t.Fatalf("Append after space returned: %v", err)
	}
}

func TestRecordTooLarge(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{Sync: SyncNone})
	defer s.Close()
	big := rec(1)
	big.Body = make([]byte, MaxFramePayload)
	err := s.Append(context.Background(), []Record{rec(0), big})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
	if n := len(readAll(t, s)); n != 0 {
		t.Fatalf("partial group stored: %d records", n)
	}
}

var _ vfs.FS = vfs.OS{}

func TestBehind(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{SegmentSize: 1 << 20, Sync: SyncNone})
	defer s.Close()
	for i := 0; i < 20000; i++ {
		if err := s.Append(context.Background(), []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if got, want := s.Behind(Position{}), st.Bytes-int64(st.Segments)*segmentHeaderSize; got != want {
		t.Fatalf("Behind(start) = %d, want %d", got, want)
	}
	if got := s.Behind(st.Tail); got != 0 {
		t.Fatalf("Behind(tail) = %d", got)
	}
	r := s.NewReader(Position{})
	defer r.Close()
	total := s.Behind(Position{})
	var read int64
	for i := 0; i < 12345; i++ {
		got, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		read += int64(frameHeaderSize + got.encodedSize())
		if b := s.Behind(r.Pos()); b != total-read {
			t.Fatalf("after %d records: Behind = %d, want %d", i+1, b, total-read)
		}
	}
}

// TestAppendWaitsForItsCommit: a context cancelled while the group's commit
// is under way does not make Append report failure: the group is stored,
// and Append says so (an error would make the client send it again).
func TestAppendWaitsForItsCommit(t *testing.T) {
	st := newStallFS()
	s := mustOpen(t, t.TempDir(), Options{FS: st.fs})
	defer s.Close()
	st.stall()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Append(ctx, []Record{{ID: "r1", Body: []byte(`{}`)}}) }()
	<-st.inSync // the group is being synced
	cancel()
	st.release()
	if err := <-done; err != nil {
		t.Fatalf("Append: %v, want nil: the group is stored", err)
	}
	if got := readAll(t, s); len(got) != 1 || got[0].ID != "r1" {
		t.Fatalf("stored %v", got)
	}
}

// TestStalledDiskBoundsPending: while a sync does not return, groups queue
// for the next commit only up to MaxPending bytes (ErrBusy after that, so a
// stalled disk holds bounded memory), and Stats reports how long the
// commit has been running.
func TestStalledDiskBoundsPending(t *testing.T) {
	st := newStallFS()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := mustOpen(t, t.TempDir(), Options{FS: st.fs, MaxPending: 1000, Now: clock})
	defer s.Close()
	group := func(id string) []Record { return []Record{{ID: id, Body: bytes.Repeat([]byte("x"), 560)}} }
	st.stall()
	done := make(chan error, 1)
	go func() { done <- s.Append(context.Background(), group("a")) }()
	<-st.inSync // a is being synced, and the sync does not return
	mu.Lock()
	now = now.Add(15 * time.Second)
	mu.Unlock()
	if d := s.Stats().CommitRunning; d != 15*time.Second {
		t.Errorf("CommitRunning %v, want 15s", d)
	}
	// b and c (~600 bytes each): whichever comes second would make more
	// than 1000 bytes wait behind the stalled commit, and is refused at
	// once; the other waits for the sync.
	later := make(chan error, 2)
	for _, id := range []string{"b", "c"} {
		go func() { later <- s.Append(context.Background(), group(id)) }()
	}
	if err := <-later; !errors.Is(err, ErrBusy) {
		t.Fatalf("first answer while the disk stalls: %v, want ErrBusy", err)
	}
	st.release()
	for _, err := range []error{<-done, <-later} {
		if err != nil {
			t.Errorf("Append: %v", err)
		}
	}
	if got := readAll(t, s); len(got) != 2 {
		t.Fatalf("stored %d records, want the 2 admitted", len(got))
	}
	if d := s.Stats().CommitRunning; d != 0 {
		t.Errorf("CommitRunning %v after the commits, want 0", d)
	}
}

// TestLargeGroupAdmittedWhenNothingWaits: MaxPending counts what waits
// behind the running commit only, so a group larger than it is admitted
// while a commit runs and nothing else waits (it is never refused for
// good by a stream of small ones).
func TestLargeGroupAdmittedWhenNothingWaits(t *testing.T) {
	st := newStallFS()
	s := mustOpen(t, t.TempDir(), Options{FS: st.fs, MaxPending: 1000})
	defer s.Close()
	st.stall()
	done := make(chan error, 2)
	go func() {
		done <- s.Append(context.Background(), []Record{{ID: "a", Body: bytes.Repeat([]byte("x"), 2000)}})
	}()
	<-st.inSync // a (2 KB, over MaxPending) is being synced
	go func() {
		done <- s.Append(context.Background(), []Record{{ID: "b", Body: bytes.Repeat([]byte("y"), 3000)}})
	}()
	st.release()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if got := readAll(t, s); len(got) != 2 {
		t.Fatalf("stored %d", len(got))
	}
}

// TestReadOnlyChangesNothing: opening and closing a spool read-only (what
// `trackd spool verify` and `dump` do) leaves every file as it was, even
// a damaged manifest: a rewritten one made a later serve cut records.
func TestReadOnlyChangesNothing(t *testing.T) {
	dir := closedSpool(t, 20)
	if err := os.Truncate(filepath.Join(dir, "MANIFEST"), 20); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				m[e.Name()] = string(b)
			}
		}
		return m
	}
	before := snapshot()
	for _, deep := range []bool{false, true} {
		ro, err := Open(dir, Options{ReadOnly: true, Deep: deep})
		if err != nil {
			t.Fatal(err)
		}
		if err := ro.Close(); err != nil {
			t.Fatal(err)
		}
	}
	after := snapshot()
	for name, b := range before {
		if after[name] != b {
			t.Errorf("%s changed by a read-only open", name)
		}
	}
}

// TestSkipDamageKeepsThisProcessAppends: damage in what an earlier process
// wrote to the open segment (a checkpoint vouched for it, so Open did not
// read it) makes a reader skip to where this process's appends begin, not
// past the segment: those records are intact and must be read (and
// forwarded) now, not skipped with the rest of the segment.
func TestSkipDamageKeepsThisProcessAppends(t *testing.T) {
	dir := closedSpool(t, 20)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[2000] ^= 0xff // inside an early record
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, dir, Options{})
	defer s.Close()
	for i := 100; i < 105; i++ {
		if err := s.Append(context.Background(), []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r := s.NewReader(Position{})
	defer r.Close()
	var ids []string
	damaged := false
	for {
		got, err := r.TryNext()
		var ce *CorruptionError
		switch {
		case errors.Is(err, ErrNoMore):
			if !damaged {
				t.Fatal("the damage was not met")
			}
			want := []string{rec(100).ID, rec(101).ID, rec(102).ID, rec(103).ID, rec(104).ID}
			if len(ids) < 5 || !slices.Equal(ids[len(ids)-5:], want) {
				t.Fatalf("read %v; want it to end with this process's %v", ids, want)
			}
			return
		case errors.As(err, &ce):
			damaged = true
			r.SkipSegment()
		case err != nil:
			t.Fatal(err)
		default:
			ids = append(ids, got.ID)
		}
	}
}

// stallFS is a file system whose syncs, once stall is called, do not
// return until release: a disk that stopped answering. inSync receives when
// a sync is stalled.
type stallFS struct {
	fs      vfs.FS
	inSync  chan struct{}
	stalled atomic.Bool
	done    chan struct{}
}

func newStallFS() *stallFS {
	st := &stallFS{inSync: make(chan struct{}, 1), done: make(chan struct{})}
	st.fs = vfs.NewErrorFS(vfs.OS{}, func(op vfs.Op, name string) error {
		if op == vfs.OpSync && st.stalled.Load() {
			select {
			case st.inSync <- struct{}{}:
			default:
			}
			<-st.done
		}
		return nil
	})
	return st
}

func (st *stallFS) stall() { st.stalled.Store(true) }

// release lets the stalled syncs return, and later ones pass.
func (st *stallFS) release() {
	st.stalled.Store(false)
	close(st.done)
}

// closedSpool makes a spool of n records (rec(0) to rec(n-1)), closed, and
// returns its directory.
func closedSpool(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	for i := range n {
		if err := s.Append(context.Background(), []Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}
