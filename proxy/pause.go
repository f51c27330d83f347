package proxy

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Defaults of Pause.
const (
	// DefaultMaxPause is how long a pause lasts at most when Pause is given no limit: then
	// the router resumes by itself, so a forgotten pause cannot keep a site down.
	DefaultMaxPause = 30 * time.Second
	// DefaultPauseQueue is how many requests may wait in a pause when Pause is given no
	// bound; those beyond it are answered 503 at once.
	DefaultPauseQueue = 10000
)

// gate holds new production requests until it is opened. Hold and Pause are both gates: a
// hold (a database switchover) bounds each request's wait by MaxHold and queues any number;
// a pause (teal pause) bounds the whole pause by its max and the number waiting by its queue.
// A gate's channel is closed exactly once, by whoever takes the gate out of the Router.
type gate struct {
	ch      chan struct{}
	since   time.Time     // when the pause began (kept across a Pause that replaces it)
	queue   int64         // most requests that may wait; 0 = any number (a hold)
	waiting atomic.Int64  // requests waiting now
	timer   *time.Timer   // the pause's own end at its max; nil for a hold
	perReq  time.Duration // a hold's bound on each request's wait; 0 for a pause
}

// Hold makes new production requests wait, in the router, until the returned release is called
// (or MaxHold passes, or the client goes away); requests in flight carry on. It is the short
// pause of a database switchover: no request reaches either colour while writes move, and none
// fails. Release is idempotent; held requests are then routed by the table of that moment.
// A Hold and a Pause are independent: a request waits until neither is in force.
func (r *Router) Hold() (release func()) {
	g := &gate{ch: make(chan struct{}), perReq: r.MaxHold}
	if old := r.held.Swap(g); old != nil {
		// A second Hold supersedes the first: its waiters move on to the new one.
		close(old.ch)
	}
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		if r.held.CompareAndSwap(g, nil) {
			close(g.ch)
		}
	}
}

// Pause holds new production requests in the router, kamal-proxy style, for a short
// cut-over: they wait until Resume, or until max has passed since the pause began, when the
// router resumes by itself (and logs it). At most queue requests wait; any beyond that are
// answered 503 with Retry-After: 1 at once. Requests in flight carry on; the preview listener
// is not paused; the colour endpoints (ColorHandler) are, as they are production traffic.
// max ≤ 0 is DefaultMaxPause, queue ≤ 0 is DefaultPauseQueue. Pause while paused replaces the
// limits (max counts from this call) and keeps the waiting requests and the start time.
func (r *Router) Pause(max time.Duration, queue int) {
	if max <= 0 {
		max = DefaultMaxPause
	}
	if queue <= 0 {
		queue = DefaultPauseQueue
	}
	g := &gate{ch: make(chan struct{}), since: time.Now(), queue: int64(queue)}
	if old := r.paused.Load(); old != nil {
		g.since = old.since
	}
	// The timer is armed before the gate is visible: whoever takes the gate out stops it.
	g.timer = time.AfterFunc(max, func() {
		if r.paused.CompareAndSwap(g, nil) {
			close(g.ch)
			r.logger().Warn("pause ended by itself: max_pause reached", "max_pause", max,
				"paused_for", time.Since(g.since).Round(time.Millisecond))
		}
	})
	if old := r.paused.Swap(g); old != nil {
		old.timer.Stop()
		close(old.ch) // its waiters look again and wait on g
	} else {
		r.logger().Info("paused", "max_pause", max, "queue", queue)
	}
}

// Resume ends a pause: the waiting requests are routed, in no particular order, by the table
// of that moment. Without a pause it does nothing. It does not end a Hold.
func (r *Router) Resume() {
	g := r.paused.Swap(nil)
	if g == nil {
		return
	}
	g.timer.Stop()
	close(g.ch)
	r.logger().Info("resumed", "paused_for", time.Since(g.since).Round(time.Millisecond))
}

// Paused reports whether a pause is in force, since when, and how many requests wait in it.
func (r *Router) Paused() (since time.Time, waiting int, ok bool) {
	g := r.paused.Load()
	if g == nil {
		return time.Time{}, 0, false
	}
	return g.since, int(g.waiting.Load()), true
}

// wait blocks a production request while a hold or a pause is in force. It reports false
// when the request must be turned away instead (the pause's queue is full). Without a hold
// or a pause it costs two atomic loads.
func (r *Router) wait(req *http.Request) bool {
	if r.held.Load() == nil && r.paused.Load() == nil {
		return true
	}
	return r.waitGates(req)
}

// waitGates waits until neither gate is in force. A request waits for holds at most MaxHold
// in all (then it is let through, and later holds do not stop it), and for pauses as long as
// they last.
func (r *Router) waitGates(req *http.Request) bool {
	var holdTimer *time.Timer
	var holdUp <-chan time.Time
	defer func() {
		if holdTimer != nil {
			holdTimer.Stop()
		}
	}()
	holdDone := false
	done := req.Context().Done()
	for {
		if h := r.held.Load(); h != nil && !holdDone {
			if holdTimer == nil {
				holdTimer = time.NewTimer(h.perReq)
				holdUp = holdTimer.C
			}
			select {
			case <-h.ch:
			case <-holdUp:
				holdDone = true
			case <-done:
				return true // the client is gone; the proxy notices and counts it
			}
			continue
		}
		p := r.paused.Load()
		if p == nil {
			return true
		}
		if p.waiting.Add(1) > p.queue {
			p.waiting.Add(-1)
			return false
		}
		select {
		case <-p.ch:
		case <-done:
			p.waiting.Add(-1)
			return true
		}
		p.waiting.Add(-1)
	}
}

// serveQueueFull answers a request that found the pause's queue full: 503 with Retry-After,
// counted as a 503 of colour none (or of the endpoint's colour, by cnt).
func (r *Router) serveQueueFull(w http.ResponseWriter, cnt *counters) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, "teal: paused, too many requests waiting\n")
	cnt.count(http.StatusServiceUnavailable)
	cnt.failed.Add(1)
}
