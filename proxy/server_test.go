package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fronts are the two servers a test compares: net/http's and the router's own.
type fronts struct {
	std, own string // addresses
	srv      *Server
}

// startFronts serves h behind an http.Server and behind a Server, each on its own listener.
func startFronts(t testing.TB, h http.Handler) *fronts {
	t.Helper()
	quiet := log.New(io.Discard, "", 0)
	lnStd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnOwn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	std := &http.Server{Handler: h, ErrorLog: quiet, ReadHeaderTimeout: 5 * time.Second}
	own := &Server{Handler: h, ErrorLog: quiet, ReadHeaderTimeout: 5 * time.Second}
	stdDone, ownDone := make(chan error, 1), make(chan error, 1)
	go func() { stdDone <- std.Serve(lnStd) }()
	go func() { ownDone <- own.Serve(lnOwn) }()
	t.Cleanup(func() {
		_ = std.Close()
		_ = own.Close()
		<-stdDone
		if err := <-ownDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Server.Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return &fronts{std: lnStd.Addr().String(), own: lnOwn.Addr().String(), srv: own}
}

// rawStream sends request (all of it, then half-closes) and returns every byte the server
// sent until it closed the connection.
func rawStream(t testing.TB, addr, request string) string {
	t.Helper()
	c := sendRaw(t, addr, request)
	defer c.Close()
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("read response: %v (after %q)", err, b)
	}
	return string(b)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

var dateField = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r\n`)

// serverHandlers are the handlers the equivalence test runs each request against.
var serverHandlers = map[string]http.HandlerFunc{
	"small": func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") },
	"empty": func(http.ResponseWriter, *http.Request) {},
	"large": func(w http.ResponseWriter, _ *http.Request) {
		for i := range 9 {
			_, _ = io.WriteString(w, strings.Repeat(string(rune('a'+i)), 1000+i))
		}
	},
	"length": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello")
	},
	"short length": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "hello")
	},
	"flush": func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "one ")
		if err := http.NewResponseController(w).Flush(); err != nil {
			panic(err)
		}
		_, _ = io.WriteString(w, "two")
	},
	"early hints": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "final")
	},
	"204": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "3")
		w.WriteHeader(http.StatusNoContent)
		_, _ = io.WriteString(w, "not")
	},
	"304": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotModified)
	},
	"trailers": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Trailer", "X-Sum, X-Bad, Content-Length")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	},
	"close": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	},
	"abort": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "partial")
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	},
	"abort unflushed": func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "partial")
		panic(http.ErrAbortHandler)
	},
	"panic": func(http.ResponseWriter, *http.Request) { panic("boom") },
	"type nil": func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = nil
		_, _ = io.WriteString(w, "<html>not sniffed")
	},
	"proxied": func(w http.ResponseWriter, _ *http.Request) {
		// What the router does for a backend's response with a length.
		h := w.Header()
		h["Content-Type"] = nil
		h.Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	},
	"header after WriteHeader": func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("X-Before", "1")
		w.WriteHeader(http.StatusAccepted)
		h.Set("X-After", "1")
		_, _ = io.WriteString(w, "x")
	},
	"identity": func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Transfer-Encoding", "identity")
		_, _ = io.WriteString(w, "until close")
	},
	"echo": func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s host=%s cl=%d close=%v body=%q err=%v\n", r.Method, r.RequestURI,
			r.Proto, r.Host, r.ContentLength, r.Close, b, err)
		for _, k := range sortedKeys(r.Header) {
			fmt.Fprintf(w, "%s=%q\n", k, r.Header[k])
		}
		fmt.Fprintf(w, "url=%#v\n", *r.URL)
	},
	"read some": func(w http.ResponseWriter, r *http.Request) {
		var b [2]byte
		_, _ = io.ReadFull(r.Body, b[:])
		_, _ = io.WriteString(w, "read two")
	},
	"close body": func(w http.ResponseWriter, r *http.Request) {
		_ = r.Body.Close()
		_, _ = io.WriteString(w, "closed")
	},
	"hijack": func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			// The fast path does not hijack (and never sees an upgrade request).
			_, _ = io.WriteString(w, "no upgrade")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			_, _ = io.WriteString(w, "no hijack")
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nhi")
		_ = brw.Flush()
	},
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// serverRequests are the raw request streams of the equivalence test; fast says whether
// the fast path serves all of it (else some goes to net/http).
var serverRequests = []struct {
	name, raw string
	fast      bool
}{
	{"GET", "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n", true},
	{"HEAD", "HEAD /a HTTP/1.1\r\nHost: example.com\r\n\r\n", true},
	{"POST", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", true},
	{"POST empty", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", true},
	{"pipelined", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"pipelined POST then CRLF", "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"connection close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", true},
	{"HTTP/1.0 keep-alive", "GET /1 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n", true},
	{"absolute form", "GET http://other.example:8080/x?y HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"odd but valid fields", "GET /%7Efoo/b%20r HTTP/1.1\r\nhost:   h  \r\nx-lower: a\r\nX-LOWER: b\r\nX-Empty:\r\n" +
		"Pragma: no-cache\r\nX-Obs: caf\xc3\xa9\tx\r\nAccept-encoding: gzip\r\n\r\n", true},
	{"body left unread", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789GET /2 HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"body cut short", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234", true},
	{"chunked body", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
	{"expect continue", "POST /c HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", false},
	{"expect other", "GET / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n", false},
	{"upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
	{"fast then upgrade", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n", false},
	{"options star", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"connect", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", false},
	{"no host", "GET / HTTP/1.1\r\n\r\n", false},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
	{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false},
	{"bad request line", "GET /\r\nHost: h\r\n\r\n", false},
	{"bad method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"bad version", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", false},
	{"HTTP/2", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", false},
	{"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", false},
	{"continuation", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", false},
	{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", false},
	{"control in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", false},
	{"bad length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", false},
	{"two lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"bad target", "GET foo HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"head cut short", "GET / HTTP/1.1\r\nHost: h\r\n", false},
	{"fast then malformed", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost h\r\n\r\n", false},
	{"nothing", "", true},
	{"short garbage after a request", "GET / HTTP/1.1\r\nHost:\r\n\r\n0", true},
	{"CR and garbage after a POST", "POST /0 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n00\r000", false},
	{"LF after a request", "GET / HTTP/1.1\r\nHost: h\r\n\r\n\n", true},
	{"garbage after a request", "GET / HTTP/1.1\r\nHost: h\r\n\r\n0123", false},
}

// TestServer_AnswersAsNetHTTP sends the same bytes to net/http's server and to Server, with
// the same handler, and wants the same bytes back but for the Date, for every pair of
// request and handler; and wants the requests meant for the fast path served by it.
func TestServer_AnswersAsNetHTTP(t *testing.T) {
	for hname, h := range serverHandlers {
		t.Run(hname, func(t *testing.T) {
			t.Parallel()
			f := startFronts(t, h)
			for _, rc := range serverRequests {
				before := f.srv.handoffs.Load()
				want := rawStream(t, f.std, rc.raw)
				got := rawStream(t, f.own, rc.raw)
				if dateField.ReplaceAllString(got, "") != dateField.ReplaceAllString(want, "") {
					t.Errorf("%s: Server answered\n%q\nwant (net/http)\n%q", rc.name, got, want)
				}
				// A handler that closes the connection may end it before what would go
				// to net/http.
				closes := map[string]bool{"close": true, "panic": true, "abort": true, "abort unflushed": true,
					"short length": true, "identity": true}
				if handed := f.srv.handoffs.Load() - before; rc.fast && handed != 0 {
					t.Errorf("%s: handed %d connections to net/http, want the fast path to serve it", rc.name, handed)
				} else if !rc.fast && handed == 0 && !closes[hname] {
					t.Errorf("%s: served on the fast path, want it handed to net/http", rc.name)
				}
			}
		})
	}
}

// TestServer_KeepAlive: a client's sequential requests reuse one connection, served on
// the fast path, and see their bodies and the Date header.
func TestServer_KeepAlive(t *testing.T) {
	var conns atomic.Int64
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}}
	url := startServer(t, srv)
	c := newClient(t)
	for i := range 5 {
		status, body, err := fetch(c, http.MethodPost, fmt.Sprintf("%s/r%d", url, i), "x")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("POST /r%d x", i); status != 200 || body != want {
			t.Fatalf("request %d: got %d %q, want 200 %q", i, status, body, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential requests, want 1", n)
	}
	if n := srv.handoffs.Load(); n != 0 {
		t.Fatalf("%d connections handed off, want none", n)
	}
}

// startServer serves srv on a fresh listener until the test ends, and returns its URL.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	return "http://" + listenServe(t, srv).Addr().String()
}

// listenServe serves srv on a fresh listener until the test ends, then checks that Serve
// returned http.ErrServerClosed.
func listenServe(t testing.TB, srv *Server) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return ln
}

// TestServer_ClientGoneCancels: a slow handler's context is cancelled when its client goes
// away (once CloseCheckDelay has passed), and when the handler returns.
func TestServer_ClientGoneCancels(t *testing.T) {
	arrived := make(chan context.Context, 1)
	srv := &Server{CloseCheckDelay: 5 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.Context()
		<-r.Context().Done()
	})}
	url := startServer(t, srv)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	ctx := <-arrived
	if err := ctx.Err(); err != nil {
		t.Fatalf("context ended before the client went away: %v", err)
	}
	_ = c.Close()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled when the client went away")
	}
}

// TestServer_WatchKeepsPipelinedRequest: the read that watches a slow handler's client
// takes the first byte of a pipelined request; the request is still served whole.
func TestServer_WatchKeepsPipelinedRequest(t *testing.T) {
	release := make(chan struct{})
	var n atomic.Int64
	srv := &Server{CloseCheckDelay: time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})}
	url := startServer(t, srv)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first request to arrive", func() bool { return n.Load() == 1 })
	// Let the watch start, then send the next request in two pieces.
	waitFor(t, 5*time.Second, "the watch to start", func() bool {
		for cc := range srv.connsSnapshot() {
			cc.watchMu.Lock()
			w := cc.watching
			cc.watchMu.Unlock()
			if w {
				return true
			}
		}
		return false
	})
	if _, err := io.WriteString(c, "GET /second HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the watch to take a byte", func() bool {
		for cc := range srv.connsSnapshot() {
			cc.watchMu.Lock()
			got := cc.cr.hasByte
			cc.watchMu.Unlock()
			if got {
				return true
			}
		}
		return false
	})
	close(release)
	br := bufio.NewReader(c)
	for _, want := range []string{"/first", "/second"} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the response for %s: %v", want, err)
		}
		b, _ := io.ReadAll(res.Body)
		if string(b) != want {
			t.Fatalf("got body %q, want %q", b, want)
		}
	}
}

// TestServer_Shutdown: requests in flight complete, idle connections close, handed-off
// connections are shut down too, and Serve returns http.ErrServerClosed.
func TestServer_Shutdown(t *testing.T) {
	arrived := make(chan string, 2)
	release := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- r.Proto
			<-release
		}
		_, _ = io.WriteString(w, "done "+r.URL.Path)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	// An idle kept-alive connection.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetDeadline(time.Now().Add(5 * time.Second))
	idleBr := bufio.NewReader(idle)
	if _, err := io.WriteString(idle, "GET /quick HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if res, err := http.ReadResponse(idleBr, nil); err != nil {
		t.Fatal(err)
	} else {
		_, _ = io.Copy(io.Discard, res.Body)
	}

	// A request in flight on the fast path, and one on a handed-off connection (its
	// chunked body sends it to net/http).
	results := make(chan string, 2)
	for _, req := range []string{
		"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /slow HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		go func() {
			results <- rawStream(t, addr, req)
		}()
	}
	<-arrived
	<-arrived

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	// The idle connection is closed.
	if _, err := idleBr.ReadByte(); err == nil {
		t.Fatal("the idle connection is still open after Shutdown began")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with requests in flight", err)
	default:
	}
	close(release)
	for range 2 {
		if got := <-results; !strings.Contains(got, "done /slow") {
			t.Errorf("a request in flight at Shutdown got %q, want its answer", got)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
}

// TestServer_ShutdownDeadline: Shutdown gives up when its context ends with a request still
// in flight.
func TestServer_ShutdownDeadline(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
	})}
	url := startServer(t, srv)
	go func() { _, _, _ = fetch(newClient(t), http.MethodGet, url, "") }()
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
}

// TestServer_Timeouts: a head that does not come within ReadHeaderTimeout, and a kept-alive
// connection idle for IdleTimeout, are closed.
func TestServer_Timeouts(t *testing.T) {
	srv := &Server{ReadHeaderTimeout: 50 * time.Millisecond, IdleTimeout: 100 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	addr := strings.TrimPrefix(startServer(t, srv), "http://")
	for _, tc := range []struct {
		name, first string
		min         time.Duration
	}{
		{"slow head", "GET / HTTP/1.1\r\n", 50 * time.Millisecond},
		{"idle", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			if _, err := io.WriteString(c, tc.first); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if d := time.Since(start); d < tc.min {
				t.Fatalf("closed after %v, want at least %v (got %q)", d, tc.min, b)
			}
		})
	}
}
