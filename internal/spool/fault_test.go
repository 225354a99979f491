package spool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/vfs"
)

// TestInjectedErrorsAreStickyAndNeverCorrupt fails writes, syncs, renames
// and file creation at many points under concurrent appends. The first
// failure must make every later Append fail with ErrFailed; after reopening
// on the same (uninjected) filesystem every acknowledged record is there, no
// group is partial, nothing is read twice, and appends work again.
func TestInjectedErrorsAreStickyAndNeverCorrupt(t *testing.T) {
	type fault struct {
		name    string
		err     error
		ops     []vfs.Op
		partial bool
	}
	faults := []fault{
		{"write ENOSPC partial", vfs.ErrInjectedNoSpace, []vfs.Op{vfs.OpWrite}, true},
		{"write EIO", vfs.ErrInjectedIO, []vfs.Op{vfs.OpWrite}, false},
		{"sync EIO", vfs.ErrInjectedIO, []vfs.Op{vfs.OpSync}, false},
		{"rename EIO", vfs.ErrInjectedIO, []vfs.Op{vfs.OpRename}, false},
		{"open ENOSPC", vfs.ErrInjectedNoSpace, []vfs.Op{vfs.OpOpen}, false},
		{"preallocate ENOSPC", vfs.ErrInjectedNoSpace, []vfs.Op{vfs.OpPreallocate}, false},
		{"truncate EIO", vfs.ErrInjectedIO, []vfs.Op{vfs.OpTruncate}, false},
		{"syncdir EIO", vfs.ErrInjectedIO, []vfs.Op{vfs.OpSyncDir}, false},
	}
	for _, f := range faults {
		for _, after := range []int{0, 3, 17, 60, 200} {
			t.Run(fmt.Sprintf("%s/after%d", f.name, after), func(t *testing.T) {
				mem := vfs.NewMemFS()
				// Open on a clean FS, then arm the injector.
				var armed sync.Mutex
				on := false
				inj := vfs.After(after, func(op vfs.Op, name string) error {
					armed.Lock()
					defer armed.Unlock()
					if !on || strings.HasSuffix(name, lockName) {
						return nil
					}
					return vfs.ErrorsOn(f.err, f.ops...)(op, name)
				})
				if f.partial {
					inj = vfs.PartialWrites(inj)
				}
				efs := vfs.NewErrorFS(mem, inj)
				opts := Options{FS: efs, SegmentSize: 1 << 20, Retention: -1}
				s := mustOpen(t, crashDir, opts)
				armed.Lock()
				on = true
				armed.Unlock()

				var mu sync.Mutex
				acked := map[string]bool{}
				var failures []error
				var wg sync.WaitGroup
				for w := 0; w < 4; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for g := 0; g < 150; g++ {
							recs := groupRecords(w, g, 1+g%4)
							// Big bodies so the segment rolls.
							for i := range recs {
								recs[i].Meta = append(recs[i].Meta, KV{"pad", strings.Repeat("x", 2000)})
							}
							err := s.Append(context.Background(), recs)
							mu.Lock()
							if err == nil {
								for _, r := range recs {
									acked[r.ID] = true
								}
							} else {
								failures = append(failures, err)
							}
							mu.Unlock()
							if g%25 == 0 {
								_ = s.SetCursor("dest", Position{})
								_, _ = s.Collect()
							}
						}
					}(w)
				}
				wg.Wait()
				if after == 0 && (f.ops[0] == vfs.OpWrite || f.ops[0] == vfs.OpSync) && len(failures) == 0 {
					t.Fatalf("no Append failed with %s injected from the start", f.name)
				}
				// The first failure is sticky: every later Append fails too.
				if len(failures) > 0 {
					if err := s.Append(context.Background(), groupRecords(9, 0, 1)); !errors.Is(err, ErrFailed) {
						t.Fatalf("Append after a failure: %v, want ErrFailed", err)
					}
					for _, err := range failures {
						if !errors.Is(err, ErrFailed) {
							t.Fatalf("Append failure %v is not ErrFailed", err)
						}
					}
					if !errors.Is(s.Err(), syscall.EIO) && !errors.Is(s.Err(), syscall.ENOSPC) {
						t.Fatalf("sticky error %v hides its cause", s.Err())
					}
				}
				s.Close()

				// Reopen without faults: nothing acknowledged is lost or broken.
				opts.FS = mem
				s = mustOpen(t, crashDir, opts)
				defer s.Close()
				seen := checkSpool(t, s)
				for id := range acked {
					if !seen[id] {
						t.Fatalf("acknowledged %s lost after %v", id, failures[0])
					}
				}
				for _, d := range s.Report().Damage {
					if !strings.HasPrefix(d.Reason, "torn") && !strings.Contains(d.Reason, "cursor") {
						t.Fatalf("injected error left damage: %v", d)
					}
				}
				if err := s.Append(context.Background(), groupRecords(9, 1, 2)); err != nil {
					t.Fatalf("Append after reopening: %v", err)
				}
			})
		}
	}
}

// TestDiskLowBackpressure checks the free-space headroom: below it Append
// fails fast with ErrDiskLow and nothing is written; once space returns,
// Append succeeds by itself.
func TestDiskLowBackpressure(t *testing.T) {
	mem := vfs.NewMemFS()
	now := time.Unix(1_700_000_000, 0)
	s := mustOpen(t, crashDir, Options{FS: mem, MinFree: 1 << 30, Sync: SyncNone, Now: func() time.Time { return now }})
	defer s.Close()
	ctx := context.Background()
	if err := s.Append(ctx, []Record{rec(0)}); err != nil {
		t.Fatal(err)
	}
	mem.SetFree(1 << 20)
	now = now.Add(time.Second) // past the free-space cache
	if err := s.Append(ctx, []Record{rec(1)}); !errors.Is(err, ErrDiskLow) {
		t.Fatalf("Append with the disk nearly full: %v, want ErrDiskLow", err)
	}
	if n := len(readAll(t, s)); n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
	mem.SetFree(1 << 40)
	now = now.Add(time.Second)
	if err := s.Append(ctx, []Record{rec(2)}); err != nil {
		t.Fatalf("Append after space returned: %v", err)
	}
}
