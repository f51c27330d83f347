package proxy

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"teal.dev/teal"
)

// shadowRouter returns a router with blue live and green idle, and the production listener.
func shadowRouter(t *testing.T, blueH, greenH http.HandlerFunc) (*Router, string, *testBackend, *testBackend) {
	t.Helper()
	r := newTestRouter(t)
	b, g := newBackend(t, "blue", blueH), newBackend(t, "green", greenH)
	setBackends(t, r, teal.Blue, b.addr())
	setBackends(t, r, teal.Green, g.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	return r, serve(t, r.Handler()).URL, b, g
}

// waitShadow waits until n mirrors have ended (compared or failed).
func waitShadow(t *testing.T, r *Router, n int64) ShadowReport {
	t.Helper()
	var rep ShadowReport
	waitFor(t, 10*time.Second, fmt.Sprintf("%d mirrors to end", n), func() bool {
		rep = r.ShadowReport()
		return rep.Compared+rep.Errors >= n
	})
	return rep
}

// TestRouter_ShadowFindsBrokenPath: a green that answers 500 on one path fails the comparison
// with that path in the report, while live clients saw only 200s from blue; mirrors carry
// X-Teal-Shadow and are not counted as green's production traffic.
func TestRouter_ShadowFindsBrokenPath(t *testing.T) {
	var unmarked atomic.Int64
	r, url, b, _ := shadowRouter(t, nil, func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get(ShadowHeader) != "1" || req.Header.Get("X-Forwarded-For") == "" || req.Host != "shop.example" {
			unmarked.Add(1)
		}
		if req.URL.Path == "/broken" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "green")
	})
	if err := r.StartShadow(ShadowConfig{Percent: 100}, teal.Green); err != nil {
		t.Fatalf("StartShadow: %v", err)
	}
	client := newClient(t)
	paths := []string{"/", "/broken", "/orders?id=1", "/broken", "/a", "/broken", "/b", "/c"}
	for _, p := range paths {
		req, err := http.NewRequest(http.MethodGet, url+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "shop.example"
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK || string(body) != "blue" {
			t.Fatalf("live GET %s = %d %q, want 200 from blue", p, res.StatusCode, body)
		}
	}
	// Not mirrored: a POST, with a body.
	if status, _, err := fetch(client, http.MethodPost, url+"/broken", "payload"); err != nil || status != http.StatusOK {
		t.Fatalf("POST = %d, %v", status, err)
	}
	rep := waitShadow(t, r, int64(len(paths)))
	final := r.StopShadow()
	if rep.Mirrored != int64(len(paths)) || rep.Compared != int64(len(paths)) || rep.Errors != 0 || rep.Skipped != 0 {
		t.Fatalf("report = %+v, want %d mirrored and compared", rep, len(paths))
	}
	if rep.Mismatches != 3 || math.Abs(rep.MismatchRate-3.0/8) > 1e-9 {
		t.Fatalf("mismatches = %d, rate %v, want 3 and 0.375", rep.Mismatches, rep.MismatchRate)
	}
	want := ShadowMismatch{Method: "GET", Path: "/broken", LiveStatus: 200, ShadowStatus: 500,
		Note: "status 500, live 200", Count: 3}
	if len(rep.Examples) != 1 || rep.Examples[0] != want {
		t.Fatalf("examples = %+v, want [%+v]", rep.Examples, want)
	}
	if final.Mismatches != rep.Mismatches || len(final.Examples) != 1 {
		t.Fatalf("StopShadow() = %+v, want the same as the last report %+v", final, rep)
	}
	if n := unmarked.Load(); n != 0 {
		t.Fatalf("%d mirrors lacked X-Teal-Shadow, X-Forwarded-For or the client's Host", n)
	}
	if got := b.hits.Load(); got != int64(len(paths))+1 {
		t.Fatalf("blue got %d requests, want %d", got, len(paths)+1)
	}
	if s := r.Stats(teal.Green); s.Requests != 0 {
		t.Fatalf("Stats(green) = %+v, want no production requests: mirrors are not counted", s)
	}
	text := metricsText(t, r)
	wantMetric(t, text, `teal_shadow_requests_total{result="mismatch"} 3`)
	wantMetric(t, text, `teal_shadow_requests_total{result="match"} 5`)
	// After StopShadow nothing is mirrored.
	get(t, client, url+"/broken")
	if rep := r.ShadowReport(); rep.Mirrored != 0 {
		t.Fatalf("ShadowReport after StopShadow = %+v, want empty", rep)
	}
}

// TestRouter_ShadowBodyCompare: with compare: body, a different body is a mismatch that says
// where; the same body, and a HEAD, match.
func TestRouter_ShadowBodyCompare(t *testing.T) {
	big := strings.Repeat("a", 3000)
	answer := func(colour string) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			switch req.URL.Path {
			case "/word":
				if colour == "green" {
					_, _ = io.WriteString(w, "hello wurld")
					return
				}
				_, _ = io.WriteString(w, "hello world")
			case "/short":
				if colour == "green" {
					_, _ = io.WriteString(w, "hello")
					return
				}
				_, _ = io.WriteString(w, "hello world")
			case "/late":
				if colour == "green" {
					_, _ = io.WriteString(w, big+"b")
					return
				}
				_, _ = io.WriteString(w, big+"c")
			default:
				_, _ = io.WriteString(w, "same for both")
			}
		}
	}
	r, url, _, _ := shadowRouter(t, answer("blue"), answer("green"))
	if err := r.StartShadow(ShadowConfig{Percent: 100, Compare: CompareBody}, teal.Green); err != nil {
		t.Fatalf("StartShadow: %v", err)
	}
	client := newClient(t)
	for _, p := range []string{"/same", "/word", "/short", "/late", "/same"} {
		get(t, client, url+p)
	}
	if status, _, err := fetch(client, http.MethodHead, url+"/word", ""); err != nil || status != http.StatusOK {
		t.Fatalf("HEAD = %d, %v", status, err)
	}
	rep := waitShadow(t, r, 6)
	r.StopShadow()
	if rep.Compared != 6 || rep.Mismatches != 3 {
		t.Fatalf("report = %+v, want 6 compared, 3 mismatches", rep)
	}
	want := map[string]string{
		"/word":  "body differs at byte 7",
		"/short": "body differs at byte 5 (5 bytes, live 11)",
		"/late":  "body differs after byte 1024 (3001 bytes, live 3001)",
	}
	for _, e := range rep.Examples {
		if e.Note != want[e.Path] || e.LiveStatus != 200 || e.ShadowStatus != 200 {
			t.Fatalf("example %+v, want note %q and 200s", e, want[e.Path])
		}
		delete(want, e.Path)
	}
	if len(want) != 0 {
		t.Fatalf("examples %+v lack %v", rep.Examples, want)
	}
}

// TestRouter_ShadowPercent: the share mirrored is exact, by counter.
func TestRouter_ShadowPercent(t *testing.T) {
	r, url, _, g := shadowRouter(t, nil, nil)
	if err := r.StartShadow(ShadowConfig{Percent: 12.5}, teal.Green); err != nil {
		t.Fatalf("StartShadow: %v", err)
	}
	client := newClient(t)
	for range 80 {
		get(t, client, url)
	}
	rep := waitShadow(t, r, 10)
	r.StopShadow()
	if rep.Mirrored != 10 || g.hits.Load() != 10 {
		t.Fatalf("mirrored %d (green got %d) of 80 at 12.5%%, want 10", rep.Mirrored, g.hits.Load())
	}
}

// TestRouter_ShadowHangingBackend: a shadow colour that never answers does not slow live
// answers; mirrors beyond Concurrency are skipped and counted; StopShadow abandons those in
// flight; one that times out is an error.
func TestRouter_ShadowHangingBackend(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	r, url, _, g := shadowRouter(t, nil, func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-release:
		case <-req.Context().Done():
		}
	})
	if err := r.StartShadow(ShadowConfig{Percent: 100, Concurrency: 2}, teal.Green); err != nil {
		t.Fatalf("StartShadow: %v", err)
	}
	client := newClient(t)
	client.Timeout = 2 * time.Second // a live request held up by its mirror fails here
	start := time.Now()
	for i := range 20 {
		if status, body, err := fetch(client, http.MethodGet, url, ""); err != nil || status != http.StatusOK || body != "blue" {
			t.Fatalf("live request %d while the shadow hangs = %d %q %v, want 200 blue", i, status, body, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("20 live requests took %v while the shadow hangs", d)
	}
	waitFor(t, 5*time.Second, "2 mirrors at green", func() bool { return g.hits.Load() == 2 })
	rep := r.StopShadow()
	if rep.Mirrored != 2 || rep.Skipped != 18 || rep.Compared != 0 || rep.Errors != 0 {
		t.Fatalf("report = %+v, want 2 mirrored (abandoned), 18 skipped", rep)
	}
	wantMetric(t, metricsText(t, r), `teal_shadow_requests_total{result="skipped"} 18`)

	// A mirror that outlives Timeout is an error, with the path in the report.
	if err := r.StartShadow(ShadowConfig{Percent: 100, Timeout: 50 * time.Millisecond}, teal.Green); err != nil {
		t.Fatalf("StartShadow again: %v", err)
	}
	get(t, client, url+"/slow")
	rep = waitShadow(t, r, 1)
	r.StopShadow()
	if rep.Errors != 1 || rep.MismatchRate != 1 || len(rep.Examples) != 1 || rep.Examples[0].Path != "/slow" ||
		rep.Examples[0].ShadowStatus != 0 || !strings.Contains(rep.Examples[0].Note, "deadline") {
		t.Fatalf("report = %+v, want one error on /slow for the deadline", rep)
	}
}

// TestRouter_ShadowSkipsRequestsToItsColour: during a split, requests routed to the shadow
// colour itself are not mirrored to it.
func TestRouter_ShadowSkipsRequestsToItsColour(t *testing.T) {
	r, url, _, g := shadowRouter(t, nil, nil)
	route(t, r, teal.Routes{Traffic: teal.Traffic{Blue: 50, Green: 50}})
	if err := r.StartShadow(ShadowConfig{Percent: 100}, teal.Green); err != nil {
		t.Fatalf("StartShadow: %v", err)
	}
	client := newClient(t)
	for range 10 {
		get(t, client, url)
	}
	rep := waitShadow(t, r, 5)
	r.StopShadow()
	if rep.Mirrored != 5 || g.hits.Load() != 10 {
		t.Fatalf("mirrored %d, green got %d, want 5 mirrors of blue's 5 and 5 live", rep.Mirrored, g.hits.Load())
	}
}

func TestRouter_StartShadowRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  ShadowConfig
		to   teal.Color
		want string
	}{
		{"no percent", ShadowConfig{}, teal.Green, "shadow percent 0"},
		{"over 100", ShadowConfig{Percent: 101}, teal.Green, "shadow percent 101"},
		{"NaN", ShadowConfig{Percent: math.NaN()}, teal.Green, "shadow percent NaN"},
		{"compare", ShadowConfig{Percent: 1, Compare: "headers"}, teal.Green, `shadow compare "headers"`},
		{"method case", ShadowConfig{Percent: 1, Methods: []string{"get"}}, teal.Green, `shadow method "get"`},
		{"method empty", ShadowConfig{Percent: 1, Methods: []string{""}}, teal.Green, `shadow method ""`},
		{"max body", ShadowConfig{Percent: 1, MaxBody: -1}, teal.Green, "shadow max body -1"},
		{"concurrency", ShadowConfig{Percent: 1, Concurrency: -1}, teal.Green, "shadow concurrency -1"},
		{"timeout", ShadowConfig{Percent: 1, Timeout: -time.Second}, teal.Green, "shadow timeout -1s"},
		{"colour", ShadowConfig{Percent: 1}, "red", `colour "red"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t)
			err := r.StartShadow(tc.cfg, tc.to)
			if !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartShadow = %v, want ErrInvalid naming %q", err, tc.want)
			}
			if rep := r.ShadowReport(); rep.Mirrored != 0 {
				t.Fatalf("a refused StartShadow left shadow traffic running")
			}
		})
	}
	r := newTestRouter(t)
	if err := r.StartShadow(ShadowConfig{Percent: 1}, teal.Green); err != nil {
		t.Fatalf("StartShadow: %v", err)
	}
	if err := r.StartShadow(ShadowConfig{Percent: 1}, teal.Blue); !errors.Is(err, teal.ErrConflict) {
		t.Fatalf("second StartShadow = %v, want ErrConflict", err)
	}
	r.StopShadow()
	if err := r.StartShadow(ShadowConfig{Percent: 1}, teal.Blue); err != nil {
		t.Fatalf("StartShadow after StopShadow: %v", err)
	}
}
