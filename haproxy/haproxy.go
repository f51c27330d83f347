// Package haproxy drives a running HAProxy as teal's router (router: haproxy): the blue and
// green instances are servers of one backend, pre-declared in haproxy.cfg as slots named
// blue1, blue2, …, green1, …, which teal fills with set server … addr through the Runtime API
// and between which it moves traffic with server weights and states.
//
// Every change is made before it breaks anything: the colour that gains traffic is made ready
// with its weight and read back with show servers state, and only then is the colour that loses
// it set to drain, and read back again. See docs/haproxy.md for the haproxy.cfg it needs.
package haproxy

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"teal.dev/teal"
)

// Defaults of a Router's exported fields.
const (
	// DefaultReadyTimeout bounds how long Route and SetBackends wait for servers made ready
	// to be UP (HAProxy's own health check, when the slots have one, passing them).
	DefaultReadyTimeout = 30 * time.Second
	// DefaultPoll is how often Drain looks at the sessions still open, and Route at servers
	// not yet UP.
	DefaultPoll = 50 * time.Millisecond
)

// MaxWeight is the largest weight HAProxy gives a server: a colour with all the traffic and
// one server has it.
const MaxWeight = 256

// Router moves traffic between the colours' servers of one HAProxy backend. It implements
// teal.Router, and counts each colour's traffic from show stat (Counts, Sample).
//
// HAProxy holds the state: every change starts by reading the backend's servers back, so that
// a Router made after a restart of teal carries on from what HAProxy does now. Open infers the
// split in force from the servers' states and weights.
type Router struct {
	// Logger receives every change made to HAProxy; nil discards them.
	Logger *slog.Logger
	// Timeout bounds one Runtime API command. = DefaultTimeout.
	Timeout time.Duration
	// ReadyTimeout bounds the wait for servers made ready to be UP. = DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Poll is how often Drain and the wait for UP servers look again. = DefaultPoll.
	Poll time.Duration
	// MinSlots is the number of slots each colour needs at least: the instances teal runs
	// per colour. Open fails when the backend has fewer. = 1 when 0 or less.
	MinSlots int

	socket, backend string

	mu     sync.Mutex // serialises Open, SetBackends, Route and Reapply: each reads back, then changes
	opened bool
	slots  [2][]string // slot names by colour index, in number order; fixed once opened
	shares [2]int      // the split in force, in percent, by colour index
	addrs  [2][]string // what SetBackends last put in each colour's slots; nil before it did
	pid    string      // the HAProxy process seen at Open or at the latest Reapply

	statsMu sync.Mutex // serialises show stat queries, so that counters are seen in order
	mono    map[string]*[4]monotonic
	last    [2]totals // the latest totals, returned when show stat fails
}

var _ teal.Router = (*Router)(nil)

// NewRouter returns a Router for the backend of the HAProxy whose Runtime API listens at
// socket (a unix socket path, or ipv4@host:port). Nothing is checked until Open.
func NewRouter(socket, backend string) *Router {
	return &Router{Timeout: DefaultTimeout, ReadyTimeout: DefaultReadyTimeout, Poll: DefaultPoll,
		socket: socket, backend: backend, mono: map[string]*[4]monotonic{}}
}

// Open checks that the Runtime API answers at level admin, that the backend exists with
// MinSlots blue and green slots and a balance algorithm whose weights can change at run time,
// and infers the split in force from the slots' states and weights. SetBackends, Route and
// Drain open the Router themselves when Open was not called.
func (r *Router) Open(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.open(ctx)
}

// Close releases nothing: every command uses its own connection. It exists for the lifecycle
// every component shares.
func (r *Router) Close() error { return nil }

func (r *Router) open(ctx context.Context) error {
	if r.opened {
		return nil
	}
	if err := checkBackend(r.backend); err != nil {
		return fmt.Errorf("open haproxy router: %w", err)
	}
	if _, _, err := SocketAddr(r.socket); err != nil {
		return fmt.Errorf("open haproxy router: %w", err)
	}
	api := r.api()
	level, err := api.Do(ctx, "show cli level")
	if err != nil {
		return fmt.Errorf("open haproxy router: %w (is haproxy running, with \"stats socket %s level admin\" in the global section of haproxy.cfg?)", err, r.socket)
	}
	if level != "admin" && !strings.HasPrefix(level, "Unknown command") {
		return fmt.Errorf("open haproxy router: the Runtime API at %s answers at level %q, and teal changes servers, which needs level admin: add \"level admin\" to its stats socket line in haproxy.cfg: %w",
			r.socket, level, teal.ErrInvalid)
	}
	states, err := r.readback(ctx)
	if err != nil {
		return fmt.Errorf("open haproxy router: %w", err)
	}
	var slots [2][]string
	var others []string
	nums := map[string]int{}
	for _, s := range states {
		c, n, ok := slotOf(s.Name)
		if !ok {
			if s.Admin.Name() == StateReady && s.Weight > 0 {
				others = append(others, s.Name)
			}
			continue
		}
		slots[colorIndex(c)] = append(slots[colorIndex(c)], s.Name)
		nums[s.Name] = n
	}
	need := max(r.MinSlots, 1)
	for i := range slots {
		slices.SortFunc(slots[i], func(a, b string) int { return cmp.Compare(nums[a], nums[b]) })
	}
	if len(slots[0]) < need || len(slots[1]) < need {
		return fmt.Errorf("open haproxy router: backend %s has %d blue and %d green slots, and teal needs %d of each: declare them in backend %s of haproxy.cfg (in place of any blue or green servers there), then reload haproxy:\n%s: %w",
			r.backend, len(slots[0]), len(slots[1]), need, r.backend, templateLines(need), teal.ErrInvalid)
	}
	stats, err := r.stat(ctx, 2)
	if err != nil {
		return fmt.Errorf("open haproxy router: %w", err)
	}
	for _, s := range stats {
		if s.Name != "BACKEND" {
			continue
		}
		switch s.Algo {
		case "roundrobin", "random", "":
		case "static-rr":
			return fmt.Errorf("open haproxy router: backend %s balances with static-rr, whose weights cannot change at run time: use \"balance roundrobin\": %w", r.backend, teal.ErrInvalid)
		default:
			r.log().Warn("haproxy backend balances by its own rule: a weighted split is approximate", "backend", r.backend, "balance", s.Algo)
		}
	}
	if len(others) > 0 {
		r.log().Warn("haproxy backend has servers that are not teal's slots and take traffic", "backend", r.backend, "servers", others)
	}
	if r.pid, err = r.api().ProcessID(ctx); err != nil {
		return fmt.Errorf("open haproxy router: %w", err)
	}
	r.slots = slots
	r.shares = inferShares(states)
	r.opened = true
	r.log().Info("haproxy router opened", "socket", r.socket, "backend", r.backend,
		"blue_slots", len(slots[0]), "green_slots", len(slots[1]), "blue", r.shares[0], "green", r.shares[1])
	return nil
}

// templateLines are the haproxy.cfg lines that declare n slots of each colour.
func templateLines(n int) string {
	return fmt.Sprintf("    server-template blue 1-%d 127.0.0.1:1 disabled\n    server-template green 1-%d 127.0.0.1:1 disabled", n, n)
}

// checkBackend refuses a backend name the Runtime API would split or misread.
func checkBackend(b string) error {
	if b == "" || strings.ContainsAny(b, " \t\r\n;/#") {
		return fmt.Errorf("haproxy.backend %q: want a backend name of haproxy.cfg, without spaces, '/', ';' or '#': %w", b, teal.ErrInvalid)
	}
	return nil
}

// slotOf parses a slot name: blue3 is slot 3 of blue.
func slotOf(name string) (teal.Color, int, bool) {
	for _, c := range teal.Colors {
		rest, ok := strings.CutPrefix(name, string(c))
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 {
			return "", 0, false
		}
		return c, n, true
	}
	return "", 0, false
}

// inferShares returns the split the slots' states and weights make: each colour's share of
// the weight of the ready slots, in percent.
func inferShares(states []ServerState) [2]int {
	var w [2]int
	for _, s := range states {
		c, _, ok := slotOf(s.Name)
		if ok && s.Admin.Name() == StateReady {
			w[colorIndex(c)] += s.Weight
		}
	}
	total := w[0] + w[1]
	if total == 0 {
		return [2]int{}
	}
	b := (200*w[0] + total) / (2 * total) // rounded
	return [2]int{b, 100 - b}
}

// Weight returns the weight of each of n servers of a colour whose share is share percent:
// share × 256 / n, rounded, at least 1 while the share is over 0.
func Weight(share, n int) int {
	if share <= 0 || n <= 0 {
		return 0
	}
	w := (2*share*MaxWeight + 100*n) / (200 * n)
	return min(max(w, 1), MaxWeight)
}

// Servers reads the backend's servers back with show servers state.
func (r *Router) Servers(ctx context.Context) ([]ServerState, error) {
	if err := checkBackend(r.backend); err != nil {
		return nil, err
	}
	return r.readback(ctx)
}

// want is what one slot should be.
type want struct {
	name   string
	addr   netip.AddrPort // the backend, for ready and drain
	state  string         // StateReady, StateDrain or StateMaint
	weight int            // for ready
}

func (w want) String() string {
	if w.state == StateReady {
		return fmt.Sprintf("%s ready (%s, weight %d)", w.name, w.addr, w.weight)
	}
	if w.state == StateDrain {
		return fmt.Sprintf("%s drain (%s)", w.name, w.addr)
	}
	return w.name + " maint"
}

// SetBackends fills c's slots with addrs ("host:port"; a host name is resolved, HAProxy takes
// addresses) and puts the unused ones in maint. A backend that already has a slot keeps it.
// The filled slots take c's share of the split in force: ready with their weight when it is
// over 0, drain when it is 0, so that the colour is ready to take traffic the moment Route
// gives it some. The slots are read back after the change; slots made ready must be UP.
func (r *Router) SetBackends(ctx context.Context, c teal.Color, addrs []string) error {
	if !c.Valid() {
		return fmt.Errorf("set backends: colour %q: want blue or green: %w", c, teal.ErrInvalid)
	}
	targets, err := resolve(ctx, addrs)
	if err != nil {
		return fmt.Errorf("set backends of %s: %w", c, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.open(ctx); err != nil {
		return fmt.Errorf("set backends of %s: %w", c, err)
	}
	if err := r.setBackends(ctx, c, targets); err != nil {
		return err
	}
	r.addrs[colorIndex(c)] = slices.Clone(addrs)
	r.log().Info("haproxy backends set", "color", c, "backends", addrs, "share", r.shares[colorIndex(c)])
	return nil
}

// setBackends fills c's slots with targets; r.mu is held and the Router open.
func (r *Router) setBackends(ctx context.Context, c teal.Color, targets []netip.AddrPort) error {
	ci := colorIndex(c)
	slots := r.slots[ci]
	if len(targets) > len(slots) {
		return fmt.Errorf("set backends of %s: %d instances and backend %s has %d %s slots: declare more in haproxy.cfg (%q) and reload haproxy: %w",
			c, len(targets), r.backend, len(slots), c, fmt.Sprintf("server-template %s 1-%d 127.0.0.1:1 disabled", c, len(targets)), teal.ErrInvalid)
	}
	before, err := r.readbackNamed(ctx, slots)
	if err != nil {
		return fmt.Errorf("set backends of %s: %w", c, err)
	}

	// A backend already in a slot stays there: its connections and counters stay with it.
	assign := map[string]netip.AddrPort{}
	used := make([]bool, len(targets))
	for _, name := range slots {
		s := before[name]
		if s.Admin.Name() == StateMaint {
			continue
		}
		for i, t := range targets {
			if !used[i] && sameAddr(s, t) {
				assign[name], used[i] = t, true
				break
			}
		}
	}
	// New backends go to slots in maint first, then to slots whose backend left.
	var free []string
	for _, maint := range []bool{true, false} {
		for _, name := range slots {
			if _, ok := assign[name]; !ok && (before[name].Admin.Name() == StateMaint) == maint {
				free = append(free, name)
			}
		}
	}
	for i, t := range targets {
		if !used[i] {
			assign[free[0]], free = t, free[1:]
		}
	}

	share := r.shares[ci]
	state, w := StateDrain, 0
	if share > 0 {
		state, w = StateReady, Weight(share, len(targets))
	}
	var fill, empty []want
	for _, name := range slots {
		if t, ok := assign[name]; ok {
			fill = append(fill, want{name: name, addr: t, state: state, weight: w})
		} else {
			empty = append(empty, want{name: name, state: StateMaint})
		}
	}
	// Fill first, then empty: a live colour never has fewer servers than it ends with.
	if err := r.apply(ctx, before, fill); err != nil {
		return fmt.Errorf("set backends of %s: %w", c, err)
	}
	if err := r.apply(ctx, before, empty); err != nil {
		return fmt.Errorf("set backends of %s: %w", c, err)
	}
	if err := r.confirm(ctx, append(fill, empty...)); err != nil {
		return fmt.Errorf("set backends of %s: %w", c, err)
	}
	return nil
}

// Route installs the split of routes.Traffic with the slots' weights and states, make before
// break: each colour with a share is made ready with its weights (the one whose share grows
// first) and read back, all its servers UP; only then is each colour without a share set to
// drain, and everything read back again. A colour with a share and no filled slot is refused
// before anything changes. The preview colour and the epoch are not HAProxy's concern: a
// preview listener is a backend of its own in haproxy.cfg.
func (r *Router) Route(ctx context.Context, routes teal.Routes) error {
	t := routes.Traffic
	if t.Blue < 0 || t.Blue > 100 || t.Green < 0 || t.Green > 100 || (t.Blue+t.Green != 100 && t.Blue+t.Green != 0) {
		return fmt.Errorf("route: traffic blue %d%% green %d%%: want shares adding up to 100: %w", t.Blue, t.Green, teal.ErrInvalid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.open(ctx); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	return r.route(ctx, t)
}

// route installs split t; r.mu is held and the Router open.
func (r *Router) route(ctx context.Context, t teal.Traffic) error {
	before, err := r.readbackNamed(ctx, slices.Concat(r.slots[0], r.slots[1]))
	if err != nil {
		return fmt.Errorf("route: %w", err)
	}
	shares := [2]int{t.Blue, t.Green}
	var filled [2][]ServerState
	for i := range r.slots {
		for _, name := range r.slots[i] {
			if s := before[name]; s.Admin.Name() != StateMaint {
				filled[i] = append(filled[i], s)
			}
		}
		if shares[i] > 0 && len(filled[i]) == 0 {
			return fmt.Errorf("route: %s is to take %d%% of the traffic and has no server in backend %s (none healthy, or SetBackends not called): nothing changed: %w",
				teal.Colors[i], shares[i], r.backend, teal.ErrNotHealthy)
		}
	}
	// The colour whose share grows most goes first.
	order := []int{0, 1}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(shares[b]-r.shares[b], shares[a]-r.shares[a])
	})
	var up, down []want
	for _, i := range order {
		for _, s := range filled[i] {
			w := want{name: s.Name, addr: addrOf(s), state: StateDrain}
			if shares[i] > 0 {
				w.state, w.weight = StateReady, Weight(shares[i], len(filled[i]))
				up = append(up, w)
			} else {
				down = append(down, w)
			}
		}
	}
	if err := r.apply(ctx, before, up); err != nil {
		return fmt.Errorf("route blue %d%% green %d%%: %w", t.Blue, t.Green, err)
	}
	if err := r.confirm(ctx, up); err != nil {
		return fmt.Errorf("route blue %d%% green %d%%: nothing drained: %w", t.Blue, t.Green, err)
	}
	// The new split is in force from here: a failure to drain leaves both colours serving.
	r.shares = shares
	if err := r.apply(ctx, before, down); err != nil {
		return fmt.Errorf("route blue %d%% green %d%%: drain: %w", t.Blue, t.Green, err)
	}
	if err := r.confirm(ctx, append(up, down...)); err != nil {
		return fmt.Errorf("route blue %d%% green %d%%: %w", t.Blue, t.Green, err)
	}
	r.log().Info("haproxy traffic split set", "backend", r.backend, "blue", t.Blue, "green", t.Green,
		"blue_weight", Weight(t.Blue, len(filled[0])), "green_weight", Weight(t.Green, len(filled[1])))
	return nil
}

// Reapply notices that HAProxy was reloaded or restarted since the Router last looked (the
// process behind the Runtime API changed) and then sets both colours' servers and the split
// again, as teal last set them: a reload goes back to haproxy.cfg, where every slot is
// disabled, and HAProxy answers 503 until the slots are filled. It reports whether HAProxy had
// changed. Before the Router has set anything there is nothing to put back.
func (r *Router) Reapply(ctx context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.opened {
		return false, nil
	}
	pid, err := r.api().ProcessID(ctx)
	if err != nil {
		return false, fmt.Errorf("reapply: %w", err)
	}
	if pid == r.pid {
		return false, nil
	}
	shares, addrs := r.shares, r.addrs
	r.opened = false
	if err := r.open(ctx); err != nil { // the slots may have changed with haproxy.cfg
		return true, fmt.Errorf("reapply after haproxy %s became %s: %w", r.pid, pid, err)
	}
	r.shares = shares
	for i, c := range teal.Colors {
		if addrs[i] == nil {
			continue
		}
		targets, err := resolve(ctx, addrs[i])
		if err == nil {
			err = r.setBackends(ctx, c, targets)
		}
		if err != nil {
			return true, fmt.Errorf("reapply %s's servers: %w", c, err)
		}
	}
	if t := (teal.Traffic{Blue: shares[0], Green: shares[1]}); t.Blue+t.Green == 100 {
		if err := r.route(ctx, t); err != nil {
			return true, fmt.Errorf("reapply: %w", err)
		}
	}
	r.log().Warn("haproxy was reloaded or restarted: teal's servers and split set again", "backend", r.backend,
		"pid", pid, "blue", addrs[0], "green", addrs[1], "blue_share", shares[0], "green_share", shares[1])
	return true, nil
}

// Watch calls Reapply every interval until ctx ends, logging what it did and what failed.
func (r *Router) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.Reapply(ctx); err != nil && ctx.Err() == nil {
			r.log().Error("haproxy reload watch", "err", err)
		}
	}
}

// Shares returns the split the Router has in force, as Open inferred it or Route set it.
func (r *Router) Shares() teal.Traffic {
	r.mu.Lock()
	defer r.mu.Unlock()
	return teal.Traffic{Blue: r.shares[0], Green: r.shares[1]}
}

// apply sends the commands that take each slot from its state in before to w: the address,
// then the weight, then the state, so that a server is never ready with the wrong backend or
// weight. Slots already as wanted get no command.
func (r *Router) apply(ctx context.Context, before map[string]ServerState, ws []want) error {
	api := r.api()
	for _, w := range ws {
		s := before[w.name]
		var cmds []string
		if w.state != StateMaint && !sameAddr(s, w.addr) {
			if err := api.SetAddr(ctx, r.backend, w.name, w.addr.Addr().String(), int(w.addr.Port())); err != nil {
				return fmt.Errorf("set %s: %w", w, err)
			}
			cmds = append(cmds, "addr")
		}
		if w.state == StateReady && s.Weight != w.weight {
			if err := api.Set(ctx, fmt.Sprintf("set server %s/%s weight %d", r.backend, w.name, w.weight)); err != nil {
				return fmt.Errorf("set %s: %w", w, err)
			}
			cmds = append(cmds, "weight")
		}
		if s.Admin.Name() != w.state {
			if err := api.Set(ctx, fmt.Sprintf("set server %s/%s state %s", r.backend, w.name, w.state)); err != nil {
				return fmt.Errorf("set %s: %w", w, err)
			}
			cmds = append(cmds, "state")
		}
		if len(cmds) > 0 {
			r.log().Debug("haproxy server set", "backend", r.backend, "server", w.name, "to", w.String(),
				"was", s.String(), "changed", cmds)
		}
	}
	return nil
}

// confirm reads the slots back until each is as ws say and each ready one is UP. A slot in
// another state, at another address or weight, is an error at once: teal set it a moment ago,
// so someone or something else changed it. A ready slot not UP is waited for, until
// ReadyTimeout: HAProxy's own health check may not have passed it yet.
func (r *Router) confirm(ctx context.Context, ws []want) error {
	if len(ws) == 0 {
		return nil
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.name
	}
	wait := r.ReadyTimeout
	if wait <= 0 {
		wait = DefaultReadyTimeout
	}
	deadline := time.Now().Add(wait)
	for {
		got, err := r.readbackNamed(ctx, names)
		if err != nil {
			return fmt.Errorf("read back: %w", err)
		}
		var down []string
		for _, w := range ws {
			s := got[w.name]
			if why := mismatch(w, s); why != "" {
				return fmt.Errorf("read back backend %s: server %s is %s, want %s", r.backend, w.name, why, w)
			}
			if w.state == StateReady && s.Op != OpRunning {
				down = append(down, s.String())
			}
		}
		if len(down) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("read back backend %s: %s not UP after %s: HAProxy's health check has not passed them", r.backend, strings.Join(down, ", "), wait)
		}
		if err := sleep(ctx, r.poll()); err != nil {
			return fmt.Errorf("read back backend %s: waiting for %s to be UP: %w", r.backend, strings.Join(down, ", "), err)
		}
	}
}

// mismatch says how s differs from w, or "" when it does not.
func mismatch(w want, s ServerState) string {
	if got := s.Admin.Name(); got != w.state {
		return fmt.Sprintf("%s (admin state 0x%02x)", got, int(s.Admin))
	}
	if w.state == StateMaint {
		return ""
	}
	if !sameAddr(s, w.addr) {
		return fmt.Sprintf("at %s port %d", s.Addr, s.Port)
	}
	if w.state == StateReady && s.Weight != w.weight {
		return fmt.Sprintf("weight %d", s.Weight)
	}
	return ""
}

// Drain waits until none of c's servers has a session open or a request queued (show stat
// scur and qcur), or ctx is done. Keep-alive connections between requests hold no session.
func (r *Router) Drain(ctx context.Context, c teal.Color) error {
	if !c.Valid() {
		return fmt.Errorf("drain: colour %q: want blue or green: %w", c, teal.ErrInvalid)
	}
	still := "" // what the latest look found open
	for {
		stats, err := r.stat(ctx, 4)
		if err != nil {
			if ended(ctx) && still != "" {
				// The context ended during the look: what was open a moment ago is the news.
				return fmt.Errorf("drain %s: %s: %w", c, still, cmp.Or(context.Cause(ctx), context.DeadlineExceeded))
			}
			return fmt.Errorf("drain %s: %w", c, err)
		}
		var open int64
		var busy []string
		for _, s := range stats {
			if sc, _, ok := slotOf(s.Name); ok && sc == c && s.Scur+s.Qcur > 0 {
				open += s.Scur + s.Qcur
				busy = append(busy, fmt.Sprintf("%s %d", s.Name, s.Scur+s.Qcur))
			}
		}
		if open == 0 {
			return nil
		}
		still = fmt.Sprintf("%d requests still open (%s)", open, strings.Join(busy, ", "))
		if err := sleep(ctx, r.poll()); err != nil {
			return fmt.Errorf("drain %s: %s: %w", c, still, err)
		}
	}
}

// totals is what show stat counted for one colour, summed over its slots.
type totals struct {
	requests, failed, open int64
}

// monotonic keeps a counter growing across HAProxy reloads, which start counters from zero.
type monotonic struct{ last, base int64 }

func (m *monotonic) see(v int64) int64 {
	if v < m.last {
		m.base += m.last
	}
	m.last = v
	return m.base + v
}

// Counts returns what HAProxy counted for c's servers: requests answered or failed, those that
// failed (5xx from the server, could not connect, response broken off) and sessions open now.
// When show stat fails it returns the latest counts it had.
func (r *Router) Counts(c teal.Color) (requests, failed, open int64) {
	t := r.count(c)
	return t.requests, t.failed, t.open
}

// Sample returns c's request and failure counts for the analysis of a release. HAProxy keeps
// no distribution of answer times, so the latency histogram stays empty and
// release.analysis.max_p99 is not judged behind HAProxy.
func (r *Router) Sample(c teal.Color) teal.TrafficSample {
	t := r.count(c)
	return teal.TrafficSample{Requests: t.requests, Failed: t.failed}
}

func (r *Router) count(c teal.Color) totals {
	ci := colorIndex(c)
	if !c.Valid() {
		return totals{}
	}
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	stats, err := r.stat(ctx, 4)
	if err != nil {
		r.log().Debug("haproxy counts", "color", c, "err", err)
		return r.last[ci]
	}
	var t totals
	for _, s := range stats {
		sc, _, ok := slotOf(s.Name)
		if !ok || sc != c {
			continue
		}
		m := r.mono[s.Name]
		if m == nil {
			m = new([4]monotonic)
			r.mono[s.Name] = m
		}
		req, econ, eresp, h5 := m[0].see(s.ReqTot), m[1].see(s.Econ), m[2].see(s.Eresp), m[3].see(s.Hrsp5xx)
		// req_tot counts the requests the server answered; those it never answered are in
		// econ (no connection) and eresp (broken off), and HAProxy answers them 503 and 502.
		t.requests += req + econ + eresp
		t.failed += h5 + econ + eresp
		t.open += s.Scur + s.Qcur
	}
	t.failed = min(t.failed, t.requests)
	r.last[ci] = t
	return t
}

// readback returns the backend's servers, as show servers state reports them.
func (r *Router) readback(ctx context.Context) ([]ServerState, error) {
	cmd := "show servers state " + r.backend
	ans, err := r.api().Do(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(ans, "1\n") {
		return nil, &APIError{Command: cmd, Answer: strings.TrimSpace(ans)}
	}
	states, err := ParseServersState(ans)
	if err != nil {
		return nil, err
	}
	return states, nil
}

// readbackNamed returns the named servers by name, and an error naming any that is gone.
func (r *Router) readbackNamed(ctx context.Context, names []string) (map[string]ServerState, error) {
	states, err := r.readback(ctx)
	if err != nil {
		return nil, err
	}
	by := make(map[string]ServerState, len(states))
	for _, s := range states {
		by[s.Name] = s
	}
	for _, n := range names {
		if _, ok := by[n]; !ok {
			return nil, fmt.Errorf("server %s is no longer in backend %s (was haproxy reloaded with another haproxy.cfg?)", n, r.backend)
		}
	}
	return by, nil
}

// stat returns show stat's rows of the backend of the given kinds (2 backend, 4 servers).
func (r *Router) stat(ctx context.Context, kinds int) ([]Stat, error) {
	cmd := fmt.Sprintf("show stat %s %d -1", r.backend, kinds)
	ans, err := r.api().Do(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(ans, "# ") {
		return nil, &APIError{Command: cmd, Answer: strings.TrimSpace(ans)}
	}
	return ParseStat(ans)
}

// resolve turns "host:port" backends into addresses: HAProxy's set server addr takes an IP.
// A name is resolved once, here; an IPv4 address is preferred to an IPv6 one.
func resolve(ctx context.Context, addrs []string) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		p, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || host == "" || perr != nil || p == 0 {
			return nil, fmt.Errorf("backend %q: want host:port, like 127.0.0.1:8081: %w", a, teal.ErrInvalid)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if lerr != nil || len(ips) == 0 {
				return nil, fmt.Errorf("backend %q: resolve %s: %w", a, host, cmp.Or(lerr, fmt.Errorf("no address")))
			}
			ip = ips[0]
			for _, x := range ips {
				if x.Unmap().Is4() {
					ip = x
					break
				}
			}
		}
		if ip.Zone() != "" {
			return nil, fmt.Errorf("backend %q: an address with a zone cannot be given to HAProxy: %w", a, teal.ErrInvalid)
		}
		out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
	}
	return out, nil
}

// sameAddr reports whether s is at a.
func sameAddr(s ServerState, a netip.AddrPort) bool {
	ip, err := netip.ParseAddr(s.Addr)
	return err == nil && ip.Unmap() == a.Addr() && s.Port == int(a.Port())
}

// addrOf returns where s is; the zero AddrPort when HAProxy's address does not parse.
func addrOf(s ServerState) netip.AddrPort {
	ip, err := netip.ParseAddr(s.Addr)
	if err != nil || s.Port < 0 || s.Port > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(s.Port))
}

func colorIndex(c teal.Color) int {
	if c == teal.Green {
		return 1
	}
	return 0
}

// ended reports whether ctx is done or past its deadline: an I/O deadline taken from ctx may
// pass a moment before ctx itself says so.
func ended(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(dl)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (r *Router) api() *Client { return &Client{Socket: r.socket, Timeout: r.timeout()} }

func (r *Router) timeout() time.Duration {
	if r.Timeout <= 0 {
		return DefaultTimeout
	}
	return r.Timeout
}

func (r *Router) poll() time.Duration {
	if r.Poll <= 0 {
		return DefaultPoll
	}
	return r.Poll
}

func (r *Router) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r.Logger
}
