package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"teal.dev/teal"
)

// discardWriter is a ResponseWriter that keeps only the status, so that the "handler"
// benchmark measures the router and its upstream round trip, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(code int) { w.status = code }

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}

// BenchmarkRouter forwards GETs to a keep-alive upstream that answers a small body: "handler"
// calls the live handler directly (the router's own cost plus the upstream round trip);
// "http" goes through a real listener with concurrent keep-alive clients.
func BenchmarkRouter(b *testing.B) {
	body := []byte("hello from blue\n")
	up := newBackend(b, "blue", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	r := newTestRouter(b)
	setBackends(b, r, teal.Blue, up.addr())
	route(b, r, teal.Routes{Traffic: teal.All(teal.Blue)})

	b.Run("handler", func(b *testing.B) {
		h := r.Handler()
		req := httptest.NewRequest(http.MethodGet, "http://shop.example/", nil)
		w := &discardWriter{h: make(http.Header)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			w.status = 0
			h.ServeHTTP(w, req)
		}
		if w.status != http.StatusOK {
			b.Fatalf("status = %d, want 200", w.status)
		}
	})

	b.Run("http", func(b *testing.B) {
		front := serve(b, r.Handler())
		client := newClient(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := client.Get(front.URL)
				if err != nil {
					b.Errorf("GET: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Errorf("status = %d, want 200", res.StatusCode)
					return
				}
			}
		})
	})
}

// BenchmarkRouter_Sticky is the live handler during a 50/50 split with sticky sessions, for a
// returning client (a valid cookie) and a new one (given a cookie).
func BenchmarkRouter_Sticky(b *testing.B) {
	up := func(name string) *testBackend {
		return newBackend(b, name, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })
	}
	r := newTestRouter(b)
	r.Sticky = Sticky{Enabled: true, Key: []byte("bench key")}
	setBackends(b, r, teal.Blue, up("blue").addr())
	setBackends(b, r, teal.Green, up("green").addr())
	route(b, r, teal.Routes{Traffic: teal.Traffic{Blue: 50, Green: 50}, Epoch: 1})
	for _, tc := range []struct{ name, cookie string }{
		{"returning", "session=1; teal_color=" + stickyValue(r.Sticky.Key, teal.Green, 1)},
		{"new", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := r.Handler()
			req := httptest.NewRequest(http.MethodGet, "http://shop.example/", nil)
			if tc.cookie != "" {
				req.Header.Set("Cookie", tc.cookie)
			}
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.status = 0
				h.ServeHTTP(w, req)
			}
			if w.status != http.StatusOK {
				b.Fatalf("status = %d, want 200", w.status)
			}
		})
	}
}
