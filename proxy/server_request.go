package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// This file reads a request head for Server's fast path. It takes only heads it reads as
// net/http reads them: CRLF line endings, HTTP/1.0 or 1.1, a token method other than
// CONNECT, a target url.ParseRequestURI accepts other than "*", header fields with a token
// name right before the colon, a valid value and no continuation lines, exactly one valid
// Host, at most one Content-Length of plain digits, and no Transfer-Encoding, Expect or
// Upgrade. Anything else goes to net/http, which then answers it its way (a 400 for a
// malformed head, 100 Continue, a protocol switch, ...).

// headResult is what parseHead made of the bytes it was given.
type headResult int

const (
	headIncomplete headResult = iota // more bytes are needed
	headComplete                     // a head the fast path takes
	headHandoff                      // a head (or bytes) for net/http
)

// reqHead is a parsed request head. Its strings are shared with the Requests made from it,
// and reused by the next head on the connection where its bytes repeat (keep-alive clients
// send much the same head every time).
type reqHead struct {
	n             int // bytes of head, final CRLF included
	method, uri   string
	url           *url.URL // parsed uri; copied into each Request
	minor         int      // HTTP/1.minor
	fields        []headerField
	host          string
	contentLength int64
}

type headerField struct{ key, value string }

// prevHead is the connection's previous head, whose strings parseHead reuses.
type prevHead struct{ head reqHead }

// parseHead parses the head at the start of buf into h, reusing h's strings from the
// previous head where the bytes are the same.
func parseHead(h *reqHead, buf []byte, _ *prevHead) headResult {
	// The request line.
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return headIncomplete
	}
	if i == 0 || buf[i-1] != '\r' {
		return headHandoff
	}
	line := buf[:i-1]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return headHandoff
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return headHandoff
	}
	method, target, proto := line[:sp1], rest[:sp2], rest[sp2+1:]
	var minor int
	switch string(proto) {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
		minor = 0
	default:
		return headHandoff
	}
	for _, c := range method {
		if !isTokenByte(c) {
			return headHandoff
		}
	}
	if string(method) == http.MethodConnect || string(target) == "*" {
		return headHandoff
	}
	if string(method) != h.method {
		h.method = internMethod(method)
	}
	if string(target) != h.uri || h.url == nil {
		u, err := url.ParseRequestURI(string(target))
		if err != nil {
			return headHandoff
		}
		h.uri, h.url = string(target), u
	}
	h.minor = minor

	// The header fields.
	off := i + 1
	nf := 0
	hosts, lengths := 0, 0
	h.host = ""
	h.contentLength = 0
	var key [64]byte
	for {
		j := bytes.IndexByte(buf[off:], '\n')
		if j < 0 {
			return headIncomplete
		}
		if j == 0 || buf[off+j-1] != '\r' {
			return headHandoff
		}
		line := buf[off : off+j-1]
		off += j + 1
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return headHandoff // a continuation line, or a field starting with blanks
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || colon > len(key) {
			return headHandoff
		}
		name := line[:colon]
		k := key[:len(name)]
		upper := true
		for n, c := range name {
			if !isTokenByte(c) {
				return headHandoff
			}
			// textproto.CanonicalMIMEHeaderKey: upper case first and after '-'.
			if upper && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			} else if !upper && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			k[n] = c
			upper = c == '-'
		}
		value := trimSpace(line[colon+1:])
		for _, c := range value {
			if !validValueByte(c) {
				return headHandoff
			}
		}
		switch string(k) {
		case "Transfer-Encoding", "Expect", "Upgrade":
			return headHandoff
		case "Host":
			hosts++
		case "Content-Length":
			lengths++
			n, ok := parseLength(value)
			if !ok || lengths > 1 {
				return headHandoff
			}
			h.contentLength = n
		}
		if nf < len(h.fields) {
			f := &h.fields[nf]
			if string(k) != f.key {
				f.key = string(k)
			}
			if string(value) != f.value {
				f.value = string(value)
			}
		} else {
			h.fields = append(h.fields, headerField{string(k), string(value)})
		}
		if string(k) == "Host" {
			h.host = h.fields[nf].value
		}
		nf++
	}
	h.fields = h.fields[:nf]
	if hosts != 1 || !httpguts.ValidHostHeader(h.host) {
		return headHandoff
	}
	h.n = off
	return headComplete
}

// parseLength parses a Content-Length value as net/http does, but only plain digits and
// not too many of them; the rest goes to net/http.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// internMethod returns the method's string without allocating for the common ones.
func internMethod(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodOptions:
		return http.MethodOptions
	}
	return string(m)
}

// newRequest makes the Request for head h (whose bytes are then consumed) and its response.
func (c *conn) newRequest(h *reqHead) (*http.Request, *response) {
	_, _ = c.br.Discard(h.n)
	c.lastMethod = h.method
	hdr := make(http.Header, len(h.fields))
	strs := make([]string, len(h.fields))
	for i, f := range h.fields {
		if f.key == "Host" {
			continue // net/http moves it to Request.Host
		}
		if vv, ok := hdr[f.key]; ok {
			hdr[f.key] = append(vv, f.value)
			continue
		}
		strs[i] = f.value
		hdr[f.key] = strs[i : i+1 : i+1]
	}
	// net/http's fixPragmaCacheControl.
	if hp := hdr["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := hdr["Cache-Control"]; !ok {
			hdr["Cache-Control"] = []string{"no-cache"}
		}
	}
	u := *h.url
	proto := "HTTP/1.1"
	if h.minor == 0 {
		proto = "HTTP/1.0"
	}
	conns := hdr["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conns, "close")
	reqClose := hasClose
	if h.minor == 0 {
		reqClose = hasClose || !httpguts.HeaderValuesContainsToken(conns, "keep-alive")
	}
	host := u.Host
	if host == "" {
		host = h.host
	}
	ctx, cancel := context.WithCancel(c.ctx)
	w := c.srv.getResponse(c)
	w.cancel = cancel
	var body io.ReadCloser = http.NoBody
	if h.contentLength > 0 {
		// Not pooled with the response: a goroutine of the handler's may still be
		// reading it (and failing) after the handler returned.
		w.body = &reqBody{c: c, remain: h.contentLength, closing: reqClose}
		body = w.body
		// The body is read after the head: the head's deadline must not cut it off.
		c.setReadDeadline(time.Time{})
	}
	tmp := http.Request{
		Method:        h.method,
		URL:           &u,
		Proto:         proto,
		ProtoMajor:    1,
		ProtoMinor:    h.minor,
		Header:        hdr,
		Body:          body,
		ContentLength: h.contentLength,
		Close:         reqClose,
		Host:          host,
		RemoteAddr:    c.remoteAddr,
		RequestURI:    h.uri,
	}
	req := tmp.WithContext(ctx)
	w.req = req
	w.wantsClose = reqClose || hasTokenHTTP(first(conns), "close")
	w.wants10KeepAlive = h.minor == 0 && hasTokenHTTP(first(conns), "keep-alive")
	c.res = w
	return req, w
}

func first(vv []string) string {
	if len(vv) == 0 {
		return ""
	}
	return vv[0]
}

// reqBody is a request body of known length, read straight from the connection's read
// buffer. It behaves as net/http's: the last bytes come with io.EOF, a body cut short is
// io.ErrUnexpectedEOF, Close reads what is left (up to 256 KiB) to keep the connection,
// and reads after Close fail. Its mutex lets the router stream it from another goroutine.
type reqBody struct {
	c          *conn
	mu         sync.Mutex
	remain     int64
	closing    bool // the connection closes after this request: Close need not read on
	sawEOF     bool
	closed     bool
	earlyClose bool // closed with more than maxPostHandlerReadBytes unread
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *reqBody) readLocked(p []byte) (int, error) {
	if b.sawEOF || b.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.c.br.Read(p)
	b.remain -= int64(n)
	if err == io.EOF {
		b.sawEOF = true
		if b.remain > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil && n > 0 && b.remain == 0 {
		err = io.EOF
		b.sawEOF = true
	}
	if b.sawEOF {
		b.c.bodyDone()
	}
	return n, err
}

func (b *reqBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	var err error
	switch {
	case b.sawEOF:
	case b.closing:
	case b.remain > maxPostHandlerReadBytes:
		b.earlyClose = true
	default:
		var buf [512]byte
		var n int64
		for err == nil {
			var m int
			m, err = b.readLocked(buf[:])
			n += int64(m)
		}
		if err == io.EOF {
			err = nil
		}
		if n == maxPostHandlerReadBytes {
			b.earlyClose = true // net/http's CopyN reads no further and gives up
		}
	}
	b.closed = true
	return err
}

// unread is what is left of the body (net/http's unreadDataSizeLocked).
func (b *reqBody) unreadLocked() int64 { return b.remain }
