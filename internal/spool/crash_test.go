package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/trackd/trackd/internal/vfs"
)

const crashDir = "/data/spool"

// groupRecords returns the records of group g of writer w: each carries its
// group's identity and size so a reader can tell a partial group.
func groupRecords(w, g, size int) []Record {
	recs := make([]Record, size)
	for i := range recs {
		id := fmt.Sprintf("w%d-g%d-r%d", w, g, i)
		recs[i] = Record{
			ID: id, Workspace: "ws", Op: "v1.event", ReceivedAt: int64(w*1_000_000 + g),
			Meta: []KV{{"group", fmt.Sprintf("w%d-g%d", w, g)}, {"size", strconv.Itoa(size)}},
			Body: []byte(`{"name":"` + id + `"}`),
		}
	}
	return recs
}

// checkSpool reads a recovered spool in full and checks the invariants:
// every record is intact, no record appears twice, no group is partial.
// It returns the IDs seen.
func checkSpool(t *testing.T, s *Spool) map[string]bool {
	t.Helper()
	seen := make(map[string]bool)
	groups := make(map[string]int)
	sizes := make(map[string]int)
	r := s.NewReader(Position{})
	defer r.Close()
	for {
		rec, err := r.TryNext()
		if errors.Is(err, ErrNoMore) {
			break
		}
		if err != nil {
			t.Fatalf("read after recovery: %v", err)
		}
		if seen[rec.ID] {
			t.Fatalf("record %s read twice", rec.ID)
		}
		seen[rec.ID] = true
		if string(rec.Body) != `{"name":"`+rec.ID+`"}` {
			t.Fatalf("record %s has body %q", rec.ID, rec.Body)
		}
		g, _ := rec.Get("group")
		n, _ := rec.Get("size")
		groups[g]++
		sizes[g], _ = strconv.Atoi(n)
	}
	for g, n := range groups {
		if n != sizes[g] {
			t.Fatalf("group %s: %d of %d records after recovery", g, n, sizes[g])
		}
	}
	return seen
}

// TestCrashRecovery crashes the filesystem at random points under
// concurrent appends (and a consumer moving a cursor with retention on), and
// checks after each recovery that every acknowledged record survived, no
// partial group is readable and no record is read twice.
func TestCrashRecovery(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 30
	}
	for round := 0; round < rounds; round++ {
		seed := uint64(round)
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			crashRound(t, seed)
		})
	}
}

func crashRound(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	mode := []SyncMode{SyncData, SyncFull}[rng.IntN(2)]
	opts := Options{SegmentSize: int64(64<<10) + int64(rng.IntN(512<<10)), Sync: mode, Retention: -1}
	fsys := vfs.NewMemFS()
	opts.FS = fsys
	// A few generations: crash, recover, write more, crash again.
	var acked, consumed map[string]bool = map[string]bool{}, map[string]bool{}
	for gen := 0; gen < 3; gen++ {
		s, err := Open(crashDir, opts)
		if err != nil {
			t.Fatalf("gen %d: open: %v", gen, err)
		}
		seen := checkSpool(t, s)
		for id := range acked {
			if !seen[id] && !consumed[id] {
				t.Fatalf("gen %d: acknowledged record %s lost (damage: %v) report %+v stats %+v seen %d acked %d", gen, id, s.Report().Damage, s.Report(), s.Stats(), len(seen), len(acked))
			}
		}

		// Sometimes a clean stop and start first: the close leaves a
		// checkpoint of the open segment, which the recovery after the
		// crash below builds on (scanning only what follows it).
		if rng.IntN(2) == 0 {
			for g := range 1 + rng.IntN(20) {
				recs := groupRecords(gen*100+99, g, 1+g%5)
				if err := s.Append(context.Background(), recs); err != nil {
					t.Fatalf("gen %d: append before the clean stop: %v", gen, err)
				}
				for _, r := range recs {
					acked[r.ID] = true
				}
			}
			if err := s.Close(); err != nil {
				t.Fatalf("gen %d: clean close: %v", gen, err)
			}
			if s, err = Open(crashDir, opts); err != nil {
				t.Fatalf("gen %d: open after a clean close: %v", gen, err)
			}
			if !s.Report().Clean() {
				t.Fatalf("gen %d: open after a clean close found damage: %v", gen, s.Report().Damage)
			}
			seen := checkSpool(t, s)
			for id := range acked {
				if !seen[id] && !consumed[id] {
					t.Fatalf("gen %d: acknowledged record %s lost across a clean close", gen, id)
				}
			}
		}

		// Load: writers, a consumer, and a crash after a random number of
		// acknowledged appends.
		var mu sync.Mutex // guards acked, consumed and the crash snapshot
		crashAt := 1 + rng.IntN(400)
		nacked := 0
		crashed := make(chan *vfs.MemFS, 1)
		var ackedSnap, consumedSnap map[string]bool
		var tr *rand.Rand
		if rng.IntN(2) == 0 {
			tr = rand.New(rand.NewPCG(seed, uint64(gen)))
		}
		// crash takes the durable state and, at the same instant, what was
		// acknowledged and consumed. Called with mu held.
		crash := func() {
			ackedSnap = make(map[string]bool, len(acked))
			for id := range acked {
				ackedSnap[id] = true
			}
			consumedSnap = make(map[string]bool, len(consumed))
			for id := range consumed {
				consumedSnap[id] = true
			}
			crashed <- fsys.Crash(vfs.CrashOptions{Rand: tr})
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		writers := 1 + rng.IntN(8)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for g := 0; ctx.Err() == nil; g++ {
					recs := groupRecords(gen*100+w, g, 1+(g*7+w)%5)
					if err := s.Append(ctx, recs); err != nil {
						return
					}
					mu.Lock()
					for _, r := range recs {
						acked[r.ID] = true
					}
					nacked++
					if nacked == crashAt {
						crash()
					}
					mu.Unlock()
				}
			}(w)
		}
		wg.Add(1)
		go func() { // the consumer: read, mark consumed, move the cursor, collect
			defer wg.Done()
			r := s.NewReader(Position{})
			defer r.Close()
			for n := 1; ; n++ {
				rec, err := r.Next(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				consumed[rec.ID] = true
				mu.Unlock()
				if n%50 == 0 {
					if s.SetCursor("dest", r.Pos()) != nil {
						return
					}
					if _, err := s.Collect(); err != nil {
						return
					}
				}
			}
		}()
		after := <-crashed
		cancel()
		wg.Wait()
		s.Close()
		// Only what was acknowledged before the crash counts; records the
		// consumer saw may have been deleted by retention.
		acked, consumed = ackedSnap, consumedSnap
		fsys = after
		opts.FS = fsys
	}
	s, err := Open(crashDir, opts)
	if err != nil {
		t.Fatalf("final open: %v", err)
	}
	defer s.Close()
	seen := checkSpool(t, s)
	for id := range acked {
		if !seen[id] && !consumed[id] {
			t.Fatalf("acknowledged record %s lost (damage: %v)", id, s.Report().Damage)
		}
	}
}
