package spool

import (
	"context"
	"errors"
	"runtime"
	"testing"
)

// heapAfterBacklog writes n records, reopens the spool, reads them all with
// a Reader, and returns the live heap at the end.
func heapAfterBacklog(t *testing.T, n int) uint64 {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{Sync: SyncNone, SegmentSize: 4 << 20})
	g := make([]Record, 100)
	for i := range g {
		g[i] = benchRecord(i)
	}
	for i := 0; i < n; i += len(g) {
		if err := s.Append(context.Background(), g); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = mustOpen(t, dir, Options{Sync: SyncNone, SegmentSize: 4 << 20})
	defer s.Close()
	r := s.NewReader(Position{})
	defer r.Close()
	read := 0
	for {
		_, err := r.TryNext()
		if errors.Is(err, ErrNoMore) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		read++
	}
	if read != n {
		t.Fatalf("read %d of %d", read, n)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(s)
	runtime.KeepAlive(r)
	return ms.HeapAlloc
}

// TestMemoryIndependentOfBacklog checks that the live heap of an open spool
// and a reader that went through it does not grow with the backlog: 20x the
// records may cost at most a few MiB more (per-segment metadata).
func TestMemoryIndependentOfBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~200 MB")
	}
	small := heapAfterBacklog(t, 30_000)
	big := heapAfterBacklog(t, 600_000)
	t.Logf("live heap: %d KiB after 30k records, %d KiB after 600k", small>>10, big>>10)
	if big > small+4<<20 {
		t.Fatalf("live heap grew from %d to %d bytes with the backlog", small, big)
	}
}
