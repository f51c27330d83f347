package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"teal.dev/teal"
)

// testBackend is an upstream that counts its requests. Unless given a handler, it answers
// with its name.
type testBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(t testing.TB, name string, h http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	if h == nil {
		h = func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b.hits.Add(1)
		h(w, req)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

func hits(bs ...*testBackend) int64 {
	var n int64
	for _, b := range bs {
		n += b.hits.Load()
	}
	return n
}

func newTestRouter(t testing.TB) *Router {
	t.Helper()
	r := NewRouter()
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func setBackends(t testing.TB, r *Router, c teal.Color, addrs ...string) {
	t.Helper()
	if err := r.SetBackends(context.Background(), c, addrs); err != nil {
		t.Fatalf("SetBackends(%s): %v", c, err)
	}
}

func addrs(bs ...*testBackend) []string {
	a := make([]string, len(bs))
	for i, b := range bs {
		a[i] = b.addr()
	}
	return a
}

func route(t testing.TB, r *Router, routes teal.Routes) {
	t.Helper()
	if err := r.Route(context.Background(), routes); err != nil {
		t.Fatalf("Route(%+v): %v", routes, err)
	}
}

// serve puts h on a real socket behind the router's own server (Server), as teal serves
// it, or behind net/http's with TEAL_TEST_FRONT=nethttp: the whole suite runs through either.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	if os.Getenv("TEAL_TEST_FRONT") != "nethttp" {
		return serveOwn(t, h)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// serveOwn puts h on a real socket behind the router's own Server. The httptest.Server it
// returns is never started: it only carries the URL.
func serveOwn(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	// No ErrorLog: it logs to the standard logger, as httptest's servers do.
	ln := listenServe(t, &Server{Handler: h})
	return &httptest.Server{URL: "http://" + ln.Addr().String(), Listener: ln, Config: &http.Server{Handler: h}}
}

// newClient returns a keep-alive client with room for concurrent load.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// fetch does one request and returns its status and body; safe to call off the test goroutine.
func fetch(c *http.Client, method, url, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// get does a GET and fails the test on a transport error.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	status, body, err := fetch(c, http.MethodGet, url, "")
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return status, body
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// sendRaw dials addr and writes request as it is, with a 5 s deadline on the connection for
// whatever the caller reads after.
func sendRaw(t testing.TB, addr, request string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		c.Close()
		t.Fatalf("write request: %v", err)
	}
	return c
}
