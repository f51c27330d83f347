package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the router's own HTTP/1.1 server for its listeners. net/http's server costs a
// plain keep-alive request about seven system calls: a read that finds nothing and parks,
// the read, a background read per request (another read that finds nothing, and deadline
// changes to stop it) and the write. Server serves plain requests with a read and a write:
// the request head is parsed out of the connection's read buffer on the connection's own
// goroutine, the handler runs there, and the response head and a small body go out in one
// write when the handler returns. Everything it does not serve exactly as net/http would
// (upgrades, Expect, chunked request bodies, malformed requests, ...) it hands, at a request
// boundary and with the bytes already read, to an http.Server of its own, which owns that
// connection from then on: WebSocket hijacking, 100-continue and net/http's 400s stay
// net/http's (server_handoff.go).
//
// What the fast path gives up is the background read: a client that goes away while its
// handler runs is not noticed at once. A request that takes longer than CloseCheckDelay gets
// the read then (the connection goroutine arms a timer per request; the read starts only
// when it fires, and only once the request body has been read), so the router still cancels
// a slow backend's request, frees a paused request's queue slot and ends an idle event
// stream when its client hangs up, at most CloseCheckDelay later than net/http would.

// DefaultCloseCheckDelay is Server.CloseCheckDelay's default.
const DefaultCloseCheckDelay = 20 * time.Millisecond

// Sizes of the server's buffers.
const (
	// serverReadBuffer holds a request head: a head that does not fit goes to net/http,
	// which allows up to MaxHeaderBytes. Browsers' heads with cookies fit; wrk's are 40 bytes.
	serverReadBuffer = 4 << 10
	// serverWriteBuffer is the connection's write buffer, net/http's size: a response head
	// and a body that fits go out in one write.
	serverWriteBuffer = 4 << 10
	// bufferBeforeChunking is how much body net/http buffers before it gives up computing a
	// Content-Length and sends the response chunked; its chunks are this buffer's flushes,
	// so the size is net/http's to the byte.
	bufferBeforeChunking = 2048
	// maxPostHandlerReadBytes is how much of a request body the handler left unread the
	// server reads to keep the connection (net/http's number).
	maxPostHandlerReadBytes = 256 << 10
)

// Server is an HTTP/1.1 server for the router's listeners, with http.Server's names for what
// they share: Handler, ReadHeaderTimeout, IdleTimeout, MaxHeaderBytes, ErrorLog, ConnState,
// Serve, Shutdown, Close and RegisterOnShutdown. Plain requests it serves itself; the others
// it hands to an http.Server it makes with the same settings (see the top of this file).
//
// Differences from http.Server a handler can see on the fast path: Hijack returns
// http.ErrNotSupported (upgrade requests never take it), http.MaxBytesReader cannot mark the
// connection for closing (its hook is unexported), and a client that goes away is noticed
// only after CloseCheckDelay or at the next write. Request.TLS is nil: TLS connections are
// handed off whole.
type Server struct {
	// Handler serves every request, on the fast path and handed off. nil means
	// http.DefaultServeMux, as for http.Server.
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request head; 0 is no bound.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive connection; 0 means
	// ReadHeaderTimeout, as for http.Server without a ReadTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request head net/http reads (the fast path reads at most
	// serverReadBuffer bytes of head); 0 is http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ErrorLog receives handler panics and net/http's own complaints; nil is the log
	// package's standard logger, as for http.Server.
	ErrorLog *log.Logger
	// ConnState, when set, is called as a connection changes state, as for http.Server;
	// a handed-off connection keeps its net.Conn and is not reported new twice.
	ConnState func(net.Conn, http.ConnState)
	// CloseCheckDelay is how long a request runs before the server starts watching its
	// connection for the client going away. = DefaultCloseCheckDelay; < 0 never watches.
	CloseCheckDelay time.Duration

	inShutdown atomic.Bool
	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*conn]struct{}
	onShutdown []func()
	serving    sync.WaitGroup // Serve calls running

	stdOnce sync.Once
	std     *http.Server
	handed  *handoffListener
	stdDone chan struct{} // closed when std.Serve returned

	handoffs  atomic.Int64 // connections handed to net/http, for tests and curiosity
	date      atomic.Pointer[dateCache]
	readers   sync.Pool // *bufio.Reader of serverReadBuffer
	writers   sync.Pool // *bufio.Writer of serverWriteBuffer
	responses sync.Pool // *response, its body buffer included
}

// dateCache is the formatted Date of one second.
type dateCache struct {
	sec int64
	b   []byte
}

// Serve accepts connections on ln and serves them, each on a goroutine of its own, until
// ln fails or Shutdown or Close is called; then it returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.startStd()
	if !s.trackListener(&ln, true) {
		return http.ErrServerClosed
	}
	defer s.trackListener(&ln, false)
	var tempDelay time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Accept's temporary errors (EMFILE and the like) come as timeouts or not at
				// all; back off as net/http does rather than spin.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.logf("http: Accept error: %v; retrying in %v", err, tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			return err
		}
		tempDelay = 0
		c := s.newConn(rwc)
		if !s.trackConn(c, true) {
			_ = rwc.Close()
			return http.ErrServerClosed
		}
		s.setState(c, http.StateNew)
		go c.serve()
	}
}

// Shutdown stops the server gracefully, as http.Server.Shutdown does: it closes the
// listeners, then closes connections as they become idle and waits for those with a request
// in flight, until none is left or ctx ends (then it returns ctx's error). The handed-off
// connections are shut down by their http.Server alike. Functions given to
// RegisterOnShutdown are started first. Serve returns http.ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	lnerr := s.closeListenersLocked()
	for _, f := range s.onShutdown {
		go f()
	}
	s.mu.Unlock()
	s.serving.Wait()

	stdErr := make(chan error, 1)
	if s.std != nil {
		go func() { stdErr <- s.std.Shutdown(ctx) }()
	} else {
		stdErr <- nil
	}
	interval := time.Millisecond
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		if s.closeIdleConns() {
			if err := <-stdErr; err != nil {
				return err
			}
			return lnerr
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			// net/http's schedule: double up to half a second, with 10% jitter.
			interval = min(2*interval, 500*time.Millisecond)
			timer.Reset(interval + rand.N(interval/10+1))
		}
	}
}

// Close closes the listeners and every connection at once, handed-off ones included, as
// http.Server.Close does.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	err := s.closeListenersLocked()
	for c := range s.conns {
		_ = c.rwc.Close()
		delete(s.conns, c)
	}
	s.mu.Unlock()
	s.serving.Wait()
	if s.std != nil {
		if cerr := s.std.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// RegisterOnShutdown registers f to be started by Shutdown, as http.Server's does: for
// long-lived things (event streams, say) that would otherwise hold Shutdown up.
func (s *Server) RegisterOnShutdown(f func()) {
	s.mu.Lock()
	s.onShutdown = append(s.onShutdown, f)
	s.mu.Unlock()
}

func (s *Server) shuttingDown() bool { return s.inShutdown.Load() }

func (s *Server) handler() http.Handler {
	if s.Handler == nil {
		return http.DefaultServeMux
	}
	return s.Handler
}

func (s *Server) closeCheckDelay() time.Duration {
	if s.CloseCheckDelay == 0 {
		return DefaultCloseCheckDelay
	}
	return s.CloseCheckDelay
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout != 0 {
		return s.IdleTimeout
	}
	return s.ReadHeaderTimeout
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

func (s *Server) trackListener(ln *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.shuttingDown() {
			return false
		}
		if s.listeners == nil {
			s.listeners = make(map[*net.Listener]struct{})
		}
		s.listeners[ln] = struct{}{}
		s.serving.Add(1)
		return true
	}
	delete(s.listeners, ln)
	s.serving.Done()
	return true
}

func (s *Server) closeListenersLocked() error {
	var err error
	for ln := range s.listeners {
		if cerr := (*ln).Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.shuttingDown() {
			return false
		}
		if s.conns == nil {
			s.conns = make(map[*conn]struct{})
		}
		s.conns[c] = struct{}{}
		return true
	}
	delete(s.conns, c)
	return true
}

// closeIdleConns closes the idle connections and reports whether none is left (net/http's
// rule: a connection that has not sent a request head within 5 seconds counts as idle).
func (s *Server) closeIdleConns() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	quiet := true
	now := time.Now().Unix()
	for c := range s.conns {
		v := c.state.Load()
		st, sec := http.ConnState(v>>32), int64(uint32(v))
		if st == http.StateNew && sec < now-5 {
			st = http.StateIdle
		}
		if st != http.StateIdle || sec == 0 {
			quiet = false
			continue
		}
		_ = c.rwc.Close()
		delete(s.conns, c)
	}
	return quiet
}

// connsSnapshot returns the fast path's connections of the moment.
func (s *Server) connsSnapshot() map[*conn]struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[*conn]struct{}, len(s.conns))
	for c := range s.conns {
		m[c] = struct{}{}
	}
	return m
}

func (s *Server) setState(c *conn, st http.ConnState) {
	c.state.Store(uint64(st)<<32 | uint64(uint32(time.Now().Unix())))
	if s.ConnState != nil {
		s.ConnState(c.rwc, st)
	}
}

// dateHeader returns the Date header's value for now, formatted once a second.
func (s *Server) dateHeader() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &dateCache{sec: sec, b: now.UTC().AppendFormat(make([]byte, 0, len(http.TimeFormat)), http.TimeFormat)}
	s.date.Store(d)
	return d.b
}

func (s *Server) getReader(r io.Reader) *bufio.Reader {
	if v := s.readers.Get(); v != nil {
		br := v.(*bufio.Reader)
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, serverReadBuffer)
}

func (s *Server) getWriter(w io.Writer) *bufio.Writer {
	if v := s.writers.Get(); v != nil {
		bw := v.(*bufio.Writer)
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, serverWriteBuffer)
}

// conn is one client connection on the fast path.
type conn struct {
	srv        *Server
	rwc        net.Conn
	remoteAddr string
	ctx        context.Context // the connection's; canceled when it ends
	cancel     context.CancelFunc
	state      atomic.Uint64 // http.ConnState << 32 | Unix seconds of the change
	br         *bufio.Reader // over cr
	bw         *bufio.Writer // over cw
	cr         connReader
	cw         connWriter
	werr       error // the first write error; the connection is not reused after one

	// deadline is the read deadline in force: zero when none, else the time it was set
	// for. Deadlines are changed only when they must be (each change costs).
	deadline    time.Time
	lastMethod  string
	prev        prevHead // the previous request's head, whose strings repeat (server_request.go)
	timer       *time.Timer
	res         *response // the response in flight; nil between requests
	handedOff   bool
	shutdownReq bool

	// watch is the read that notices a client going away while a slow handler runs.
	watchMu      sync.Mutex
	running      bool          // a handler runs and may be watched
	bodyPending  bool          // its request body is not read to the end yet
	watchWanted  bool          // the timer fired while the body was pending
	watching     bool          // the watch read is running
	watchAborted bool          // the handler is done: the watch's timeout is expected
	watchDone    chan struct{} // closed when the watch read returned
	reqCancel    context.CancelFunc
}

// connReader reads the connection for the read buffer: first the byte a watch read took.
type connReader struct {
	c       *conn
	hasByte bool
	byteBuf [1]byte
}

func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := cr.c
	if cr.hasByte {
		p[0] = cr.byteBuf[0]
		cr.hasByte = false
		return 1, nil
	}
	n, err := c.rwc.Read(p)
	if err != nil {
		// As net/http's connReader: a broken connection cancels the request in flight.
		c.cancelRequest()
	}
	return n, err
}

// connWriter writes to the connection and remembers the first error, which cancels the
// request in flight (net/http's checkConnErrorWriter).
type connWriter struct{ c *conn }

func (cw connWriter) Write(p []byte) (int, error) {
	c := cw.c
	n, err := c.rwc.Write(p)
	if err != nil && c.werr == nil {
		c.werr = err
		c.cancelRequest()
	}
	return n, err
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc}
	c.cr.c = c
	c.cw.c = c
	return c
}

func (c *conn) cancelRequest() {
	c.watchMu.Lock()
	cancel := c.reqCancel
	c.watchMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// setReadDeadline sets the read deadline to t, unless it is that already.
func (c *conn) setReadDeadline(t time.Time) {
	if t.IsZero() && c.deadline.IsZero() {
		return
	}
	_ = c.rwc.SetReadDeadline(t)
	c.deadline = t
}

// serve serves the connection's requests one after the other until it closes or is handed
// off.
func (c *conn) serve() {
	s := c.srv
	if ra := c.rwc.RemoteAddr(); ra != nil {
		c.remoteAddr = ra.String()
	}
	if _, ok := c.rwc.(*tls.Conn); ok {
		// TLS (and its ALPN) is net/http's business; the router's listeners are plain.
		c.handoff(nil)
		return
	}
	ctx := context.WithValue(context.Background(), http.ServerContextKey, s.std)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.rwc.LocalAddr())
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.br = s.getReader(&c.cr)
	c.bw = s.getWriter(c.cw)
	defer c.finish()
	if d := s.ReadHeaderTimeout; d > 0 {
		c.setReadDeadline(time.Now().Add(d))
	}
	for first := true; ; first = false {
		h, err := c.readHead(first)
		if err != nil {
			return // closed, timed out, or handed off
		}
		s.setState(c, http.StateActive)
		if s.shuttingDown() {
			return
		}
		if !c.serveRequest(h) {
			return
		}
		s.setState(c, http.StateIdle)
		if s.shuttingDown() {
			// Replied without Connection: close, perhaps, but such is life with
			// HTTP/1.1 (net/http's words).
			return
		}
		switch {
		case c.br.Buffered() > 0:
			// A pipelined request is here already: its head has ReadHeaderTimeout.
			if d := s.ReadHeaderTimeout; d > 0 {
				c.setReadDeadline(time.Now().Add(d))
			} else {
				c.setReadDeadline(time.Time{})
			}
		case s.idleTimeout() > 0:
			c.setReadDeadline(time.Now().Add(s.idleTimeout()))
		default:
			c.setReadDeadline(time.Time{})
		}
	}
}

// finish closes the connection after its last request (unless it was handed off).
func (c *conn) finish() {
	c.cancel()
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.handedOff {
		return
	}
	_ = c.bw.Flush()
	_ = c.rwc.Close()
	c.srv.trackConn(c, false)
	c.srv.setState(c, http.StateClosed)
	c.release()
}

// release gives the connection's buffers back to the server.
func (c *conn) release() {
	c.br.Reset(nil)
	c.srv.readers.Put(c.br)
	c.bw.Reset(nil)
	c.srv.writers.Put(c.bw)
	c.br, c.bw = nil, nil
}

// serveRequest runs the handler for one request and finishes its response. It reports
// whether the connection may serve another.
func (c *conn) serveRequest(h *reqHead) (keep bool) {
	s := c.srv
	req, w := c.newRequest(h)
	c.startWatch(w)
	defer func() {
		if p := recover(); p != nil {
			c.stopWatch()
			w.cancel()
			if p != http.ErrAbortHandler {
				const size = 64 << 10
				buf := make([]byte, size)
				buf = buf[:runtime.Stack(buf, false)]
				s.logf("http: panic serving %v: %v\n%s", c.remoteAddr, p, buf)
			}
			if w.body != nil {
				_ = w.body.Close()
			}
			// What the handler wrote to the connection's buffer goes out, what it wrote to
			// the response's does not: net/http's order.
			_ = c.bw.Flush()
			c.putResponse(w)
			keep = false
		}
	}()
	s.handler().ServeHTTP(w, req)
	c.stopWatch()
	w.cancel()
	w.finishRequest()
	keep = w.shouldReuseConnection()
	if !keep && w.body != nil && w.body.earlyClose {
		c.closeWriteAndWait()
	}
	c.putResponse(w)
	return keep
}

// closeWriteAndWait half-closes the connection and lets the client read the response before
// the unread request body would make the close a reset (net/http's rstAvoidanceDelay).
func (c *conn) closeWriteAndWait() {
	_ = c.bw.Flush()
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	time.Sleep(500 * time.Millisecond)
}

// startWatch arms the timer that starts watching the connection for the client going away
// while w's handler runs.
func (c *conn) startWatch(w *response) {
	d := c.srv.closeCheckDelay()
	c.watchMu.Lock()
	c.running = true
	c.bodyPending = w.body != nil
	c.watchWanted = false
	c.reqCancel = w.cancel
	c.watchMu.Unlock()
	if d < 0 {
		return
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.watchTimer)
	} else {
		c.timer.Reset(d)
	}
}

// watchTimer starts the watch read, or asks the body to start it once it is read.
func (c *conn) watchTimer() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if !c.running || c.watching {
		return
	}
	if c.bodyPending {
		c.watchWanted = true
		return
	}
	c.watchLocked()
}

// bodyDone is called when the request body has been read to its end.
func (c *conn) bodyDone() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	c.bodyPending = false
	if c.watchWanted && c.running && !c.watching {
		c.watchLocked()
	}
}

// watchLocked starts the watch read: one byte, which is kept for the next request if it
// comes; an error or the end of the connection cancels the request's context.
func (c *conn) watchLocked() {
	if c.cr.hasByte {
		return // the next request has begun already
	}
	c.watching = true
	c.watchAborted = false
	c.watchDone = make(chan struct{})
	// The head's deadline may still be in force; the watch lasts as long as the handler.
	_ = c.rwc.SetReadDeadline(time.Time{})
	c.deadline = time.Time{}
	cancel, done := c.reqCancel, c.watchDone
	go func() {
		n, err := c.rwc.Read(c.cr.byteBuf[:])
		c.watchMu.Lock()
		if n == 1 {
			c.cr.hasByte = true
		}
		var ne net.Error
		if err != nil && !(c.watchAborted && errors.As(err, &ne) && ne.Timeout()) {
			cancel()
		}
		c.watching = false
		c.watchMu.Unlock()
		close(done)
	}()
}

// stopWatch stops the timer and the watch read once the handler returned; from then on the
// connection's goroutine reads the connection alone.
func (c *conn) stopWatch() {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.watchMu.Lock()
	c.running = false
	c.reqCancel = nil
	if !c.watching {
		c.watchMu.Unlock()
		return
	}
	c.watchAborted = true
	_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	done := c.watchDone
	c.watchMu.Unlock()
	<-done
	c.deadline = aLongTimeAgo
}

// handoff gives the connection, with buffered (the bytes read and not served yet), to the
// server's http.Server. The connection's goroutine ends without closing it.
func (c *conn) handoff(buffered []byte) {
	s := c.srv
	c.handedOff = true
	if !c.deadline.IsZero() {
		// net/http sets its own deadlines, but only those it has timeouts for.
		_ = c.rwc.SetReadDeadline(time.Time{})
		c.deadline = time.Time{}
	}
	s.trackConn(c, false)
	s.handoffs.Add(1)
	hc := &handoffConn{Conn: c.rwc, buf: buffered}
	if c.br != nil {
		c.release()
	}
	if !s.handed.give(hc) {
		_ = c.rwc.Close()
		s.setState(c, http.StateClosed)
	}
}

// errHandedOff ends a connection's goroutine after handoff.
var errHandedOff = errors.New("connection handed to net/http")

// readHead reads the next request head into the read buffer and parses it. A request the
// fast path does not take is handed off (errHandedOff); a connection that ends or times out
// before a head is closed as net/http closes it, without an answer.
func (c *conn) readHead(first bool) (*reqHead, error) {
	s := c.srv
	br := c.br
	skipped := 0 // bytes dropped before the head, which count for net/http's 4-byte wait
	if c.lastMethod == http.MethodPost {
		// RFC 7230 section 3: old clients send a CRLF after a POST body (net/http's
		// tolerance, which looks at 4 bytes).
		peek, _ := br.Peek(4)
		n := 0
		for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
			n++
		}
		skipped, _ = br.Discard(n)
	}
	headDeadline := first || br.Buffered() > 0 // the head's deadline is in force already
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return nil, err
			}
		}
		buf, _ := br.Peek(br.Buffered())
		h := &c.prev.head
		res := headIncomplete
		if first || skipped+len(buf) >= 4 {
			// net/http reads nothing of a kept-alive connection's next request until it
			// has 4 bytes of it; nor does the fast path, so that it closes where net/http
			// would, without an answer.
			res = parseHead(h, buf, &c.prev)
		}
		switch res {
		case headComplete:
			return h, nil
		case headHandoff:
			c.handoff(bytesCopy(buf, &c.cr))
			return nil, errHandedOff
		}
		if len(buf) >= br.Size() {
			c.handoff(bytesCopy(buf, &c.cr))
			return nil, errHandedOff
		}
		if !headDeadline {
			// The head began within IdleTimeout; from its first bytes it has
			// ReadHeaderTimeout, as in net/http. Heads mostly come in one read, and
			// then this costs nothing.
			headDeadline = true
			if d := s.ReadHeaderTimeout; d > 0 {
				c.setReadDeadline(time.Now().Add(d))
			} else {
				c.setReadDeadline(time.Time{})
			}
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, err // net/http answers a timed-out head with nothing either
			}
			buf, _ = br.Peek(br.Buffered())
			if !first && skipped+len(buf) < 4 {
				// net/http waits for 4 bytes of a kept-alive connection's next request
				// and closes without an answer when they do not come.
				return nil, err
			}
			// A head cut short: net/http answers it (400), from the same bytes.
			c.handoff(bytesCopy(buf, &c.cr))
			return nil, errHandedOff
		}
	}
}

// bytesCopy copies the buffered bytes, and the byte a watch read kept if any, for handoff.
func bytesCopy(buf []byte, cr *connReader) []byte {
	b := make([]byte, len(buf), len(buf)+1)
	copy(b, buf)
	if cr.hasByte {
		b = append(b, cr.byteBuf[0])
		cr.hasByte = false
	}
	return b
}

// putResponse recycles w once its handler and the server are done with it.
func (c *conn) putResponse(w *response) {
	c.res = nil
	w.reset()
	c.srv.responses.Put(w)
}

func (c *conn) String() string { return fmt.Sprintf("conn %s", c.remoteAddr) }
