package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"teal.dev/teal"

	"teal.dev/teal/internal/testutil"
)

func TestMonitor_HealthyAfterPassesUnhealthyAfterFailures(t *testing.T) {
	g := newGated(t)
	m := newMonitor(t, teal.HealthConfig{Interval: time.Millisecond, Timeout: 10 * time.Second,
		HealthyAfter: 3, UnhealthyAfter: 2})
	calls := &changes{}
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: g.addr}}, calls.record)
	g.arrival(t)

	// Each step answers the pending check and waits for the next one, which is made only
	// after the previous result was recorded.
	steps := []struct {
		answer      int
		wantHealthy bool
		wantErr     string
	}{
		{200, false, ""},
		{200, false, ""},
		{200, true, ""}, // third consecutive pass
		{500, true, "GET /healthz: 500"},
		{200, true, ""}, // a pass ends the failure streak
		{500, true, "GET /healthz: 500"},
		{503, false, "GET /healthz: 503"}, // second consecutive failure
		{200, false, ""},
	}
	for i, s := range steps {
		g.step(t, s.answer)
		got := m.State(teal.Blue)
		want := []teal.InstanceHealth{{Index: 0, Addr: g.addr, Healthy: s.wantHealthy, LastError: s.wantErr}}
		if !slices.Equal(got, want) {
			t.Fatalf("after step %d (%d): State = %+v, want %+v", i, s.answer, got, want)
		}
	}
	calls.waitLen(t, 2)
	if got, want := calls.get(), [][]string{{g.addr}, {}}; !equalCalls(got, want) {
		t.Fatalf("onChange calls = %q, want %q", got, want)
	}
}

func TestMonitor_OnChangeSequence(t *testing.T) {
	a, b := newGated(t), newGated(t)
	m := newMonitor(t, teal.HealthConfig{Interval: time.Millisecond, Timeout: 10 * time.Second,
		HealthyAfter: 1, UnhealthyAfter: 1})
	calls := &changes{}
	// Given out of order: onChange reports by index all the same.
	m.Watch(teal.Green, []teal.Instance{
		{Color: teal.Green, Index: 1, Addr: b.addr},
		{Color: teal.Green, Index: 0, Addr: a.addr},
	}, calls.record)
	a.arrival(t)
	b.arrival(t)

	b.step(t, 200)
	calls.waitLen(t, 1)
	a.step(t, 200)
	calls.waitLen(t, 2)
	a.step(t, 500)
	calls.waitLen(t, 3)
	b.step(t, 500)
	calls.waitLen(t, 4)
	want := [][]string{{b.addr}, {a.addr, b.addr}, {b.addr}, {}}
	if got := calls.get(); !equalCalls(got, want) {
		t.Fatalf("onChange calls = %q, want %q", got, want)
	}
	if got := m.State(teal.Green); len(got) != 2 || got[0].Addr != a.addr || got[1].Addr != b.addr {
		t.Fatalf("State = %+v, want a then b", got)
	}
}

func TestMonitor_WaitSuccess(t *testing.T) {
	s := newFlipServer(t, 500)
	m := newMonitor(t, teal.HealthConfig{Interval: 5 * time.Millisecond, Timeout: time.Second,
		HealthyAfter: 2, UnhealthyAfter: 1})
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: s.addr}}, nil)
	waitFor(t, 5*time.Second, func() bool { return m.State(teal.Blue)[0].LastError == "GET /healthz: 500" })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := m.Wait(ctx, teal.Blue); !errors.Is(err, teal.ErrNotHealthy) {
		t.Fatalf("Wait while the instance fails = %v, want ErrNotHealthy", err)
	}
	s.status.Store(200)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Wait(ctx, teal.Blue); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if got := m.State(teal.Blue)[0]; !got.Healthy || got.LastError != "" {
		t.Fatalf("State = %+v, want healthy", got)
	}
}

func TestMonitor_WaitTimeout(t *testing.T) {
	ok := newFlipServer(t, 200)
	failing := newFlipServer(t, 500)
	refused := testutil.DeadAddr(t)
	m := newMonitor(t, teal.HealthConfig{Interval: 5 * time.Millisecond, Timeout: time.Second,
		HealthyAfter: 1, UnhealthyAfter: 1})
	m.Watch(teal.Blue, []teal.Instance{
		{Color: teal.Blue, Index: 0, Addr: ok.addr},
		{Color: teal.Blue, Index: 1, Addr: failing.addr},
		{Color: teal.Blue, Index: 2, Addr: refused},
	}, nil)
	waitFor(t, 5*time.Second, func() bool {
		st := m.State(teal.Blue)
		return st[0].Healthy && st[1].LastError != "" && st[2].LastError != ""
	})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := m.Wait(ctx, teal.Blue)
	if !errors.Is(err, teal.ErrNotHealthy) {
		t.Fatalf("Wait = %v, want ErrNotHealthy", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"blue/1 (" + failing.addr + "): GET /healthz: 500",
		"blue/2 (" + refused + "): dial tcp " + refused + ": connect: connection refused",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Wait error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "blue/0") {
		t.Errorf("Wait error %q names the healthy instance", msg)
	}
	if teal.HintOf(err) == "" {
		t.Errorf("Wait error has no hint")
	}
}

func TestMonitor_WaitNotWatched(t *testing.T) {
	m := newMonitor(t, teal.HealthConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Wait(ctx, teal.Green); !errors.Is(err, teal.ErrNotHealthy) {
		t.Fatalf("Wait on an unwatched colour = %v, want ErrNotHealthy at once", err)
	}
}

func TestMonitor_CheckTimeout(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	addr := strings.TrimPrefix(hang.URL, "http://")
	m := newMonitor(t, teal.HealthConfig{Interval: 5 * time.Millisecond, Timeout: 50 * time.Millisecond,
		HealthyAfter: 1, UnhealthyAfter: 1})
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: addr}}, nil)
	want := "GET /healthz: no answer within 50ms"
	waitFor(t, 5*time.Second, func() bool { return m.State(teal.Blue)[0].LastError == want })
}

func TestMonitor_UnwatchStopsChecking(t *testing.T) {
	blue := newFlipServer(t, 200)
	clock := newFlipServer(t, 200) // checked all along: shows that time has passed
	m := newMonitor(t, teal.HealthConfig{Interval: 5 * time.Millisecond, Timeout: time.Second,
		HealthyAfter: 1, UnhealthyAfter: 1})
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: blue.addr}}, nil)
	m.Watch(teal.Green, []teal.Instance{{Color: teal.Green, Index: 0, Addr: clock.addr}}, nil)
	waitFor(t, 5*time.Second, func() bool { return blue.requests.Load() >= 3 })

	m.Unwatch(teal.Blue)
	// A request sent just before Unwatch may reach the handler just after it.
	stopped := blue.requests.Load() + 1
	from := clock.requests.Load()
	waitFor(t, 5*time.Second, func() bool { return clock.requests.Load() >= from+10 })
	if got := blue.requests.Load(); got > stopped {
		t.Fatalf("blue was checked %d times after Unwatch, want none", got-stopped+1)
	}
	if got := m.State(teal.Blue); got != nil {
		t.Fatalf("State after Unwatch = %+v, want none", got)
	}
}

func TestMonitor_WatchReplaces(t *testing.T) {
	a := newFlipServer(t, 200)
	b := newFlipServer(t, 200)
	m := newMonitor(t, teal.HealthConfig{Interval: 5 * time.Millisecond, Timeout: time.Second,
		HealthyAfter: 2, UnhealthyAfter: 1})
	calls := &changes{}
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: a.addr}}, calls.record)
	calls.waitLen(t, 1)

	// Replacing a by b: a is no longer checked, and the healthy set goes from [a] to [] (b
	// has not passed yet) to [b].
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: b.addr}}, calls.record)
	stopped := a.requests.Load() + 1
	calls.waitLen(t, 3)
	if got, want := calls.get(), [][]string{{a.addr}, {}, {b.addr}}; !equalCalls(got, want) {
		t.Fatalf("onChange calls = %q, want %q", got, want)
	}
	from := b.requests.Load()
	waitFor(t, 5*time.Second, func() bool { return b.requests.Load() >= from+10 })
	if got := a.requests.Load(); got > stopped {
		t.Fatalf("a was checked %d times after being replaced, want none", got-stopped+1)
	}

	// Watching the same address again keeps its health: no flap through the empty set.
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: b.addr, PID: 42}}, calls.record)
	if got := m.State(teal.Blue); !got[0].Healthy {
		t.Fatalf("State after re-watching = %+v, want still healthy", got)
	}
	if err := m.Wait(context.Background(), teal.Blue); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if got := calls.get(); len(got) != 3 {
		t.Fatalf("onChange calls after re-watching = %q, want no new call", got)
	}
}

func TestMonitor_KeepsConnectionsAlive(t *testing.T) {
	var conns atomic.Int64
	var requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		fmt.Fprint(w, strings.Repeat("ok", 1000)) // a body to drain
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	m := newMonitor(t, teal.HealthConfig{Interval: 2 * time.Millisecond, Timeout: time.Second})
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: strings.TrimPrefix(srv.URL, "http://")}}, nil)
	waitFor(t, 5*time.Second, func() bool { return requests.Load() >= 10 })
	if got := conns.Load(); got != 1 {
		t.Fatalf("%d connections for %d checks, want 1", got, requests.Load())
	}
}

func TestMonitor_Close(t *testing.T) {
	s := newFlipServer(t, 200)
	m := NewMonitor(teal.HealthConfig{Interval: 5 * time.Millisecond})
	m.Watch(teal.Blue, []teal.Instance{{Color: teal.Blue, Index: 0, Addr: s.addr}}, nil)
	waitFor(t, 5*time.Second, func() bool { return s.requests.Load() >= 1 })
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m.Watch(teal.Green, []teal.Instance{{Color: teal.Green, Index: 0, Addr: s.addr}}, nil)
	if got := m.State(teal.Green); got != nil {
		t.Fatalf("State after Watch after Close = %+v, want none", got)
	}
	if got := m.State(teal.Blue); got != nil {
		t.Fatalf("State after Close = %+v, want none", got)
	}
}

func newMonitor(t *testing.T, cfg teal.HealthConfig) *Monitor {
	t.Helper()
	m := NewMonitor(cfg)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close monitor: %v", err)
		}
	})
	return m
}

// gated is a health endpoint whose every answer the test gives.
type gated struct {
	addr    string
	arrived chan struct{}
	answers chan int
}

func newGated(t *testing.T) *gated {
	t.Helper()
	g := &gated{arrived: make(chan struct{}), answers: make(chan int)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case g.arrived <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		select {
		case code := <-g.answers:
			w.WriteHeader(code)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	g.addr = strings.TrimPrefix(srv.URL, "http://")
	return g
}

// arrival waits for the next check to arrive.
func (g *gated) arrival(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no health check arrived")
	}
}

// step answers the pending check and waits for the next one: the monitor checks an
// instance again only after recording the previous result.
func (g *gated) step(t *testing.T, code int) {
	t.Helper()
	select {
	case g.answers <- code:
	case <-time.After(10 * time.Second):
		t.Fatal("no health check waiting for an answer")
	}
	g.arrival(t)
}

// flipServer answers health checks with the status the test sets, counting them.
type flipServer struct {
	addr     string
	status   atomic.Int64
	requests atomic.Int64
}

func newFlipServer(t *testing.T, status int) *flipServer {
	t.Helper()
	s := &flipServer{}
	s.status.Store(int64(status))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(srv.Close)
	s.addr = strings.TrimPrefix(srv.URL, "http://")
	return s
}

// changes records onChange calls.
type changes struct {
	mu    sync.Mutex
	calls [][]string
}

func (c *changes) record(healthy []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, healthy)
}

func (c *changes) get() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *changes) waitLen(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, func() bool { return len(c.get()) >= n })
}

func equalCalls(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, "the condition", cond)
}
