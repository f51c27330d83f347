package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// This file reads a backend's HTTP/1.x response head and body straight from the connection's
// bufio.Reader, on the handler's goroutine. It follows net/http's reading rules (the status
// line, header lines with obs-fold, Content-Length and Transfer-Encoding checks, bodies by
// RFC 9112 §6.3) so that the router forwards what http.Transport would have; what it does
// differently is to allocate almost nothing: header lines that repeat on a connection (the
// common case: the same backend answering alike) reuse the strings of the previous response.

// Limits of a response.
const (
	// maxHeadBytes bounds a response head (status line and header lines) and, separately,
	// a chunked body's trailer; a larger one is refused with a 502.
	maxHeadBytes = 1 << 20
	// maxInterim is how many 1xx interim responses may come before the final one. (With
	// ReverseProxy passing them on, http.Transport sets no limit: a backend could send them
	// for ever.)
	maxInterim = 16
	// maxChunkLine bounds a chunk-size line, extensions included, as net/http does.
	maxChunkLine = 4096
)

var (
	errHeadTooLarge   = errors.New("response head too large")
	errChunkLineLong  = errors.New("chunk size line too long")
	errMalformedChunk = errors.New("malformed chunked encoding")
)

// field is one header line of a response: a canonical name and its value.
type field struct{ key, value string }

// memo is a header line remembered from the previous response on a connection: the name as
// it arrived, its canonical form and its value.
type memo struct{ raw, key, value string }

// head is a response's status line and header fields, and what they say about its body.
type head struct {
	status int
	minor  int     // HTTP/1.minor
	fields []field // in arrival order, hop-by-hop ones included; the connection's to reuse
	n      int     // fields in use

	contentLength int64 // -1 when there is none; the body's length in length mode
	mode          bodyMode
	close         bool     // the connection must not be reused after this response
	eventStream   bool     // Content-Type is text/event-stream
	connTokens    []string // Connection header values, for their listed hop-by-hop names
	trailers      []string // announced trailer names (chunked bodies only), canonical
}

// bodyMode is how a response body is delimited.
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // no body: HEAD, 1xx, 204, 304, or Content-Length: 0
	bodyLength                  // Content-Length bytes
	bodyChunked                 // Transfer-Encoding: chunked
	bodyClose                   // until the backend closes the connection
)

// reader reads responses from one backend connection.
type reader struct {
	br   *bufio.Reader
	long []byte // a line longer than br's buffer, or one with continuations, assembled here
	memo []memo // the previous response's header lines, by position
	got  bool   // some byte of the current response arrived
}

// line returns the next line without its line ending (CRLF or LF), valid until the next
// read from r. budget is what the head may still take; line subtracts what it read.
func (r *reader) line(budget *int) ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	if len(l) > 0 {
		r.got = true
	}
	if err == bufio.ErrBufferFull {
		r.long = append(r.long[:0], l...)
		for err == bufio.ErrBufferFull {
			if len(r.long) > *budget {
				return nil, errHeadTooLarge
			}
			l, err = r.br.ReadSlice('\n')
			r.long = append(r.long, l...)
		}
		l = r.long
	}
	*budget -= len(l)
	if *budget < 0 {
		return nil, errHeadTooLarge
	}
	if err != nil {
		if err == io.EOF && len(l) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// fieldLine returns the next header line with any obs-fold continuation lines joined to it
// by a space, as net/textproto does; an empty line ends the head.
func (r *reader) fieldLine(budget *int) ([]byte, error) {
	l, err := r.line(budget)
	if err != nil || len(l) == 0 {
		return l, err
	}
	if bytes.IndexByte(l, ':') < 0 {
		// Checked before any continuation is joined to it, as net/textproto does.
		return nil, fmt.Errorf("malformed response header line %q: no colon", l)
	}
	// The next line is usually buffered already and starts a new field: then l can be
	// used where it lies. Otherwise reading on may move the buffer under l: copy it first.
	if r.br.Buffered() > 0 {
		if next, _ := r.br.Peek(1); next[0] != ' ' && next[0] != '\t' {
			return trimSpace(l), nil
		}
	}
	joined := append(r.long[:0:0], trimSpace(l)...)
	for {
		next, err := r.br.Peek(1)
		if err != nil || (next[0] != ' ' && next[0] != '\t') {
			break // an error shows on the next read
		}
		c, err := r.line(budget)
		if err != nil {
			return nil, err
		}
		joined = append(append(joined, ' '), trimSpace(c)...)
	}
	r.long = joined
	return joined, nil
}

// readHead reads a response head into h. method is the request's, for the body rules of
// HEAD. It reports errors in the backend's response as they would make net/http refuse it.
func (r *reader) readHead(h *head, method string) error {
	budget := maxHeadBytes
	l, err := r.line(&budget)
	if err != nil {
		return err
	}
	if err := h.statusLine(l); err != nil {
		return err
	}
	*h = head{status: h.status, minor: h.minor, fields: h.fields, contentLength: -1}
	if next, err := r.br.Peek(1); err == nil && (next[0] == ' ' || next[0] == '\t') {
		return fmt.Errorf("malformed response header: a continuation line first")
	}
	for i := 0; ; i++ {
		l, err := r.fieldLine(&budget)
		if err != nil {
			return err
		}
		if len(l) == 0 {
			break
		}
		f, err := r.field(l, i)
		if err != nil {
			return err
		}
		if h.n < len(h.fields) {
			h.fields[h.n] = f
		} else {
			h.fields = append(h.fields, f)
		}
		h.n++
	}
	return h.framing(method)
}

// statusLine parses "HTTP/1.x NNN reason" into h.
func (h *head) statusLine(l []byte) error {
	proto, rest, ok := bytes.Cut(l, []byte{' '})
	if !ok {
		return fmt.Errorf("malformed response status line %q", l)
	}
	switch string(proto) {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		return fmt.Errorf("response protocol %q: want HTTP/1.0 or HTTP/1.1", proto)
	}
	rest = bytes.TrimLeft(rest, " ")
	code, _, _ := bytes.Cut(rest, []byte{' '})
	if len(code) != 3 || code[0] < '1' || code[0] > '9' || code[1] < '0' || code[1] > '9' ||
		code[2] < '0' || code[2] > '9' {
		return fmt.Errorf("malformed response status code %q", code)
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	return nil
}

// field turns header line l, the i-th of the head, into a field. A line identical to the
// i-th line of the connection's previous response reuses its strings.
func (r *reader) field(l []byte, i int) (field, error) {
	k, v, ok := bytes.Cut(l, []byte{':'})
	if !ok {
		return field{}, fmt.Errorf("malformed response header line %q", l)
	}
	// The line's end is trimmed already; a trailing space that an empty continuation line
	// left stays, as net/textproto leaves it.
	v = bytes.TrimLeft(v, " \t")
	if i < len(r.memo) {
		if m := &r.memo[i]; m.raw == string(k) && m.value == string(v) {
			return field{m.key, m.value}, nil
		}
	}
	key, ok := canonicalKey(k)
	if !ok {
		return field{}, fmt.Errorf("malformed response header name %q", k)
	}
	for _, c := range v {
		if !validValueByte(c) {
			return field{}, fmt.Errorf("malformed response header value of %s", key)
		}
	}
	m := memo{key: key, value: string(v)}
	if m.raw = key; string(k) != key {
		m.raw = string(k)
	}
	if i < len(r.memo) {
		r.memo[i] = m
	} else if i == len(r.memo) && i < 64 {
		r.memo = append(r.memo, m)
	}
	return field{m.key, m.value}, nil
}

// framing works out from h's fields how the body is delimited and whether the connection
// can be reused, by net/http's rules (transfer.go: parseTransferEncoding, fixLength,
// shouldClose, fixTrailer).
func (h *head) framing(method string) error {
	var (
		te      string // the first Transfer-Encoding
		teN     int    // how many there are
		cl      string
		hasCL   bool
		trailer []string
		closeTk bool
		keepTk  bool
	)
	for _, f := range h.fields[:h.n] {
		switch f.key {
		case "Transfer-Encoding":
			if teN == 0 {
				te = f.value
			}
			teN++
		case "Content-Length":
			v := textproto.TrimString(f.value)
			if hasCL && v != cl {
				return fmt.Errorf("response has differing Content-Length values %q and %q", cl, v)
			}
			cl, hasCL = v, true
		case "Connection":
			h.connTokens = append(h.connTokens, f.value)
			if hasToken(f.value, "close") {
				closeTk = true
			}
			if hasToken(f.value, "keep-alive") {
				keepTk = true
			}
		case "Trailer":
			trailer = append(trailer, f.value)
		case "Content-Type":
			if !h.eventStream {
				h.eventStream = isEventStreamType(f.value)
			}
		}
	}
	chunked := false
	if teN > 0 && h.minor >= 1 {
		if teN != 1 {
			return fmt.Errorf("response has %d Transfer-Encoding fields: want one", teN)
		}
		if !strings.EqualFold(te, "chunked") {
			return fmt.Errorf("response transfer encoding %q is not supported", te)
		}
		chunked = true
	}
	if hasCL {
		if cl == "" {
			return errors.New("response has an empty Content-Length")
		}
		n, err := strconv.ParseUint(cl, 10, 63)
		if err != nil {
			return fmt.Errorf("response Content-Length %q is not a number", cl)
		}
		h.contentLength = int64(n)
	}
	h.close = closeTk || (h.minor == 0 && !keepTk)
	switch {
	case method == http.MethodHead || h.status < 200 || h.status == http.StatusNoContent ||
		h.status == http.StatusNotModified:
		h.mode = bodyNone
	case chunked:
		h.mode, h.contentLength = bodyChunked, -1
	case hasCL && h.contentLength == 0:
		h.mode = bodyNone
	case hasCL:
		h.mode = bodyLength
	default:
		h.mode, h.close = bodyClose, true
	}
	if chunked && trailer != nil {
		for _, v := range trailer {
			for name := range strings.SplitSeq(v, ",") {
				if name = textproto.TrimString(name); name == "" {
					continue
				}
				name = http.CanonicalHeaderKey(name)
				switch name {
				case "Transfer-Encoding", "Trailer", "Content-Length":
					return fmt.Errorf("response announces %s as a trailer", name)
				}
				h.trailers = append(h.trailers, name)
			}
		}
	}
	return nil
}

// forwarded reports whether field f of h goes on to the client: hop-by-hop fields, those
// the Connection header names, and a Content-Length that chunking overrides stay behind.
func (h *head) forwarded(f field) bool {
	switch f.key {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return false
	case "Content-Length":
		return h.mode != bodyChunked
	}
	for _, v := range h.connTokens {
		if hasToken(v, f.key) {
			return false
		}
	}
	return true
}

// copyHeader adds h's forwarded fields to dst with one allocation for all their value
// slices. A repeated Content-Length is added once.
func (h *head) copyHeader(dst http.Header) {
	vals := make([]string, h.n)
	seenCL := false
	for i, f := range h.fields[:h.n] {
		if !h.forwarded(f) {
			continue
		}
		if f.key == "Content-Length" {
			if seenCL {
				continue
			}
			seenCL = true
		}
		if vv, ok := dst[f.key]; ok {
			dst[f.key] = append(vv, f.value)
			continue
		}
		vals[i] = f.value
		dst[f.key] = vals[i : i+1 : i+1]
	}
}

// body reads a response body by its mode, handing out what is buffered in place (next and
// advance) so that copying it to the client needs no buffer of its own.
type body struct {
	r        *reader
	mode     bodyMode
	left     int64 // length mode: bytes left; chunked: bytes left of the current chunk
	crlf     bool  // chunked: the CRLF after a chunk's data is still to come
	excess   int64 // chunked: bytes of chunk lines beyond what the data allows for
	done     bool  // the body was read to its end (and a chunked body's trailer)
	trailer  []field
	trailerN int
}

// reset prepares b for the body of h.
func (b *body) reset(h *head) {
	b.mode, b.left, b.crlf, b.excess, b.done, b.trailerN = h.mode, 0, false, 0, false, 0
	switch h.mode {
	case bodyNone:
		b.done = true
	case bodyLength:
		b.left = h.contentLength
	}
}

// next returns the next piece of the body, valid until advance or the next read; io.EOF at
// the end. It blocks only when nothing of the body is buffered.
func (b *body) next() ([]byte, error) {
	if b.done {
		return nil, io.EOF
	}
	br := b.r.br
	switch b.mode {
	case bodyLength:
		if b.left == 0 {
			b.done = true
			return nil, io.EOF
		}
	case bodyChunked:
		if b.left == 0 {
			if err := b.chunkHeader(); err != nil {
				return nil, err
			}
			if b.done {
				return nil, io.EOF
			}
		}
	}
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				if b.mode == bodyClose {
					b.done = true
					return nil, io.EOF
				}
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	n := br.Buffered()
	if b.mode != bodyClose && int64(n) > b.left {
		n = int(b.left)
	}
	p, _ := br.Peek(n)
	return p, nil
}

// advance consumes n bytes that next returned.
func (b *body) advance(n int) {
	_, _ = b.r.br.Discard(n)
	if b.mode == bodyLength || b.mode == bodyChunked {
		b.left -= int64(n)
		if b.mode == bodyChunked && b.left == 0 {
			b.crlf = true
		}
	}
}

// Read reads the body, for when it goes through a reader (event streams).
func (b *body) Read(p []byte) (int, error) {
	q, err := b.next()
	if err != nil {
		return 0, err
	}
	n := copy(p, q)
	b.advance(n)
	return n, nil
}

// chunkHeader reads the end of the previous chunk and the size line of the next one; after
// the last chunk it reads the trailer and marks the body done.
func (b *body) chunkHeader() error {
	br := b.r.br
	if b.crlf {
		var crlf [2]byte
		if _, err := io.ReadFull(br, crlf[:]); err != nil {
			return unexpected(err)
		}
		if crlf != [2]byte{'\r', '\n'} {
			return errMalformedChunk
		}
		b.crlf = false
	}
	l, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return errChunkLineLong
	}
	if err != nil {
		return unexpected(err)
	}
	// As net/http: CRLF only (RFC 9112 errata 7633), trailing whitespace, then the
	// extensions, cut off.
	if i := bytes.IndexByte(l, '\r'); i < 0 || i != len(l)-2 {
		return errors.New("chunk size line does not end in CRLF")
	}
	l = l[:len(l)-2]
	if len(l) >= maxChunkLine {
		return errChunkLineLong
	}
	b.excess += int64(len(l)) + 2
	l = bytes.TrimRight(l, " \t")
	l, _, _ = bytes.Cut(l, []byte{';'})
	size, err := parseHex(l)
	if err != nil {
		return err
	}
	// Extensions are allowed but not without bound: 16 bytes a chunk and twice its data,
	// as net/http counts, or a backend could send a trickle of data in a flood of chunk
	// lines.
	b.excess = max(b.excess-16-2*int64(size), 0)
	if b.excess > 16<<10 {
		return errors.New("chunked encoding with too much besides data")
	}
	if size > 0 {
		b.left = int64(size)
		return nil
	}
	if err := b.readTrailer(); err != nil {
		return err
	}
	b.done = true
	return nil
}

// readTrailer reads the trailer section after the last chunk, up to the empty line. As
// net/http, it wants the whole section in the read buffer.
func (b *body) readTrailer() error {
	b.trailerN = 0
	br := b.r.br
	if p, _ := br.Peek(2); len(p) == 2 && p[0] == '\r' && p[1] == '\n' {
		_, _ = br.Discard(2)
		return nil
	}
	for n := 2; ; n++ {
		p, err := br.Peek(n)
		if bytes.HasSuffix(p, []byte("\r\n\r\n")) {
			break
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				return errors.New("trailer too long")
			}
			return unexpected(err)
		}
	}
	if p, _ := br.Peek(1); p[0] == ' ' || p[0] == '\t' {
		return errors.New("malformed trailer: a continuation line first")
	}
	budget := maxHeadBytes
	for {
		l, err := b.r.fieldLine(&budget)
		if err != nil {
			return unexpected(err)
		}
		if len(l) == 0 {
			return nil
		}
		k, v, ok := bytes.Cut(l, []byte{':'})
		if !ok {
			return fmt.Errorf("malformed trailer line %q", l)
		}
		key, ok := canonicalKey(k)
		if !ok {
			return fmt.Errorf("malformed trailer name %q", k)
		}
		v = bytes.TrimLeft(v, " \t")
		for _, c := range v {
			if !validValueByte(c) {
				return fmt.Errorf("malformed trailer value of %s", key)
			}
		}
		f := field{key, string(v)}
		if b.trailerN < len(b.trailer) {
			b.trailer[b.trailerN] = f
		} else {
			b.trailer = append(b.trailer, f)
		}
		b.trailerN++
	}
}

// unexpected turns the end of the connection in the middle of a body into an error.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseHex parses a chunk size: 1 to 16 hex digits.
func parseHex(v []byte) (uint64, error) {
	if len(v) == 0 {
		return 0, errors.New("empty chunk size")
	}
	if len(v) > 16 {
		return 0, errors.New("chunk size too large")
	}
	var n uint64
	for _, c := range v {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, fmt.Errorf("invalid byte %q in chunk size", c)
		}
		n = n<<4 | uint64(c)
	}
	if n > 1<<63-1 {
		return 0, errors.New("chunk size too large")
	}
	return n, nil
}

// canonicalKey returns the canonical form of header name k and whether k is a valid name.
// As net/textproto, it accepts a name with spaces but leaves it as it is.
func canonicalKey(k []byte) (string, bool) {
	if len(k) == 0 {
		return "", false
	}
	spaces := false
	for _, c := range k {
		if c == ' ' {
			spaces = true
			continue
		}
		if !isTokenByte(c) {
			return "", false
		}
	}
	if spaces {
		return string(k), true
	}
	return textproto.CanonicalMIMEHeaderKey(string(k)), true
}

// isTokenByte reports whether c may appear in a header name (RFC 9110 tchar).
func isTokenByte(c byte) bool {
	return c < 0x80 && tokenTable[c]
}

var tokenTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validValueByte reports whether c may appear in a header value: visible ASCII, space, tab,
// or obs-text, as net/textproto accepts.
func validValueByte(c byte) bool {
	return c >= 0x20 && c != 0x7f || c == '\t'
}

// trimSpace trims spaces and tabs at both ends.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hasToken reports whether the comma-separated list v has token t, ignoring case.
func hasToken(v, t string) bool {
	for len(v) > 0 {
		var part string
		part, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(textproto.TrimString(part), t) {
			return true
		}
	}
	return false
}

// isEventStreamType reports whether a Content-Type value is text/event-stream, parameters
// aside.
func isEventStreamType(ct string) bool {
	const es = "text/event-stream"
	return len(ct) >= len(es) && strings.EqualFold(ct[:len(es)], es) &&
		(len(ct) == len(es) || ct[len(es)] == ';' || ct[len(es)] == ' ')
}
