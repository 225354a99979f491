package admin

import (
	"container/heap"
	"time"
)

// Rejections by workspace are a metric label, so the number of workspaces
// that get their own label value is bounded: a top-K of the workspaces
// rejected most, recently. The rest count as "other" (and unauthenticated
// requests as "none").
//
// Ranking: a space-saving sketch (Metwally, Agrawal, El Abbadi, "Efficient
// computation of frequent and top-k elements in data streams", 2005) of
// sketchSize counters estimates each workspace's rejections in bounded
// memory, whatever the number of workspaces; every workspace rejected more
// than 1/sketchSize of the time is in it. Its counts halve every
// decayInterval, so a workspace that starts misbehaving now overtakes one
// that misbehaved an hour ago.
//
// Labelling: while fewer than workspaceLabels workspaces are labelled, a
// workspace gets its label at its first rejection. After that a newcomer
// takes the place of the weakest labelled workspace when its estimate is at
// least minDisplace and more than twice the weakest's (the margin keeps
// near-equal workspaces from trading places on every request).
//
// Counters never go backwards. A series is only ever incremented, and never
// deleted while it may still change: a displaced workspace's later
// rejections count in "other", and its own series, now frozen, stays
// exported unchanged for retireAfter (long enough for Prometheus to scrape
// its final value many times) before it is deleted. A frozen workspace that
// becomes heavy again before then is labelled again on the same series; one
// that comes back later starts a new series from 0, which rate() and
// increase() read as a counter that started (or reset), the usual case.
// At most workspaceLabels workspaces are frozen at once; while that many
// wait, newcomers wait in "other" too. So the label has at most
// 2*workspaceLabels+2 values.
const (
	workspaceLabels = 50
	sketchSize      = 1024
	decayInterval   = 5 * time.Minute
	retireAfter     = 10 * time.Minute
	minDisplace     = 10
)

// wsRank chooses the workspace label values. Not safe for concurrent use:
// Metrics calls it under its mutex.
type wsRank struct {
	now func() time.Time

	sketch    map[string]*sketchEntry
	heap      sketchHeap // the sketch's entries, least count first
	lastDecay time.Time

	labelled map[string]bool
	// minLabelled is a lower bound of the least estimate among the
	// labelled workspaces (recomputed only when a newcomer exceeds twice
	// it), so most rejections of unlabelled workspaces cost no scan.
	minLabelled uint64

	frozen      map[string]time.Time // displaced workspace → when its series is deleted
	frozenQueue []frozenAt           // the same, oldest first (may hold stale entries)
}

type frozenAt struct {
	ws    string
	until time.Time
}

type sketchEntry struct {
	ws    string
	count uint64 // an estimate: at most the true (decayed) count plus the count of the entry it replaced
	index int    // in the heap
}

type sketchHeap []*sketchEntry

func (h sketchHeap) Len() int           { return len(h) }
func (h sketchHeap) Less(i, j int) bool { return h[i].count < h[j].count }
func (h sketchHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *sketchHeap) Push(x any) {
	e := x.(*sketchEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *sketchHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

func newWSRank(now func() time.Time) *wsRank {
	return &wsRank{
		now:       now,
		sketch:    make(map[string]*sketchEntry, sketchSize),
		lastDecay: now(),
		labelled:  map[string]bool{},
		frozen:    map[string]time.Time{},
	}
}

// observe counts one rejection of ws (not empty) and returns the label
// value to increment, and the workspaces whose frozen series are due to be
// deleted now.
func (r *wsRank) observe(ws string) (label string, retire []string) {
	now := r.now()
	r.decay(now)
	retire = r.expire(now)
	c := r.count(ws)

	if r.labelled[ws] {
		return ws, retire
	}
	if len(r.labelled) < workspaceLabels {
		r.label(ws)
		return ws, retire
	}
	_, wasFrozen := r.frozen[ws]
	if c < minDisplace || c <= 2*r.minLabelled || (len(r.frozen) >= workspaceLabels && !wasFrozen) {
		return "other", retire
	}
	weakest, least := "", uint64(0)
	for l := range r.labelled {
		if n := r.estimate(l); weakest == "" || n < least || (n == least && l < weakest) {
			weakest, least = l, n
		}
	}
	r.minLabelled = least
	if c <= 2*least {
		return "other", retire
	}
	delete(r.labelled, weakest)
	until := now.Add(retireAfter)
	r.frozen[weakest] = until
	r.frozenQueue = append(r.frozenQueue, frozenAt{weakest, until})
	r.label(ws)
	return ws, retire
}

func (r *wsRank) label(ws string) {
	r.labelled[ws] = true
	delete(r.frozen, ws) // its queue entry goes stale
}

func (r *wsRank) estimate(ws string) uint64 {
	if e, ok := r.sketch[ws]; ok {
		return e.count
	}
	return 0
}

// count adds one to ws's estimate and returns it. A workspace not in a full
// sketch takes the place of the least counted one, inheriting its count
// (space-saving: the estimate errs high, never low).
func (r *wsRank) count(ws string) uint64 {
	if e, ok := r.sketch[ws]; ok {
		e.count++
		heap.Fix(&r.heap, e.index)
		return e.count
	}
	if len(r.heap) < sketchSize {
		e := &sketchEntry{ws: ws, count: 1}
		heap.Push(&r.heap, e)
		r.sketch[ws] = e
		return 1
	}
	e := r.heap[0]
	delete(r.sketch, e.ws)
	if r.labelled[e.ws] {
		r.minLabelled = 0 // its estimate is 0 now
	}
	e.ws = ws
	e.count++
	r.sketch[ws] = e
	heap.Fix(&r.heap, 0)
	return e.count
}

// decay halves every count once per decayInterval elapsed, and forgets the
// workspaces whose count reaches 0. Halving keeps the heap's order.
func (r *wsRank) decay(now time.Time) {
	n := now.Sub(r.lastDecay) / decayInterval
	if n <= 0 {
		return
	}
	r.lastDecay = r.lastDecay.Add(n * decayInterval)
	shift := uint(min(n, 63))
	for _, e := range r.heap {
		e.count >>= shift
	}
	r.minLabelled >>= shift
	for len(r.heap) > 0 && r.heap[0].count == 0 {
		e := heap.Pop(&r.heap).(*sketchEntry)
		delete(r.sketch, e.ws)
	}
}

// expire returns the frozen workspaces whose series are due for deletion.
func (r *wsRank) expire(now time.Time) []string {
	var out []string
	for len(r.frozenQueue) > 0 && !now.Before(r.frozenQueue[0].until) {
		f := r.frozenQueue[0]
		r.frozenQueue = r.frozenQueue[1:]
		if until, ok := r.frozen[f.ws]; ok && until.Equal(f.until) {
			delete(r.frozen, f.ws)
			out = append(out, f.ws)
		}
	}
	return out
}
