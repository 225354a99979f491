package quarantine

import (
	"errors"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/vfs"
)

func TestPutListGetAndBound(t *testing.T) {
	fsys := vfs.NewMemFS()
	now := time.Unix(1_700_000_000, 0)
	q, err := Open("/data/quarantine", Options{FS: fsys, MaxEntries: 3, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := q.Put(Entry{Kind: KindPanic, Reason: "boom", BodyText: `{"a":1}`, Stack: "goroutine 1"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := q.Put(Entry{Kind: KindPanic}); !errors.Is(err, ErrFull) {
		t.Fatalf("Put past the bound: %v, want ErrFull", err)
	}
	got, err := q.List(KindPanic)
	if err != nil || len(got) != 3 || got[0] != ids[0] || got[2] != ids[2] || !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("List = %v, %v; ids %v", got, err, ids)
	}
	e, err := q.Get(KindPanic, ids[1])
	if err != nil || e.Reason != "boom" || e.BodyText != `{"a":1}` || !e.Time.Equal(now) {
		t.Fatalf("Get = %+v, %v", e, err)
	}
	if _, err := q.Get(KindPanic, "../x"); err == nil {
		t.Fatal("Get accepted a path")
	}

	// Entries are durable (the crash keeps only what was synced) and
	// counted again on open.
	q2, err := Open("/data/quarantine", Options{FS: fsys.Crash(vfs.CrashOptions{}), MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	if n := q2.Count(KindPanic); n != 3 {
		t.Fatalf("after a crash: %d entries, want 3", n)
	}
}
