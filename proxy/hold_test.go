package proxy

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
)

// TestRouter_HoldThenSwitch: requests that arrive while traffic is held wait, and after the
// release are served by the colour routed during the hold; none fails.
func TestRouter_HoldThenSwitch(t *testing.T) {
	b := newBackend(t, "blue", nil)
	g := newBackend(t, "green", nil)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	setBackends(t, r, teal.Green, g.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	srv := serve(t, r.Handler())
	client := newClient(t)

	release := r.Hold()
	var wg sync.WaitGroup
	results := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := fetch(client, http.MethodGet, srv.URL+"/", "")
			if err != nil || code != http.StatusOK {
				results <- "failed"
				return
			}
			results <- body
		}()
	}
	// The held requests reach neither colour.
	waitFor(t, 5*time.Second, "requests held in the router", func() bool {
		return r.counters[live][blue].inFlight() == 0 && hits(b, g) == 0
	})
	if err := r.DrainRequests(context.Background(), teal.Blue); err != nil {
		t.Fatalf("drain while held: %v", err)
	}
	route(t, r, teal.Routes{Traffic: teal.All(teal.Green)})
	release()
	release() // idempotent
	wg.Wait()
	close(results)
	for body := range results {
		if body != "green" {
			t.Fatalf("a held request was answered %q, want green", body)
		}
	}
	if n := hits(b); n != 0 {
		t.Fatalf("blue got %d requests, want 0", n)
	}
}

// TestRouter_HoldBounded: a hold that is never released lets requests through after MaxHold.
func TestRouter_HoldBounded(t *testing.T) {
	b := newBackend(t, "blue", nil)
	r := newTestRouter(t)
	r.MaxHold = 50 * time.Millisecond
	setBackends(t, r, teal.Blue, b.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	srv := serve(t, r.Handler())
	defer r.Hold()()
	code, body, err := fetch(newClient(t), http.MethodGet, srv.URL+"/", "")
	if err != nil || code != http.StatusOK || body != "blue" {
		t.Fatalf("GET during an unreleased hold = %d %q %v, want 200 blue after MaxHold", code, body, err)
	}
}
