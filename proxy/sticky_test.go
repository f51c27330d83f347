package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"

	"teal.dev/teal"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// splitRouter returns a router with one blue and one green backend that answer with their
// colour, and the production listener.
func splitRouter(t *testing.T, sticky Sticky, routes teal.Routes) (*Router, string, *testBackend, *testBackend) {
	t.Helper()
	r := newTestRouter(t)
	r.Sticky = sticky
	b, g := newBackend(t, "blue", nil), newBackend(t, "green", nil)
	setBackends(t, r, teal.Blue, b.addr())
	setBackends(t, r, teal.Green, g.addr())
	route(t, r, routes)
	return r, serve(t, r.Handler()).URL, b, g
}

// TestRouter_WeightedShareWithinThreePoints: over 2,000 requests from clients without
// cookies, each colour gets its weight ±3 points, with and without sticky sessions.
func TestRouter_WeightedShareWithinThreePoints(t *testing.T) {
	tests := []struct {
		name   string
		green  int
		sticky bool
	}{
		{"10 percent", 10, false},
		{"50 percent", 50, false},
		{"10 percent sticky", 10, true},
		{"50 percent sticky", 50, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, url, b, g := splitRouter(t, Sticky{Enabled: tc.sticky, Key: testKey},
				teal.Routes{Traffic: teal.Traffic{Blue: 100 - tc.green, Green: tc.green}, Epoch: 7})
			client := newClient(t) // no cookie jar: every request is a new client
			const n = 2000
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range 4 {
				wg.Go(func() {
					for range n / 4 {
						status, _, err := fetch(client, http.MethodGet, url, "")
						if err == nil && status != http.StatusOK {
							err = fmt.Errorf("status %d", status)
						}
						if err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("request failed: %v", err)
			}
			share := float64(g.hits.Load()) * 100 / n
			if share < float64(tc.green)-3 || share > float64(tc.green)+3 {
				t.Fatalf("green got %.1f%% of %d requests (blue %d), want %d±3", share, n, b.hits.Load(), tc.green)
			}
		})
	}
}

// TestRouter_StickyClientsNeverChangeColour: 200 clients with a cookie jar each make 10
// requests while green's weight moves 10 → 25 → 50; each client sees one colour throughout,
// and the clients' first requests were split by weight.
func TestRouter_StickyClientsNeverChangeColour(t *testing.T) {
	r, url, _, _ := splitRouter(t, Sticky{Enabled: true, Key: testKey},
		teal.Routes{Traffic: teal.Traffic{Blue: 90, Green: 10}, Epoch: 3})
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	const clients, rounds = 200, 10
	jars := make([]*http.Client, clients)
	for i := range jars {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		jars[i] = &http.Client{Transport: tr, Jar: jar}
	}
	seen := make([][]string, clients)
	for round := range rounds {
		switch round {
		case 3:
			route(t, r, teal.Routes{Traffic: teal.Traffic{Blue: 75, Green: 25}, Epoch: 3})
		case 6:
			route(t, r, teal.Routes{Traffic: teal.Traffic{Blue: 50, Green: 50}, Epoch: 3})
		}
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i, c := range jars {
			wg.Go(func() {
				status, body, err := fetch(c, http.MethodGet, url, "")
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d round %d: %w", i, round, err)
					return
				}
				seen[i] = append(seen[i], body)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	greens := 0
	for i, s := range seen {
		for _, body := range s[1:] {
			if body != s[0] {
				t.Fatalf("client %d saw %v, want one colour throughout", i, s)
			}
		}
		if s[0] == "green" {
			greens++
		}
	}
	// The first requests were the only ones split by weight, at 10%.
	if greens < clients*7/100 || greens > clients*13/100 {
		t.Fatalf("%d of %d clients were put on green at 10%%, want 10%%±3", greens, clients)
	}
}

// stickyGet does one GET with the given Cookie header and returns the colour that answered
// and the Set-Cookie header.
func stickyGet(t *testing.T, url, cookie string) (string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(body), res.Header.Get("Set-Cookie")
}

func TestRouter_StickyCookie(t *testing.T) {
	const epoch = 42
	blueCookie := "teal_color=" + stickyValue(testKey, teal.Blue, epoch)
	greenCookie := "teal_color=" + stickyValue(testKey, teal.Green, epoch)
	attrs := "; Path=/; HttpOnly; SameSite=Lax"
	split := teal.Routes{Traffic: teal.Traffic{Blue: 50, Green: 50}, Epoch: epoch}
	tests := []struct {
		name       string
		routes     teal.Routes
		noGreen    bool // green has no backends
		cookie     string
		wantColour string // "" for either
		wantSet    string // "" for none; "new" for a new cookie of the colour that answered
	}{
		{name: "valid blue cookie", routes: split, cookie: blueCookie, wantColour: "blue"},
		{name: "valid green cookie", routes: split, cookie: greenCookie, wantColour: "green"},
		{name: "among other cookies", routes: split, cookie: "a=1; " + greenCookie + "; b=2", wantColour: "green"},
		{name: "no cookie", routes: split, wantSet: "new"},
		{name: "forged mac", routes: split, cookie: "teal_color=green.42.AAAAAAAAAAAAAAAAAAAAAA", wantSet: "new"},
		{name: "another colour's mac", routes: split,
			cookie: "teal_color=green.42." + strings.Split(stickyValue(testKey, teal.Blue, epoch), ".")[2], wantSet: "new"},
		{name: "old epoch", routes: split, cookie: "teal_color=" + stickyValue(testKey, teal.Green, epoch-1), wantSet: "new"},
		{name: "another key", routes: split, cookie: "teal_color=" + stickyValue([]byte("other"), teal.Green, epoch), wantSet: "new"},
		{name: "cookie colour has no backends", routes: split, noGreen: true, cookie: greenCookie,
			wantColour: "blue", wantSet: blueCookie + attrs},
		{name: "no split: cookie ignored", routes: teal.Routes{Traffic: teal.All(teal.Blue), Epoch: epoch},
			cookie: greenCookie, wantColour: "blue"},
		{name: "no split: none given", routes: teal.Routes{Traffic: teal.All(teal.Green)}, wantColour: "green"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, url, _, _ := splitRouter(t, Sticky{Enabled: true, Key: testKey}, tc.routes)
			if tc.noGreen {
				setBackends(t, r, teal.Green)
			}
			for range 4 { // both colours get their turn by weight
				colour, set := stickyGet(t, url, tc.cookie)
				if tc.wantColour != "" && colour != tc.wantColour {
					t.Fatalf("answered by %q, want %q", colour, tc.wantColour)
				}
				want := tc.wantSet
				if want == "new" {
					want = "teal_color=" + stickyValue(testKey, teal.Color(colour), epoch) + attrs
				}
				if set != want {
					t.Fatalf("Set-Cookie = %q, want %q", set, want)
				}
			}
		})
	}
}

// TestRouter_StickyAcrossProcesses: a cookie given by one router is honoured by another with
// the same key, and by one with another cookie name only under that name.
func TestRouter_StickyAcrossProcesses(t *testing.T) {
	routes := teal.Routes{Traffic: teal.Traffic{Blue: 99, Green: 1}, Epoch: 9}
	one, url1, _, _ := splitRouter(t, Sticky{Enabled: true, Key: testKey}, routes)
	_ = one
	var cookie string
	for i := 0; i < 200 && cookie == ""; i++ {
		if colour, set := stickyGet(t, url1, ""); colour == "green" {
			cookie, _, _ = strings.Cut(set, ";")
		}
	}
	if cookie == "" {
		t.Fatal("no request was put on green at 1% in 200")
	}
	_, url2, _, _ := splitRouter(t, Sticky{Enabled: true, Key: testKey}, routes)
	for range 20 {
		if colour, set := stickyGet(t, url2, cookie); colour != "green" || set != "" {
			t.Fatalf("second router answered %q with Set-Cookie %q, want green and none", colour, set)
		}
	}
	_, url3, _, _ := splitRouter(t, Sticky{Enabled: true, Key: testKey, Cookie: "pin"}, routes)
	if _, set := stickyGet(t, url3, cookie); !strings.HasPrefix(set, "pin=") {
		t.Fatalf("router with cookie name pin gave Set-Cookie %q, want a pin cookie", set)
	}
	if _, set := stickyGet(t, url3, "pin="+strings.TrimPrefix(cookie, "teal_color=")); set != "" {
		t.Fatalf("router with cookie name pin gave Set-Cookie %q to a valid pin cookie, want none", set)
	}
}

// TestRouter_StickyKeepExisting: a request with the app's own cookies and no teal cookie stays
// on the old colour; one without cookies is split by weight.
func TestRouter_StickyKeepExisting(t *testing.T) {
	r, url, _, _ := splitRouter(t, Sticky{Enabled: true, KeepExisting: true, Key: testKey},
		teal.Routes{Traffic: teal.Traffic{Blue: 10, Green: 90}, Epoch: 5})
	if err := r.SetStickyOld("red"); !errors.Is(err, teal.ErrInvalid) {
		t.Fatalf("SetStickyOld(red) = %v, want ErrInvalid", err)
	}
	// Without an old colour, KeepExisting has no effect.
	greens := 0
	for range 10 {
		if colour, _ := stickyGet(t, url, "session=abc"); colour == "green" {
			greens++
		}
	}
	if greens != 9 {
		t.Fatalf("without SetStickyOld, %d of 10 sessions went to green, want 9", greens)
	}
	if err := r.SetStickyOld(teal.Blue); err != nil {
		t.Fatalf("SetStickyOld(blue): %v", err)
	}
	want := "teal_color=" + stickyValue(testKey, teal.Blue, 5) + "; Path=/; HttpOnly; SameSite=Lax"
	for range 10 {
		if colour, set := stickyGet(t, url, "session=abc"); colour != "blue" || set != want {
			t.Fatalf("existing session answered by %q with Set-Cookie %q, want blue and %q", colour, set, want)
		}
	}
	// An invalid teal cookie alone is a new client, split by weight.
	greens = 0
	for range 10 {
		if colour, _ := stickyGet(t, url, "teal_color=blue.4.x"); colour == "green" {
			greens++
		}
	}
	if greens != 9 {
		t.Fatalf("%d of 10 new clients went to green at 90%%, want 9", greens)
	}
	// A valid teal cookie wins over KeepExisting.
	green := "teal_color=" + stickyValue(testKey, teal.Green, 5)
	if colour, _ := stickyGet(t, url, "session=abc; "+green); colour != "green" {
		t.Fatalf("session with a green cookie answered by %q, want green", colour)
	}
	if err := r.SetStickyOld(""); err != nil {
		t.Fatalf("SetStickyOld(\"\"): %v", err)
	}
	greens = 0
	for range 10 {
		if colour, _ := stickyGet(t, url, "session=abc"); colour == "green" {
			greens++
		}
	}
	if greens != 9 {
		t.Fatalf("after SetStickyOld(\"\"), %d of 10 sessions went to green, want 9", greens)
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		name          string
		lines         []string
		value         string
		found, others bool
	}{
		{name: "none"},
		{name: "only it", lines: []string{"teal_color=blue.1.x"}, value: "blue.1.x", found: true},
		{name: "among others", lines: []string{"a=1; teal_color=green.2.y;b=2"}, value: "green.2.y", found: true, others: true},
		{name: "quoted", lines: []string{`teal_color="blue.1.x"`}, value: "blue.1.x", found: true},
		{name: "first wins", lines: []string{"teal_color=a", "teal_color=b"}, value: "a", found: true},
		{name: "others only", lines: []string{"session=1", "x"}, others: true},
		{name: "prefix is not it", lines: []string{"teal_color2=blue"}, others: true},
		{name: "empty parts", lines: []string{" ; ;teal_color=v; "}, value: "v", found: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, found, others := cookieValue(tc.lines, "teal_color")
			if v != tc.value || found != tc.found || others != tc.others {
				t.Fatalf("cookieValue(%q) = %q, %v, %v, want %q, %v, %v", tc.lines, v, found, others,
					tc.value, tc.found, tc.others)
			}
		})
	}
}

// FuzzCookieValue: the sticky cookie is found as net/http finds it, and a request routed by
// any Cookie header goes to a colour with backends.
func FuzzCookieValue(f *testing.F) {
	f.Add("teal_color=blue.1.abc")
	f.Add("a=1; teal_color=green.42." + stickyValue(testKey, teal.Green, 42))
	f.Add(`teal_color="x"; teal_color=y`)
	f.Add(";;=;teal_color")
	r := NewRouter()
	r.Sticky = Sticky{Enabled: true, KeepExisting: true, Key: testKey}
	ctx := context.Background()
	if err := r.SetBackends(ctx, teal.Blue, []string{"127.0.0.1:1"}); err != nil {
		f.Fatal(err)
	}
	if err := r.SetBackends(ctx, teal.Green, []string{"127.0.0.1:2"}); err != nil {
		f.Fatal(err)
	}
	if err := r.SetStickyOld(teal.Blue); err != nil {
		f.Fatal(err)
	}
	if err := r.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 30, Green: 70}, Epoch: 42}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		v, found, _ := cookieValue([]string{header}, "teal_color")
		req := &http.Request{Header: http.Header{"Cookie": {header}}}
		if c, err := req.Cookie("teal_color"); err == nil && !found {
			t.Fatalf("net/http finds %q in %q, cookieValue none (%q)", c.Value, header, v)
		}
		c, p, set := r.table.Load().pickSticky(req, &r.seq)
		if (c != blue && c != green) || p == nil {
			t.Fatalf("Cookie %q routed to colour %d, pool %v", header, c, p)
		}
		if set != "" && !strings.HasPrefix(set, "teal_color="+colorName(c)+".42.") {
			t.Fatalf("Cookie %q routed to %s with Set-Cookie %q", header, colorName(c), set)
		}
	})
}
