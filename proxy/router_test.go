package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"teal.dev/teal"

	"teal.dev/teal/internal/testutil"
)

func TestRouter_SwitchUnderLoad(t *testing.T) {
	r := newTestRouter(t)
	blues := []*testBackend{newBackend(t, "blue", nil), newBackend(t, "blue", nil)}
	greens := []*testBackend{newBackend(t, "green", nil), newBackend(t, "green", nil)}
	setBackends(t, r, teal.Blue, addrs(blues...)...)
	setBackends(t, r, teal.Green, addrs(greens...)...)
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	client := newClient(t)

	var (
		switched atomic.Bool  // set once Route to green returned
		failed   atomic.Int64 // transport errors and non-200s
		late     atomic.Int64 // requests started after the switch that reached blue
		firstErr atomic.Value
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := switched.Load()
				status, body, err := fetch(client, http.MethodGet, front.URL, "")
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d, err %v", status, err))
					continue
				}
				if after && body == "blue" {
					late.Add(1)
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	waitFor(t, 10*time.Second, "load on blue", func() bool { return hits(blues...) >= 300 })
	route(t, r, teal.Routes{Traffic: teal.All(teal.Green)})
	switched.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Drain(ctx, teal.Blue); err != nil {
		t.Fatalf("Drain(blue) = %v, want nil", err)
	}
	blueDrained := hits(blues...)
	greenAtSwitch := hits(greens...)
	waitFor(t, 10*time.Second, "load on green", func() bool { return hits(greens...) >= greenAtSwitch+300 })
	stopLoad()

	if n := failed.Load(); n != 0 {
		t.Fatalf("failed requests = %d (first: %v), want 0", n, firstErr.Load())
	}
	if n := late.Load(); n != 0 {
		t.Fatalf("requests started after Route returned that reached blue = %d, want 0", n)
	}
	if got := hits(blues...); got != blueDrained {
		t.Fatalf("blue hits after drain = %d, want %d (unchanged)", got, blueDrained)
	}
	// Round-robin is by an exact counter, so a colour's backends differ by at most one.
	for _, pair := range [][]*testBackend{blues, greens} {
		if d := pair[0].hits.Load() - pair[1].hits.Load(); d < -1 || d > 1 {
			t.Fatalf("%s backends got %d and %d requests, want a difference of at most 1",
				pair[0].name, pair[0].hits.Load(), pair[1].hits.Load())
		}
	}
	if got, want := r.Stats(teal.Blue).Requests+r.Stats(teal.Green).Requests, hits(blues...)+hits(greens...); got != want {
		t.Fatalf("Stats requests = %d, want %d (the backends' count)", got, want)
	}
}

func TestRouter_InFlightSurvivesSwitchAndDrain(t *testing.T) {
	r := newTestRouter(t)
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)
	blueB := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" {
			select {
			case <-release:
			case <-req.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "blue")
	})
	greenB := newBackend(t, "green", nil)
	setBackends(t, r, teal.Blue, blueB.addr())
	setBackends(t, r, teal.Green, greenB.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	client := newClient(t)

	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		status, body, err := fetch(client, http.MethodGet, front.URL+"/slow", "")
		slow <- result{status, body, err}
	}()
	waitFor(t, 5*time.Second, "slow request at blue", func() bool {
		return blueB.hits.Load() == 1 && r.Stats(teal.Blue).InFlight == 1
	})

	route(t, r, teal.Routes{Traffic: teal.All(teal.Green)})
	if status, body := get(t, client, front.URL); status != http.StatusOK || body != "green" {
		t.Fatalf("after switch GET = %d %q, want 200 \"green\"", status, body)
	}

	// Drain gives up at its deadline, saying how many are left.
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := r.Drain(short, teal.Blue)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain(blue) with a slow request in flight = %v, want DeadlineExceeded", err)
	}
	if want := "1 requests still in flight"; !strings.Contains(err.Error(), want) {
		t.Fatalf("Drain error = %q, want it to contain %q", err, want)
	}
	// Green has nothing in flight: nothing to wait for.
	if err := r.Drain(short, teal.Green); err != nil {
		t.Fatalf("Drain(green) = %v, want nil", err)
	}

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- r.Drain(ctx, teal.Blue)
	}()
	select {
	case err := <-drained:
		t.Fatalf("Drain(blue) returned %v while a request was in flight", err)
	default:
	}
	releaseOnce()
	res := <-slow
	if res.err != nil || res.status != http.StatusOK || res.body != "blue" {
		t.Fatalf("slow request = %d %q %v, want 200 \"blue\"", res.status, res.body, res.err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain(blue) after the slow request finished = %v, want nil", err)
	}
	if got := r.Stats(teal.Blue); got.InFlight != 0 || got.Requests != 1 || got.Errors5xx != 0 {
		t.Fatalf("Stats(blue) = %+v, want 1 request, none in flight, no 5xx", got)
	}
}

func TestRouter_ForwardedHeaders(t *testing.T) {
	r := newTestRouter(t)
	seen := make(chan http.Header, 1)
	host := make(chan string, 1)
	b := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		seen <- req.Header.Clone()
		host <- req.Host
	})
	setBackends(t, r, teal.Blue, b.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())

	req, err := http.NewRequest(http.MethodGet, front.URL+"/orders?id=7", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "shop.example"
	// Claims a client could make up; the backend must see what the router observed.
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	res, err := newClient(t).Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	h := <-seen
	if got := <-host; got != "shop.example" {
		t.Fatalf("Host at backend = %q, want %q", got, "shop.example")
	}
	for _, tc := range []struct{ name, want string }{
		{"X-Forwarded-For", "127.0.0.1"},
		{"X-Forwarded-Host", "shop.example"},
		{"X-Forwarded-Proto", "http"},
	} {
		if got := h.Values(tc.name); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s at backend = %q, want [%q]", tc.name, got, tc.want)
		}
	}
}

func TestRouter_HopByHopStripped(t *testing.T) {
	r := newTestRouter(t)
	seen := make(chan http.Header, 1)
	b := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		seen <- req.Header.Clone()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "backend-only")
		w.Header().Set("X-Resp-Kept", "yes")
		_, _ = io.WriteString(w, "blue")
	})
	setBackends(t, r, teal.Blue, b.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())

	// A raw request, so the client library cannot tidy the headers under test away.
	conn, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: shop.example\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: client-only\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Kept: yes\r\n\r\n")
	if err != nil {
		t.Fatalf("write request: %v", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	_ = res.Body.Close()

	h := <-seen
	for _, name := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization"} {
		if got := h.Get(name); got != "" {
			t.Errorf("request header %s at backend = %q, want it stripped", name, got)
		}
	}
	if got := h.Get("X-Kept"); got != "yes" {
		t.Errorf("request header X-Kept at backend = %q, want %q", got, "yes")
	}
	if got := res.Header.Get("X-Resp-Hop"); got != "" {
		t.Errorf("response header X-Resp-Hop at client = %q, want it stripped", got)
	}
	if got := res.Header.Get("X-Resp-Kept"); got != "yes" {
		t.Errorf("response header X-Resp-Kept at client = %q, want %q", got, "yes")
	}
}

// echoWS is a WebSocket backend that answers each message with its name and the message.
func echoWS(t *testing.T, name string) *testBackend {
	t.Helper()
	return newBackend(t, name, func(w http.ResponseWriter, req *http.Request) {
		c, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(req.Context())
			if err != nil {
				return
			}
			if err := c.Write(req.Context(), typ, []byte(name+":"+string(msg))); err != nil {
				return
			}
		}
	})
}

func wsDial(t *testing.T, ctx context.Context, url string) *websocket.Conn {
	t.Helper()
	c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket dial status = %d, want 101", res.StatusCode)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func wsEcho(t *testing.T, ctx context.Context, c *websocket.Conn, msg string) string {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("websocket write: %v", err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("websocket read: %v", err)
	}
	return string(got)
}

func TestRouter_WebSocketAcrossSwitch(t *testing.T) {
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, echoWS(t, "blue").addr())
	setBackends(t, r, teal.Green, echoWS(t, "green").addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	old := wsDial(t, ctx, front.URL)
	if got := wsEcho(t, ctx, old, "one"); got != "blue:one" {
		t.Fatalf("echo before switch = %q, want %q", got, "blue:one")
	}
	route(t, r, teal.Routes{Traffic: teal.All(teal.Green)})
	if got := wsEcho(t, ctx, old, "two"); got != "blue:two" {
		t.Fatalf("echo on the old connection after switch = %q, want %q", got, "blue:two")
	}
	fresh := wsDial(t, ctx, front.URL)
	if got := wsEcho(t, ctx, fresh, "three"); got != "green:three" {
		t.Fatalf("echo on a new connection after switch = %q, want %q", got, "green:three")
	}
	if got := r.Stats(teal.Blue); got.OpenConns != 1 || got.LongLived != 1 || got.InFlight != 1 {
		t.Fatalf("Stats(blue) = %+v, want 1 open connection, long-lived, 1 in flight", got)
	}
	if got := r.LongLived(teal.Blue); got != 1 {
		t.Fatalf("LongLived(blue) = %d, want 1", got)
	}

	// Drain waits for ordinary requests only: the WebSocket is the long drain's business.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := r.Drain(short, teal.Blue); err != nil {
		t.Fatalf("Drain(blue) with only a WebSocket open = %v, want nil", err)
	}
	if got := wsEcho(t, ctx, old, "four"); got != "blue:four" {
		t.Fatalf("echo on the old connection after drain = %q, want %q", got, "blue:four")
	}
	if err := old.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close websocket: %v", err)
	}
	waitFor(t, 5*time.Second, "the WebSocket to be counted out", func() bool {
		return r.Stats(teal.Blue).InFlight == 0
	})
	if got := r.Stats(teal.Blue); got.OpenConns != 0 || got.LongLived != 0 || got.InFlight != 0 || got.Requests != 1 {
		t.Fatalf("Stats(blue) = %+v, want 1 request, nothing open", got)
	}
	if got := r.LongLived(teal.Blue); got != 0 {
		t.Fatalf("LongLived(blue) = %d after close, want 0", got)
	}
}

func TestRouter_RetriesUnreachableBackend(t *testing.T) {
	echo := func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	}
	tests := []struct {
		name       string
		live       int // backends that answer; the rest refuse connections
		dead       int
		wantStatus int
		wantUp     int64 // upstream errors per request
	}{
		{name: "one dead of two", live: 1, dead: 1, wantStatus: http.StatusOK},
		{name: "two dead of three", live: 1, dead: 2, wantStatus: http.StatusOK},
		{name: "all dead", live: 0, dead: 2, wantStatus: http.StatusBadGateway, wantUp: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t)
			var pool []string
			var lives []*testBackend
			for range tc.dead {
				pool = append(pool, testutil.DeadAddr(t))
			}
			for range tc.live {
				b := newBackend(t, "blue", echo)
				lives = append(lives, b)
				pool = append(pool, b.addr())
			}
			setBackends(t, r, teal.Blue, pool...)
			route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
			front := serve(t, r.Handler())
			client := newClient(t)

			const n = 6
			for i := range n {
				// Big enough to be streamed, not buffered whole by anybody on the way.
				body := strings.Repeat(fmt.Sprintf("payload %d;", i), 10000)
				status, got, err := fetch(client, http.MethodPost, front.URL+"/orders", body)
				if err != nil {
					t.Fatalf("POST %d: %v", i, err)
				}
				if status != tc.wantStatus {
					t.Fatalf("POST %d status = %d, want %d", i, status, tc.wantStatus)
				}
				if tc.wantStatus == http.StatusOK && got != body {
					t.Fatalf("POST %d echoed %d bytes, want the %d sent intact", i, len(got), len(body))
				}
			}
			if tc.live > 0 && hits(lives...) != n {
				t.Fatalf("live backend got %d requests, want %d", hits(lives...), n)
			}
			s := r.Stats(teal.Blue)
			if s.UpstreamErrors != tc.wantUp*n {
				t.Fatalf("UpstreamErrors = %d, want %d", s.UpstreamErrors, tc.wantUp*n)
			}
			if s.Requests != n {
				t.Fatalf("Requests = %d, want %d", s.Requests, n)
			}
		})
	}
}

func TestRouter_Unavailable(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, r *Router)
		preview  bool
		color    teal.Color // whose Stats count the 503
		wantBody string
	}{
		{
			name:     "nothing live",
			setup:    func(t *testing.T, r *Router) { setBackends(t, r, teal.Blue, newBackend(t, "blue", nil).addr()) },
			color:    "",
			wantBody: "teal: nothing is live\n",
		},
		{
			name:     "live colour has no backends",
			setup:    func(t *testing.T, r *Router) { route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)}) },
			color:    teal.Blue,
			wantBody: "teal: no healthy backend for blue\n",
		},
		{
			name: "backends taken out",
			setup: func(t *testing.T, r *Router) {
				setBackends(t, r, teal.Green, newBackend(t, "green", nil).addr())
				route(t, r, teal.Routes{Traffic: teal.All(teal.Green)})
				setBackends(t, r, teal.Green)
			},
			color:    teal.Green,
			wantBody: "teal: no healthy backend for green\n",
		},
		{
			name: "no preview colour",
			setup: func(t *testing.T, r *Router) {
				setBackends(t, r, teal.Blue, newBackend(t, "blue", nil).addr())
				route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
			},
			preview:  true,
			wantBody: "teal: no preview colour\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t)
			tc.setup(t, r)
			h := r.Handler()
			if tc.preview {
				h = r.PreviewHandler()
			}
			front := serve(t, h)
			res, err := http.Get(front.URL)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			body, err := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if res.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status = %d, want 503", res.StatusCode)
			}
			if got := res.Header.Get("Retry-After"); got != "1" {
				t.Fatalf("Retry-After = %q, want %q", got, "1")
			}
			if string(body) != tc.wantBody {
				t.Fatalf("body = %q, want %q", body, tc.wantBody)
			}
			if tc.preview {
				if got := r.Stats(teal.Blue).Requests; got != 0 {
					t.Fatalf("live Stats(blue).Requests = %d after a preview request, want 0", got)
				}
				return
			}
			if got := r.Stats(tc.color); got.Requests != 1 || got.Errors5xx != 1 || got.InFlight != 0 {
				t.Fatalf("Stats(%q) = %+v, want 1 request, 1 5xx, none in flight", tc.color, got)
			}
		})
	}
}

func TestRouter_WeightedSplit(t *testing.T) {
	r := newTestRouter(t)
	blueB, greenB := newBackend(t, "blue", nil), newBackend(t, "green", nil)
	setBackends(t, r, teal.Blue, blueB.addr())
	setBackends(t, r, teal.Green, greenB.addr())
	route(t, r, teal.Routes{Traffic: teal.Traffic{Blue: 30, Green: 70}})
	front := serve(t, r.Handler())
	client := newClient(t)

	const n = 2000
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range n / 4 {
				if status, _, err := fetch(client, http.MethodGet, front.URL, ""); err != nil || status != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("failed requests = %d, want 0", f)
	}
	// ±1% of the requests, as the spec allows; the counter makes it exact in practice.
	const tolerance = n / 100
	if got, want := blueB.hits.Load(), int64(n*30/100); got < want-tolerance || got > want+tolerance {
		t.Fatalf("blue got %d of %d requests, want %d±%d", got, n, want, tolerance)
	}
	if got, want := greenB.hits.Load(), int64(n*70/100); got < want-tolerance || got > want+tolerance {
		t.Fatalf("green got %d of %d requests, want %d±%d", got, n, want, tolerance)
	}
}

func TestRouter_SplitFallsBackWhenAColourHasNoBackends(t *testing.T) {
	r := newTestRouter(t)
	blueB := newBackend(t, "blue", nil)
	setBackends(t, r, teal.Blue, blueB.addr())
	route(t, r, teal.Routes{Traffic: teal.Traffic{Blue: 50, Green: 50}})
	front := serve(t, r.Handler())
	client := newClient(t)
	for i := range 10 {
		if status, body := get(t, client, front.URL); status != http.StatusOK || body != "blue" {
			t.Fatalf("request %d = %d %q, want 200 \"blue\"", i, status, body)
		}
	}
}

func TestRouter_PreviewGoesToPreviewColour(t *testing.T) {
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, newBackend(t, "blue", nil).addr())
	setBackends(t, r, teal.Green, newBackend(t, "green", nil).addr())
	front, pre := serve(t, r.Handler()), serve(t, r.PreviewHandler())
	client := newClient(t)

	tests := []struct {
		name        string
		routes      teal.Routes
		live, previ string
	}{
		{"blue live, green preview", teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green}, "blue", "green"},
		{"green live, blue preview", teal.Routes{Traffic: teal.All(teal.Green), Preview: teal.Blue}, "green", "blue"},
		{"split, green preview", teal.Routes{Traffic: teal.Traffic{Blue: 1, Green: 99}, Preview: teal.Green}, "", "green"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			route(t, r, tc.routes)
			if got := r.Routes(); got != tc.routes {
				t.Fatalf("Routes() = %+v, want %+v", got, tc.routes)
			}
			for range 5 {
				if _, body := get(t, client, pre.URL); body != tc.previ {
					t.Fatalf("preview answered by %q, want %q", body, tc.previ)
				}
				if _, body := get(t, client, front.URL); tc.live != "" && body != tc.live {
					t.Fatalf("live answered by %q, want %q", body, tc.live)
				}
			}
		})
	}
	// Stats count the 15 live requests; the 15 preview requests are not theirs.
	if s := r.Stats(teal.Blue).Requests + r.Stats(teal.Green).Requests; s != 15 {
		t.Fatalf("live requests counted = %d, want 15", s)
	}
}

func TestRouter_Metrics(t *testing.T) {
	r := newTestRouter(t)
	blueB := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/missing" {
			http.NotFound(w, req)
			return
		}
		_, _ = io.WriteString(w, "blue")
	})
	setBackends(t, r, teal.Blue, blueB.addr())
	setBackends(t, r, teal.Green, testutil.DeadAddr(t))
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	front, pre := serve(t, r.Handler()), serve(t, r.PreviewHandler())
	client := newClient(t)
	get(t, client, front.URL)
	get(t, client, front.URL)
	get(t, client, front.URL+"/missing")
	if status, _ := get(t, client, pre.URL); status != http.StatusBadGateway {
		t.Fatalf("preview to a dead backend = %d, want 502", status)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()

	tests := []struct{ name, line string }{
		{"live blue 2xx", `teal_requests_total{code="2xx",color="blue",listener="live"} 2`},
		{"live blue 4xx", `teal_requests_total{code="4xx",color="blue",listener="live"} 1`},
		{"live green 2xx", `teal_requests_total{code="2xx",color="green",listener="live"} 0`},
		{"preview green 5xx", `teal_requests_total{code="5xx",color="green",listener="preview"} 1`},
		{"upstream errors green", `teal_upstream_errors_total{color="green"} 1`},
		{"upstream errors blue", `teal_upstream_errors_total{color="blue"} 0`},
		{"duration live blue", `teal_request_duration_seconds_count{color="blue",listener="live"} 3`},
		{"duration preview green", `teal_request_duration_seconds_count{color="green",listener="preview"} 1`},
		{"open live blue", `teal_open_connections{color="blue",listener="live"} 0`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(text, "\n"+tc.line+"\n") {
				t.Fatalf("metrics lack %q; got:\n%s", tc.line, text)
			}
		})
	}
}

func TestRouter_RejectsBadInput(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(r *Router) error
	}{
		{"shares over 100", func(r *Router) error {
			return r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 60, Green: 50}})
		}},
		{"shares under 100", func(r *Router) error {
			return r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 10, Green: 10}})
		}},
		{"negative share", func(r *Router) error {
			return r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: -10, Green: 110}})
		}},
		{"unknown preview colour", func(r *Router) error {
			return r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue), Preview: "red"})
		}},
		{"unknown colour for backends", func(r *Router) error {
			return r.SetBackends(ctx, "red", []string{"127.0.0.1:80"})
		}},
		{"address without port", func(r *Router) error {
			return r.SetBackends(ctx, teal.Blue, []string{"127.0.0.1"})
		}},
		{"address without host", func(r *Router) error {
			return r.SetBackends(ctx, teal.Blue, []string{":8080"})
		}},
		{"port zero", func(r *Router) error {
			return r.SetBackends(ctx, teal.Blue, []string{"127.0.0.1:0"})
		}},
		{"URL instead of address", func(r *Router) error {
			return r.SetBackends(ctx, teal.Blue, []string{"http://127.0.0.1:80"})
		}},
		{"unknown colour to drain", func(r *Router) error { return r.Drain(ctx, "red") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t)
			before := r.Routes()
			if err := tc.call(r); !errors.Is(err, teal.ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
			if got := r.Routes(); got != before {
				t.Fatalf("Routes() = %+v after a refused call, want %+v", got, before)
			}
		})
	}
}

func TestSpread_Exact(t *testing.T) {
	for b := 1; b < 100; b++ {
		s := spread(b, 100-b)
		var greens, run, maxRun int
		for _, c := range s {
			if c == green {
				greens++
				run = 0
				continue
			}
			run++
			maxRun = max(maxRun, run)
		}
		if greens != 100-b {
			t.Fatalf("spread(%d, %d) has %d green slots, want %d", b, 100-b, greens, 100-b)
		}
		// Evenly interleaved: a run of blue is no longer than its share calls for.
		if want := (b + (100 - b) - 1) / (100 - b); maxRun > want {
			t.Fatalf("spread(%d, %d) has a blue run of %d, want at most %d", b, 100-b, maxRun, want)
		}
	}
}
