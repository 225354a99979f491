package admin

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newRankedMetrics(t *testing.T) (*Metrics, *prometheus.Registry, *fakeClock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	clock := &fakeClock{t: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)}
	m.rank = newWSRank(clock.Now)
	return m, reg, clock
}

// wsSeries returns trackd_http_workspace_rejections_total's series as
// {workspace, reason} → value.
func wsSeries(t *testing.T, reg *prometheus.Registry) map[[2]string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "trackd_http_workspace_rejections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var k [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "workspace":
					k[0] = l.GetValue()
				case "reason":
					k[1] = l.GetValue()
				}
			}
			out[k] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestWorkspaceLabelsAreBounded(t *testing.T) {
	m, reg, _ := newRankedMetrics(t)
	total := 0
	for i := 0; i < 3000; i++ {
		// A skewed mix: a few heavy workspaces among many light ones.
		ws := fmt.Sprintf("ws%d", i%700)
		if i%3 == 0 {
			ws = fmt.Sprintf("heavy%d", i%120)
		}
		m.Rejected("v1.event", ws, "empty_body")
		total++
	}
	m.Rejected("v1.event", "", "unauthorized")
	series := wsSeries(t, reg)
	labels := map[string]bool{}
	sum := 0.0
	for k, v := range series {
		labels[k[0]] = true
		sum += v
	}
	if len(labels) > 2*workspaceLabels+2 {
		t.Fatalf("%d workspace label values, want at most %d", len(labels), 2*workspaceLabels+2)
	}
	if !labels["other"] || series[[2]string{"none", "unauthorized"}] != 1 {
		t.Fatalf("no other or none: %v", labels)
	}
	// No series was deleted (the clock did not move), so every rejection
	// is in exactly one series.
	if sum != float64(total+1) {
		t.Fatalf("series sum to %v, want %d", sum, total+1)
	}
}

// TestLateHeavyOffenderGetsALabel: the label set is full of workspaces that
// each had a few rejections; a workspace that starts misbehaving later
// takes the weakest one's place. The displaced workspace's series stays,
// unchanged, until it is retired.
func TestLateHeavyOffenderGetsALabel(t *testing.T) {
	m, reg, clock := newRankedMetrics(t)
	for i := 0; i < workspaceLabels; i++ {
		for j := 0; j < 20; j++ {
			m.Rejected("v1.event", fmt.Sprintf("ws%02d", i), "empty_body")
		}
	}
	for i := 0; i < 100; i++ {
		m.Rejected("v1.event", fmt.Sprintf("light%03d", i), "empty_body")
	}
	series := wsSeries(t, reg)
	if got := series[[2]string{"other", "empty_body"}]; got != 100 {
		t.Fatalf("other = %v, want 100", got)
	}
	for i := 0; i < 500; i++ {
		m.Rejected("v1.event", "migrating", "empty_body")
	}
	series = wsSeries(t, reg)
	// Admitted at its 41st rejection: more than twice the weakest's 20.
	want := map[[2]string]float64{
		{"migrating", "empty_body"}: 500 - 40,
		{"other", "empty_body"}:     100 + 40,
		{"ws00", "empty_body"}:      20, // displaced (ties: the first by name), frozen
		{"ws01", "empty_body"}:      20,
	}
	for k, v := range want {
		if series[k] != v {
			t.Errorf("%v = %v, want %v", k, series[k], v)
		}
	}

	// The displaced workspace's later rejections count in other; its own
	// series never moves, in either direction.
	m.Rejected("v1.event", "ws00", "empty_body")
	series = wsSeries(t, reg)
	if series[[2]string{"ws00", "empty_body"}] != 20 || series[[2]string{"other", "empty_body"}] != 141 {
		t.Fatalf("after the displaced workspace's rejection: ws00 %v, other %v", series[[2]string{"ws00", "empty_body"}], series[[2]string{"other", "empty_body"}])
	}

	// Once retired, the frozen series is gone; the labelled ones stay.
	clock.Advance(retireAfter)
	m.Rejected("v1.event", "migrating", "empty_body")
	series = wsSeries(t, reg)
	if _, ok := series[[2]string{"ws00", "empty_body"}]; ok {
		t.Fatalf("ws00's frozen series outlived retireAfter")
	}
	if series[[2]string{"migrating", "empty_body"}] != 461 || series[[2]string{"ws01", "empty_body"}] != 20 {
		t.Fatalf("labelled series after the retirement: %v", series)
	}
}

// TestDecayLetsANewOffenderOvertake: counts halve over time, so an
// offender from an hour ago does not keep its label against a new one.
func TestDecayLetsANewOffenderOvertake(t *testing.T) {
	m, reg, clock := newRankedMetrics(t)
	for i := 0; i < workspaceLabels; i++ {
		for j := 0; j < 1000; j++ {
			m.Rejected("v1.event", fmt.Sprintf("old%02d", i), "invalid_json")
		}
	}
	m.Rejected("v1.event", "new", "empty_body")
	if series := wsSeries(t, reg); series[[2]string{"new", "empty_body"}] != 0 {
		t.Fatalf("a light newcomer took a label from heavy workspaces")
	}
	clock.Advance(time.Hour) // 12 halvings: 1000 → 0
	for i := 0; i < minDisplace; i++ {
		m.Rejected("v1.event", "new", "empty_body")
	}
	if got := wsSeries(t, reg)[[2]string{"new", "empty_body"}]; got != 1 {
		t.Fatalf("new = %v, want its own series from its %dth rejection of the hour", got, minDisplace+1)
	}
}

// TestWorkspaceCountersNeverGoBackwards drives a random, shifting mix of
// workspaces over simulated hours and checks after every step that no
// series decreased, and that every rejection is in a series or in the
// final value of a retired one.
func TestWorkspaceCountersNeverGoBackwards(t *testing.T) {
	m, reg, clock := newRankedMetrics(t)
	rng := rand.New(rand.NewPCG(1, 2))
	prev := map[[2]string]float64{}
	retired := 0.0
	total := 0
	for step := 0; step < 200; step++ {
		// Each step, a different band of workspaces is the heavy one.
		hot := step / 20
		for i := 0; i < 200; i++ {
			ws := fmt.Sprintf("ws%d", rng.IntN(2000))
			if rng.IntN(2) == 0 {
				ws = fmt.Sprintf("hot%d-%d", hot, rng.IntN(30))
			}
			m.Rejected("v2.batch", ws, []string{"empty_body", "invalid_json"}[rng.IntN(2)])
			total++
		}
		clock.Advance(time.Duration(rng.IntN(90)) * time.Second)
		cur := wsSeries(t, reg)
		for k, v := range prev {
			nv, ok := cur[k]
			if !ok {
				retired += v
				continue
			}
			if nv < v {
				t.Fatalf("step %d: %v went from %v to %v", step, k, v, nv)
			}
		}
		labels := map[string]bool{}
		sum := retired
		for k, v := range cur {
			labels[k[0]] = true
			sum += v
		}
		if len(labels) > 2*workspaceLabels+1 {
			t.Fatalf("step %d: %d label values", step, len(labels))
		}
		if sum != float64(total) {
			t.Fatalf("step %d: series and retired sum to %v, want %d", step, sum, total)
		}
		prev = cur
	}
	if retired == 0 {
		t.Fatal("no series was retired: the test did not exercise displacement")
	}
	// The heavy band of the last steps is labelled.
	cur := wsSeries(t, reg)
	var hotLabelled []string
	for i := 0; i < 30; i++ {
		ws := fmt.Sprintf("hot9-%d", i)
		if cur[[2]string{ws, "empty_body"}]+cur[[2]string{ws, "invalid_json"}] > 0 {
			hotLabelled = append(hotLabelled, ws)
		}
	}
	if len(hotLabelled) < 25 {
		t.Fatalf("only %d of the 30 current heavy workspaces are labelled: %v", len(hotLabelled), hotLabelled)
	}
}

func TestRejectedConcurrently(t *testing.T) {
	m, reg, _ := newRankedMetrics(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				m.Rejected("v1.event", fmt.Sprintf("ws%d", (i*7+g)%300), "empty_body")
			}
		}()
	}
	wg.Wait()
	sum := 0.0
	for _, v := range wsSeries(t, reg) {
		sum += v
	}
	if diff := cmp.Diff(float64(8*2000), sum); diff != "" {
		t.Fatalf("sum (-want +got):\n%s", diff)
	}
}
