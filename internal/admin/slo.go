package admin

import (
	"sort"
	"sync"
	"time"
)

// SLOs (README "Operations"): availability is the share of requests not
// answered 5xx (429, the client's own rate limit, is not an error; 503 is);
// latency is the share answered within LatencyThreshold.
const (
	AvailabilityTarget = 0.999
	LatencyTarget      = 0.99
	LatencyThreshold   = 25 * time.Millisecond
)

// Windows over which burn rates are computed (the SRE workbook's
// multiwindow, multi-burn-rate alerts).
var Windows = []time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 6 * time.Hour, 72 * time.Hour}

const (
	bucketWidth  = 10 * time.Second
	bucketCount  = int(72 * time.Hour / bucketWidth)
	reasonWindow = 60 // minutes of rejection detail kept
)

type bucket struct {
	start                         int64 // unix seconds of the bucket's start
	total, errors, slow, rejected int64
}

type minuteDetail struct {
	start      int64 // unix minute
	reasons    map[string]int64
	workspaces map[string]int64 // rejections by workspace
	pairs      map[[2]string]int64
}

// Tracker keeps the counts the SLOs and the status page need, in memory:
// 10-second buckets over 3 days, and rejection detail by minute over an
// hour. Safe for concurrent use.
type Tracker struct {
	now func() time.Time

	mu      sync.Mutex // guards the fields below
	buckets []bucket
	minutes []minuteDetail
}

// NewTracker returns an empty tracker; now is the clock (time.Now if nil).
func NewTracker(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{now: now, buckets: make([]bucket, bucketCount), minutes: make([]minuteDetail, reasonWindow)}
}

func (t *Tracker) bucketLocked(now time.Time) *bucket {
	start := now.Unix() / int64(bucketWidth/time.Second) * int64(bucketWidth/time.Second)
	b := &t.buckets[int(start/int64(bucketWidth/time.Second))%bucketCount]
	if b.start != start {
		*b = bucket{start: start}
	}
	return b
}

// Served records one answered request (trackapi.Observer).
func (t *Tracker) Served(_, _ string, status int, d time.Duration) {
	t.mu.Lock()
	b := t.bucketLocked(t.now())
	b.total++
	if status >= 500 {
		b.errors++
	}
	if d > LatencyThreshold {
		b.slow++
	}
	t.mu.Unlock()
}

// Rejected records one rejection with its reason and workspace
// (trackapi.Observer).
func (t *Tracker) Rejected(_, workspace, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.bucketLocked(now).rejected++
	min := now.Unix() / 60
	m := &t.minutes[int(min)%reasonWindow]
	if m.start != min || m.reasons == nil {
		*m = minuteDetail{start: min, reasons: map[string]int64{}, workspaces: map[string]int64{}, pairs: map[[2]string]int64{}}
	}
	if len(m.pairs) >= 10000 { // bound memory under hostile variety
		workspace = "other"
	}
	m.reasons[reason]++
	m.workspaces[workspace]++
	m.pairs[[2]string{workspace, reason}]++
}

// WindowStats are the counts and burn rates over one window.
type WindowStats struct {
	Window           string  `json:"window"`
	Requests         int64   `json:"requests"`
	Errors           int64   `json:"errors"`
	Slow             int64   `json:"slow"`
	Rejected         int64   `json:"rejected"`
	RejectedRatio    float64 `json:"rejected_ratio"`
	RequestRate      float64 `json:"request_rate"`
	ErrorRatio       float64 `json:"error_ratio"`
	SlowRatio        float64 `json:"slow_ratio"`
	AvailabilityBurn float64 `json:"availability_burn_rate"`
	LatencyBurn      float64 `json:"latency_burn_rate"`
}

// Window returns the stats over the last w.
func (t *Tracker) Window(w time.Duration) WindowStats {
	now := t.now().Unix()
	from := now - int64(w/time.Second)
	t.mu.Lock()
	var s WindowStats
	for i := range t.buckets {
		b := &t.buckets[i]
		if b.start > from && b.start <= now {
			s.Requests += b.total
			s.Errors += b.errors
			s.Slow += b.slow
			s.Rejected += b.rejected
		}
	}
	t.mu.Unlock()
	s.Window = w.String()
	s.RequestRate = float64(s.Requests) / w.Seconds()
	if s.Requests > 0 {
		s.ErrorRatio = float64(s.Errors) / float64(s.Requests)
		s.SlowRatio = float64(s.Slow) / float64(s.Requests)
		s.RejectedRatio = min(1, float64(s.Rejected)/float64(s.Requests))
	}
	s.AvailabilityBurn = s.ErrorRatio / (1 - AvailabilityTarget)
	s.LatencyBurn = s.SlowRatio / (1 - LatencyTarget)
	return s
}

// Count is a name and how often it occurred.
type Count struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// Rejections returns the rejection reasons, the workspaces rejected most,
// and the (workspace, reason) pairs, over the last minutes, largest first.
func (t *Tracker) Rejections(minutes int, top int) (reasons, workspaces, pairs []Count) {
	now := t.now().Unix() / 60
	r, w, p := map[string]int64{}, map[string]int64{}, map[string]int64{}
	t.mu.Lock()
	for i := range t.minutes {
		m := &t.minutes[i]
		if m.reasons == nil || m.start <= now-int64(minutes) || m.start > now {
			continue
		}
		for k, v := range m.reasons {
			r[k] += v
		}
		for k, v := range m.workspaces {
			w[k] += v
		}
		for k, v := range m.pairs {
			p[k[0]+" "+k[1]] += v
		}
	}
	t.mu.Unlock()
	return topN(r, top), topN(w, top), topN(p, top)
}

func topN(m map[string]int64, n int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Alert is a burn-rate condition that holds now.
type Alert struct {
	SLO      string `json:"slo"`
	Severity string `json:"severity"` // page or ticket
	Rule     string `json:"rule"`
}

// Alerts evaluates the multiwindow multi-burn-rate conditions (page: 14.4×
// over 1h and 5m, or 6× over 6h and 30m; ticket: 1× over 3d and 6h) for both
// SLOs.
func (t *Tracker) Alerts() []Alert {
	ws := map[time.Duration]WindowStats{}
	for _, w := range Windows {
		ws[w] = t.Window(w)
	}
	var out []Alert
	type rule struct {
		sev        string
		long, shrt time.Duration
		factor     float64
		name       string
	}
	rules := []rule{
		{"page", time.Hour, 5 * time.Minute, 14.4, "14.4x over 1h and 5m"},
		{"page", 6 * time.Hour, 30 * time.Minute, 6, "6x over 6h and 30m"},
		{"ticket", 72 * time.Hour, 6 * time.Hour, 1, "1x over 3d and 6h"},
	}
	for _, slo := range []string{"availability", "latency"} {
		for _, r := range rules {
			burn := func(s WindowStats) float64 {
				if slo == "availability" {
					return s.AvailabilityBurn
				}
				return s.LatencyBurn
			}
			if burn(ws[r.long]) > r.factor && burn(ws[r.shrt]) > r.factor {
				out = append(out, Alert{SLO: slo, Severity: r.sev, Rule: r.name})
				break // the strongest rule that holds for this SLO
			}
		}
	}
	return out
}

// Observer is what trackapi reports each request to.
type Observer interface {
	Served(route, method string, status int, d time.Duration)
	Rejected(route, workspace, reason string)
}

// Observers passes every call to each of its observers.
type Observers []Observer

// Served implements Observer.
func (os Observers) Served(route, method string, status int, d time.Duration) {
	for _, o := range os {
		o.Served(route, method, status, d)
	}
}

// Rejected implements Observer.
func (os Observers) Rejected(route, workspace, reason string) {
	for _, o := range os {
		o.Rejected(route, workspace, reason)
	}
}
