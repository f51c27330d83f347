package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// This file is Server's ResponseWriter: net/http's response and chunkWriter, with the same
// framing to the byte (Content-Length when the handler finished with the body in its 2 KiB
// buffer, chunked otherwise, the same chunks, Date, sniffed Content-Type, trailers,
// Connection: close), written into the connection's buffer and sent when the handler
// returns, the buffer fills, or the handler flushes. One difference in the work done: when
// the head cannot depend on the body (a Content-Length and a Content-Type are set, or the
// status has no body) and the request has no body, the head is written at WriteHeader, so
// the header map needs no snapshot.

// response is the fast path's http.ResponseWriter; one per request in flight, pooled.
type response struct {
	c      *conn
	req    *http.Request
	cancel context.CancelFunc
	body   *reqBody // nil without a body

	handlerHeader http.Header
	snapshot      http.Header // the header as WriteHeader saw it, when it had to be kept
	calledHeader  bool
	wroteHeader   bool // logically: WriteHeader was called with a final status
	headWritten   bool // physically, into the connection's buffer
	handlerDone   bool
	chunking      bool
	fullDuplex    bool

	status           int
	contentLength    int64 // declared; -1 for none
	written          int64
	closeAfterReply  bool
	wantsClose       bool
	wants10KeepAlive bool
	trailers         []string

	w       *bufio.Writer // bufferBeforeChunking bytes, over cw
	cw      chunkWriter
	scratch [32]byte // the status code, a chunk's size
	clenBuf [20]byte // the computed Content-Length, until the head is written
}

// chunkWriter is what the response's buffer writes to: the head first, then the body,
// chunked or not.
type chunkWriter struct{ w *response }

func (cw *chunkWriter) Write(p []byte) (int, error) { return cw.w.writeChunk(p) }

func (s *Server) getResponse(c *conn) *response {
	if v := s.responses.Get(); v != nil {
		w := v.(*response)
		w.c = c
		return w
	}
	w := &response{c: c}
	w.cw.w = w
	w.w = bufio.NewWriterSize(&w.cw, bufferBeforeChunking)
	w.reset()
	w.c = c
	return w
}

// reset makes w ready for another request.
func (w *response) reset() {
	bw, tr := w.w, w.trailers[:0]
	bw.Reset(&w.cw)
	*w = response{w: bw, trailers: tr, contentLength: -1, handlerHeader: make(http.Header)}
	w.cw.w = w
}

// Header returns the response header map.
func (w *response) Header() http.Header {
	if w.snapshot == nil && w.wroteHeader && !w.headWritten {
		// Changes after WriteHeader must not reach the head (net/http's clone).
		w.snapshot = w.handlerHeader.Clone()
	}
	w.calledHeader = true
	return w.handlerHeader
}

// WriteHeader sends a 1xx at once, or notes the final status, as net/http's.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		w.c.srv.logf("http: superfluous response.WriteHeader call")
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	c := w.c
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeStatusLine(code)
		_ = w.handlerHeader.WriteSubset(c.bw, excludedHeadersNoBody)
		_, _ = c.bw.WriteString("\r\n")
		_ = c.bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.handlerHeader.Get("Content-Length"); cl != "" {
		v, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && v >= 0 {
			w.contentLength = v
		} else {
			c.srv.logf("http: invalid Content-Length of %q", cl)
			w.handlerHeader.Del("Content-Length")
		}
	}
	if w.body == nil && w.headIndependentOfBody() {
		// Nothing the head says can depend on the body: write it now, from the map as
		// it is, instead of keeping a copy of the map until the body comes.
		w.writeHead(nil)
		return
	}
	if w.calledHeader {
		w.snapshot = w.handlerHeader.Clone()
	}
}

// headIndependentOfBody reports whether writeHead's result cannot depend on the first
// piece of the body nor on when the handler finishes: no body allowed, or a declared
// length and no sniffing.
func (w *response) headIndependentOfBody() bool {
	if !bodyAllowedForStatus(w.status) {
		return true
	}
	if w.contentLength == -1 {
		return false
	}
	h := w.handlerHeader
	_, haveType := h["Content-Type"]
	return haveType || h.Get("Content-Encoding") != "" || h.Get("Transfer-Encoding") != ""
}

var excludedHeadersNoBody = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199, status == 204, status == 304:
		return false
	}
	return true
}

// Write writes body bytes, as net/http's.
func (w *response) Write(p []byte) (int, error) { return w.write(len(p), p, "") }

// WriteString is Write without a copy into a []byte.
func (w *response) WriteString(s string) (int, error) { return w.write(len(s), nil, s) }

func (w *response) write(n int, b []byte, s string) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(n)
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if b != nil {
		return w.w.Write(b)
	}
	return w.w.WriteString(s)
}

// Flush sends what was written so far.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError sends what was written so far (http.ResponseController's Flush).
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	err := w.w.Flush()
	if !w.headWritten {
		w.writeHead(nil)
	}
	if e := w.c.bw.Flush(); err == nil {
		err = e
	}
	return err
}

// Hijack is not supported on the fast path: upgrade requests are handed to net/http.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, fmt.Errorf("hijack a connection served by the router's own server: %w", http.ErrNotSupported)
}

// SetReadDeadline sets the connection's read deadline (http.ResponseController).
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.deadline = t
	return w.c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline (http.ResponseController).
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex lets the handler read the request body after writing (net/http's
// ResponseController.EnableFullDuplex): what is left of it is not read for it.
func (w *response) EnableFullDuplex() error {
	w.fullDuplex = true
	return nil
}

// writeChunk is chunkWriter.Write: the head at the first write, then p, as a chunk when
// chunking.
func (w *response) writeChunk(p []byte) (int, error) {
	if !w.headWritten {
		w.writeHead(p)
	}
	if w.req.Method == http.MethodHead {
		return len(p), nil // eaten
	}
	bw := w.c.bw
	if w.chunking {
		_, _ = bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunking && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		_ = w.c.rwc.Close()
	}
	return n, err
}

// finishRequest ends the response once the handler returned: the buffered body, the head if
// not yet written, the last chunk and trailers, all sent in one write when they fit.
func (w *response) finishRequest() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.w.Flush()
	if !w.headWritten {
		w.writeHead(nil)
	}
	if w.chunking {
		bw := w.c.bw
		_, _ = bw.WriteString("0\r\n")
		if t := w.finalTrailers(); t != nil {
			_ = t.Write(bw)
		}
		_, _ = bw.WriteString("\r\n")
	}
	_ = w.c.bw.Flush()
	if w.body != nil {
		_ = w.body.Close()
	}
}

// shouldReuseConnection reports whether the connection can serve another request.
func (w *response) shouldReuseConnection() bool {
	if w.closeAfterReply {
		return false
	}
	if w.req.Method != http.MethodHead && w.contentLength != -1 && bodyAllowedForStatus(w.status) &&
		w.contentLength != w.written {
		return false // did not write what it declared: the framing is off
	}
	if w.c.werr != nil {
		return false
	}
	return w.body == nil || !w.body.earlyClose
}

func (w *response) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.handlerHeader {
		if kk, found := strings.CutPrefix(k, http.TrailerPrefix); found {
			if t == nil {
				t = make(http.Header)
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailers {
		if t == nil {
			t = make(http.Header)
		}
		for _, v := range w.handlerHeader[k] {
			t.Add(k, v)
		}
	}
	return t
}

func (w *response) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if !httpguts.ValidTrailerHeader(k) {
		return
	}
	w.trailers = append(w.trailers, k)
}

// writeStatusLine writes the status line for code (net/http's writeStatusLine).
func (w *response) writeStatusLine(code int) {
	bw := w.c.bw
	if w.req.ProtoAtLeast(1, 1) {
		_, _ = bw.WriteString("HTTP/1.1 ")
	} else {
		_, _ = bw.WriteString("HTTP/1.0 ")
	}
	if text := http.StatusText(code); text != "" {
		_, _ = bw.Write(strconv.AppendInt(w.scratch[:0], int64(code), 10))
		_ = bw.WriteByte(' ')
		_, _ = bw.WriteString(text)
		_, _ = bw.WriteString("\r\n")
	} else {
		_, _ = fmt.Fprintf(bw, "%03d status code %d\r\n", code, code)
	}
}

// writeHead writes the final response head into the connection's buffer: net/http's
// chunkWriter.writeHeader, decision for decision. p is the first piece of the body (for
// sniffing, and for the Content-Length of a body that fit in the buffer).
func (w *response) writeHead(p []byte) {
	if w.headWritten {
		return
	}
	w.headWritten = true
	c := w.c
	keepAlives := !c.srv.shuttingDown()
	isHEAD := w.req.Method == http.MethodHead

	header := w.snapshot
	owned := header != nil
	if !owned {
		header = w.handlerHeader
	}
	var exclude map[string]bool
	del := func(key string) {
		if owned {
			header.Del(key)
			return
		}
		if _, ok := header[key]; !ok {
			return
		}
		if exclude == nil {
			exclude = make(map[string]bool)
		}
		exclude[key] = true
	}
	var (
		setContentLength []byte
		setContentType   string
		setConnection    string
		setTE            string
	)

	// The fake "Trailer:foo" keys are not written (http.TrailerPrefix).
	trailers := false
	for k := range header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if exclude == nil {
				exclude = make(map[string]bool)
			}
			exclude[k] = true
			trailers = true
		}
	}
	for _, v := range header["Trailer"] {
		trailers = true
		foreachHeaderElement(v, w.declareTrailer)
	}

	te := header.Get("Transfer-Encoding")
	hasTE := te != ""

	if w.handlerDone && !trailers && !hasTE && bodyAllowedForStatus(w.status) && !hasKey(header, "Content-Length") &&
		(!isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		setContentLength = strconv.AppendInt(w.clenBuf[:0], int64(len(p)), 10)
	}

	if w.wants10KeepAlive && keepAlives {
		if header.Get("Content-Length") != "" && header.Get("Connection") == "keep-alive" {
			w.closeAfterReply = false
		}
	}

	hasCL := w.contentLength != -1

	if w.wants10KeepAlive && (isHEAD || hasCL || !bodyAllowedForStatus(w.status)) {
		if _, ok := header["Connection"]; !ok {
			setConnection = "keep-alive"
		}
	} else if !w.req.ProtoAtLeast(1, 1) || w.wantsClose {
		w.closeAfterReply = true
	}

	if header.Get("Connection") == "close" || !keepAlives {
		w.closeAfterReply = true
	}

	// An unread request body: read it (up to 256 KiB) so the connection can be reused, or
	// close the connection (net/http's rules).
	if w.req.ContentLength != 0 && !w.closeAfterReply && !w.fullDuplex && w.body != nil {
		var discard, tooBig bool
		b := w.body
		b.mu.Lock()
		switch {
		case b.closed:
			if !b.sawEOF {
				w.closeAfterReply = true
			}
		case b.unreadLocked() >= maxPostHandlerReadBytes:
			tooBig = true
		default:
			discard = true
		}
		b.mu.Unlock()
		if discard {
			_, err := io.CopyN(io.Discard, b, maxPostHandlerReadBytes+1)
			switch err {
			case nil:
				tooBig = true
			case http.ErrBodyReadAfterClose:
			case io.EOF:
				if err := b.Close(); err != nil {
					w.closeAfterReply = true
				}
			default:
				w.closeAfterReply = true
			}
		}
		if tooBig {
			// net/http's requestTooLarge.
			w.closeAfterReply = true
			del("Connection")
			setConnection = "close"
		}
	}

	code := w.status
	if bodyAllowedForStatus(code) {
		_, haveType := header["Content-Type"]
		hasCE := header.Get("Content-Encoding") != ""
		if !hasCE && !haveType && !hasTE && len(p) > 0 {
			setContentType = http.DetectContentType(p)
		}
	} else {
		for _, k := range suppressedHeaders(code) {
			del(k)
		}
	}

	var date []byte
	if !hasKey(header, "Date") {
		date = c.srv.dateHeader()
	}

	if hasCL && hasTE && te != "identity" {
		c.srv.logf("http: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d",
			te, w.contentLength)
		del("Content-Length")
		hasCL = false
	}

	switch {
	case isHEAD || !bodyAllowedForStatus(code) || code == http.StatusNoContent:
		del("Transfer-Encoding")
	case hasCL:
		del("Transfer-Encoding")
	case w.req.ProtoAtLeast(1, 1):
		if hasTE && te == "identity" {
			w.chunking = false
			w.closeAfterReply = true
			del("Transfer-Encoding")
		} else {
			w.chunking = true
			setTE = "chunked"
			if hasTE && te == "chunked" {
				del("Transfer-Encoding")
			}
		}
	default:
		w.closeAfterReply = true
		del("Transfer-Encoding")
	}

	if w.chunking {
		del("Content-Length")
	}

	// A protocol switch keeps its Connection header (net/http's isProtocolSwitchResponse).
	if w.closeAfterReply && (!keepAlives || !hasTokenHTTP(header.Get("Connection"), "close")) &&
		!(code == http.StatusSwitchingProtocols && header.Get("Upgrade") != "" &&
			httpguts.HeaderValuesContainsToken(header["Connection"], "Upgrade")) {
		del("Connection")
		if w.req.ProtoAtLeast(1, 1) {
			setConnection = "close"
		}
	}

	bw := c.bw
	w.writeStatusLine(code)
	_ = header.WriteSubset(bw, exclude)
	if date != nil {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(date)
		_, _ = bw.WriteString("\r\n")
	}
	if setContentLength != nil {
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(setContentLength)
		_, _ = bw.WriteString("\r\n")
	}
	for _, f := range [...]struct{ k, v string }{
		{"Content-Type", setContentType}, {"Connection", setConnection}, {"Transfer-Encoding", setTE},
	} {
		if f.v != "" {
			_, _ = bw.WriteString(f.k)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(f.v)
			_, _ = bw.WriteString("\r\n")
		}
	}
	_, _ = bw.WriteString("\r\n")
}

func hasKey(h http.Header, k string) bool {
	_, ok := h[k]
	return ok
}

func suppressedHeaders(status int) []string {
	switch {
	case status == 304:
		return []string{"Content-Type", "Content-Length", "Transfer-Encoding"}
	case !bodyAllowedForStatus(status):
		return []string{"Content-Length", "Transfer-Encoding"}
	}
	return nil
}

// foreachHeaderElement calls fn for each non-empty element of the comma-separated list v
// (net/http's).
func foreachHeaderElement(v string, fn func(string)) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return
	}
	if !strings.Contains(v, ",") {
		fn(v)
		return
	}
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.Trim(f, " \t"); f != "" {
			fn(f)
		}
	}
}

// hasTokenHTTP is net/http's hasToken: whether token occurs in v as a whole element of a
// comma or space separated list, ignoring ASCII case.
func hasTokenHTTP(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }
