// Package admin is the operator's side of trackd: Prometheus metrics on a
// private registry, liveness and readiness, pprof, the SLO burn rates and
// the status page, served on the admin listener, separate from the API
// (behind HTTP Basic credentials when configured); and the public status
// view for customers, on the admin listener or a listener of its own.
package admin

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/spool"
)

// Metrics records what the API and the spool do. It implements
// trackapi.Observer. Safe for concurrent use.
type Metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	rejections      *prometheus.CounterVec
	wsRejections    *prometheus.CounterVec
	panics          *prometheus.CounterVec
	commitDuration  prometheus.Histogram
	commitRecords   prometheus.Histogram
	commitBytes     prometheus.Counter
	quarantined     *prometheus.CounterVec
	quarantineDrops *prometheus.CounterVec
	adminAuth       *prometheus.CounterVec

	mu   sync.Mutex // guards rank, and orders wsRejections' increments and deletions
	rank *wsRank
}

// NewMetrics registers trackd's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackd_http_requests_total",
			Help: "Track API requests answered, by route (operation), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trackd_http_request_duration_seconds",
			Help:    "Time from reading the request to writing the answer, including the spool commit.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackd_http_rejections_total",
			Help: "Requests (or v2 batch items) rejected, by route and stable reason code.",
		}, []string{"route", "reason"}),
		wsRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackd_http_workspace_rejections_total",
			Help: "Rejections by workspace (site ID for the top " + strconv.Itoa(workspaceLabels) + " workspaces by recent rejections, the rest \"other\", unauthenticated requests \"none\") and reason.",
		}, []string{"workspace", "reason"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackd_panics_total",
			Help: "Panics contained, by where they happened.",
		}, []string{"where"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trackd_spool_commit_duration_seconds",
			Help:    "Time one spool commit took to write and sync.",
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, 1},
		}),
		commitRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trackd_spool_commit_records",
			Help:    "Records per spool commit (group commit batch size).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		commitBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackd_spool_written_bytes_total",
			Help: "Bytes committed to the spool.",
		}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackd_quarantined_total",
			Help: "Items put in quarantine, by kind.",
		}, []string{"kind"}),
		quarantineDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackd_quarantine_dropped_total",
			Help: "Items that could not be quarantined (quarantine full or unwritable), by kind.",
		}, []string{"kind"}),
		adminAuth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackd_admin_auth_failures_total",
			Help: "Admin requests refused for their credentials: wrong or missing (refused), or not checked because the client failed too often (limited).",
		}, []string{"result"}),
		rank: newWSRank(time.Now),
	}
	reg.MustRegister(m.requests, m.duration, m.rejections, m.wsRejections, m.panics,
		m.commitDuration, m.commitRecords, m.commitBytes, m.quarantined, m.quarantineDrops, m.adminAuth)
	return m
}

// Served implements trackapi.Observer.
func (m *Metrics) Served(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	if d >= 0 { // < 0: not timed (a slow client's 408; see trackapi.Observer)
		m.duration.WithLabelValues(route).Observe(d.Seconds())
	}
}

// Rejected implements trackapi.Observer.
func (m *Metrics) Rejected(route, workspace, reason string) {
	m.rejections.WithLabelValues(route, reason).Inc()
	if workspace == "" {
		m.wsRejections.WithLabelValues("none", reason).Inc()
		return
	}
	if workspace == "other" || workspace == "none" {
		// A real site ID that spells a reserved label: shown as
		// "site:<id>" (a site ID cannot contain ':').
		workspace = "site:" + workspace
	}
	// Under the lock, so that a series is never incremented after the
	// ranking deleted it (which would restart it from 0).
	m.mu.Lock()
	defer m.mu.Unlock()
	label, retire := m.rank.observe(workspace)
	for _, ws := range retire {
		m.wsRejections.DeletePartialMatch(prometheus.Labels{"workspace": ws})
	}
	m.wsRejections.WithLabelValues(label, reason).Inc()
}

// AdminAuthFailed counts an admin request refused for its credentials
// (limited: not checked, the client failed too often).
func (m *Metrics) AdminAuthFailed(limited bool) {
	result := "refused"
	if limited {
		result = "limited"
	}
	m.adminAuth.WithLabelValues(result).Inc()
}

// Panic counts a contained panic.
func (m *Metrics) Panic(where string) { m.panics.WithLabelValues(where).Inc() }

// Quarantined counts an item put in quarantine (ok) or dropped (!ok).
func (m *Metrics) Quarantined(kind string, ok bool) {
	if ok {
		m.quarantined.WithLabelValues(kind).Inc()
	} else {
		m.quarantineDrops.WithLabelValues(kind).Inc()
	}
}

// Commit records one spool commit; pass it as spool.Options.OnCommit.
func (m *Metrics) Commit(groups int, records, bytes int64, took time.Duration) {
	m.commitDuration.Observe(took.Seconds())
	m.commitRecords.Observe(float64(records))
	m.commitBytes.Add(float64(bytes))
}

// RegisterSpool registers gauges read from the spool at scrape time.
func RegisterSpool(reg prometheus.Registerer, sp *spool.Spool, now func() time.Time) {
	gauge := func(name, help string, f func(spool.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(sp.Stats()) })
	}
	reg.MustRegister(
		gauge("trackd_spool_bytes", "Data bytes held in the spool.", func(s spool.Stats) float64 { return float64(s.Bytes) }),
		gauge("trackd_spool_records", "Records held in the spool (acknowledged by the back end or not, until retention deletes them).", func(s spool.Stats) float64 { return float64(s.Records) }),
		gauge("trackd_spool_segments", "Segment files in the spool.", func(s spool.Stats) float64 { return float64(s.Segments) }),
		gauge("trackd_spool_oldest_record_age_seconds", "Age of the oldest record held in the spool; 0 when empty.", func(s spool.Stats) float64 {
			if s.OldestAt == 0 {
				return 0
			}
			return now().Sub(time.Unix(0, s.OldestAt)).Seconds()
		}),
		gauge("trackd_spool_free_disk_bytes", "Free disk space under the spool at the last check.", func(s spool.Stats) float64 { return float64(s.FreeDisk) }),
		gauge("trackd_spool_failed", "1 when the spool has failed (a write or sync error) and refuses appends until restart.", func(s spool.Stats) float64 {
			if s.Failed != nil {
				return 1
			}
			return 0
		}),
	)
}

// Destination is a configured destination's state before and beside its
// forwarder's own metrics: whether it is forwarding, and how often setting
// it up (connecting, creating or checking the stream or topic) failed. A
// destination that cannot be set up has no forwarder, so without these
// nothing in the metrics would show it.
type Destination struct {
	up       prometheus.Gauge
	failures prometheus.Counter
}

// RegisterDestination registers the destination's trackd_forward_up (0
// until its forwarder runs) and trackd_forward_setup_failures_total.
func RegisterDestination(reg prometheus.Registerer, name string) *Destination {
	labels := prometheus.Labels{"destination": name}
	d := &Destination{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "trackd_forward_up", ConstLabels: labels,
			Help: "1 while the destination's forwarder runs; 0 while it cannot be set up or has stopped."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "trackd_forward_setup_failures_total", ConstLabels: labels,
			Help: "Failed attempts to set the destination up (connect, create or check its stream or topic)."}),
	}
	reg.MustRegister(d.up, d.failures)
	return d
}

// SetUp records whether the forwarder runs.
func (d *Destination) SetUp(up bool) {
	if up {
		d.up.Set(1)
	} else {
		d.up.Set(0)
	}
}

// SetupFailed counts a failed attempt to set the destination up.
func (d *Destination) SetupFailed() { d.failures.Inc() }

// RegisterForwarder registers one destination's forwarding metrics, read
// from the forwarder and the spool at scrape time.
func RegisterForwarder(reg prometheus.Registerer, f *forward.Forwarder, sp *spool.Spool, now func() time.Time) {
	dest := f.Stats().Destination
	labels := prometheus.Labels{"destination": dest}
	counter := func(name, help string, v func(forward.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v(f.Stats())) })
	}
	gauge := func(name, help string, v func(forward.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return v(f.Stats()) })
	}
	reg.MustRegister(
		counter("trackd_forward_delivered_total", "Records the destination acknowledged.", func(s forward.Stats) uint64 { return s.Delivered }),
		counter("trackd_forward_retries_total", "Records sent again after a failed attempt.", func(s forward.Stats) uint64 { return s.Retries }),
		counter("trackd_forward_failures_total", "Failed record sends (transient or permanent).", func(s forward.Stats) uint64 { return s.Failures }),
		counter("trackd_forward_quarantined_total", "Records the destination refused for good, put in quarantine.", func(s forward.Stats) uint64 { return s.Quarantined }),
		counter("trackd_forward_batches_total", "Batches sent.", func(s forward.Stats) uint64 { return s.Batches }),
		gauge("trackd_forward_lag_bytes", "Spool bytes not yet acknowledged by the destination.", func(s forward.Stats) float64 {
			return float64(sp.Behind(s.Cursor))
		}),
		gauge("trackd_forward_lag_seconds", "How far behind the destination is: 0 when caught up, else the age of the last acknowledged record (an upper bound).", func(s forward.Stats) float64 {
			if s.Waiting || sp.Behind(s.Cursor) == 0 {
				return 0
			}
			if s.LastDeliveredAt == 0 {
				if st := sp.Stats(); st.OldestAt != 0 {
					return now().Sub(time.Unix(0, st.OldestAt)).Seconds()
				}
				return 0
			}
			return now().Sub(time.Unix(0, s.LastDeliveredAt)).Seconds()
		}),
	)
}
