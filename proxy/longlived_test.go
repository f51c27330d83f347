package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"teal.dev/teal"
)

// metricsText scrapes r's metrics.
func metricsText(t *testing.T, r *Router) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func wantMetric(t *testing.T, text, line string) {
	t.Helper()
	if !strings.Contains(text, "\n"+line+"\n") {
		t.Fatalf("metrics lack %q; got:\n%s", line, text)
	}
}

// TestRouter_WebSocketLongDrain: a WebSocket opened on blue keeps exchanging messages with
// blue through a switch to green and a drain, and is closed with 1001 on both sides only by
// CloseLongLived (when release.long_drain expires).
func TestRouter_WebSocketLongDrain(t *testing.T) {
	backendClose := make(chan error, 1)
	blueB := newBackend(t, "blue", func(w http.ResponseWriter, req *http.Request) {
		c, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				backendClose <- err
				return
			}
			if err := c.Write(context.Background(), typ, []byte("blue:"+string(msg))); err != nil {
				return
			}
		}
	})
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, blueB.addr())
	setBackends(t, r, teal.Green, echoWS(t, "green").addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	front := serve(t, r.Handler())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ws := wsDial(t, ctx, front.URL)
	ws.SetReadLimit(1 << 20)
	if got := wsEcho(t, ctx, ws, "before"); got != "blue:before" {
		t.Fatalf("echo = %q, want blue:before", got)
	}
	route(t, r, teal.Routes{Traffic: teal.All(teal.Green), Preview: teal.Blue})
	if err := r.Drain(ctx, teal.Blue); err != nil {
		t.Fatalf("Drain(blue) with a WebSocket open = %v, want nil at once", err)
	}
	for i := range 20 {
		msg := fmt.Sprintf("after %d %s", i, strings.Repeat("x", i*4000)) // frame lengths of 7, 16 and 64 bits
		if got := wsEcho(t, ctx, ws, msg); got != "blue:"+msg {
			t.Fatalf("echo %d after the switch = %.40q…, want it from blue", i, got)
		}
	}
	if got := r.LongLived(teal.Blue); got != 1 {
		t.Fatalf("LongLived(blue) = %d, want 1", got)
	}
	if got := r.LongLived(teal.Green); got != 0 {
		t.Fatalf("LongLived(green) = %d, want 0", got)
	}
	wantMetric(t, metricsText(t, r), `teal_long_lived_connections{color="blue"} 1`)

	if n := r.CloseLongLived(teal.Green); n != 0 {
		t.Fatalf("CloseLongLived(green) = %d, want 0", n)
	}
	if got := wsEcho(t, ctx, ws, "still"); got != "blue:still" {
		t.Fatalf("echo after closing green's = %q, want blue:still", got)
	}
	if n := r.CloseLongLived(teal.Blue); n != 1 {
		t.Fatalf("CloseLongLived(blue) = %d, want 1", n)
	}
	_, _, err := ws.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Fatalf("client read after CloseLongLived = %v (status %d), want close status 1001", err, got)
	}
	select {
	case err := <-backendClose:
		if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
			t.Fatalf("backend read after CloseLongLived = %v (status %d), want close status 1001", err, got)
		}
	case <-ctx.Done():
		t.Fatal("backend never saw the connection close")
	}
	waitFor(t, 5*time.Second, "the WebSocket to be counted out", func() bool {
		return r.LongLived(teal.Blue) == 0 && r.Stats(teal.Blue).InFlight == 0
	})
	if got := r.Stats(teal.Blue); got.Requests != 1 || got.Failed != 0 {
		t.Fatalf("Stats(blue) = %+v, want 1 request, none failed", got)
	}
}

// deafWS is a WebSocket backend that accepts the upgrade by hand and then reads and ignores
// everything, close frames included; what it read is sent on got when the connection ends.
func deafWS(t *testing.T, got chan<- []byte) *testBackend {
	return newBackend(t, "deaf", func(w http.ResponseWriter, req *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		_ = brw.Flush()
		b, _ := io.ReadAll(brw)
		got <- b
	})
}

// TestRouter_WebSocketCloseGrace: when neither side answers the close frames, both
// connections are closed after CloseGrace; the backend got a masked close frame with 1001.
func TestRouter_WebSocketCloseGrace(t *testing.T) {
	got := make(chan []byte, 1)
	r := newTestRouter(t)
	r.CloseGrace = 200 * time.Millisecond
	setBackends(t, r, teal.Blue, deafWS(t, got).addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	// A raw client: it reads the close frame and answers nothing.
	_, conn := rawUpgrade(t, front.URL)
	waitFor(t, 5*time.Second, "the upgrade to be long-lived", func() bool { return r.LongLived(teal.Blue) == 1 })
	start := time.Now()
	if n := r.CloseLongLived(teal.Blue); n != 1 {
		t.Fatalf("CloseLongLived(blue) = %d, want 1", n)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(conn, head); err != nil {
		t.Fatalf("read close frame: %v", err)
	}
	if head[0] != 0x88 || head[1]&0x80 != 0 || head[2] != 0x03 || head[3] != 0xE9 {
		t.Fatalf("first frame to the client = % x, want an unmasked close frame with 1001", head)
	}
	reason := make([]byte, int(head[1])-2)
	if _, err := io.ReadFull(conn, reason); err != nil || string(reason) != closeReason {
		t.Fatalf("close reason = %q, %v, want %q", reason, err, closeReason)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the close frame = %v, want EOF", err)
	}
	if d := time.Since(start); d < r.CloseGrace || d > 3*time.Second {
		t.Fatalf("disconnected %v after CloseLongLived, want after CloseGrace (%v)", d, r.CloseGrace)
	}
	b := <-got
	if len(b) < 6 || b[0] != 0x88 || b[1]&0x80 == 0 {
		t.Fatalf("backend got % x, want a masked close frame", b)
	}
	payload := b[6:]
	for i := range payload {
		payload[i] ^= b[2+i%4]
	}
	if payload[0] != 0x03 || payload[1] != 0xE9 || string(payload[2:]) != closeReason {
		t.Fatalf("backend's close frame says % x, want 1001 %q", payload, closeReason)
	}
	waitFor(t, 5*time.Second, "the WebSocket to be counted out", func() bool { return r.LongLived(teal.Blue) == 0 })
}

// rawUpgrade opens a WebSocket by hand and returns the 101 response and the connection.
func rawUpgrade(t *testing.T, url string) (*http.Response, *bufConn) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	if err != nil {
		t.Fatalf("write upgrade: %v", err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade status = %d, want 101", res.StatusCode)
	}
	return res, &bufConn{Conn: conn, r: br}
}

// bufConn is a connection read through the buffer its HTTP response was read with.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// sseBackend is an event-stream backend: it sends each string from events as an event, until
// the request ends, which it reports on done.
func sseBackend(t *testing.T, name string, events <-chan string, done chan<- struct{}) *testBackend {
	return newBackend(t, name, func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-req.Context().Done():
				return
			case e := <-events:
				if _, err := fmt.Fprintf(w, "data: %s %s\n\n", name, e); err != nil {
					return
				}
				if err := rc.Flush(); err != nil {
					return
				}
			}
		}
	})
}

// TestRouter_EventStreamLongDrain: an event stream from blue keeps flowing through a switch
// to green and a drain, and ends cleanly (chunked terminator, no error) at CloseLongLived.
func TestRouter_EventStreamLongDrain(t *testing.T) {
	events := make(chan string)
	done := make(chan struct{}, 1)
	r := newTestRouter(t)
	setBackends(t, r, teal.Blue, sseBackend(t, "blue", events, done).addr())
	setBackends(t, r, teal.Green, newBackend(t, "green", nil).addr())
	route(t, r, teal.Routes{Traffic: teal.All(teal.Blue)})
	front := serve(t, r.Handler())
	client := newClient(t)
	client.Timeout = 0

	res, err := client.Get(front.URL + "/events")
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events = %d %q, want 200 text/event-stream", res.StatusCode, res.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(res.Body)
	next := func(e string) {
		t.Helper()
		events <- e
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read event %q: %v", e, err)
		}
		if want := "data: blue " + e + "\n"; line != want {
			t.Fatalf("event = %q, want %q", line, want)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("read end of event %q: %v", e, err)
		}
	}
	next("1")
	waitFor(t, 5*time.Second, "the stream to be long-lived", func() bool { return r.LongLived(teal.Blue) == 1 })
	if got := r.Stats(teal.Blue); got.LongLived != 1 || got.InFlight != 1 || got.OpenConns != 0 {
		t.Fatalf("Stats(blue) = %+v, want 1 long-lived, 1 in flight, no upgraded", got)
	}
	route(t, r, teal.Routes{Traffic: teal.All(teal.Green)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Drain(ctx, teal.Blue); err != nil {
		t.Fatalf("Drain(blue) with an event stream open = %v, want nil at once", err)
	}
	if _, body := get(t, client, front.URL); body != "green" {
		t.Fatalf("a new request after the switch went to %q, want green", body)
	}
	next("2")
	next("3")

	if n := r.CloseLongLived(teal.Blue); n != 1 {
		t.Fatalf("CloseLongLived(blue) = %d, want 1", n)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream after CloseLongLived ended with %v, want a clean end", err)
	}
	if len(rest) != 0 {
		t.Fatalf("stream after CloseLongLived sent %q, want nothing more", rest)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the backend's stream never ended")
	}
	waitFor(t, 5*time.Second, "the stream to be counted out", func() bool {
		return r.LongLived(teal.Blue) == 0 && r.Stats(teal.Blue).InFlight == 0
	})
	s := r.Sample(teal.Blue)
	var timed int64
	for _, n := range s.Latency {
		timed += n
	}
	if s.Requests != 1 || s.Failed != 0 || timed != 0 {
		t.Fatalf("Sample(blue) = %d requests, %d failed, %d timed; want 1, 0, 0 (a stream is not an answer time)",
			s.Requests, s.Failed, timed)
	}
}

// frame encodes a WebSocket frame with a payload of n bytes, masked or not.
func frame(n int, masked bool) []byte {
	var b bytes.Buffer
	b.WriteByte(0x82)
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch {
	case n < 126:
		b.WriteByte(m | byte(n))
	case n < 1<<16:
		b.WriteByte(m | 126)
		_ = binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(m | 127)
		_ = binary.Write(&b, binary.BigEndian, uint64(n))
	}
	if masked {
		b.Write([]byte{1, 2, 3, 4})
	}
	b.Write(bytes.Repeat([]byte{0x88}, n)) // payload bytes that look like headers
	return b.Bytes()
}

func TestFrameCursor_Boundaries(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 200, 65535, 65536, 70000}
	for _, masked := range []bool{false, true} {
		var stream []byte
		var ends []int
		for _, n := range sizes {
			stream = append(stream, frame(n, masked)...)
			ends = append(ends, len(stream))
		}
		for _, chunk := range []int{1, 2, 3, 7, 100, 4096, len(stream)} {
			t.Run(fmt.Sprintf("masked=%v chunk=%d", masked, chunk), func(t *testing.T) {
				var f frameCursor
				var got []int
				pos := 0
				for pos < len(stream) {
					end := min(pos+chunk, len(stream))
					p := stream[pos:end]
					for len(p) > 0 {
						n, ended := f.step(p)
						p = p[n:]
						pos += n
						if ended {
							got = append(got, pos)
						}
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(ends) {
					t.Fatalf("boundaries at %v, want %v", got, ends)
				}
				if !f.atBoundary() {
					t.Fatalf("cursor after the stream: %v, want at a boundary", &f)
				}
			})
		}
	}
}

// memConn is one side of an upgraded connection that keeps what is written to it.
type memConn struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (m *memConn) Read([]byte) (int, error) { return 0, io.EOF }

func (m *memConn) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buf.Write(p)
}

func (m *memConn) Close() error { return nil }

// TestRelay_CloseBetweenFrames: a close frame requested in the middle of a frame goes out
// where that frame ends, and nothing after it.
func TestRelay_CloseBetweenFrames(t *testing.T) {
	tests := []struct {
		name   string
		before []byte // written before the close is requested
		after  []byte // written after
		want   []byte // what the peer gets
	}{
		{"between frames", frame(3, false), frame(5, false), append(frame(3, false), closeFrame(false)...)},
		{"inside a payload", frame(300, false)[:100], frame(300, false)[100:],
			append(frame(300, false), closeFrame(false)...)},
		{"inside a header", frame(70000, true)[:3], append(frame(70000, true)[3:], frame(1, true)...),
			append(frame(70000, true), closeFrame(false)...)},
		{"frame then more in one write", frame(10, false)[:4], append(frame(10, false)[4:], frame(2, false)...),
			append(frame(10, false), closeFrame(false)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &memConn{}
			s := &relay{rw: m, ws: true}
			if n, err := s.Write(tc.before); err != nil || n != len(tc.before) {
				t.Fatalf("Write before = %d, %v", n, err)
			}
			s.setPending(closeFrame(false))
			s.flushPending()
			if n, err := s.Write(tc.after); err != nil || n != len(tc.after) {
				t.Fatalf("Write after = %d, %v", n, err)
			}
			if n, err := s.Write(frame(1, false)); err != nil || n != 1+2 {
				t.Fatalf("Write after the close = %d, %v, want it dropped and reported written", n, err)
			}
			if !bytes.Equal(m.buf.Bytes(), tc.want) {
				t.Fatalf("peer got %d bytes, want %d: the frames, then the close frame, then nothing", m.buf.Len(), len(tc.want))
			}
		})
	}
}

// FuzzFrameCursor: fed in any chunks, the cursor reaches the same state as fed whole, and
// toBoundary stops exactly where step reports a frame's end.
func FuzzFrameCursor(f *testing.F) {
	f.Add(frame(3, false), uint8(1))
	f.Add(append(frame(126, true), frame(0, false)...), uint8(5))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 1}, uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		size := int(chunk)%16 + 1
		var whole, parts, bounded frameCursor
		whole.advance(data)
		for i := 0; i < len(data); i += size {
			parts.advance(data[i:min(i+size, len(data))])
		}
		if whole != parts {
			t.Fatalf("fed whole: %v; in chunks of %d: %v", &whole, size, &parts)
		}
		p := data
		for len(p) > 0 {
			n, ok := bounded.toBoundary(p)
			if n > len(p) || (n == 0 && !ok) {
				t.Fatalf("toBoundary consumed %d of %d (reached %v)", n, len(p), ok)
			}
			if ok && !bounded.atBoundary() {
				t.Fatalf("toBoundary says a boundary, cursor is %v", &bounded)
			}
			if n == 0 { // at a boundary already: step over one header byte to move on
				k, _ := bounded.step(p)
				n = k
			}
			p = p[n:]
		}
		if whole != bounded {
			t.Fatalf("fed whole: %v; to boundaries: %v", &whole, &bounded)
		}
	})
}
