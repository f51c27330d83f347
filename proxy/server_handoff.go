package proxy

import (
	"net"
	"net/http"
	"sync"
)

// This file hands connections to net/http: an http.Server of Server's own serves, through a
// listener of its own, the connections whose next request the fast path does not take.

// startStd makes the http.Server that handed-off connections go to, and starts it.
func (s *Server) startStd() {
	s.stdOnce.Do(func() {
		s.handed = &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
		s.std = &http.Server{
			// The handler is looked up per request: callers may wrap Handler after Serve.
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.handler().ServeHTTP(w, r) }),
			ReadHeaderTimeout: s.ReadHeaderTimeout,
			IdleTimeout:       s.IdleTimeout,
			MaxHeaderBytes:    s.MaxHeaderBytes,
			ErrorLog:          s.ErrorLog,
			ConnState: func(nc net.Conn, st http.ConnState) {
				if st == http.StateNew || s.ConnState == nil {
					return // reported when the fast path accepted it
				}
				if hc, ok := nc.(*handoffConn); ok {
					nc = hc.Conn
				}
				s.ConnState(nc, st)
			},
		}
		s.stdDone = make(chan struct{})
		go func() {
			defer close(s.stdDone)
			_ = s.std.Serve(s.handed) // ends with http.ErrServerClosed at Shutdown or Close
		}()
	})
}

// handoffListener yields the connections handed to net/http.
type handoffListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

// give hands c to the http.Server; false when it is closed.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }

// handoffConn is a connection whose first bytes were read by the fast path: Read returns
// them first.
type handoffConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *handoffConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection, for net/http's closeWriteAndWait.
func (c *handoffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
