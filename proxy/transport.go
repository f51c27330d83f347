package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of NewTransport.
const (
	// DefaultDialTimeout bounds connecting to a backend; a backend that does not accept
	// within it is treated as down and the request is retried on another.
	DefaultDialTimeout = 5 * time.Second
	// DefaultIdleConnTimeout is how long a kept-alive backend connection may sit unused.
	DefaultIdleConnTimeout = 90 * time.Second
	// DefaultMaxIdleConnsPerHost is the keep-alive pool per backend: sized so that a busy
	// router reuses connections instead of dialling for every request (Go's default is 2).
	DefaultMaxIdleConnsPerHost = 256
)

// Transport carries the router's requests to backends. Ordinary HTTP/1.1 requests go
// through its own pool of kept-alive connections per backend, on the handler's goroutine:
// the request is written and the response read where the handler runs, with no goroutine
// hand-offs and few allocations. Everything else goes through HTTP: protocol upgrades
// (WebSocket), requests that expect 100-continue or declare trailers, CONNECT, requests
// whose query net/http/httputil would rewrite, and shadow mirrors.
//
// The pool is used when Router.Transport is a *Transport (NewRouter's, or another set before
// the first SetBackends); any other http.RoundTripper there is used through
// httputil.ReverseProxy for every request.
type Transport struct {
	// HTTP carries the requests the pool does not. NewTransport sets it up like the pool:
	// HTTP/1.1, no environment proxy, no transparent compression, no response timeout.
	HTTP *http.Transport
	// DialTimeout bounds connecting to a backend. = DefaultDialTimeout.
	DialTimeout time.Duration
	// IdleConnTimeout is how long a pooled connection may sit unused before it is closed.
	// = DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost bounds the idle connections kept per backend; connections beyond
	// it are closed when their request ends. = DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int

	mu    sync.Mutex
	pools map[string]*connPool // by backend address; kept across SetBackends
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns the transport NewRouter installs: HTTP/1.1 to backends, a large
// keep-alive pool per backend, no environment proxy, no transparent compression (the client's
// Accept-Encoding is the backend's business), and no response timeout, so that long polls
// and streams work.
func NewTransport() *Transport {
	d := &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}
	return &Transport{
		HTTP: &http.Transport{
			DialContext:           d.DialContext,
			MaxIdleConnsPerHost:   DefaultMaxIdleConnsPerHost,
			IdleConnTimeout:       DefaultIdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true,
		},
		DialTimeout:         DefaultDialTimeout,
		IdleConnTimeout:     DefaultIdleConnTimeout,
		MaxIdleConnsPerHost: DefaultMaxIdleConnsPerHost,
	}
}

// RoundTrip sends req through HTTP. The pool is used by the Router's handlers directly,
// not through RoundTrip: a RoundTripper's contract (a Response whose Body outlives the
// call) is what the pool avoids.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.HTTP.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of the pool and of HTTP.
func (t *Transport) CloseIdleConnections() {
	t.HTTP.CloseIdleConnections()
	t.mu.Lock()
	pools := make([]*connPool, 0, len(t.pools))
	for _, p := range t.pools {
		pools = append(pools, p)
	}
	t.mu.Unlock()
	for _, p := range pools {
		p.closeIdle()
	}
}

// pool returns the connection pool of backend addr, made on first use. Pools live as long
// as the Transport, so connections survive SetBackends; a pool of a backend no longer used
// empties by its idle timeout.
func (t *Transport) pool(addr string) *connPool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pools == nil {
		t.pools = make(map[string]*connPool)
	}
	p := t.pools[addr]
	if p == nil {
		p = newConnPool(addr, t.settings())
		t.pools[addr] = p
	}
	return p
}

// settings returns t's settings with defaults filled in.
func (t *Transport) settings() poolSettings {
	s := poolSettings{dialTimeout: t.DialTimeout, idleTimeout: t.IdleConnTimeout, maxIdle: t.MaxIdleConnsPerHost}
	if s.dialTimeout <= 0 {
		s.dialTimeout = DefaultDialTimeout
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = DefaultIdleConnTimeout
	}
	if s.maxIdle <= 0 {
		s.maxIdle = DefaultMaxIdleConnsPerHost
	}
	return s
}

// retrier is the transport of one backend's reverse proxy, for the requests that do not go
// through the pool. When the backend cannot be connected to, nothing of the request has been
// sent, so it is safe to send it, body and all, to the colour's other backends, each at most
// once.
type retrier struct {
	rt     http.RoundTripper
	pool   *pool
	index  int // of this backend in pool
	router *Router
}

func (t *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	n := len(t.pool.backends)
	if n == 1 {
		return t.rt.RoundTrip(req)
	}
	if req.Body != nil && req.Body != http.NoBody {
		// The transport closes the body when it fails to connect; keep it readable for
		// the next backend. req is ReverseProxy's own outbound copy, and ReverseProxy
		// closes the body it made when it is done.
		req.Body = keepOpen{req.Body}
	}
	res, err := t.rt.RoundTrip(req)
	for i := 1; i < n && err != nil && isDialError(err) && req.Context().Err() == nil; i++ {
		next := t.pool.backends[(t.index+i)%n]
		t.router.logger().Debug("backend unreachable, retrying on another",
			"backend", req.URL.Host, "next", next.addr, "err", err)
		// A copy, not req itself: the transport may still be looking at the failed one.
		r2 := *req
		u := *req.URL
		u.Host = next.addr
		r2.URL = &u
		req = &r2
		res, err = t.rt.RoundTrip(req)
	}
	return res, err
}

// isDialError reports whether err is a failure to connect, before anything was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// keepOpen is a request body whose Close does nothing.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

// bufferSize is the size of the buffers ReverseProxy copies response bodies with, and the
// pool streams request bodies and event streams with.
const bufferSize = 32 << 10

// bufferPool is ReverseProxy's BufferPool. It pools pointers to arrays, so that Put does
// not allocate the way boxing a slice would.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return v.(*[bufferSize]byte)[:]
	}
	return make([]byte, bufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= bufferSize {
		b.p.Put((*[bufferSize]byte)(buf[:bufferSize]))
	}
}
