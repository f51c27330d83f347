// Package proxy is teal's built-in HTTP router: the load balancer in front of the blue and
// green environments. It serves production traffic by the split the controller installs, a
// preview listener that always reaches the idle colour, and counts what it forwards so that a
// switch can drain the old colour and analysis can judge the new one.
package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"teal.dev/teal"
)

// DefaultMaxHold is the longest a request waits while production traffic is held.
const DefaultMaxHold = 30 * time.Second

// drainPoll is how often Drain looks at the in-flight count. Requests finish on their own
// schedule; a few milliseconds of lag on a drain measured in seconds is immaterial.
const drainPoll = 5 * time.Millisecond

// Stats counts what one listener forwarded to one colour since the Router was made.
type Stats struct {
	Requests       int64 // answered, whatever the status
	Errors5xx      int64 // answered with a 5xx, the router's own 502 and 503 included
	UpstreamErrors int64 // the backend could not be reached or broke off its response
	Failed         int64 // answered with a 5xx or broken off: each failed request once
	InFlight       int64 // being served now, long-lived connections included
	OpenConns      int64 // upgraded (WebSocket) connections open now
	LongLived      int64 // long-lived connections open now: upgraded ones and event streams
}

// Router is the built-in HTTP router. It implements teal.Router: the controller gives it each
// colour's healthy backends and the traffic split; Handler serves production traffic by that
// split and PreviewHandler serves the preview colour.
//
// The routing decision is an immutable table behind an atomic pointer, replaced whole by
// SetBackends and Route, so a request reads it once, without a lock, and sees one consistent
// decision.
type Router struct {
	// Logger receives upstream errors and routing changes; nil discards them. Set it before
	// the first SetBackends.
	Logger *slog.Logger
	// Transport carries requests to backends; NewRouter sets it to NewTransport(), whose
	// own connection pool carries plain requests on the handler's goroutine. Any other
	// RoundTripper is used through httputil.ReverseProxy for every request. Replace it, if
	// at all, before the first SetBackends: backends keep the transport they were made with.
	Transport http.RoundTripper

	// MaxHold bounds how long Hold keeps a request waiting; then it is routed by the table
	// of the moment. = DefaultMaxHold.
	MaxHold time.Duration
	// Sticky configures sticky sessions during weighted splits (sticky.go). Set it before
	// the first SetBackends or Route. Off by default.
	Sticky Sticky
	// CloseGrace is how long CloseLongLived lets a WebSocket's close handshake run before
	// closing both connections. = DefaultCloseGrace.
	CloseGrace time.Duration

	mu        sync.Mutex // serialises writers of table (and stickyOld); readers never take it
	table     atomic.Pointer[table]
	stickyOld teal.Color             // the colour existing sessions stay on (SetStickyOld)
	held      atomic.Pointer[gate]   // non-nil while Hold is in force (pause.go)
	paused    atomic.Pointer[gate]   // non-nil while Pause is in force (pause.go)
	shadow    atomic.Pointer[shadow] // non-nil while shadow traffic runs (shadow.go)
	seq       atomic.Uint64          // request sequence for weighted splits
	// maintenance is on while every production request is answered 503 (maintenance.go).
	maintenance atomic.Bool

	counters     [2][3]counters // by listener, then colour index (none included)
	endpoints    *endpoints     // the colour endpoints' own counters (endpoint.go)
	long         [2]longSet     // long-lived connections by colour, any listener (longlived.go)
	shadowCounts [shadowResults]atomic.Int64
	metrics      *metrics
	recorders    sync.Pool
	buffers      bufferPool
	heads        headPool
	handlers     [2]handler
}

var _ teal.Router = (*Router)(nil)

// NewRouter returns a Router with nothing live and no backends: every request is answered
// 503 until Route and SetBackends say otherwise.
func NewRouter() *Router {
	r := &Router{Transport: NewTransport(), MaxHold: DefaultMaxHold, CloseGrace: DefaultCloseGrace,
		endpoints: newEndpoints()}
	r.table.Store(newTable(teal.Routes{}, [2]*pool{}))
	r.metrics = newMetrics(r)
	r.recorders.New = func() any { return new(recorder) }
	r.handlers = [2]handler{{r: r, listener: live}, {r: r, listener: preview}}
	return r
}

// Handler returns the handler for production traffic (the `listen` address): each request
// goes to a colour by the traffic split and to that colour's backends round-robin.
func (r *Router) Handler() http.Handler { return &r.handlers[live] }

// PreviewHandler returns the handler for the `preview` address: every request goes to the
// preview colour, whatever the split. Its requests are not counted by Stats or Drain.
func (r *Router) PreviewHandler() http.Handler { return &r.handlers[preview] }

// Routes returns the routes in force.
func (r *Router) Routes() teal.Routes { return r.table.Load().routes }

// Stats returns what the production listener forwarded to c. Stats("") counts the requests
// that found nothing live.
func (r *Router) Stats(c teal.Color) Stats {
	cnt := &r.counters[live][colorIndex(c)]
	s := Stats{
		UpstreamErrors: cnt.upstreamErrors.Load(),
		InFlight:       cnt.inFlight(),
		OpenConns:      cnt.openConns.Load(),
		LongLived:      cnt.longLived.Load(),
		Errors5xx:      cnt.codes[5].Load(),
		Failed:         cnt.failed.Load(),
	}
	for i := range cnt.codes {
		s.Requests += cnt.codes[i].Load()
	}
	return s
}

// Counts returns what the production listener answered from c: requests, those that failed
// (5xx or upstream error) and those open now, for teal status.
func (r *Router) Counts(c teal.Color) (requests, failed, open int64) {
	s := r.Stats(c)
	return s.Requests, s.Failed, s.InFlight
}

// Sample returns what the production listener counted for c so far, answer times included,
// for the analysis of a release (teal.AnalysisConfig.Judge).
func (r *Router) Sample(c teal.Color) teal.TrafficSample {
	cnt := &r.counters[live][colorIndex(c)]
	var s teal.TrafficSample
	for i := range cnt.latency {
		s.Latency[i] = cnt.latency[i].Load()
	}
	// Read the counts after the histogram: a request counted in between shows in the counts
	// and not in the times, never the other way round.
	s.Failed = cnt.failed.Load()
	for i := range cnt.codes {
		s.Requests += cnt.codes[i].Load()
	}
	return s
}

// Collectors returns the router's Prometheus metrics, for the caller to register:
// teal_requests_total{listener,color,code}, teal_request_duration_seconds{listener,color},
// teal_open_connections{listener,color}, teal_upstream_errors_total{color},
// teal_long_lived_connections{color}, teal_shadow_requests_total{result} and
// teal_endpoint_requests_total{color}.
func (r *Router) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.metrics, r.metrics.duration, r.endpoints}
}

// SetBackends replaces the backends ("host:port") of c. An empty list takes c out: its
// requests are answered 503. Requests in flight finish on the backend they were sent to.
func (r *Router) SetBackends(_ context.Context, c teal.Color, addrs []string) error {
	if !c.Valid() {
		return fmt.Errorf("set backends: colour %q: %w", c, teal.ErrInvalid)
	}
	for _, a := range addrs {
		if err := checkAddr(a); err != nil {
			return fmt.Errorf("set backends of %s: %w", c, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	pools := old.pools
	pools[colorIndex(c)] = r.newPool(c, addrs)
	r.table.Store(r.newTable(old.routes, pools))
	r.logger().Debug("backends set", "color", c, "backends", addrs)
	return nil
}

// Route installs routes: every request that starts after Route returns is routed by them;
// requests in flight finish where they are.
func (r *Router) Route(_ context.Context, routes teal.Routes) error {
	if err := checkRoutes(routes); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.table.Store(r.newTable(routes, r.table.Load().pools))
	r.logger().Debug("routes set", "blue", routes.Traffic.Blue, "green", routes.Traffic.Green,
		"preview", routes.Preview, "epoch", routes.Epoch)
	return nil
}

// newTable returns the table for routes and pools with the Router's sticky settings; the
// caller holds r.mu.
func (r *Router) newTable(routes teal.Routes, pools [2]*pool) *table {
	t := newTable(routes, pools)
	if t.split != nil {
		t.sticky = newStickyTable(&r.Sticky, r.stickyOld, routes.Epoch)
	}
	return t
}

// Drain waits until no ordinary production request routed to c is in flight, or ctx ends.
// Long-lived connections (upgraded connections and event streams) are not waited for: they
// stay open across the switch, and ending them is CloseLongLived's business, after
// release.long_drain. Preview requests are not waited for either.
func (r *Router) Drain(ctx context.Context, c teal.Color) error {
	if !c.Valid() {
		return fmt.Errorf("drain: colour %q: %w", c, teal.ErrInvalid)
	}
	cnt := &r.counters[live][colorIndex(c)]
	if cnt.active.Load() == 0 {
		return nil
	}
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if n := cnt.active.Load(); n > 0 {
				return fmt.Errorf("drain %s: %d requests still in flight: %w", c, n, ctx.Err())
			}
			return nil
		case <-tick.C:
			if cnt.active.Load() == 0 {
				return nil
			}
		}
	}
}

// DrainRequests is Drain, under the name the database switchover uses: it waits until no
// ordinary production request routed to c is in flight. Long-lived connections may stay open
// across a database switchover; requests may not.
func (r *Router) DrainRequests(ctx context.Context, c teal.Color) error {
	return r.Drain(ctx, c)
}

// Close closes idle connections to backends. The handlers keep working; Close is for when
// the listeners have been shut down.
func (r *Router) Close() error {
	if t, ok := r.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

func (r *Router) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// newPool makes c's pool of backends, one reverse proxy per listener each and, when the
// Transport is the router's own, the backend's connection pool; nil when addrs is empty.
// Duplicate addresses are dropped, so a retry never tries the same backend twice.
func (r *Router) newPool(c teal.Color, addrs []string) *pool {
	p := &pool{}
	own, _ := r.Transport.(*Transport)
	seen := make(map[string]bool, len(addrs))
	errorLog := slog.NewLogLogger(r.logger().With("color", c).Handler(), slog.LevelWarn)
	ci := colorIndex(c)
	// Each listener has its own counters, and ModifyResponse sees only the response: a
	// proxy per listener lets it count an event stream where its request is counted.
	cnts := [3]*counters{&r.counters[live][ci], &r.counters[preview][ci], &r.endpoints.counters[ci]}
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		b := &backend{addr: a}
		if own != nil {
			b.conns = own.pool(a)
		}
		rt := &retrier{rt: r.Transport, pool: p, index: len(p.backends), router: r}
		for l := range b.proxies {
			b.proxies[l] = &httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					// The outbound request is a clone of the inbound one, so it keeps the
					// client's Host header, as a load balancer should; only the target
					// changes.
					pr.Out.URL.Scheme = "http"
					pr.Out.URL.Host = a
					// Client-supplied X-Forwarded-* were stripped by ReverseProxy: the
					// backend sees what this router observed, not what a client claims.
					pr.SetXForwarded()
				},
				Transport:      rt,
				BufferPool:     &r.buffers,
				ErrorHandler:   r.proxyError,
				ErrorLog:       errorLog,
				ModifyResponse: r.modifyResponse(cnts[l], ci),
			}
		}
		p.backends = append(p.backends, b)
	}
	if len(p.backends) == 0 {
		return nil
	}
	return p
}

// checkAddr accepts host:port with a non-empty host and a port in 1..65535.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("backend address %q: %w: %w", a, teal.ErrInvalid, err)
	}
	if host == "" {
		return fmt.Errorf("backend address %q: no host: %w", a, teal.ErrInvalid)
	}
	if a[0] == '[' {
		// Brackets are for IPv6 literals only.
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() || ip.Zone() != "" {
			return fmt.Errorf("backend address %q: bad IPv6 address: %w", a, teal.ErrInvalid)
		}
	} else {
		// A DNS name or an IPv4 address: anything else could change the meaning of the URL
		// the address is put into.
		for i := 0; i < len(host); i++ {
			ch := host[i]
			if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' ||
				ch == '.' || ch == '-' || ch == '_') {
				return fmt.Errorf("backend address %q: bad host: %w", a, teal.ErrInvalid)
			}
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("backend address %q: bad port: %w", a, teal.ErrInvalid)
	}
	return nil
}

// checkRoutes accepts shares in 0..100 that add up to 100, or to 0 (nothing live).
func checkRoutes(rt teal.Routes) error {
	b, g := rt.Traffic.Blue, rt.Traffic.Green
	if b < 0 || b > 100 || g < 0 || g > 100 || (b+g != 100 && b+g != 0) {
		return fmt.Errorf("traffic blue %d%% green %d%%: want shares adding up to 100: %w",
			b, g, teal.ErrInvalid)
	}
	if rt.Preview != "" && !rt.Preview.Valid() {
		return fmt.Errorf("preview colour %q: %w", rt.Preview, teal.ErrInvalid)
	}
	return nil
}

// handler serves one listener.
type handler struct {
	r        *Router
	listener int
}

// ServeHTTP routes one request. It is the hot path: no locks, no formatting, and the response
// recorder and copy buffers come from pools. Sticky sessions, shadow traffic and upgrades
// allocate, but only for the requests they concern.
func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	r := h.r
	if h.listener == live {
		if r.maintenance.Load() {
			r.serveMaintenance(w, req, start)
			return
		}
		if !r.wait(req) {
			r.serveQueueFull(w, &r.counters[live][none])
			r.metrics.observers[live][none].Observe(time.Since(start).Seconds())
			return
		}
	}
	c, p, cookie := r.acquire(h.listener, req)
	rec := r.recorders.Get().(*recorder)
	rec.reset(w, &r.counters[h.listener][c], h.listener, c, req)
	defer r.finish(rec, start)
	if p == nil {
		unavailable(rec, h.listener, c)
		rec.done = true
		return
	}
	if cookie != "" {
		w.Header().Add("Set-Cookie", cookie)
	}
	if h.listener == live {
		if s := r.shadow.Load(); s != nil {
			rec.mirror = s.choose(req, c)
		}
	}
	r.serve(rec, req, p, c, start)
	rec.done = true
}

// serve forwards req to one of p's backends, round-robin: through the pool when the request
// is plain, through the backend's ReverseProxy otherwise.
func (r *Router) serve(rec *recorder, req *http.Request, p *pool, c int, start time.Time) {
	i := p.pick()
	b := p.backends[i]
	if b.conns != nil && plain(req) {
		r.forward(rec, req, p, i, start)
		return
	}
	if len(req.Header["Upgrade"]) > 0 {
		req = r.trackUpgrade(rec, req, c)
	}
	b.proxies[rec.listener].ServeHTTP(rec, req)
}

// acquire picks the colour and pool of a request, and the sticky cookie to give it ("" for
// none), and counts it in flight there.
func (r *Router) acquire(listener int, req *http.Request) (int, *pool, string) {
	if listener == preview {
		c, p := r.table.Load().pickPreview()
		r.counters[preview][c].active.Add(1)
		return c, p, ""
	}
	for {
		t := r.table.Load()
		var (
			c      int
			p      *pool
			cookie string
		)
		if t.sticky != nil {
			c, p, cookie = t.pickSticky(req, &r.seq)
		} else {
			c, p = t.pickLive(&r.seq)
		}
		cnt := &r.counters[live][c]
		cnt.active.Add(1)
		// Drain trusts the in-flight count once Route has returned. A request that read the
		// table before Route stored a new one, but counted itself after Drain looked, would
		// slip past it; re-reading the table after counting closes that gap: either the
		// table is still current, or the request is counted out and routed afresh.
		if r.table.Load() == t {
			return c, p, cookie
		}
		cnt.active.Add(-1)
	}
}

// finish accounts for a request once its handler is done, normally or by panic.
func (r *Router) finish(rec *recorder, start time.Time) {
	status := rec.status
	if !rec.done {
		// ReverseProxy panics with http.ErrAbortHandler when copying the response broke
		// off; the status line may already have gone out.
		if rec.req.Context().Err() == nil {
			rec.cnt.upstreamErrors.Add(1)
		}
		if status == 0 {
			status = http.StatusBadGateway
		}
	}
	if status == 0 {
		status = http.StatusOK // the backend answered with no body and no explicit status
	}
	rec.cnt.count(status)
	if status >= 500 || !rec.done {
		rec.cnt.failed.Add(1)
	}
	switch {
	case rec.hijacked:
		// An upgraded connection left the active count when it was hijacked.
		rec.cnt.longLived.Add(-1)
		rec.cnt.openConns.Add(-1)
		if rec.up != nil {
			rec.up.set.remove(rec.up)
		}
	case isEventStream(rec.w.Header()):
		// A stream's lifetime is not an answer time either; it is active again since
		// its body closed.
		rec.cnt.active.Add(-1)
	default:
		rec.cnt.active.Add(-1)
		d := time.Since(start)
		rec.cnt.latency[teal.LatencyBucket(d)].Add(1)
		r.metrics.observers[rec.listener][rec.color].Observe(d.Seconds())
		if rec.mirror != nil && rec.done {
			go rec.mirror.send(status)
			rec.mirror = nil
		}
	}
	if rec.mirror != nil {
		rec.mirror.abandon() // broken off, or a stream: nothing to compare
	}
	rec.reset(nil, nil, 0, 0, nil)
	r.recorders.Put(rec)
}

// statusClientClosed records a request whose client went away before it was answered; it is
// never sent (there is nobody to send it to). The number is nginx's.
const statusClientClosed = 499

// proxyError answers a request whose backend could not be reached (after retries on the
// colour's other backends) or failed before answering.
func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	rec, ok := w.(*recorder)
	if ok && req.Context().Err() != nil {
		rec.status = statusClientClosed
		return
	}
	if ok {
		rec.cnt.upstreamErrors.Add(1)
		r.logger().Warn("upstream error", "listener", listenerName(rec.listener),
			"color", colorName(rec.color), "backend", req.URL.Host, "err", err)
	}
	badGateway(w)
}

// unavailable answers 503 for a request with no colour or no backend to go to. Retry-After
// tells well-behaved clients this is a moment, not an outage: backends come back as soon as
// they pass their health checks.
func unavailable(w http.ResponseWriter, listener, c int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	var msg string
	switch {
	case c == blue:
		msg = "teal: no healthy backend for blue\n"
	case c == green:
		msg = "teal: no healthy backend for green\n"
	case listener == preview:
		msg = "teal: no preview colour\n"
	default:
		msg = "teal: nothing is live\n"
	}
	_, _ = io.WriteString(w, msg)
}
