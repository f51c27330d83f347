package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

func TestClient_Do(t *testing.T) {
	in := startHAProxy(t, haConfig{})
	ctx := context.Background()
	for _, socket := range []string{in.Socket, "unix@" + in.Socket, in.TCP} {
		t.Run(socket, func(t *testing.T) {
			c := &Client{Socket: socket}
			ans, err := c.Do(ctx, "show cli level")
			if err != nil || ans != "admin" {
				t.Fatalf("show cli level = %q, %v; want admin", ans, err)
			}
		})
	}
	c := &Client{Socket: in.Socket}

	err := c.Set(ctx, "set server shop/blue1 weight 300")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Answer != "Absolute weight can only be between 0 and 256 inclusive." {
		t.Fatalf("set weight 300 = %v, want an APIError quoting HAProxy", err)
	}
	if !strings.Contains(err.Error(), `"set server shop/blue1 weight 300"`) {
		t.Errorf("error %q does not name the command", err)
	}
	if err := c.SetAddr(ctx, "shop", "nosuch", "127.0.0.1", 80); !errors.As(err, &apiErr) || apiErr.Answer != "No such server." {
		t.Errorf("SetAddr nosuch = %v, want an APIError quoting \"No such server.\"", err)
	}
	if err := c.SetAddr(ctx, "shop", "blue1", "127.0.0.2", 8080); err != nil {
		t.Errorf("SetAddr blue1: %v", err)
	}
	if _, err := c.Do(ctx, "show info; show stat"); !errors.Is(err, teal.ErrInvalid) {
		t.Errorf("Do with ';' = %v, want ErrInvalid", err)
	}

	dead := &Client{Socket: in.Dir + "/none.sock"}
	if _, err := dead.Do(ctx, "show info"); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("Do on a missing socket = %v, want an error naming it", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Do(cctx, "show info"); err == nil {
		t.Errorf("Do with a cancelled context succeeded")
	}
}

func TestRouter_Open(t *testing.T) {
	in := startHAProxy(t, haConfig{Slots: 2})
	ctx := context.Background()

	r := NewRouter(in.Socket, "shop")
	r.MinSlots = 2
	if err := r.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := r.Shares(); got != (teal.Traffic{}) {
		t.Errorf("Shares of a fresh backend = %+v, want nothing live", got)
	}
	if err := NewRouter(in.TCP, "shop").Open(ctx); err != nil {
		t.Errorf("Open over TCP: %v", err)
	}

	tests := []struct {
		name, socket, backend string
		minSlots              int
		want                  []string
	}{
		{name: "too few slots", socket: in.Socket, backend: "shop", minSlots: 3,
			want: []string{"2 blue and 2 green slots", "needs 3", "server-template blue 1-3 127.0.0.1:1 disabled", "server-template green 1-3 127.0.0.1:1 disabled"}},
		{name: "no such backend", socket: in.Socket, backend: "nosuch", want: []string{`"Can't find backend."`, "show servers state nosuch"}},
		{name: "operator level", socket: in.Operator, backend: "shop", want: []string{`level "operator"`, "level admin"}},
		{name: "not running", socket: in.Dir + "/gone.sock", backend: "shop", want: []string{"gone.sock", "stats socket"}},
		{name: "bad backend", socket: in.Socket, backend: "shop/blue1", want: []string{"haproxy.backend", "shop/blue1"}},
		{name: "bad socket", socket: "ipv4@nowhere", backend: "shop", want: []string{"haproxy.socket", "ipv4@nowhere"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRouter(tt.socket, tt.backend)
			r.MinSlots = tt.minSlots
			err := r.Open(ctx)
			if err == nil {
				t.Fatalf("Open succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRouter_OpenRefusesStaticRR(t *testing.T) {
	in := startHAProxy(t, haConfig{Balance: "static-rr"})
	err := NewRouter(in.Socket, "shop").Open(context.Background())
	if err == nil || !strings.Contains(err.Error(), "balance roundrobin") {
		t.Fatalf("Open on static-rr = %v, want an error asking for balance roundrobin", err)
	}
}

func TestRouter_SetBackendsAndRoute(t *testing.T) {
	in := startHAProxy(t, haConfig{Slots: 3})
	ctx := context.Background()
	r := in.router(t)
	blue := backends(t, teal.Blue, 3)
	green := backends(t, teal.Green, 1)
	port := func(addr string) int {
		var p int
		_, _ = fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &p)
		return p
	}
	check := func(name, state string, port, weight int) {
		t.Helper()
		s := servers(t, r)[name]
		if s.Admin.Name() != state {
			t.Errorf("%s is %s, want %s", name, s, state)
		}
		if state != StateMaint && port != 0 && s.Port != port {
			t.Errorf("%s is at port %d, want %d", name, s.Port, port)
		}
		if state == StateReady && s.Weight != weight {
			t.Errorf("%s has weight %d, want %d", name, s.Weight, weight)
		}
	}

	// Nothing is live: the filled slots wait in drain, the others stay in maint.
	must(t, "SetBackends blue", r.SetBackends(ctx, teal.Blue, blue[:2]))
	check("blue1", StateDrain, port(blue[0]), 0)
	check("blue2", StateDrain, port(blue[1]), 0)
	check("blue3", StateMaint, 0, 0)
	check("green1", StateMaint, 0, 0)

	must(t, "Route blue", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)}))
	check("blue1", StateReady, port(blue[0]), 128)
	check("blue2", StateReady, port(blue[1]), 128)

	// A live colour's slots take its share as they are filled; a backend keeps its slot.
	must(t, "SetBackends blue again", r.SetBackends(ctx, teal.Blue, []string{blue[1], blue[2]}))
	check("blue2", StateReady, port(blue[1]), 128)
	check("blue3", StateReady, port(blue[2]), 128) // a slot in maint before the one blue[0] left
	check("blue1", StateMaint, 0, 0)
	must(t, "SetBackends blue, three", r.SetBackends(ctx, teal.Blue, blue))
	for i, name := range []string{"blue1", "blue2", "blue3"} {
		s := servers(t, r)[name]
		if s.Admin.Name() != StateReady || s.Weight != 85 {
			t.Errorf("slot %d: %s, want ready with weight 85", i, s)
		}
	}

	// A host name is resolved: HAProxy takes addresses.
	must(t, "SetBackends green", r.SetBackends(ctx, teal.Green, []string{"localhost:" + fmt.Sprint(port(green[0]))}))
	if s := servers(t, r)["green1"]; s.Admin.Name() != StateDrain || s.Port != port(green[0]) || s.Addr != "127.0.0.1" {
		t.Errorf("green1 = %s, want drain at 127.0.0.1 port %d", s, port(green[0]))
	}

	must(t, "Route 90/10", r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 90, Green: 10}}))
	check("green1", StateReady, port(green[0]), 26)
	check("blue1", StateReady, 0, 77)
	must(t, "Route green", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Green)}))
	check("green1", StateReady, port(green[0]), 256)
	for _, name := range []string{"blue1", "blue2", "blue3"} {
		if s := servers(t, r)[name]; s.Admin.Name() != StateDrain {
			t.Errorf("%s after the switch = %s, want drain", name, s)
		}
	}

	// A new Router (teal restarted) infers the split in force from HAProxy.
	if got := in.router(t).Shares(); got != teal.All(teal.Green) {
		t.Errorf("Shares after a restart = %+v, want green 100", got)
	}

	// Emptying a colour puts its slots in maint.
	must(t, "SetBackends blue none", r.SetBackends(ctx, teal.Blue, nil))
	for _, name := range []string{"blue1", "blue2", "blue3"} {
		check(name, StateMaint, 0, 0)
	}

	for _, tt := range []struct {
		name  string
		err   error
		wants []string
	}{
		{"too many", r.SetBackends(ctx, teal.Green, backends(t, teal.Green, 4)), []string{"4 instances", "3 green slots", "server-template green 1-4"}},
		{"bad address", r.SetBackends(ctx, teal.Green, []string{"127.0.0.1"}), []string{`"127.0.0.1"`, "host:port"}},
		{"bad colour", r.SetBackends(ctx, "red", nil), []string{`"red"`}},
		{"bad split", r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 60, Green: 60}}), []string{"blue 60% green 60%"}},
		{"a colour without servers", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)}), []string{"blue is to take 100%", "nothing changed"}},
	} {
		if tt.err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		for _, w := range tt.wants {
			if !strings.Contains(tt.err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tt.name, tt.err, w)
			}
		}
	}
	// The refused route changed nothing.
	check("green1", StateReady, port(green[0]), 256)
}

func TestRouter_RouteWaitsForHealthyServers(t *testing.T) {
	in := startHAProxy(t, haConfig{Slots: 1, Server: "check inter 50ms fall 1 rise 1"})
	ctx := context.Background()
	r := in.router(t)
	r.ReadyTimeout = 500 * time.Millisecond
	must(t, "SetBackends blue", r.SetBackends(ctx, teal.Blue, backends(t, teal.Blue, 1)))
	must(t, "Route blue", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)}))

	// green's instance does not answer HAProxy's health check (teal's own check said it did).
	must(t, "SetBackends green", r.SetBackends(ctx, teal.Green, []string{testutil.DeadAddr(t)}))
	testutil.WaitFor(t, 5*time.Second, "green1 DOWN", func() bool { return servers(t, r)["green1"].Op == OpStopped })

	err := r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Green)})
	if err == nil || !strings.Contains(err.Error(), "green1") || !strings.Contains(err.Error(), "not UP") || !strings.Contains(err.Error(), "nothing drained") {
		t.Fatalf("Route to a DOWN colour = %v, want an error naming green1 not UP, nothing drained", err)
	}
	// Make before break: blue was never drained.
	if s := servers(t, r)["blue1"]; s.Admin.Name() != StateReady || s.Weight != 256 {
		t.Errorf("blue1 after the refused switch = %s, want ready with weight 256", s)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	if code, body := get(t, client, in.Frontend); code != 200 || colorOf(body) != teal.Blue {
		t.Errorf("GET after the refused switch = %d %q, want 200 from blue", code, body)
	}
}

// share sends n requests through HAProxy and returns the percentage green answered.
func share(t *testing.T, client *http.Client, url string, n int) float64 {
	t.Helper()
	green := 0
	for range n {
		code, body := get(t, client, url)
		if code != 200 {
			t.Fatalf("GET = %d %q, want 200", code, body)
		}
		if colorOf(body) == teal.Green {
			green++
		}
	}
	return 100 * float64(green) / float64(n)
}

func TestRouter_WeightsMeasured(t *testing.T) {
	in := startHAProxy(t, haConfig{Slots: 2})
	ctx := context.Background()
	r := in.router(t)
	must(t, "SetBackends blue", r.SetBackends(ctx, teal.Blue, backends(t, teal.Blue, 2)))
	must(t, "SetBackends green", r.SetBackends(ctx, teal.Green, backends(t, teal.Green, 1)))
	client := &http.Client{Timeout: 5 * time.Second}
	for _, green := range []int{10, 50, 90, 1} {
		must(t, "Route", r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 100 - green, Green: green}}))
		got := share(t, client, in.Frontend, 1000)
		t.Logf("green %d%%: measured %.1f%% of 1000 requests", green, got)
		if got < float64(green)-3 || got > float64(green)+3 {
			t.Errorf("green %d%%: measured %.1f%% of 1000 requests, want within 3 points", green, got)
		}
	}
}

// loadResult is what one client saw.
type loadResult struct {
	start time.Time
	end   time.Time
	color teal.Color
	err   string // "" when answered 200
}

// steadyLoad sends requests through HAProxy from several keep-alive clients until stop is
// closed (or 2 minutes, or 200,000 requests), recording each.
type steadyLoad struct {
	mu      sync.Mutex
	results []loadResult
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(t *testing.T, url string, clients int) *steadyLoad {
	t.Helper()
	l := &steadyLoad{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	var sent atomic.Int64
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for time.Now().Before(deadline) && sent.Add(1) <= 200_000 {
				select {
				case <-l.stop:
					return
				default:
				}
				res := loadResult{start: time.Now()}
				resp, err := client.Get(url)
				if err != nil {
					res.err = err.Error()
				} else {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case rerr != nil:
						res.err = rerr.Error()
					case resp.StatusCode != 200:
						res.err = fmt.Sprintf("%d %s", resp.StatusCode, b)
					default:
						res.color = colorOf(string(b))
					}
				}
				res.end = time.Now()
				l.mu.Lock()
				l.results = append(l.results, res)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *steadyLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.results)
}

func (l *steadyLoad) finish() []loadResult {
	close(l.stop)
	l.wg.Wait()
	return l.results
}

// TestRouter_SwitchUnderLoad is the test: steady keep-alive load through a real
// HAProxy while teal switches blue → green, rolls back, splits 50/50, then goes green: no
// request fails, and every request that starts after a switch returns reaches the new colour.
func TestRouter_SwitchUnderLoad(t *testing.T) {
	in := startHAProxy(t, haConfig{Slots: 2})
	ctx := context.Background()
	r := in.router(t)
	must(t, "SetBackends blue", r.SetBackends(ctx, teal.Blue, backends(t, teal.Blue, 2)))
	must(t, "SetBackends green", r.SetBackends(ctx, teal.Green, backends(t, teal.Green, 2)))
	must(t, "Route blue", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)}))

	load := startLoad(t, in.Frontend, 6)
	type switched struct {
		began time.Time // Route was called
		at    time.Time // Route returned
		to    teal.Traffic
		label string
	}
	var switches []switched
	steps := []struct {
		label   string
		traffic teal.Traffic
	}{
		{"switch to green", teal.All(teal.Green)},
		{"rollback to blue", teal.All(teal.Blue)},
		{"weighted 50/50", teal.Traffic{Blue: 50, Green: 50}},
		{"green", teal.All(teal.Green)},
	}
	for _, st := range steps {
		n := load.count()
		testutil.WaitFor(t, 10*time.Second, "500 more requests before "+st.label, func() bool { return load.count() >= n+500 })
		start := time.Now()
		must(t, st.label, r.Route(ctx, teal.Routes{Traffic: st.traffic}))
		switches = append(switches, switched{began: start, at: time.Now(), to: st.traffic, label: st.label})
		t.Logf("%s: Route took %s", st.label, time.Since(start).Round(time.Microsecond))
		if old := st.traffic.Blue; old == 0 {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			must(t, "Drain blue", r.Drain(dctx, teal.Blue))
			cancel()
		}
	}
	n := load.count()
	testutil.WaitFor(t, 10*time.Second, "500 more requests after the last switch", func() bool { return load.count() >= n+500 })
	results := load.finish()

	failed := 0
	for _, res := range results {
		if res.err != "" {
			if failed < 5 {
				t.Errorf("request at %s failed: %s", res.start.Format("15:04:05.000000"), res.err)
			}
			failed++
		}
	}
	t.Logf("%d requests through HAProxy, %d failed", len(results), failed)
	if failed != 0 {
		t.Errorf("%d of %d requests failed, want 0", failed, len(results))
	}
	// After each switch, requests that started once Route returned, and ended before the next
	// Route began, reach the split it set.
	for i, sw := range switches {
		end := time.Now().Add(time.Hour)
		if i+1 < len(switches) {
			end = switches[i+1].began
		}
		var got [2]int
		for _, res := range results {
			if res.err == "" && res.start.After(sw.at) && res.end.Before(end) {
				got[colorIndex(res.color)]++
			}
		}
		total := got[0] + got[1]
		if total < 100 {
			t.Errorf("%s: %d requests after it, want at least 100", sw.label, total)
			continue
		}
		pct := 100 * float64(got[1]) / float64(total)
		t.Logf("%s: %d requests after it, %.1f%% green", sw.label, total, pct)
		want := float64(sw.to.Green)
		if (want == 0 || want == 100) && pct != want || pct < want-5 || pct > want+5 {
			t.Errorf("%s: %.1f%% of %d requests after it reached green, want %v%%", sw.label, pct, total, want)
		}
	}

	bReq, bFail, _ := r.Counts(teal.Blue)
	gReq, gFail, _ := r.Counts(teal.Green)
	if bFail != 0 || gFail != 0 || bReq+gReq < int64(len(results)) {
		t.Errorf("Counts: blue %d (%d failed), green %d (%d failed); want no failures and at least the %d requests sent", bReq, bFail, gReq, gFail, len(results))
	}
}

func TestRouter_DrainWaitsForInFlight(t *testing.T) {
	in := startHAProxy(t, haConfig{Slots: 1})
	ctx := context.Background()
	r := in.router(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "blue-1")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	must(t, "SetBackends blue", r.SetBackends(ctx, teal.Blue, []string{strings.TrimPrefix(slow.URL, "http://")}))
	must(t, "SetBackends green", r.SetBackends(ctx, teal.Green, backends(t, teal.Green, 1)))
	must(t, "Route blue", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)}))

	client := &http.Client{Timeout: 10 * time.Second}
	done := make(chan string, 1)
	go func() {
		resp, err := client.Get(in.Frontend)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-entered
	must(t, "Route green", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Green)}))
	if _, _, open := r.Counts(teal.Blue); open != 1 {
		t.Errorf("blue open = %d, want 1", open)
	}

	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := r.Drain(dctx, teal.Blue)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "1 requests still open (blue1 1)") {
		t.Fatalf("Drain with a request in flight = %v, want an error naming blue1", err)
	}
	close(release)
	dctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.Drain(dctx, teal.Blue); err != nil {
		t.Fatalf("Drain once the request finished: %v", err)
	}
	if got := <-done; got != "200 blue-1" {
		t.Errorf("the request in flight during the switch = %q, want 200 blue-1", got)
	}
}

func TestRouter_CountsFailures(t *testing.T) {
	// No retries: HAProxy waits a second before each retry of a refused connection.
	in := startHAProxy(t, haConfig{Slots: 3, Extra: "    retries 0"})
	ctx := context.Background()
	r := in.router(t)
	var n atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if n.Add(1)%4 == 0 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "green-1")
	}))
	t.Cleanup(flaky.Close)
	must(t, "SetBackends green", r.SetBackends(ctx, teal.Green, []string{strings.TrimPrefix(flaky.URL, "http://")}))
	must(t, "Route green", r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Green)}))
	before := r.Sample(teal.Green)

	client := &http.Client{Timeout: 5 * time.Second}
	codes := map[int]int{}
	for range 40 {
		code, _ := get(t, client, in.Frontend)
		codes[code]++
	}
	// A dead instance: HAProxy cannot connect, and answers 503.
	must(t, "SetBackends green with a dead one", r.SetBackends(ctx, teal.Green, []string{strings.TrimPrefix(flaky.URL, "http://"), testutil.DeadAddr(t)}))
	for range 20 {
		code, _ := get(t, client, in.Frontend)
		codes[code]++
	}
	d := r.Sample(teal.Green).Sub(before)
	wantFailed := int64(codes[500] + codes[502] + codes[503])
	if codes[500] == 0 || codes[503] == 0 {
		t.Fatalf("answers %v, want some 500 from the backend and some 503 from HAProxy", codes)
	}
	if d.Requests != 60 || d.Failed != wantFailed {
		t.Errorf("Sample since the route = %d requests, %d failed; want 60, %d (answers %v)", d.Requests, d.Failed, wantFailed, codes)
	}
	req, failed, open := r.Counts(teal.Green)
	if req != d.Requests+before.Requests || failed != d.Failed+before.Failed || open != 0 {
		t.Errorf("Counts = %d %d %d, want %d %d 0", req, failed, open, d.Requests+before.Requests, d.Failed+before.Failed)
	}
	if bReq, _, _ := r.Counts(teal.Blue); bReq != 0 {
		t.Errorf("blue requests = %d, want 0", bReq)
	}
}

func TestMonotonic(t *testing.T) {
	var m monotonic
	var got []int64
	for _, v := range []int64{0, 5, 9, 2, 4, 4, 1} { // reloads after 9 and after 4
		got = append(got, m.see(v))
	}
	want := []int64{0, 5, 9, 11, 13, 13, 14}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("monotonic counts = %v, want %v", got, want)
	}
}

// TestRouter_ReappliesAfterReload reloads a master-worker HAProxy (SIGUSR2, what systemctl
// reload does): the new worker starts from haproxy.cfg with every slot disabled and answers
// 503; Reapply notices the new process and puts teal's servers and split back, after which
// the traffic flows again. With nothing changed, Reapply does nothing.
func TestRouter_ReappliesAfterReload(t *testing.T) {
	in := startHAProxy(t, haConfig{MasterWorker: true})
	ctx := context.Background()
	r := in.router(t)
	blue, green := backends(t, teal.Blue, 2), backends(t, teal.Green, 2)
	must(t, "set blue", r.SetBackends(ctx, teal.Blue, blue))
	must(t, "set green", r.SetBackends(ctx, teal.Green, green))
	must(t, "route", r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 90, Green: 10}}))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if code, body := get(t, client, in.Frontend); code != http.StatusOK {
		t.Fatalf("before the reload: %d %q, want 200", code, body)
	}
	if changed, err := r.Reapply(ctx); changed || err != nil {
		t.Fatalf("Reapply with nothing reloaded = %v, %v; want false, nil", changed, err)
	}
	before := servers(t, r)

	api := &Client{Socket: in.Socket, Timeout: time.Second}
	old, err := api.ProcessID(ctx)
	must(t, "show info", err)
	testutil.SignalUntil(t, in.Pid, syscall.SIGUSR2, 2*time.Second, 20*time.Second, "a new haproxy worker on the admin socket", func() bool {
		p, err := api.ProcessID(ctx)
		return err == nil && p != old
	})
	// The new worker knows only haproxy.cfg: no server takes traffic.
	for name, s := range servers(t, r) {
		if s.Admin.Name() != StateMaint {
			t.Fatalf("after the reload %s is %s, want it back to haproxy.cfg's disabled slot", name, s)
		}
	}
	if code, _ := get(t, client, in.Frontend); code != http.StatusServiceUnavailable {
		t.Fatalf("after the reload, before Reapply: %d, want 503", code)
	}

	changed, err := r.Reapply(ctx)
	if !changed || err != nil {
		t.Fatalf("Reapply after the reload = %v, %v; want true, nil", changed, err)
	}
	after := servers(t, r)
	for name, b := range before {
		a := after[name]
		if a.Admin.Name() != b.Admin.Name() || a.Weight != b.Weight || addrOf(a) != addrOf(b) {
			t.Errorf("%s after Reapply = %s, want it as before the reload: %s", name, a, b)
		}
	}
	if got := r.Shares(); got != (teal.Traffic{Blue: 90, Green: 10}) {
		t.Errorf("Shares after Reapply = %+v, want blue 90 green 10", got)
	}
	if code, body := get(t, client, in.Frontend); code != http.StatusOK {
		t.Fatalf("after Reapply: %d %q, want 200", code, body)
	}
	if changed, err := r.Reapply(ctx); changed || err != nil {
		t.Fatalf("second Reapply = %v, %v; want false, nil", changed, err)
	}
}
