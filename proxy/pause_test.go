package proxy

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
)

// pauseRouter returns a router with blue live and green as preview, and both listeners.
func pauseRouter(t *testing.T) (*Router, string, string, *testBackend) {
	t.Helper()
	r := newTestRouter(t)
	b := newBackend(t, "blue", nil)
	setBackends(t, r, teal.Blue, b.addr())
	setBackends(t, r, teal.Green, newBackend(t, "green", nil).addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	return r, serve(t, r.Handler()).URL, serve(t, r.PreviewHandler()).URL, b
}

type outcome struct {
	status int
	body   string
	err    error
	took   time.Duration
}

// fetchAsync starts n GETs of url and returns where their outcomes arrive.
func fetchAsync(c *http.Client, url string, n int) <-chan outcome {
	out := make(chan outcome, n)
	for range n {
		go func() {
			start := time.Now()
			status, body, err := fetch(c, http.MethodGet, url, "")
			out <- outcome{status, body, err, time.Since(start)}
		}()
	}
	return out
}

// TestRouter_PauseThenResume: requests during a pause wait in the router, reach no backend,
// and succeed after Resume; the preview listener is not paused.
func TestRouter_PauseThenResume(t *testing.T) {
	r, url, preview, b := pauseRouter(t)
	client := newClient(t)
	if _, _, ok := r.Paused(); ok {
		t.Fatal("Paused() ok on a new router")
	}
	before := time.Now()
	r.Pause(time.Minute, 100)
	since, _, ok := r.Paused()
	if !ok || since.Before(before) {
		t.Fatalf("Paused() = %v, %v, want paused since Pause", since, ok)
	}
	results := fetchAsync(client, url, 5)
	waitFor(t, 5*time.Second, "5 requests waiting", func() bool {
		_, waiting, _ := r.Paused()
		return waiting == 5
	})
	if n := b.hits.Load(); n != 0 {
		t.Fatalf("blue got %d requests during the pause, want 0", n)
	}
	if status, body := get(t, client, preview); status != http.StatusOK || body != "green" {
		t.Fatalf("preview during the pause = %d %q, want 200 green", status, body)
	}
	// A second Pause keeps the start and the waiting requests.
	r.Pause(time.Minute, 100)
	if s, waiting, ok := r.Paused(); !ok || !s.Equal(since) {
		t.Fatalf("Paused() after a second Pause = %v, %d, %v; want since %v", s, waiting, ok, since)
	}
	r.Resume()
	r.Resume() // nothing to resume: no effect
	for range 5 {
		o := <-results
		if o.err != nil || o.status != http.StatusOK || o.body != "blue" {
			t.Fatalf("paused request = %d %q %v, want 200 blue after Resume", o.status, o.body, o.err)
		}
	}
	if _, _, ok := r.Paused(); ok {
		t.Fatal("Paused() ok after Resume")
	}
	if status, _ := get(t, client, url); status != http.StatusOK {
		t.Fatalf("GET after Resume = %d, want 200", status)
	}
}

// TestRouter_PauseAutoResume: a pause that is never resumed ends by itself at max.
func TestRouter_PauseAutoResume(t *testing.T) {
	r, url, _, _ := pauseRouter(t)
	const max = 150 * time.Millisecond
	r.Pause(max, 10)
	o := <-fetchAsync(newClient(t), url, 1)
	if o.err != nil || o.status != http.StatusOK || o.body != "blue" {
		t.Fatalf("request in an unresumed pause = %d %q %v, want 200 blue after max", o.status, o.body, o.err)
	}
	if o.took < max-20*time.Millisecond {
		t.Fatalf("request took %v, want it held about max (%v)", o.took, max)
	}
	if _, _, ok := r.Paused(); ok {
		t.Fatal("Paused() ok after max")
	}
}

// TestRouter_PauseQueueOverflow: beyond the queue, requests are answered 503 with
// Retry-After at once; the queued ones succeed after Resume.
func TestRouter_PauseQueueOverflow(t *testing.T) {
	r, url, _, _ := pauseRouter(t)
	client := newClient(t)
	r.Pause(time.Minute, 2)
	queued := fetchAsync(client, url, 2)
	waitFor(t, 5*time.Second, "2 requests waiting", func() bool {
		_, waiting, _ := r.Paused()
		return waiting == 2
	})
	start := time.Now()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET beyond the queue: %v", err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("GET beyond the queue = %d Retry-After %q, want 503 and 1", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the overflow answer took %v, want it at once", d)
	}
	if s := r.Stats(""); s.Requests != 1 || s.Errors5xx != 1 {
		t.Fatalf("Stats(\"\") = %+v, want the overflow counted as one 503", s)
	}
	r.Resume()
	for range 2 {
		if o := <-queued; o.err != nil || o.status != http.StatusOK {
			t.Fatalf("queued request = %d %v, want 200", o.status, o.err)
		}
	}
}

// TestRouter_PauseAndHold: a request waits until both a hold and a pause are over; Resume
// does not release a hold.
func TestRouter_PauseAndHold(t *testing.T) {
	r, url, _, b := pauseRouter(t)
	r.Pause(time.Minute, 10)
	result := fetchAsync(newClient(t), url, 1)
	waitFor(t, 5*time.Second, "the request waiting in the pause", func() bool {
		_, waiting, _ := r.Paused()
		return waiting == 1
	})
	release := r.Hold()
	var once sync.Once
	t.Cleanup(func() { once.Do(release) })
	r.Resume()
	// The request is in the router, now held: it must not get through while the hold lasts.
	select {
	case o := <-result:
		t.Fatalf("request finished (%d %v) while held, want it waiting", o.status, o.err)
	case <-time.After(50 * time.Millisecond):
	}
	if n := b.hits.Load(); n != 0 {
		t.Fatalf("blue got %d requests while held, want 0", n)
	}
	once.Do(release)
	if o := <-result; o.err != nil || o.status != http.StatusOK {
		t.Fatalf("request after the hold = %d %v, want 200", o.status, o.err)
	}
}
