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

// NewTransport returns the transport NewRouter installs: HTTP/1.1 to backends, a large
// keep-alive pool per backend, no environment proxy, no transparent compression (the client's
// Accept-Encoding is the backend's business), and no response timeout, so that long polls
// and streams work.
func NewTransport() *http.Transport {
	d := &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   DefaultMaxIdleConnsPerHost,
		IdleConnTimeout:       DefaultIdleConnTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// retrier is the transport of one backend's reverse proxy. When the backend cannot be
// connected to, nothing of the request has been sent, so it is safe to send it, body and
// all, to the colour's other backends, each at most once.
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

// bufferSize is the size of the buffers ReverseProxy copies response bodies with.
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
