package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"teal.dev/teal"
)

// DefaultCloseGrace is how long CloseLongLived lets a WebSocket's close handshake run before
// it closes both connections.
const DefaultCloseGrace = time.Second

// closeReason is the reason sent in the close frames of CloseLongLived.
const closeReason = "teal: colour retired"

// Long-lived connections are those whose life is not a request's: upgraded connections (a
// 101 Switching Protocols: WebSocket and the like) and event streams (a response with
// Content-Type text/event-stream). Nothing else is, however long it runs: a slow download or
// a long poll is an ordinary request, which Drain waits for. Long-lived connections stay on
// the colour they started on across switches; they end when either side closes them or when
// CloseLongLived closes them politely.

// longConn is one long-lived connection that CloseLongLived can end.
type longConn interface {
	// shut ends the connection politely, allowing the peers grace to finish.
	shut(grace time.Duration)
}

// longSet is the long-lived connections open to one colour, whatever the listener. Only
// long-lived connections are put in it, so its lock is not on the path of ordinary requests.
type longSet struct {
	mu sync.Mutex
	m  map[longConn]struct{}
}

func (s *longSet) add(c longConn) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[longConn]struct{})
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *longSet) remove(c longConn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *longSet) list() []longConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := make([]longConn, 0, len(s.m))
	for c := range s.m {
		l = append(l, c)
	}
	return l
}

// LongLived returns how many long-lived connections (upgraded connections and event
// streams) to c are open now, through any listener: production, preview or c's endpoint.
func (r *Router) LongLived(c teal.Color) int64 {
	if !c.Valid() {
		return 0
	}
	i := colorIndex(c)
	return r.counters[live][i].longLived.Load() + r.counters[preview][i].longLived.Load() +
		r.endpoints.counters[i].longLived.Load()
}

// CloseLongLived ends every long-lived connection to c, through any listener, and returns how
// many it began to end. It does not wait for them to close.
//
// A WebSocket gets a close frame with status 1001 (going away) on both sides — unmasked to
// the client, masked to the backend — sent between frames, never inside one; after that the
// router forwards nothing more, and closes both connections when the peers have or after
// CloseGrace. Another upgraded protocol is closed at once. An event stream ends as if the
// backend had finished it (the chunked response is terminated properly), which an
// EventSource client takes as a normal end and reconnects from, to the colour routed then.
func (r *Router) CloseLongLived(c teal.Color) int {
	if !c.Valid() {
		return 0
	}
	grace := r.CloseGrace
	if grace <= 0 {
		grace = DefaultCloseGrace
	}
	conns := r.long[colorIndex(c)].list()
	for _, lc := range conns {
		lc.shut(grace)
	}
	if len(conns) > 0 {
		r.logger().Info("long-lived connections closed", "color", c, "count", len(conns))
	}
	return len(conns)
}

// modifyResponse is the ReverseProxy hook that finds long-lived responses: it takes over the
// backend side of an upgraded connection, and turns an event stream into a long-lived
// connection of cnt's listener. For any other response it costs a status comparison and a
// header lookup.
func (r *Router) modifyResponse(cnt *counters, c int) func(*http.Response) error {
	set := &r.long[c]
	return func(res *http.Response) error {
		if res.StatusCode == http.StatusSwitchingProtocols {
			if res.Request == nil {
				return nil
			}
			if u, ok := res.Request.Context().Value(upgradeKey{}).(*upgrade); ok {
				if rwc, ok := res.Body.(io.ReadWriteCloser); ok {
					u.ws = strings.EqualFold(res.Header.Get("Upgrade"), "websocket")
					u.back = &relay{rw: rwc, ws: u.ws}
					res.Body = u.back
				}
			}
			return nil
		}
		if isEventStream(res.Header) {
			s := &stream{body: res.Body, cnt: cnt, set: set}
			// From here until the stream closes it is long-lived, not a request Drain
			// waits for; Close makes it an ordinary request again for the few moments
			// until the handler returns.
			cnt.active.Add(-1)
			cnt.longLived.Add(1)
			set.add(s)
			res.Body = s
		}
		return nil
	}
}

// isEventStream reports whether h's Content-Type is text/event-stream.
func isEventStream(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) == 0 {
		return false
	}
	const es = "text/event-stream"
	ct := v[0]
	return len(ct) >= len(es) && strings.EqualFold(ct[:len(es)], es) &&
		(len(ct) == len(es) || ct[len(es)] == ';' || ct[len(es)] == ' ')
}

// stream is the body of an event stream from a backend: a long-lived connection that
// CloseLongLived ends by making the body end.
type stream struct {
	body    io.ReadCloser
	cnt     *counters
	set     *longSet
	stopped atomic.Bool
	closed  atomic.Bool
}

// Read reads the backend's stream. Once stopped, the error that closing the body causes is
// reported as the end of the stream: ReverseProxy then finishes the response normally.
func (s *stream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil && s.stopped.Load() {
		return n, io.EOF
	}
	return n, err
}

// Close is ReverseProxy closing the body when the response is done, however it ended.
func (s *stream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.set.remove(s)
	s.cnt.longLived.Add(-1)
	s.cnt.active.Add(1)
	return s.body.Close()
}

func (s *stream) shut(time.Duration) {
	s.stopped.Store(true)
	// Closing the transport's body unblocks a Read waiting for the next event.
	_ = s.body.Close()
}

// upgradeKey is the context key under which an upgrade request carries its upgrade, so that
// modifyResponse, which sees only the response, finds it.
type upgradeKey struct{}

// upgrade is an upgraded connection: the client's side (front) and the backend's (back),
// which ReverseProxy copies between. Both sides are wrapped, so that the router can send
// each a close frame between frames.
type upgrade struct {
	set   *longSet
	ws    bool   // the protocol is WebSocket
	back  *relay // set by modifyResponse on the 101
	front *relay // set by the recorder's Hijack
	once  sync.Once
}

// trackUpgrade prepares an upgrade request to be tracked as a long-lived connection to
// colour c, should the backend switch protocols. It allocates, but only for upgrade requests.
func (r *Router) trackUpgrade(rec *recorder, req *http.Request, c int) *http.Request {
	u := &upgrade{set: &r.long[c]}
	rec.up = u
	return req.WithContext(context.WithValue(req.Context(), upgradeKey{}, u))
}

func (u *upgrade) shut(grace time.Duration) {
	u.once.Do(func() {
		if u.ws {
			// Both sides get their frame pending before either is written, so that the
			// client's answer to its close frame is not forwarded to the backend ahead of
			// the backend's own.
			u.front.setPending(closeFrame(false))
			u.back.setPending(closeFrame(true))
			u.front.flushPending()
			u.back.flushPending()
		} else {
			grace = 0
		}
		time.AfterFunc(grace, func() {
			_ = u.front.Close()
			_ = u.back.Close()
		})
	})
}

// closeFrame returns a WebSocket close frame with status 1001 (going away) and closeReason:
// masked, as a client sends it (to the backend), or not, as a server does (to the client).
func closeFrame(masked bool) []byte {
	payload := append([]byte{0x03, 0xE9}, closeReason...)
	if !masked {
		return append([]byte{0x88, byte(len(payload))}, payload...)
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	f := append([]byte{0x88, 0x80 | byte(len(payload))}, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// errNoCloseWrite is returned by CloseWrite when the connection cannot half-close; the
// copying then ends, as ReverseProxy ends it for such connections.
var errNoCloseWrite = errors.New("connection cannot half-close")

// relay is one side of an upgraded connection: what ReverseProxy writes to it is the other
// side's traffic. For a WebSocket it keeps track of frame boundaries in that traffic, so that
// a close frame can be slipped in between two frames.
type relay struct {
	rw io.ReadWriteCloser
	ws bool

	mu      sync.Mutex
	cur     frameCursor
	pending []byte // a close frame to send at the next frame boundary
	closing bool   // the close frame went out: everything after it is dropped
}

func (s *relay) Read(p []byte) (int, error) { return s.rw.Read(p) }

func (s *relay) Close() error { return s.rw.Close() }

// CloseWrite passes a half-close on, when the connection can do one.
func (s *relay) CloseWrite() error {
	if cw, ok := s.rw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoCloseWrite
}

// Write forwards the other side's traffic. Once a close frame is pending, it forwards up to
// the end of the current frame, sends the close frame and drops the rest.
func (s *relay) Write(p []byte) (int, error) {
	if !s.ws {
		return s.rw.Write(p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return len(p), nil
	}
	if s.pending == nil {
		n, err := s.rw.Write(p)
		s.cur.advance(p[:n])
		return n, err
	}
	k, boundary := s.cur.toBoundary(p)
	if k > 0 {
		if _, err := s.rw.Write(p[:k]); err != nil {
			return 0, err
		}
	}
	if boundary {
		s.writePendingLocked()
	}
	return len(p), nil
}

func (s *relay) setPending(f []byte) {
	s.mu.Lock()
	s.pending = f
	s.mu.Unlock()
}

// flushPending sends the pending close frame now if the traffic is between frames; if not,
// the next Write sends it where the current frame ends.
func (s *relay) flushPending() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing && s.pending != nil && s.cur.atBoundary() {
		s.writePendingLocked()
	}
}

func (s *relay) writePendingLocked() {
	_, _ = s.rw.Write(s.pending)
	s.pending = nil
	s.closing = true
}

// frontConn is the client's connection as ReverseProxy sees it after the Hijack: a net.Conn
// whose writes go through the relay.
type frontConn struct {
	net.Conn
	r *relay
}

func (c *frontConn) Write(p []byte) (int, error) { return c.r.Write(p) }

// CloseWrite passes ReverseProxy's half-close on to the client's connection.
func (c *frontConn) CloseWrite() error { return c.r.CloseWrite() }

// frameCursor follows a stream of WebSocket frames (RFC 6455 §5.2), given in arbitrary
// chunks, far enough to know where each frame ends. It never looks at payloads.
type frameCursor struct {
	hdr  [14]byte
	have int    // header bytes collected
	need int    // header length, known once two bytes are in; 0 before
	left uint64 // payload bytes still to come of the current frame
}

// atBoundary reports whether the stream is between two frames.
func (f *frameCursor) atBoundary() bool { return f.have == 0 && f.left == 0 }

// step consumes p up to the end of the current frame: the bytes consumed, and whether a
// frame ended there.
func (f *frameCursor) step(p []byte) (int, bool) {
	n := 0
	if f.left == 0 {
		for n < len(p) {
			f.hdr[f.have] = p[n]
			f.have++
			n++
			if f.have == 2 {
				f.need = 2
				switch f.hdr[1] & 0x7f {
				case 126:
					f.need += 2
				case 127:
					f.need += 8
				}
				if f.hdr[1]&0x80 != 0 {
					f.need += 4 // masking key
				}
			}
			if f.have >= 2 && f.have == f.need {
				var length uint64
				switch l := f.hdr[1] & 0x7f; l {
				case 126:
					length = uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
				case 127:
					for i := 2; i < 10; i++ {
						length = length<<8 | uint64(f.hdr[i])
					}
				default:
					length = uint64(l)
				}
				f.have, f.need, f.left = 0, 0, length
				if length == 0 {
					return n, true
				}
				break
			}
		}
		if f.left == 0 {
			return n, false // p ended inside a header
		}
	}
	k := uint64(len(p) - n)
	if k > f.left {
		k = f.left
	}
	f.left -= k
	n += int(k)
	return n, f.left == 0
}

// advance consumes all of p.
func (f *frameCursor) advance(p []byte) {
	for len(p) > 0 {
		n, _ := f.step(p)
		p = p[n:]
	}
}

// toBoundary consumes p up to the first frame boundary: the bytes consumed, and whether a
// boundary was reached (at once, if the stream was already between frames).
func (f *frameCursor) toBoundary(p []byte) (int, bool) {
	if f.atBoundary() {
		return 0, true
	}
	total := 0
	for total < len(p) {
		n, ended := f.step(p[total:])
		total += n
		if ended {
			return total, true
		}
	}
	return total, false
}

// String describes the cursor, for test failures.
func (f *frameCursor) String() string {
	return fmt.Sprintf("header %d/%d, payload left %d", f.have, f.need, f.left)
}
