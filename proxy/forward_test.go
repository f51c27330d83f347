package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"teal.dev/teal"
)

// rawBackend is a backend that speaks HTTP/1.1 by hand, so that tests can send responses no
// well-behaved server would, and see exactly what arrives.
type rawBackend struct {
	ln    net.Listener
	conns atomic.Int64 // connections accepted
	reqs  atomic.Int64 // requests read
}

// newRawBackend serves each connection with serve, on its own goroutine, until the test ends.
func newRawBackend(t *testing.T, serve func(b *rawBackend, c net.Conn, br *bufio.Reader)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &rawBackend{ln: ln}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(b, c, bufio.NewReader(c))
			})
		}
	})
	return b
}

func (b *rawBackend) addr() string { return b.ln.Addr().String() }

// readRequest reads one request and its whole body; nil at the end of the connection.
func (b *rawBackend) readRequest(br *bufio.Reader) (*http.Request, []byte) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, nil
	}
	b.reqs.Add(1)
	return req, body
}

// cannedBackend answers every request with the raw response resp, and keeps the connection
// unless keep is false.
func cannedBackend(t *testing.T, resp string, keep bool) *rawBackend {
	return newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader) {
		for {
			if req, _ := b.readRequest(br); req == nil {
				return
			}
			if _, err := io.WriteString(c, resp); err != nil || !keep {
				return
			}
		}
	})
}

// routers returns two routers with addr as blue's one backend: one forwarding through its
// own pool, one through httputil.ReverseProxy over http.Transport (the path everything took
// before the pool), each on a real listener.
func routers(t *testing.T, addr string) (pool, rp string) {
	t.Helper()
	own := newTestRouter(t)
	std := newTestRouter(t)
	std.Transport = NewTransport().HTTP
	t.Cleanup(std.Transport.(*http.Transport).CloseIdleConnections)
	for _, r := range []*Router{own, std} {
		setBackends(t, r, teal.Blue, addr)
		route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	}
	return serve(t, own.Handler()).URL, serve(t, std.Handler()).URL
}

// rawExchange sends a raw request that asks to close the connection, and returns what came
// back: each response (interim ones included) as its status, header fields but Date, body
// and trailer fields. Chunk boundaries are not part of it: they carry no meaning, and
// ReverseProxy's copy rechunks.
func rawExchange(t *testing.T, url, request string) string {
	t.Helper()
	c := sendRaw(t, strings.TrimPrefix(url, "http://"), request)
	defer c.Close()
	var out strings.Builder
	br := bufio.NewReader(c)
	method, _, _ := strings.Cut(request, " ")
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			fmt.Fprintf(&out, "(end: %v)", err)
			return out.String()
		}
		res.Header.Del("Date")
		body, err := io.ReadAll(res.Body)
		fmt.Fprintf(&out, "%s %v\nbody %q (%v)\ntrailer %v\n", res.Status, res.Header, body, err, res.Trailer)
		if res.StatusCode >= 200 {
			return out.String()
		}
	}
}

// TestRouter_PoolAnswersAsReverseProxy sends the same requests, answered by the same raw
// responses, through the pool and through ReverseProxy, and wants the same bytes back at
// the client: status, headers in the order Go writes them, body framing and trailers.
func TestRouter_PoolAnswersAsReverseProxy(t *testing.T) {
	const get = "GET /x HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n"
	const head = "HEAD /x HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n"
	tests := []struct {
		name, request, response string
	}{
		{"content length", get, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked with extension", get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"},
		{"chunked with Content-Length", get, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\nok\r\n0\r\n\r\n"},
		{"until close", get, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"},
		{"HTTP/1.0", get, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"HEAD keeps Content-Length", head, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"},
		{"204", get, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
		{"304", get, "HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\n\r\n"},
		{"empty body", get, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		// With "close" among the Connection tokens, http.Transport drops the Connection
		// field before ReverseProxy reads the names listed in it: they go through. The pool
		// drops them as RFC 9110 §7.6.1 says; the case leaves close out.
		{"hop-by-hop", get, "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n" +
			"Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok"},
		{"repeated fields", get, "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"},
		{"lower-case names", get, "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nx-custom-thing: yes\r\ncontent-length: 2\r\n\r\nok"},
		{"folded field", get, "HTTP/1.1 200 OK\r\nX-Folded: one\r\n  two\r\n\tthree\r\nContent-Length: 2\r\n\r\nok"},
		{"LF line endings", get, "HTTP/1.1 200 OK\nContent-Length: 2\nX-A:  spaced  \n\nok"},
		{"status without reason", get, "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"},
		{"unknown status", get, "HTTP/1.1 599 Whatever\r\nContent-Length: 1\r\n\r\nx"},
		{"announced trailer", get, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n"},
		{"unannounced trailer", get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\nok\r\n0\r\nX-Late: yes\r\n\r\n"},
		{"early hints", get, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"request with body", "POST /p HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
			"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"},
		// Broken responses: 502 from both.
		{"bad status line", get, "HTTP/1.1 OK\r\n\r\n"},
		{"bad Content-Length", get, "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"},
		{"differing Content-Length", get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"},
		{"unsupported transfer encoding", get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"},
		{"bad header name", get, "HTTP/1.1 200 OK\r\nX(bad): 1\r\nContent-Length: 0\r\n\r\n"},
		{"switch without upgrade", get, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"},
		{"several 1xx", get, strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"nothing", get, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := cannedBackend(t, tc.response, false)
			pool, rp := routers(t, b.addr())
			want := rawExchange(t, rp, tc.request)
			got := rawExchange(t, pool, tc.request)
			if got != want {
				t.Fatalf("through the pool the client got\n%q\nwant (through ReverseProxy)\n%q", got, want)
			}
		})
	}
}

// TestRouter_PoolBrokenBodyAborts: a body that breaks off mid-way reaches the client broken
// (the connection is cut), never as a complete shorter response, and counts as an upstream
// error.
func TestRouter_PoolBrokenBodyAborts(t *testing.T) {
	for _, tc := range []struct{ name, response string }{
		{"short Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"},
		{"unterminated chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhalf\r\n"},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhalf\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := cannedBackend(t, tc.response, false)
			r := newTestRouter(t)
			setBackends(t, r, teal.Blue, b.addr())
			route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
			front := serve(t, r.Handler())
			res, err := newClient(t).Get(front.URL)
			if err == nil {
				_, err = io.ReadAll(res.Body)
				_ = res.Body.Close()
			}
			if err == nil {
				t.Fatalf("GET read a complete response, want the body broken off")
			}
			waitFor(t, 5*time.Second, "the request to be counted", func() bool { return r.Stats(teal.Blue).Requests == 1 })
			if s := r.Stats(teal.Blue); s.UpstreamErrors != 1 || s.Failed != 1 || s.InFlight != 0 {
				t.Fatalf("Stats(blue) = %+v, want 1 upstream error, 1 failed, none in flight", s)
			}
		})
	}
}

// TestRouter_PoolSendsRequestsAsReverseProxy sends the same requests through the pool and
// through ReverseProxy and wants the backend to see the same: method, target, Host, header
// fields (hop-by-hop ones gone, X-Forwarded-* the router's), body and its framing.
func TestRouter_PoolSendsRequestsAsReverseProxy(t *testing.T) {
	type seen struct {
		Method, URI, Host, Proto string
		Header                   http.Header
		ContentLength            int64
		TransferEncoding         []string
		Body                     string
	}
	got := make(chan seen, 1)
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader) {
		for {
			req, body := b.readRequest(br)
			if req == nil {
				return
			}
			got <- seen{req.Method, req.RequestURI, req.Host, req.Proto, req.Header, req.ContentLength,
				req.TransferEncoding, string(body)}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
				return
			}
		}
	})
	pool, rp := routers(t, b.addr())
	big := strings.Repeat("0123456789", 5000)
	tests := []struct{ name, request string }{
		{"plain GET", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: ua/1\r\nAccept: */*\r\n\r\n"},
		{"hop-by-hop and forwarding claims", "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive, X-Hop\r\n" +
			"X-Hop: 1\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n" +
			"Te: trailers, deflate\r\nTrailer: X-T\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n" +
			"X-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Kept: yes\r\n\r\n"},
		{"repeated fields and two user agents", "GET / HTTP/1.1\r\nHost: h\r\nX-Multi: 1\r\nX-Multi: 2\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n"},
		{"no user agent", "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"escaped path", "GET /a%20b/%7Ec/d%2Fe HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"path that net/url escapes", "GET /a{b}|c HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"empty query", "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"absolute form", "GET http://shop.example/abs?q=1 HTTP/1.1\r\nHost: shop.example\r\n\r\n"},
		{"query with semicolon", "GET /?a=1;b=2 HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n"},
		{"POST without body", "POST /p HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"DELETE without body", "DELETE /p HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"small body", "PUT /p HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"},
		{"large body", fmt.Sprintf("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(big), big)},
		{"chunked body", "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want, have seen
			for i, url := range []string{rp, pool} {
				c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if _, err := io.WriteString(c, tc.request); err != nil {
					t.Fatalf("write: %v", err)
				}
				res, err := http.ReadResponse(bufio.NewReader(c), nil)
				_ = c.Close()
				if err != nil || res.StatusCode != http.StatusOK {
					t.Fatalf("response: %v %v", res, err)
				}
				s := <-got
				if i == 0 {
					want = s
				} else {
					have = s
				}
			}
			if !reflect.DeepEqual(have, want) {
				t.Fatalf("through the pool the backend saw\n%+v\nwant (through ReverseProxy)\n%+v", have, want)
			}
		})
	}
}

// TestRouter_PoolReusesConnections: sequential requests share one kept-alive connection.
func TestRouter_PoolReusesConnections(t *testing.T) {
	b := cannedBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	pool, _ := routers(t, b.addr())
	client := newClient(t)
	for i := range 20 {
		if status, body := get(t, client, pool); status != http.StatusOK || body != "ok" {
			t.Fatalf("GET %d = %d %q, want 200 \"ok\"", i, status, body)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("backend connections = %d for 20 sequential requests, want 1", n)
	}
}

// TestRouter_PoolClosesAsAsked: a response with Connection: close, or without a length,
// leaves its connection closed, and the next request gets a new one.
func TestRouter_PoolClosesAsAsked(t *testing.T) {
	for _, resp := range []string{
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	} {
		b := cannedBackend(t, resp, true)
		pool, _ := routers(t, b.addr())
		client := newClient(t)
		for range 3 {
			if status, body := get(t, client, pool); status != http.StatusOK || body != "ok" {
				t.Fatalf("GET = %d %q, want 200 \"ok\"", status, body)
			}
		}
		if n := b.conns.Load(); n != 3 {
			t.Fatalf("backend connections = %d for 3 requests answered %q, want 3", n, resp[:17])
		}
	}
}

// TestRouter_PoolRetriesClosedIdleConnection: a backend that closes its kept-alive
// connections after each answer (without saying so) costs no failed request: an idempotent
// request that finds its connection closed goes again on a fresh one, and a POST is sent on a
// connection checked alive first. Every request reaches the backend exactly once.
func TestRouter_PoolRetriesClosedIdleConnection(t *testing.T) {
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader) {
		if req, _ := b.readRequest(br); req != nil {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	client := newClient(t)
	const n = 10
	for i := range n {
		method := http.MethodGet
		if i%2 == 1 {
			method = http.MethodPost
		}
		// Let the backend's close reach the router's idle connection.
		waitFor(t, 5*time.Second, "the backend's close to arrive", func() bool { return closedIdle(r) })
		status, body, err := fetch(client, method, front.URL, "")
		if err != nil || status != http.StatusOK || body != "ok" {
			t.Fatalf("%s %d = %d %q %v, want 200 \"ok\"", method, i, status, body, err)
		}
	}
	if got := b.reqs.Load(); got != n {
		t.Fatalf("backend read %d requests, want %d (each once)", got, n)
	}
	if s := r.Stats(teal.Blue); s.UpstreamErrors != 0 || s.Failed != 0 {
		t.Fatalf("Stats(blue) = %+v, want no errors", s)
	}
}

// closedIdle reports whether every idle pooled connection of r's blue backend has been
// closed by its peer, as far as a non-blocking peek can tell.
func closedIdle(r *Router) bool {
	p := r.table.Load().pools[blue]
	cp := p.backends[0].conns
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, c := range cp.idle {
		if c.alive() {
			return false
		}
	}
	return true
}

// TestRouter_PoolNeverSendsPostTwice: a backend that reads a request and then closes the
// connection without answering may have acted on it; a POST is then answered 502, not sent
// again, while a GET is tried once more on a fresh connection.
func TestRouter_PoolNeverSendsPostTwice(t *testing.T) {
	var answer atomic.Bool // answer requests from now on
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader) {
		for {
			if req, _ := b.readRequest(br); req == nil || !answer.Load() {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, b.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	client := newClient(t)

	// Warm a kept-alive connection, then have the backend stop answering on it.
	answer.Store(true)
	if status, _, err := fetch(client, http.MethodGet, front.URL, ""); err != nil || status != http.StatusOK {
		t.Fatalf("warm-up GET = %d %v", status, err)
	}
	answer.Store(false)
	before := b.reqs.Load()
	status, _, err := fetch(client, http.MethodPost, front.URL, "order=1")
	if err != nil || status != http.StatusBadGateway {
		t.Fatalf("POST to a backend that drops it = %d %v, want 502", status, err)
	}
	if got := b.reqs.Load() - before; got != 1 {
		t.Fatalf("backend read the POST %d times, want 1", got)
	}

	// A GET on a kept-alive connection the backend drops is tried once more, fresh.
	answer.Store(true)
	if status, _, err := fetch(client, http.MethodGet, front.URL, ""); err != nil || status != http.StatusOK {
		t.Fatalf("GET = %d %v", status, err)
	}
	answer.Store(false)
	before = b.reqs.Load()
	if status, _, err := fetch(client, http.MethodGet, front.URL, ""); err != nil || status != http.StatusBadGateway {
		t.Fatalf("GET to a backend that drops everything = %d %v, want 502", status, err)
	}
	if got := b.reqs.Load() - before; got != 2 {
		t.Fatalf("backend read the GET %d times, want 2 (once more on a fresh connection)", got)
	}
}

// TestRouter_PoolStreamsRequestBodies: bodies of unknown length, and bodies too big to buffer,
// reach the backend whole, and a backend that answers before reading the body is answered.
func TestRouter_PoolStreamsRequestBodies(t *testing.T) {
	up := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/refuse" {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		// All of it first: an HTTP/1 handler may not read its body once it has answered.
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Length", fmt.Sprint(req.ContentLength))
		_, _ = w.Write(body)
	})
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, up.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	client := newClient(t)

	big := strings.Repeat("streamed body;", 100000)
	for _, tc := range []struct {
		name   string
		length int64 // -1: chunked
	}{{"large with length", int64(len(big))}, {"chunked", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			go func() {
				for i := 0; i < len(big); i += 7000 {
					if _, err := io.WriteString(pw, big[i:min(i+7000, len(big))]); err != nil {
						return
					}
				}
				_ = pw.Close()
			}()
			req, err := http.NewRequest(http.MethodPost, front.URL+"/echo", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tc.length
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			body, err := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if err != nil || res.StatusCode != http.StatusOK || string(body) != big {
				t.Fatalf("POST = %d, %d bytes back (%v), want 200 and the %d bytes sent", res.StatusCode, len(body), err, len(big))
			}
			if got := res.Header.Get("X-Length"); got != fmt.Sprint(tc.length) {
				t.Fatalf("backend saw Content-Length %s, want %d", got, tc.length)
			}
		})
	}
	t.Run("answered before the body was read", func(t *testing.T) {
		status, body, err := fetch(client, http.MethodPost, front.URL+"/refuse", big)
		if err != nil || status != http.StatusRequestEntityTooLarge || body != "too large\n" {
			t.Fatalf("POST /refuse = %d %q %v, want 413", status, body, err)
		}
	})
}

// TestRouter_ClientGoneCounts499: a client that goes away while its backend works is counted
// as a 4xx (the router's 499), not as the backend's failure, and the backend's request is
// cancelled with it.
func TestRouter_ClientGoneCounts499(t *testing.T) {
	arrived := make(chan struct{})
	cancelled := make(chan struct{})
	up := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		close(arrived)
		<-req.Context().Done()
		close(cancelled)
	})
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, up.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, front.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		res, err := newClient(t).Do(req)
		if err == nil {
			_ = res.Body.Close()
		}
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error = %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request was not cancelled when the client went away")
	}
	waitFor(t, 5*time.Second, "the request to be counted", func() bool { return r.Stats(teal.Blue).Requests == 1 })
	text := metricsText(t, r)
	wantMetric(t, text, `teal_requests_total{code="4xx",color="blue",listener="live"} 1`)
	if s := r.Stats(teal.Blue); s.UpstreamErrors != 0 || s.Failed != 0 || s.InFlight != 0 {
		t.Fatalf("Stats(blue) = %+v, want no upstream error, none failed, none in flight", s)
	}
}

// TestRouter_PoolForwardsInterimResponses: a 103 Early Hints reaches the client with its
// Link, and the final response does not carry the interim fields.
func TestRouter_PoolForwardsInterimResponses(t *testing.T) {
	b := cannedBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	pool, _ := routers(t, b.addr())
	var hints []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, h)
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := newClient(t).Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	_ = res.Body.Close()
	if len(hints) != 1 || hints[0].Get("Link") != "</a.css>; rel=preload" {
		t.Fatalf("interim responses = %v, want one 103 with the Link", hints)
	}
	if got := res.Header.Get("Link"); got != "" {
		t.Fatalf("final response Link = %q, want none", got)
	}
}

// TestTransport_IdleConnectionsExpire: pooled connections idle past IdleConnTimeout are
// closed by the pool's sweep.
func TestTransport_IdleConnectionsExpire(t *testing.T) {
	closed := make(chan struct{}, 1)
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader) {
		for {
			if req, _ := b.readRequest(br); req == nil {
				closed <- struct{}{}
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	r := newTestRouter(t)
	tr := r.Transport.(*Transport)
	tr.IdleConnTimeout = 50 * time.Millisecond
	setBackends(t, r, teal.Blue, b.addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	if status, _ := get(t, newClient(t), front.URL); status != http.StatusOK {
		t.Fatalf("GET = %d, want 200", status)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed after IdleConnTimeout")
	}
	cp := tr.pool(b.addr())
	cp.mu.Lock()
	n := len(cp.idle)
	cp.mu.Unlock()
	if n != 0 {
		t.Fatalf("idle connections after the sweep = %d, want 0", n)
	}
}

// TestRouter_PoolKeepsRouterCookie: the sticky cookie the router sets is sent with the
// backend's own cookies, whatever interim responses came first.
func TestRouter_PoolKeepsRouterCookie(t *testing.T) {
	b := cannedBackend(t, "HTTP/1.1 103 Early Hints\r\nSet-Cookie: early=1\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nContent-Length: 2\r\n\r\nok", true)
	g := cannedBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true)
	r := newTestRouter(t)
	r.Sticky = Sticky{Enabled: true, Key: []byte("k")}
	setBackends(t, r, teal.Blue, b.addr())
	setBackends(t, r, teal.Green, g.addr())
	route(t, r, teal.Routes{Traffic: teal.Traffic{Blue: 50, Green: 50}, Epoch: 3})
	front := serve(t, r.Handler())
	req, err := http.NewRequest(http.MethodGet, front.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", DefaultStickyCookie+"="+stickyValue(r.Sticky.Key, teal.Blue, 3)+"; other=1")
	// A returning blue client gets no new cookie; a new one gets the router's and the app's.
	res, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, []string{"app=1"}) {
		t.Fatalf("Set-Cookie for a returning client = %q, want only the app's", got)
	}
	for {
		res, err := newClient(t).Get(front.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		got := res.Header.Values("Set-Cookie")
		if len(got) == 2 && strings.HasPrefix(got[0], DefaultStickyCookie+"=blue.") && got[1] == "app=1" {
			return
		}
		if len(got) != 1 || !strings.HasPrefix(got[0], DefaultStickyCookie+"=green.") {
			t.Fatalf("Set-Cookie for a new client = %q, want the router's then the app's", got)
		}
	}
}

// TestRouter_PoolBoundsInterimResponses: a backend that sends 1xx responses without end gets
// a 502 after maxInterim of them.
func TestRouter_PoolBoundsInterimResponses(t *testing.T) {
	b := cannedBackend(t, strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", maxInterim+1)+
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
	pool, _ := routers(t, b.addr())
	got := rawExchange(t, pool, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if want := strings.Repeat("103 Early Hints map[]\nbody \"\" (<nil>)\ntrailer map[]\n", maxInterim) + "502 Bad Gateway"; !strings.HasPrefix(got, want) {
		t.Fatalf("client got\n%s\nwant %d interim responses, then 502", got, maxInterim)
	}
}
