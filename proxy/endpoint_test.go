package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"teal.dev/teal"
)

func TestRouter_ColorHandlerIgnoresTheSplit(t *testing.T) {
	b1, b2 := newBackend(t, "blue", nil), newBackend(t, "blue", nil)
	g := newBackend(t, "green", nil)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, addrs(b1, b2)...)
	setBackends(t, r, teal.Green, g.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	blueEP, greenEP := serve(t, r.ColorHandler(teal.Blue)), serve(t, r.ColorHandler(teal.Green))
	client := newClient(t)

	tests := []struct {
		name string
		url  string
		want string
	}{
		{"green endpoint while blue is live", greenEP.URL, "green"},
		{"blue endpoint", blueEP.URL, "blue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 4 {
				if status, body := get(t, client, tt.url); status != http.StatusOK || body != tt.want {
					t.Fatalf("GET = %d %q, want 200 %q", status, body, tt.want)
				}
			}
		})
	}
	if b1.hits.Load() != 2 || b2.hits.Load() != 2 {
		t.Fatalf("blue backends got %d and %d requests, want 2 each (round-robin)", b1.hits.Load(), b2.hits.Load())
	}
	if s := r.Stats(teal.Green); s.Requests != 0 {
		t.Fatalf("Stats(green).Requests = %d, want 0: endpoint requests are not production listener requests", s.Requests)
	}
}

func TestRouter_EndpointStatsCountResidualTraffic(t *testing.T) {
	b, g := newBackend(t, "blue", nil), newBackend(t, "green", nil)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	setBackends(t, r, teal.Green, g.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	blueEP := serve(t, r.ColorHandler(teal.Blue))
	client := newClient(t)

	if n, last := r.EndpointStats(teal.Blue); n != 0 || !last.IsZero() {
		t.Fatalf("EndpointStats(blue) before any request = %d, %v; want 0 and zero time", n, last)
	}
	get(t, client, blueEP.URL)

	// The switch: DNS now points at green, but a client that ignores TTLs still comes to
	// blue's endpoint, and is still served by blue.
	route(t, r, teal.Routes{Traffic: teal.All(teal.Green)})
	switched := time.Now()
	for range 3 {
		if status, body := get(t, client, blueEP.URL); status != http.StatusOK || body != "blue" {
			t.Fatalf("residual GET = %d %q, want 200 \"blue\"", status, body)
		}
	}
	n, last := r.EndpointStats(teal.Blue)
	if n != 4 {
		t.Fatalf("EndpointStats(blue) requests = %d, want 4", n)
	}
	if last.Before(switched) {
		t.Fatalf("EndpointStats(blue) last = %v, want after the switch at %v", last, switched)
	}
	if n, _ := r.EndpointStats(teal.Green); n != 0 {
		t.Fatalf("EndpointStats(green) = %d, want 0", n)
	}
	if n, _ := r.EndpointStats("red"); n != 0 {
		t.Fatalf("EndpointStats(red) = %d, want 0", n)
	}
}

func TestRouter_ColorHandlerWithoutBackends(t *testing.T) {
	r := newTestRouter(t)
	ep := serve(t, r.ColorHandler(teal.Green))
	client := newClient(t)
	status, body := get(t, client, ep.URL)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "no healthy backend for green") {
		t.Fatalf("GET = %d %q, want 503 naming green", status, body)
	}
	if n, _ := r.EndpointStats(teal.Green); n != 1 {
		t.Fatalf("EndpointStats(green) = %d, want 1: a request that found no backend still arrived", n)
	}
	bad := serve(t, r.ColorHandler("red"))
	if status, _ := get(t, client, bad.URL); status != http.StatusNotFound {
		t.Fatalf("GET on colour red's handler = %d, want 404", status)
	}
}

func TestRouter_ColorHandlerHonoursHold(t *testing.T) {
	b := newBackend(t, "blue", nil)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	ep := serve(t, r.ColorHandler(teal.Blue))
	client := newClient(t)

	release := r.Hold()
	var wg sync.WaitGroup
	var status int
	var err error
	wg.Go(func() { status, _, err = fetch(client, http.MethodGet, ep.URL, "") })
	waitFor(t, 5*time.Second, "the request to arrive", func() bool {
		n, _ := r.EndpointStats(teal.Blue)
		return n == 1
	})
	if hits(b) != 0 {
		t.Fatalf("a held request reached the backend")
	}
	release()
	wg.Wait()
	if err != nil || status != http.StatusOK {
		t.Fatalf("held request = %d, %v; want 200 after the release", status, err)
	}
}

func TestRouter_EndpointMetrics(t *testing.T) {
	b := newBackend(t, "blue", nil)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	ep := serve(t, r.ColorHandler(teal.Blue))
	client := newClient(t)
	get(t, client, ep.URL)
	get(t, client, ep.URL)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, line := range []string{
		`teal_endpoint_requests_total{color="blue"} 2`,
		`teal_endpoint_requests_total{color="green"} 0`,
		`teal_requests_total{code="2xx",color="blue",listener="live"} 0`,
	} {
		if !strings.Contains(text, "\n"+line+"\n") {
			t.Fatalf("metrics lack %q; got:\n%s", line, text)
		}
	}
}
