package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// rawUpstream is the cheapest keep-alive backend there is: it answers every request head it
// reads (a GET, no body) with the same canned response, so that a benchmark measures the
// router, not the backend's HTTP server.
func rawUpstream(b *testing.B, response string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatalf("listen: %v", err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// A request head ends with an empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := io.WriteString(c, response); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkRouter_Forward is the hot path against a canned upstream: the live handler called
// directly, for a small GET through the router's connection pool ("pool") and through
// httputil.ReverseProxy over http.Transport ("reverseproxy", the path before the pool), one
// request at a time and from as many goroutines as GOMAXPROCS.
func BenchmarkRouter_Forward(b *testing.B) {
	addr := rawUpstream(b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 29 Nov 2026 08:00:00 GMT\r\n"+
		"Content-Length: 13\r\n\r\nhello, world\n")
	for _, tc := range []struct {
		name string
		std  bool
	}{{"pool", false}, {"reverseproxy", true}} {
		r := newTestRouter(b)
		if tc.std {
			r.Transport = NewTransport().HTTP
		}
		setBackends(b, r, teal.Blue, addr)
		route(b, r, teal.Routes{Traffic: teal.All(teal.Blue)})
		h := r.Handler()
		// path=… lets benchstat put the two paths side by side: benchstat -col /path.
		b.Run("path="+tc.name, func(b *testing.B) {
			b.Run("serial", func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "http://shop.example/orders?id=7", nil)
				req.Header.Set("User-Agent", "bench")
				req.Header.Set("Accept", "*/*")
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
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					req := httptest.NewRequest(http.MethodGet, "http://shop.example/orders?id=7", nil)
					req.Header.Set("User-Agent", "bench")
					req.Header.Set("Accept", "*/*")
					w := &discardWriter{h: make(http.Header)}
					for pb.Next() {
						clear(w.h)
						w.status = 0
						h.ServeHTTP(w, req)
						if w.status != http.StatusOK {
							b.Errorf("status = %d, want 200", w.status)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkReadHead is the response head parser alone, on a connection that has seen the
// same head before (the common case: its strings are reused).
func BenchmarkReadHead(b *testing.B) {
	const raw = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nDate: Sun, 29 Nov 2026 08:00:00 GMT\r\n" +
		"Cache-Control: no-store\r\nSet-Cookie: session=abc; Path=/; HttpOnly\r\nContent-Length: 0\r\n\r\n"
	src := strings.NewReader(raw)
	r := &reader{br: bufio.NewReaderSize(src, readBufferSize)}
	var h head
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(raw)
		r.br.Reset(src)
		if err := r.readHead(&h, http.MethodGet); err != nil {
			b.Fatal(err)
		}
	}
}

// benchFront serves h behind the front named (own: Server; nethttp: http.Server) and returns
// its address.
func benchFront(b *testing.B, front string, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatalf("listen: %v", err)
	}
	var srv interface {
		Serve(net.Listener) error
		Close() error
	}
	if front == "own" {
		srv = &Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	} else {
		srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// rawGets sends GETs on one kept-alive connection, each when the previous answer (ending in
// suffix) is in, the way wrk does.
type rawGets struct {
	c      net.Conn
	req    []byte
	buf    []byte
	suffix []byte
}

func newRawGets(b *testing.B, addr, suffix string) *rawGets {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return &rawGets{c: c, req: []byte("GET /orders?id=7 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"),
		buf: make([]byte, 4096), suffix: []byte(suffix)}
}

func (g *rawGets) do() error {
	if _, err := g.c.Write(g.req); err != nil {
		return err
	}
	n := 0
	for {
		m, err := g.c.Read(g.buf[n:])
		n += m
		if err != nil {
			return err
		}
		if bytes.HasSuffix(g.buf[:n], g.suffix) {
			return nil
		}
		if n == len(g.buf) {
			return fmt.Errorf("no answer ending in %q in %q", g.suffix, g.buf[:n])
		}
	}
}

// BenchmarkServer compares the two fronts, the router's own Server and net/http's, serving
// a handler that answers a small body, over real keep-alive connections: one at a time
// ("serial") and from as many connections as GOMAXPROCS ("parallel"). Compare with
// benchstat -col /front.
func BenchmarkServer(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello, world\n")
	})
	benchFronts(b, h)
}

// BenchmarkServer_Router is BenchmarkServer with the router behind the front, forwarding to
// a canned upstream through its pool: what bench/router.sh measures, in one process.
func BenchmarkServer_Router(b *testing.B) {
	addr := rawUpstream(b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 29 Nov 2026 08:00:00 GMT\r\n"+
		"Content-Length: 13\r\n\r\nhello, world\n")
	r := newTestRouter(b)
	setBackends(b, r, teal.Blue, addr)
	route(b, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	benchFronts(b, r.Handler())
}

func benchFronts(b *testing.B, h http.Handler) {
	for _, front := range []string{"own", "nethttp"} {
		addr := benchFront(b, front, h)
		b.Run("front="+front, func(b *testing.B) {
			b.Run("serial", func(b *testing.B) {
				g := newRawGets(b, addr, "hello, world\n")
				b.ReportAllocs()
				for b.Loop() {
					if err := g.do(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					g := newRawGets(b, addr, "hello, world\n")
					for pb.Next() {
						if err := g.do(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
