package proxy

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"teal.dev/teal"
)

// endpoint is the listener index of the colour endpoints in messages; their counters are
// their own (Router.endpoints), not the live and preview listeners'.
const endpoint = 2

// endpoints counts what each colour's endpoint served. With DNS switching, each colour has its
// own address (dns.targets) that the record points at; after a switch, requests still arriving
// at the old colour's endpoint come from clients that ignore TTLs, and the old colour is kept
// until they stop.
type endpoints struct {
	counters [2]counters
	arrived  [2]atomic.Int64 // requests that arrived, counted on arrival
	last     [2]atomic.Int64 // unix nanoseconds of the latest request's arrival; 0 for none
	desc     *prometheus.Desc
}

var _ prometheus.Collector = (*endpoints)(nil)

func newEndpoints() *endpoints {
	return &endpoints{desc: prometheus.NewDesc("teal_endpoint_requests_total",
		"Requests that arrived at a colour's own endpoint (the address its DNS target names), whatever the split.",
		[]string{"color"}, nil)}
}

// Describe implements prometheus.Collector.
func (e *endpoints) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc }

// Collect implements prometheus.Collector.
func (e *endpoints) Collect(ch chan<- prometheus.Metric) {
	for c := range e.counters {
		ch <- prometheus.MustNewConstMetric(e.desc, prometheus.CounterValue, float64(e.arrived[c].Load()), colorName(c))
	}
}

// ColorHandler returns the handler of colour c's endpoint: every request goes to c's healthy
// backends, whatever the traffic split, through the same pools and reverse proxies as
// production traffic (a Hold holds it too). It is the "load balancer" c's DNS target points at.
// Requests are counted by EndpointStats, not by Stats or Drain.
func (r *Router) ColorHandler(c teal.Color) http.Handler {
	if !c.Valid() {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "teal: no such colour", http.StatusNotFound)
		})
	}
	return &colorHandler{r: r, color: colorIndex(c)}
}

// EndpointStats returns how many requests arrived at c's endpoint since the Router was made,
// and when the latest one did (zero if none).
func (r *Router) EndpointStats(c teal.Color) (requests int64, last time.Time) {
	if !c.Valid() {
		return 0, time.Time{}
	}
	i := colorIndex(c)
	if ns := r.endpoints.last[i].Load(); ns != 0 {
		last = time.Unix(0, ns)
	}
	return r.endpoints.arrived[i].Load(), last
}

// colorHandler serves one colour's endpoint.
type colorHandler struct {
	r     *Router
	color int
}

// ServeHTTP forwards one request to the colour's backends, round-robin.
func (h *colorHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := h.r
	e := r.endpoints
	// Arrival is what residual traffic means: a request that waits in a hold still arrived.
	start := time.Now()
	e.last[h.color].Store(start.UnixNano())
	e.arrived[h.color].Add(1)
	cnt := &e.counters[h.color]
	if !r.wait(req) {
		r.serveQueueFull(w, cnt)
		return
	}
	cnt.active.Add(1)
	p := r.table.Load().pools[h.color]
	rec := r.recorders.Get().(*recorder)
	rec.reset(w, cnt, endpoint, h.color, req)
	defer r.finishEndpoint(rec)
	if p == nil {
		unavailable(rec, endpoint, h.color)
	} else {
		r.serve(rec, req, p, h.color, start)
	}
	rec.done = true
}

// finishEndpoint accounts for an endpoint request once its handler is done, normally or by
// panic, as finish does for the listeners (endpoint requests have no duration histogram).
func (r *Router) finishEndpoint(rec *recorder) {
	status := rec.status
	if !rec.done {
		if rec.req.Context().Err() == nil {
			rec.cnt.upstreamErrors.Add(1)
		}
		if status == 0 {
			status = http.StatusBadGateway
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	rec.cnt.count(status)
	if rec.hijacked {
		rec.cnt.longLived.Add(-1)
		rec.cnt.openConns.Add(-1)
		if rec.up != nil {
			rec.up.set.remove(rec.up)
		}
	} else {
		rec.cnt.active.Add(-1)
	}
	rec.reset(nil, nil, 0, 0, nil)
	r.recorders.Put(rec)
}
