package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file is the router's own forwarding of plain HTTP/1.1 requests through the Transport's
// connection pool: what httputil.ReverseProxy over http.Transport does for them, with the
// same headers in and out, the same status codes and the same counting, but on the handler's
// goroutine. ReverseProxy stays for everything else (plain says what).

// maxBufferedBody is the largest request body, of known length, that is read whole before it
// is sent, with the request head, in one write; the backend's socket buffers take that much
// even when it answers without reading the body. Longer bodies, and chunked ones, are
// streamed by a goroutine of their own while the response is read.
const maxBufferedBody = 16 << 10

// maxQueryParams is where ReverseProxy starts re-encoding a query (httputil's defaultMaxParams).
const maxQueryParams = 10000

// plain reports whether req can go through the pool. The rest goes through ReverseProxy:
// upgrades, Expect: 100-continue, declared request trailers, CONNECT, an opaque or absent
// target host, and a query that ReverseProxy would re-encode.
func plain(req *http.Request) bool {
	return req.Method != http.MethodConnect && req.Host != "" && req.Trailer == nil &&
		req.URL.Opaque == "" && len(req.Header["Expect"]) == 0 && len(req.Header["Upgrade"]) == 0 &&
		cleanQuery(req.URL.RawQuery)
}

// cleanQuery reports whether ReverseProxy would send query q as it is (its cleanQueryParams):
// no semicolons, only well-formed escapes, not too many parameters.
func cleanQuery(q string) bool {
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 3
		default:
			i++
		}
	}
	return len(q) < maxQueryParams || strings.Count(q, "&")+1 <= maxQueryParams
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// headPool pools request head buffers (the head, and a small body after it).
type headPool struct{ p sync.Pool }

func (h *headPool) get() *[]byte {
	if v := h.p.Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, 0, 2048)
	return &b
}

func (h *headPool) put(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		h.p.Put(b)
	}
}

// forward sends req to backend i of p through the pool (or, when it cannot be connected to,
// to the pool's next backends, each at most once) and copies the answer to rec, as
// ReverseProxy would: errors before the answer are answered 502 (or counted as the client's
// when it went away), errors after it abort the response with http.ErrAbortHandler.
func (r *Router) forward(rec *recorder, req *http.Request, p *pool, i int, start time.Time) {
	hb := r.heads.get()
	defer r.heads.put(hb)
	buf, ok := appendHead((*hb)[:0], req)
	if !ok {
		// A header net/http would refuse to send: let ReverseProxy refuse it the same way.
		p.backends[i].proxies[rec.listener].ServeHTTP(rec, req)
		return
	}
	var stream io.Reader // a request body sent by a goroutine while the response is read
	if cl := req.ContentLength; req.Body != nil && req.Body != http.NoBody && cl != 0 {
		if cl > 0 && cl <= maxBufferedBody {
			n := len(buf)
			buf = slices.Grow(buf, int(cl))[:n+int(cl)]
			*hb = buf
			if _, err := io.ReadFull(req.Body, buf[n:]); err != nil {
				r.clientBodyError(rec, req, err)
				return
			}
		} else {
			stream = req.Body
		}
	}
	*hb = buf
	// A request may be sent again on a fresh connection when the backend closed the kept-alive
	// one under it (http.Transport's rule): it is idempotent and its body is at hand.
	replayable := stream == nil && (idempotent(req.Method) ||
		len(req.Header["Idempotency-Key"]) > 0 || len(req.Header["X-Idempotency-Key"]) > 0)

	ctx := req.Context()
	n := len(p.backends)
	var (
		b   *backend
		c   *bconn
		err error
	)
	for k := 0; k < n; k++ {
		b = p.backends[(i+k)%n]
		if c, err = connect(ctx, b.conns, start, replayable); err == nil {
			break
		}
		if !isDialError(err) || ctx.Err() != nil {
			break
		}
		if k+1 < n {
			r.logger().Debug("backend unreachable, retrying on another", "backend", b.addr,
				"next", p.backends[(i+k+1)%n].addr, "err", err)
		}
	}
	if err != nil {
		r.upstreamError(rec, req, b.addr, err)
		return
	}

	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.abortFn)
	}
	err = r.exchange(rec, c, buf, stream, req)
	if err != nil && c.reused && replayable && !c.r.got && ctx.Err() == nil {
		// Nothing came back on a connection that had been idle: the backend closed it
		// before the request reached it (or as it did). Once more, on a fresh one.
		unwatch(stop)
		c.close()
		if c, err = b.conns.dial(ctx); err == nil {
			if ctx.Done() != nil {
				stop = context.AfterFunc(ctx, c.abortFn)
			}
			err = r.exchange(rec, c, buf, stream, req)
		}
	}
	if err != nil {
		if c != nil {
			unwatch(stop)
			c.close()
			if stream != nil {
				select {
				case werr := <-c.bodyDone:
					var cbe clientBodyError
					if errors.As(werr, &cbe) {
						r.clientBodyError(rec, req, cbe.err)
						return
					}
				default:
				}
			}
		}
		r.upstreamError(rec, req, b.addr, err)
		return
	}
	r.relay(rec, c, stop, stream != nil, start)
}

// connect returns a kept-alive connection of cp, or a new one. A request that must not be
// sent twice gets an idle connection only if it still looks alive.
func connect(ctx context.Context, cp *connPool, now time.Time, replayable bool) (*bconn, error) {
	for {
		c := cp.get(now)
		if c == nil {
			return cp.dial(ctx)
		}
		if replayable || c.alive() {
			return c, nil
		}
		c.close()
	}
}

// unwatch stops the watch on the client's context that stop belongs to.
func unwatch(stop func() bool) {
	if stop != nil {
		stop()
	}
}

// exchange sends the request (head, buffered body, and the streamed body if any) on c and
// reads the response head into c.head, passing 1xx interim responses on to rec.
func (r *Router) exchange(rec *recorder, c *bconn, head []byte, stream io.Reader, req *http.Request) error {
	c.r.got = false
	c.headDone.Store(false)
	if _, err := c.conn.Write(head); err != nil {
		return err
	}
	if stream != nil {
		go c.writeBody(stream, req.ContentLength, &r.buffers)
	}
	h := &c.head
	for interim := 0; ; interim++ {
		if err := c.r.readHead(h, req.Method); err != nil {
			return err
		}
		if h.status >= 200 || h.status == http.StatusSwitchingProtocols {
			break
		}
		if interim == maxInterim {
			return errors.New("too many 1xx informational responses")
		}
		forwardInterim(rec, h)
	}
	c.headDone.Store(true)
	if h.status == http.StatusSwitchingProtocols {
		return errors.New("backend switched protocols on a request that asked for no upgrade")
	}
	return nil
}

// forwardInterim passes a 1xx response (103 Early Hints, say) on to the client with its
// fields, which are then taken out of the header again: they are not the final response's.
func forwardInterim(rec *recorder, h *head) {
	hdr := rec.Header()
	type saved struct {
		key  string
		prev []string
	}
	var undo []saved
	for _, f := range h.fields[:h.n] {
		if !h.forwarded(f) {
			continue
		}
		prev := hdr[f.key]
		if !slices.ContainsFunc(undo, func(s saved) bool { return s.key == f.key }) {
			undo = append(undo, saved{f.key, prev})
		}
		hdr[f.key] = append(prev[:len(prev):len(prev)], f.value)
	}
	rec.WriteHeader(h.status)
	for _, s := range undo {
		if s.prev == nil {
			delete(hdr, s.key)
		} else {
			hdr[s.key] = s.prev
		}
	}
}

// relay copies the final response in c to rec, then gives c back to its pool or closes it.
// A response body that breaks off (the backend's side or the client's) aborts the client's
// response with http.ErrAbortHandler, as ReverseProxy does, so that the client sees it broken
// rather than short.
func (r *Router) relay(rec *recorder, c *bconn, stop func() bool, streamed bool, start time.Time) {
	h := &c.head
	hdr := rec.Header()
	h.copyHeader(hdr)
	if len(h.trailers) > 0 {
		hdr.Add("Trailer", strings.Join(h.trailers, ", "))
	}
	c.body.reset(h)
	var es *stream
	if h.eventStream {
		// From here until the stream closes it is long-lived, not a request Drain waits
		// for; its Close makes it an ordinary request again until the handler returns.
		es = &stream{body: streamBody{c}, cnt: rec.cnt, set: &r.long[rec.color]}
		rec.cnt.active.Add(-1)
		rec.cnt.longLived.Add(1)
		es.set.add(es)
	}
	rec.WriteHeader(h.status)
	flush := h.mode == bodyChunked || h.mode == bodyClose || h.eventStream
	if flush {
		// A streamed response's head goes out at once, as ReverseProxy sends it: the
		// first piece of the body may be a long time coming.
		_ = rec.FlushError()
	}
	var err error
	if es != nil {
		err = r.copyStream(rec, es)
		_ = es.Close()
	} else {
		err = copyBody(rec, &c.body, flush)
	}
	if err != nil {
		unwatch(stop)
		c.close()
		panic(http.ErrAbortHandler)
	}
	if c.body.trailerN > 0 || len(h.trailers) > 0 {
		_ = rec.FlushError() // trailers need a chunked response
		setTrailers(hdr, h.trailers, c.body.trailer[:c.body.trailerN])
	}
	if stop != nil && !stop() {
		c.dead.Store(true) // the client went away as the response ended
	}
	reusable := !h.close && c.body.done
	if streamed {
		select {
		case werr := <-c.bodyDone:
			reusable = reusable && werr == nil
		default:
			reusable = false // the backend answered before it had the whole body
		}
	}
	c.release(reusable, start)
}

// copyBody copies body to rec straight out of the connection's read buffer, flushing after
// each piece when the response is streamed (no Content-Length).
func copyBody(rec *recorder, b *body, flush bool) error {
	for {
		p, err := b.next()
		if len(p) > 0 {
			if _, werr := rec.Write(p); werr != nil {
				return werr
			}
			b.advance(len(p))
			if flush {
				_ = rec.FlushError()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// copyStream copies an event stream to rec, flushing each event as it comes.
func (r *Router) copyStream(rec *recorder, s *stream) error {
	buf := r.buffers.Get()
	defer r.buffers.Put(buf)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if _, werr := rec.Write(buf[:n]); werr != nil {
				return werr
			}
			_ = rec.FlushError()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// setTrailers sets the trailer fields the backend sent, as ReverseProxy does: under their own
// names when all were announced, else each with http.TrailerPrefix.
func setTrailers(hdr http.Header, announced []string, got []field) {
	all := true
	for _, f := range got {
		if !slices.Contains(announced, f.key) {
			all = false
			break
		}
	}
	for _, f := range got {
		k := f.key
		if !all {
			k = http.TrailerPrefix + k
		}
		hdr[k] = append(hdr[k], f.value)
	}
}

// streamBody is the body of an event stream in the pool: Close, which CloseLongLived calls
// from its own goroutine to end the stream, aborts the connection; the handler's read then
// ends, and stream.Read reports that as the stream's end.
type streamBody struct{ c *bconn }

func (s streamBody) Read(p []byte) (int, error) { return s.c.body.Read(p) }

func (s streamBody) Close() error {
	s.c.abort()
	return nil
}

// clientBodyError is a failure to read the request body from the client.
type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "read request body: " + e.err.Error() }

// writeBody streams a request body of length cl (-1: unknown, sent chunked) to the backend,
// and reports the result on c.bodyDone. When reading the client's body fails before the
// backend answered, the connection is aborted: the backend would wait for the rest forever.
func (c *bconn) writeBody(body io.Reader, cl int64, bufs *bufferPool) {
	buf := bufs.Get()
	err := c.copyRequestBody(body, cl, buf)
	bufs.Put(buf)
	var cbe clientBodyError
	if errors.As(err, &cbe) && !c.headDone.Load() {
		c.abort()
	}
	c.bodyDone <- err
}

func (c *bconn) copyRequestBody(body io.Reader, cl int64, buf []byte) error {
	if cl > 0 {
		var sent int64
		for sent < cl {
			n, rerr := body.Read(buf[:min(int64(len(buf)), cl-sent)])
			if n > 0 {
				if _, err := c.conn.Write(buf[:n]); err != nil {
					return err
				}
				sent += int64(n)
			}
			if rerr == io.EOF && sent < cl {
				return clientBodyError{io.ErrUnexpectedEOF}
			}
			if rerr != nil && rerr != io.EOF {
				return clientBodyError{rerr}
			}
		}
		return nil
	}
	// Chunked: each read goes out as one chunk, its size line, data and CRLF in one write.
	const room = 18 // 16 hex digits and CRLF
	for {
		n, rerr := body.Read(buf[room : len(buf)-2])
		if n > 0 {
			var size [room]byte
			line := append(strconv.AppendUint(size[:0], uint64(n), 16), '\r', '\n')
			start := room - len(line)
			copy(buf[start:room], line)
			buf[room+n], buf[room+n+1] = '\r', '\n'
			if _, err := c.conn.Write(buf[start : room+n+2]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			_, err := io.WriteString(c.conn, "0\r\n\r\n")
			return err
		}
		if rerr != nil {
			return clientBodyError{rerr}
		}
	}
}

// idempotent reports whether a request with method m may be sent twice (RFC 9110 §9.2.2, as
// http.Transport counts them).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// appendHead appends the request head that goes to the backend: req's method and target,
// its Host, its end-to-end header fields, X-Forwarded-For, -Host and -Proto as the router
// saw the request (a client's own are dropped), and the body's framing. It reports false,
// having sent nothing, when a header is one net/http would refuse to send.
func appendHead(b []byte, req *http.Request) ([]byte, bool) {
	b = append(b, req.Method...)
	b = append(b, ' ')
	if path := req.URL.EscapedPath(); path != "" {
		b = append(b, path...)
	} else {
		b = append(b, '/')
	}
	if req.URL.ForceQuery || req.URL.RawQuery != "" {
		b = append(b, '?')
		b = append(b, req.URL.RawQuery...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\n"...)
	conn := req.Header["Connection"]
	teTrailers := false
	for k, vv := range req.Header {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
			"Host", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		case "Te":
			for _, v := range vv {
				teTrailers = teTrailers || hasToken(v, "trailers")
			}
			continue
		case "User-Agent":
			// Only the first, as net/http sends it; none when empty.
			if len(vv) > 0 && vv[0] != "" {
				if !validValue(vv[0]) {
					return b, false
				}
				b = append(b, "User-Agent: "...)
				b = append(b, vv[0]...)
				b = append(b, "\r\n"...)
			}
			continue
		}
		if len(conn) > 0 && listed(conn, k) {
			continue
		}
		if !validName(k) {
			return b, false
		}
		for _, v := range vv {
			if !validValue(v) {
				return b, false
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, req.Host...)
	if req.TLS == nil {
		b = append(b, "\r\nX-Forwarded-Proto: http\r\n"...)
	} else {
		b = append(b, "\r\nX-Forwarded-Proto: https\r\n"...)
	}
	if teTrailers {
		b = append(b, "Te: trailers\r\n"...)
	}
	switch cl := req.ContentLength; {
	case req.Body == nil || req.Body == http.NoBody || cl == 0:
		// Many servers expect a length for these methods, so net/http sends one.
		if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	case cl > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, cl, 10)
		b = append(b, "\r\n"...)
	default:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(b, "\r\n"...), true
}

// listed reports whether the Connection header values conn name the field k.
func listed(conn []string, k string) bool {
	for _, v := range conn {
		if hasToken(v, k) {
			return true
		}
	}
	return false
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return false
		}
	}
	return true
}

func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if !validValueByte(v[i]) {
			return false
		}
	}
	return true
}

// upstreamError answers a request whose backend could not be reached or failed before
// answering: 502, counted and logged; or, when the client went away meanwhile, nothing but
// the client-closed status.
func (r *Router) upstreamError(rec *recorder, req *http.Request, addr string, err error) {
	if req.Context().Err() != nil {
		rec.status = statusClientClosed
		return
	}
	rec.cnt.upstreamErrors.Add(1)
	r.logger().Warn("upstream error", "listener", listenerName(rec.listener),
		"color", colorName(rec.color), "backend", addr, "err", err)
	badGateway(rec)
}

// clientBodyError records a request whose body could not be read from the client: the client
// went away or broke off its upload, which is not the backend's failure.
func (r *Router) clientBodyError(rec *recorder, req *http.Request, err error) {
	r.logger().Debug("reading the request body failed", "listener", listenerName(rec.listener),
		"color", colorName(rec.color), "path", req.URL.Path, "err", err)
	rec.status = statusClientClosed
}

// badGateway writes the router's 502 page.
func badGateway(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(w, "teal: upstream error\n")
}
