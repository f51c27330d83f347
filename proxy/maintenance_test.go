package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"teal.dev/teal"
)

// TestRouter_Maintenance: while on, every production request is answered 503 with Retry-After
// and the page, counted for colour none, without reaching a backend; a slow request that
// started before finishes normally; the preview listener is not affected; off serves again.
func TestRouter_Maintenance(t *testing.T) {
	started := make(chan struct{}, 1)
	finish := make(chan struct{})
	b := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" {
			started <- struct{}{}
			<-finish
		}
		_, _ = w.Write([]byte("blue"))
	})
	g := newBackend(t, "green", nil)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	setBackends(t, r, teal.Green, g.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	srv := serve(t, r.Handler())
	prev := serve(t, r.PreviewHandler())
	client := newClient(t)

	if r.InMaintenance() {
		t.Fatal("InMaintenance() = true on a new router, want false")
	}
	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		code, body, err := fetch(client, http.MethodGet, srv.URL+"/slow", "")
		slow <- result{code, body, err}
	}()
	<-started

	r.Maintenance(true)
	if !r.InMaintenance() {
		t.Fatal("InMaintenance() = false after Maintenance(true)")
	}
	before := hits(b)
	res, err := client.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status in maintenance = %d, want 503", res.StatusCode)
	}
	if got := res.Header.Get("Retry-After"); got != "5" {
		t.Fatalf("Retry-After = %q, want 5", got)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type = %q, want text/html", ct)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if want := "teal: " + host + " is being released, back in a moment"; !strings.Contains(string(page), want) {
		t.Fatalf("page = %q, want it to contain %q", page, want)
	}
	if n := hits(b) - before; n != 0 {
		t.Fatalf("blue got %d requests in maintenance, want 0", n)
	}
	if s := r.Stats(""); s.Requests != 1 || s.Errors5xx != 1 {
		t.Fatalf("Stats(none) = %+v, want 1 request, one 503", s)
	}

	// The preview listener still reaches the preview colour.
	if code, body := get(t, client, prev.URL+"/"); code != http.StatusOK || body != "green" {
		t.Fatalf("preview in maintenance = %d %q, want 200 green", code, body)
	}

	// The request in flight before maintenance was not cut off.
	close(finish)
	got := <-slow
	if got.err != nil || got.code != http.StatusOK || got.body != "blue" {
		t.Fatalf("slow request = %d %q %v, want 200 blue", got.code, got.body, got.err)
	}
	if err := r.Drain(context.Background(), teal.Blue); err != nil {
		t.Fatalf("drain: %v", err)
	}

	r.Maintenance(false)
	if r.InMaintenance() {
		t.Fatal("InMaintenance() = true after Maintenance(false)")
	}
	if code, body := get(t, client, srv.URL+"/"); code != http.StatusOK || body != "blue" {
		t.Fatalf("after maintenance = %d %q, want 200 blue", code, body)
	}
}

// TestMaintenancePage_EscapesHost: the Host header is the client's; it cannot inject markup.
func TestMaintenancePage_EscapesHost(t *testing.T) {
	tests := []struct {
		name, host, want string
	}{
		{"plain", "shop.example.com", "teal: shop.example.com is being released"},
		{"empty", "", "teal: this site is being released"},
		{"markup", "<script>x</script>", "teal: &lt;script&gt;x&lt;/script&gt; is being released"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maintenancePage(tt.host); !strings.Contains(got, tt.want) {
				t.Fatalf("maintenancePage(%q) = %q, want it to contain %q", tt.host, got, tt.want)
			}
		})
	}
}

// TestRouter_MaintenanceToggle: each switch of the mode applies to the very next request.
func TestRouter_MaintenanceToggle(t *testing.T) {
	b := newBackend(t, "blue", nil)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	srv := serve(t, r.Handler())
	client := newClient(t)
	for i := range 10 {
		on := i%2 == 0
		r.Maintenance(on)
		want := http.StatusOK
		if on {
			want = http.StatusServiceUnavailable
		}
		if code, _ := get(t, client, srv.URL+"/"); code != want {
			t.Fatalf("toggle %d (on=%v): status %d, want %d", i, on, code, want)
		}
	}
}
