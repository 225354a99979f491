package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/vfs"
)

// Benchmarks of Append next to a baseline measured in the same run: a bare
// group-commit loop (writers hand ~300-byte buffers to one committer that
// writes them with one write and one sync, no framing, no encoding). The
// ratio spool/baseline is the figure of merit; see BENCHMARKS.md.
//
//	go test -run '^$' -bench 'Append|Baseline' -benchtime 100000x ./internal/spool/

// benchRecord is a ~300-byte record like a v1 track call.
func benchRecord(i int) Record {
	return Record{
		ID:         fmt.Sprintf("01JD%022d", i),
		Workspace:  "46be54768e7d49ab2628",
		Op:         "v1.event",
		ReceivedAt: time.Now().UnixNano(),
		Meta:       []KV{{"request_id", "c1f0a3b2e4d5f6a7"}, {"client_ip", "127.0.0.1"}},
		Body:       []byte(`{"name":"purchase","data":{"price":23.45,"product":"socks","sku":"SK-1234","color":"blue","size":"L","coupon":"WINTER","qty":1},"timestamp":1700000000}` + strings.Repeat(" ", 52)),
	}
}

// runWriters runs fn(i) for i in [0, total) from w goroutines and reports
// records/s.
func runWriters(b *testing.B, w, total, perCall int, fn func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i*perCall >= total {
					return
				}
				if err := fn(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(total)/el.Seconds(), "records/s")
}

var benchCases = []struct {
	writers, group int
}{{1, 1}, {64, 1}, {256, 1}, {64, 100}}

func BenchmarkAppend(b *testing.B) {
	for _, mode := range []SyncMode{SyncData, SyncFull} {
		for _, c := range benchCases {
			b.Run(fmt.Sprintf("sync=%s/writers=%d/group=%d", mode, c.writers, c.group), func(b *testing.B) {
				s, err := Open(b.TempDir(), Options{Sync: mode})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				groups := make([][]Record, 256)
				for i := range groups {
					for j := 0; j < c.group; j++ {
						groups[i] = append(groups[i], benchRecord(i*c.group+j))
					}
				}
				size := groups[0][0].encodedSize() + frameHeaderSize
				b.SetBytes(int64(size))
				ctx := context.Background()
				runWriters(b, c.writers, b.N, c.group, func(i int) error {
					return s.Append(ctx, groups[i%len(groups)])
				})
				b.ReportMetric(float64(s.Stats().Records)/float64(s.Stats().Commits), "records/commit")
			})
		}
	}
}

// bareCommitter is the baseline: the least a group commit can do.
type bareCommitter struct {
	dir     string
	mode    SyncMode
	n       int
	f       vfs.File
	sync    func() error
	mu      sync.Mutex
	cond    *sync.Cond
	pending bool
	buf     []byte // reused, like the spool's commit buffer
	spare   []byte
	done    chan struct{}
	off     int64
	stop    bool
	wg      sync.WaitGroup
}

func newBareCommitter(b *testing.B, mode SyncMode) *bareCommitter {
	c := &bareCommitter{dir: b.TempDir(), mode: mode, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	if err := c.next(); err != nil {
		b.Fatal(err)
	}
	c.wg.Add(1)
	go c.loop()
	return c
}

// next starts a new file, as the spool starts a new segment: writes always
// go to fresh space (overwriting an old file would make syncs cheaper than
// the spool's, and the comparison unfair).
func (c *bareCommitter) next() error {
	if c.f != nil {
		c.f.Close()
	}
	c.n++
	vf, err := vfs.OS{}.OpenFile(filepath.Join(c.dir, fmt.Sprint(c.n)), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	c.f, c.off = vf, 0
	c.sync = vf.Sync
	if c.mode == SyncData {
		if err := vf.Preallocate(0, 64<<20); err != nil {
			return err
		}
		c.sync = vf.Datasync
	}
	return nil
}

func (c *bareCommitter) append(p []byte) error {
	c.mu.Lock()
	if !c.pending {
		c.pending = true
		c.cond.Signal()
	}
	c.buf = append(c.buf, p...)
	done := c.done
	c.mu.Unlock()
	<-done
	return nil
}

func (c *bareCommitter) loop() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		for !c.pending && !c.stop {
			c.cond.Wait()
		}
		if !c.pending {
			c.mu.Unlock()
			return
		}
		buf, done := c.buf, c.done
		c.buf, c.spare, c.pending, c.done = c.spare[:0], nil, false, make(chan struct{})
		c.mu.Unlock()
		if c.off+int64(len(buf)) > 64<<20 {
			if err := c.next(); err != nil {
				panic(err)
			}
		}
		if _, err := c.f.WriteAt(buf, c.off); err != nil {
			panic(err)
		}
		if err := c.sync(); err != nil {
			panic(err)
		}
		c.off += int64(len(buf))
		close(done)
		c.mu.Lock()
		c.spare = buf
		c.mu.Unlock()
	}
}

func (c *bareCommitter) close() {
	c.mu.Lock()
	c.stop = true
	c.cond.Signal()
	c.mu.Unlock()
	c.wg.Wait()
	c.f.Close()
}

func BenchmarkBaseline(b *testing.B) {
	for _, mode := range []SyncMode{SyncData, SyncFull} {
		for _, c := range benchCases {
			b.Run(fmt.Sprintf("sync=%s/writers=%d/group=%d", mode, c.writers, c.group), func(b *testing.B) {
				bc := newBareCommitter(b, mode)
				defer bc.close()
				r := benchRecord(0)
				p := make([]byte, (r.encodedSize()+frameHeaderSize)*c.group)
				b.SetBytes(int64(r.encodedSize() + frameHeaderSize))
				runWriters(b, c.writers, b.N, c.group, func(int) error { return bc.append(p) })
			})
		}
	}
}

// BenchmarkOpen measures recovery time of a 1 GiB spool: 16 sealed
// segments the manifest vouches for, plus a 64 MiB open segment that must
// be scanned. (The page cache is warm after the first iteration; the first
// open of a cold spool reads only the open segment.)
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, Options{Sync: SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	g := make([]Record, 100)
	for i := range g {
		g[i] = benchRecord(i)
	}
	ctx := context.Background()
	for s.Stats().Bytes < 1<<30-32<<20 {
		if err := s.Append(ctx, g); err != nil {
			b.Fatal(err)
		}
	}
	st := s.Stats()
	s.Close()
	b.ResetTimer()
	for b.Loop() {
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.ReportMetric(float64(st.Bytes)/(1<<20), "MiB")
	b.ReportMetric(float64(st.Records), "records")
}

// BenchmarkSyncCost measures what one commit's sync costs on this machine's
// disk, by the state of the blocks written: appended past the end of the
// file, written into space reserved with fallocate (what the spool does:
// the sync must also journal the extent conversion), or overwriting blocks
// already written once. Each op writes 4 KiB (about 12 v1 records, the
// spool's commit at 64 connections) and calls fdatasync; besides ns/op it
// reports the process CPU per op (user + system, getrusage), which is what
// a sync takes from request handling when the CPU is the bottleneck.
//
//	go test -run '^$' -bench SyncCost -benchtime 3000x ./internal/spool/
func BenchmarkSyncCost(b *testing.B) {
	const block = 4096
	for _, c := range []struct {
		name    string
		prepare func(f vfs.File, n int64) error
	}{
		{"append", func(vfs.File, int64) error { return nil }},
		{"fallocate", func(f vfs.File, n int64) error { return f.Preallocate(0, n) }},
		{"overwrite", func(f vfs.File, n int64) error {
			z := make([]byte, 1<<20)
			for off := int64(0); off < n; off += int64(len(z)) {
				if _, err := f.WriteAt(z, off); err != nil {
					return err
				}
			}
			return f.Sync()
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			f, err := vfs.OS{}.OpenFile(filepath.Join(b.TempDir(), "seg"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := c.prepare(f, int64(b.N+1)*block); err != nil {
				b.Fatal(err)
			}
			p := make([]byte, block)
			for i := range p {
				p[i] = byte(i)
			}
			cpu0 := processCPU()
			b.ResetTimer()
			for i := range b.N {
				if _, err := f.WriteAt(p, int64(i)*block); err != nil {
					b.Fatal(err)
				}
				if err := f.Datasync(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is the process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
