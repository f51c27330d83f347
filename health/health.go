// Package health checks instances over HTTP and says which of them may take traffic:
// teal's implementation of teal.Health.
//
// Each watched instance has a checker goroutine that GETs its health path every interval.
// Health is sticky in both directions, so one lost packet does not take an instance out and
// one lucky answer does not put it in: an instance becomes healthy after healthy_after
// consecutive passes and unhealthy after unhealthy_after consecutive failures. It starts
// unhealthy: traffic never goes to an instance that has not passed its checks.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"teal.dev/teal"
)

// maxBody is how much of a health answer is read (and discarded) so that the connection can
// be reused; a longer answer costs a new connection, not an unbounded read.
const maxBody = 64 << 10

var _ teal.Health = (*Monitor)(nil)

// Monitor watches the instances of both colours. It is safe for concurrent use.
type Monitor struct {
	// Logger receives health transitions; nil discards them.
	Logger *slog.Logger
	// Client performs the checks. The default keeps connections alive, ignores proxy
	// settings (instances are checked directly) and does not follow redirects (a 3xx is a
	// failure). Each check is bounded by the config's timeout, not by the client.
	Client *http.Client

	cfg teal.HealthConfig

	// colorMu serialises Watch and Unwatch of one colour (index 0 blue, 1 green), which wait
	// for the previous checkers to stop without holding mu.
	colorMu [2]sync.Mutex

	mu       sync.Mutex
	watches  map[teal.Color]*watch
	reported map[teal.Color][]string // the last healthy set handed to onChange, per colour
	changed  chan struct{}           // closed and replaced whenever an instance's health flips
	closed   bool
}

// watch is the checking of one colour's instances, replaced as a whole by the next Watch.
type watch struct {
	color    teal.Color
	onChange func(healthy []string)
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	kick     chan struct{} // wakes the notifier; buffered, one pending kick is enough
	checks   []*check      // in index order; their fields are guarded by Monitor.mu
}

type check struct {
	inst    teal.Instance
	healthy bool
	checked bool
	passes  int // consecutive
	fails   int // consecutive
	lastErr string
}

// NewMonitor returns a Monitor checking as cfg says; zero fields of cfg take their defaults
// (teal.DefaultConfig).
func NewMonitor(cfg teal.HealthConfig) *Monitor {
	def := teal.DefaultConfig().Health
	if cfg.Path == "" {
		cfg.Path = def.Path
	}
	if !strings.HasPrefix(cfg.Path, "/") {
		cfg.Path = "/" + cfg.Path
	}
	if cfg.Interval <= 0 {
		cfg.Interval = def.Interval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.HealthyAfter <= 0 {
		cfg.HealthyAfter = def.HealthyAfter
	}
	if cfg.UnhealthyAfter <= 0 {
		cfg.UnhealthyAfter = def.UnhealthyAfter
	}
	return &Monitor{
		Client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     90 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		cfg:      cfg,
		watches:  make(map[teal.Color]*watch),
		reported: make(map[teal.Color][]string),
		changed:  make(chan struct{}),
	}
}

// Watch replaces the instances watched for c: the previous checkers of c are stopped first.
// An instance whose address was already watched keeps its health; any other starts unhealthy
// and is checked at once, then every interval. onChange (may be nil) is called from the
// Monitor's goroutine with the addresses of c's healthy instances, in index order, whenever
// that set differs from the one last reported for c; it must not call Watch, Unwatch or
// Close for c. Watch does nothing after Close.
func (m *Monitor) Watch(c teal.Color, instances []teal.Instance, onChange func(healthy []string)) {
	mu := m.colorLock(c)
	if mu == nil {
		m.logger().Error("watch: invalid colour", "color", string(c))
		return
	}
	mu.Lock()
	defer mu.Unlock()

	m.mu.Lock()
	old := m.watches[c]
	delete(m.watches, c)
	m.mu.Unlock()
	if old != nil {
		old.stop()
	}

	insts := slices.Clone(instances)
	slices.SortFunc(insts, func(a, b teal.Instance) int { return a.Index - b.Index })
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{color: c, onChange: onChange, cancel: cancel, kick: make(chan struct{}, 1)}
	for _, in := range insts {
		w.checks = append(w.checks, &check{inst: in})
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		cancel()
		return
	}
	if old != nil {
		for _, ch := range w.checks {
			for _, o := range old.checks {
				if o.inst.Addr == ch.inst.Addr {
					ch.healthy, ch.checked, ch.passes, ch.fails, ch.lastErr = o.healthy, o.checked, o.passes, o.fails, o.lastErr
				}
			}
		}
	}
	m.watches[c] = w
	m.broadcastLocked()
	m.mu.Unlock()

	w.wg.Add(1 + len(w.checks))
	go m.notify(ctx, w)
	for _, ch := range w.checks {
		go m.checker(ctx, w, ch)
	}
	// The new set may already differ from the last one reported (instances replaced).
	w.poke()
}

// Unwatch stops checking c's instances and waits until its checkers have stopped.
func (m *Monitor) Unwatch(c teal.Color) {
	mu := m.colorLock(c)
	if mu == nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	m.mu.Lock()
	w := m.watches[c]
	delete(m.watches, c)
	m.broadcastLocked()
	m.mu.Unlock()
	if w != nil {
		w.stop()
	}
}

// State returns the latest health of c's watched instances, in index order.
func (m *Monitor) State(c teal.Color) []teal.InstanceHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.watches[c]
	if w == nil {
		return nil
	}
	out := make([]teal.InstanceHealth, len(w.checks))
	for i, ch := range w.checks {
		out[i] = teal.InstanceHealth{Index: ch.inst.Index, Addr: ch.inst.Addr, Healthy: ch.healthy, LastError: ch.lastErr}
	}
	return out
}

// Wait returns nil once every watched instance of c is healthy. When ctx ends first, or when
// c is not (or no longer) watched, it returns a *teal.Error of kind teal.ErrNotHealthy that
// names each instance that is not healthy with its last error.
func (m *Monitor) Wait(ctx context.Context, c teal.Color) error {
	for {
		m.mu.Lock()
		w := m.watches[c]
		changed := m.changed
		var bad []string
		if w != nil {
			bad = m.unhealthyLocked(w)
		}
		m.mu.Unlock()
		if w == nil {
			return teal.Errorf(teal.ErrNotHealthy, "", "%s not healthy: no instances are watched", c)
		}
		if len(bad) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			// Describe the instances as they are now, not as they were at the last flip:
			// the last errors are what the user needs.
			m.mu.Lock()
			if w := m.watches[c]; w != nil {
				bad = m.unhealthyLocked(w)
			}
			m.mu.Unlock()
			return teal.Errorf(teal.ErrNotHealthy,
				fmt.Sprintf("see what the instances say with `teal logs --color %s`", c),
				"%s not healthy: %s", c, strings.Join(bad, "; "))
		}
	}
}

// Close stops every checker. Watch does nothing afterwards. It always returns nil.
func (m *Monitor) Close() error {
	m.mu.Lock()
	m.closed = true
	watches := m.watches
	m.watches = make(map[teal.Color]*watch)
	m.broadcastLocked()
	m.mu.Unlock()
	for _, w := range watches {
		w.cancel()
	}
	for _, w := range watches {
		w.wg.Wait()
	}
	if m.Client != nil {
		m.Client.CloseIdleConnections()
	}
	return nil
}

func (w *watch) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *watch) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// checker checks one instance at once, then every interval, until ctx ends.
func (m *Monitor) checker(ctx context.Context, w *watch, ch *check) {
	defer w.wg.Done()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		err := m.probe(ctx, ch.inst.Addr)
		if ctx.Err() != nil {
			return // the check was cut short by Unwatch, not by the instance
		}
		m.record(w, ch, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// notify calls onChange, one call at a time, whenever the healthy set of w's colour differs
// from the one last reported.
func (m *Monitor) notify(ctx context.Context, w *watch) {
	defer w.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		m.mu.Lock()
		if ctx.Err() != nil {
			m.mu.Unlock()
			return
		}
		healthy := []string{}
		for _, ch := range w.checks {
			if ch.healthy {
				healthy = append(healthy, ch.inst.Addr)
			}
		}
		same := slices.Equal(healthy, m.reported[w.color])
		if !same {
			m.reported[w.color] = healthy
		}
		m.mu.Unlock()
		if !same && w.onChange != nil {
			w.onChange(slices.Clone(healthy))
		}
	}
}

// record counts a check's result and flips the instance's health when the streak is long
// enough.
func (m *Monitor) record(w *watch, ch *check, err error) {
	m.mu.Lock()
	was := ch.healthy
	ch.checked = true
	if err == nil {
		ch.passes = min(ch.passes+1, m.cfg.HealthyAfter)
		ch.fails = 0
		ch.lastErr = ""
		if ch.passes >= m.cfg.HealthyAfter {
			ch.healthy = true
		}
	} else {
		ch.fails = min(ch.fails+1, m.cfg.UnhealthyAfter)
		ch.passes = 0
		ch.lastErr = err.Error()
		if ch.fails >= m.cfg.UnhealthyAfter {
			ch.healthy = false
		}
	}
	flipped := ch.healthy != was
	if flipped {
		m.broadcastLocked()
	}
	m.mu.Unlock()
	if !flipped {
		return
	}
	log := m.logger().With("color", string(w.color), "instance", ch.inst.Index, "addr", ch.inst.Addr)
	if ch.healthy {
		log.Info("instance healthy")
	} else {
		log.Warn("instance unhealthy", "err", err)
	}
	w.poke()
}

// probe GETs the health path of addr: nil for a 2xx answer within the timeout.
func (m *Monitor) probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+m.cfg.Path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", m.cfg.Path, err)
	}
	req.Header.Set("User-Agent", "teal-health")
	client := m.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %s", m.cfg.Path, m.cfg.Timeout)
		}
		// The url.Error repeats the URL; the inner error ("dial tcp …: connection refused")
		// already names the address.
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %d", m.cfg.Path, resp.StatusCode)
	}
	return nil
}

// unhealthyLocked describes each instance of w that is not healthy.
func (m *Monitor) unhealthyLocked(w *watch) []string {
	var bad []string
	for _, ch := range w.checks {
		if ch.healthy {
			continue
		}
		why := ch.lastErr
		switch {
		case !ch.checked:
			why = "not checked yet"
		case why == "":
			why = fmt.Sprintf("passed %d of %d checks needed", ch.passes, m.cfg.HealthyAfter)
		}
		bad = append(bad, fmt.Sprintf("%s/%d (%s): %s", w.color, ch.inst.Index, ch.inst.Addr, why))
	}
	return bad
}

func (m *Monitor) broadcastLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Monitor) colorLock(c teal.Color) *sync.Mutex {
	switch c {
	case teal.Blue:
		return &m.colorMu[0]
	case teal.Green:
		return &m.colorMu[1]
	}
	return nil
}

func (m *Monitor) logger() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Logger
}
