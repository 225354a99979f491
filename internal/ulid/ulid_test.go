package ulid

import (
	"bytes"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	g := NewGenerator(nil, nil)
	for i := 0; i < 1000; i++ {
		u := g.New()
		s := u.String()
		if len(s) != EncodedLen {
			t.Fatalf("len(%q) = %d", s, len(s))
		}
		p, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if p != u {
			t.Fatalf("Parse(String()) = %x, want %x", p, u)
		}
		if q, _ := Parse(strings.ToLower(s)); q != u {
			t.Fatalf("lower-case parse differs")
		}
	}
}

func TestKnownValue(t *testing.T) {
	// From the ULID spec's example layout: all ones is the maximum.
	max := ULID{}
	for i := range max {
		max[i] = 0xFF
	}
	if got, want := max.String(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"; got != want {
		t.Errorf("max = %s, want %s", got, want)
	}
	if got := (ULID{}).String(); got != "00000000000000000000000000" {
		t.Errorf("zero = %s", got)
	}
	u := NewGenerator(func() time.Time { return time.UnixMilli(1469918176385) }, nil).New()
	if got, want := u.String()[:10], "01ARYZ6S41"; got != want {
		t.Errorf("time part = %s, want %s", got, want)
	}
	if u.Time() != 1469918176385 {
		t.Errorf("Time() = %d", u.Time())
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"01ARYZ6S41TSV4RRFFQ69G5FA",   // 25
		"01ARYZ6S41TSV4RRFFQ69G5FAVV", // 27
		"81ARYZ6S41TSV4RRFFQ69G5FAV",  // overflow
		"01ARYZ6S41TSV4RRFFQ69G5FAU",  // U not in alphabet
		"01ARYZ6S41TSV4RRFFQ69G5FA!",
		"01ARYZ6S41TSV4RRFFQ69G5FAI",
	} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
	if !Valid("01ARYZ6S41TSV4RRFFQ69G5FAV") {
		t.Error("spec example rejected")
	}
}

func TestMonotonicSameMillisecond(t *testing.T) {
	now := time.UnixMilli(1700000000000)
	g := NewGenerator(func() time.Time { return now }, nil)
	prev := g.New()
	for i := 0; i < 10000; i++ {
		u := g.New()
		if bytes.Compare(u[:], prev[:]) <= 0 {
			t.Fatalf("not increasing: %s after %s", u, prev)
		}
		if u.String() <= prev.String() {
			t.Fatalf("strings not increasing: %s after %s", u, prev)
		}
		prev = u
	}
}

func TestClockGoesBack(t *testing.T) {
	ms := int64(1700000000000)
	g := NewGenerator(func() time.Time { return time.UnixMilli(ms) }, nil)
	a := g.New()
	ms -= 5000
	b := g.New()
	if bytes.Compare(b[:], a[:]) <= 0 {
		t.Fatalf("went back: %s after %s", b, a)
	}
	if b.Time() != a.Time() {
		t.Fatalf("time = %d, want %d (held)", b.Time(), a.Time())
	}
}

func TestOverflowBorrowsNextMillisecond(t *testing.T) {
	ms := int64(1700000000000)
	ones := bytes.NewReader(bytes.Repeat([]byte{0xFF}, 10*64*4))
	g := NewGenerator(func() time.Time { return time.UnixMilli(ms) }, ones)
	a := g.New()
	// Force the random part to its maximum.
	g.mu.Lock()
	for i := 6; i < 16; i++ {
		g.last[i] = 0xFF
	}
	g.mu.Unlock()
	b := g.New()
	if b.Time() != a.Time()+1 {
		t.Fatalf("time after overflow = %d, want %d", b.Time(), a.Time()+1)
	}
	if bytes.Compare(b[:], a[:]) <= 0 {
		t.Fatal("not increasing after overflow")
	}
}

func TestConcurrentUnique(t *testing.T) {
	g := NewGenerator(nil, nil)
	const workers, per = 8, 5000
	out := make([][]string, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := ""
			for i := 0; i < per; i++ {
				s := g.NewString()
				if s <= prev {
					t.Errorf("worker %d: %s after %s", w, s, prev)
					return
				}
				prev = s
				out[w] = append(out[w], s)
			}
		}()
	}
	wg.Wait()
	var all []string
	for _, o := range out {
		all = append(all, o...)
	}
	sort.Strings(all)
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			t.Fatalf("duplicate %s", all[i])
		}
	}
}

func BenchmarkNewString(b *testing.B) {
	g := NewGenerator(nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = g.NewString()
	}
}

func BenchmarkNewStringParallel(b *testing.B) {
	g := NewGenerator(nil, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = g.NewString()
		}
	})
}
