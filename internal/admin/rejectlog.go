package admin

import (
	"log/slog"
	"sync"
	"time"
)

// RejectLog is an Observer that logs rejected requests at a bounded rate:
// per class (reason and route) at most one line per interval, which names
// a workspace the class was last seen from and counts the rejections of
// the class since the class's previous line. A flood of bad requests thus
// costs a few lines a minute, and no class hides another. It never logs a
// credential or a body: it is only given the route, the workspace's site
// ID and the reason.
type RejectLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex // guards classes
	classes map[rejectClass]*rejectState
}

type rejectClass struct{ reason, route string }

type rejectState struct {
	last       time.Time // when the class last had a line
	suppressed int64     // rejections since then without a line
}

// NewRejectLog returns a RejectLog writing to log at most once per every
// per class; now is the clock (time.Now).
func NewRejectLog(log *slog.Logger, every time.Duration, now func() time.Time) *RejectLog {
	return &RejectLog{log: log, every: every, now: now, classes: map[rejectClass]*rejectState{}}
}

// Served implements Observer.
func (*RejectLog) Served(string, string, int, time.Duration) {}

// Rejected implements Observer.
func (l *RejectLog) Rejected(route, workspace, reason string) {
	now := l.now()
	k := rejectClass{reason, route}
	l.mu.Lock()
	st := l.classes[k]
	if st == nil {
		// Reasons and routes are fixed sets: the map stays small.
		st = &rejectState{}
		l.classes[k] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < l.every {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	n := st.suppressed + 1
	first := st.last.IsZero()
	st.last, st.suppressed = now, 0
	l.mu.Unlock()
	if workspace == "" {
		workspace = "none"
	}
	l.log.Warn("requests rejected", "reason", reason, "route", route, "workspace", workspace,
		"count", n, "first", first, "sampled_every", l.every)
}
