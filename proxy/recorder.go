package proxy

import (
	"bufio"
	"net"
	"net/http"
)

// recorder is the ResponseWriter the router hands ReverseProxy: it passes everything through
// and remembers the status for the counters. Recorders are pooled, one per request in flight.
type recorder struct {
	w        http.ResponseWriter
	req      *http.Request
	cnt      *counters
	listener int
	color    int
	status   int      // the final status; 0 until one is written
	hijacked bool     // the connection was taken over for a protocol switch (WebSocket)
	done     bool     // the proxy returned normally
	up       *upgrade // the upgrade being tracked, for an upgrade request; nil otherwise
	mirror   *mirror  // the shadow mirror of this request, when it was chosen; nil otherwise
}

func (r *recorder) reset(w http.ResponseWriter, cnt *counters, listener, color int, req *http.Request) {
	*r = recorder{w: w, req: req, cnt: cnt, listener: listener, color: color}
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	// 1xx other than 101 are interim (100 Continue, 103 Early Hints): the final status is
	// still to come.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	if code >= 200 {
		// A proxy passes the backend's fields on and adds no Content-Type of its own:
		// without this net/http would sniff one from the first bytes of the body, and
		// whether it does would depend on whether the head went out before them.
		h := r.w.Header()
		if _, ok := h["Content-Type"]; !ok {
			h["Content-Type"] = nil
		}
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.mirror != nil {
		r.mirror.capture(p)
	}
	return r.w.Write(p)
}

// FlushError lets http.ResponseController flush without walking Unwrap.
func (r *recorder) FlushError() error {
	switch f := r.w.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.NewResponseController(r.w).Flush()
}

// Hijack is how ReverseProxy takes over the client connection after a 101 Switching
// Protocols. From then on the request is a long-lived connection, not a request in flight
// that Drain waits for, until the proxy returns. When the upgrade is tracked, the connection
// handed to ReverseProxy is wrapped, so that CloseLongLived can close it politely.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(r.w).Hijack()
	if err == nil && !r.hijacked {
		r.hijacked = true
		r.status = http.StatusSwitchingProtocols
		r.cnt.longLived.Add(1)
		r.cnt.openConns.Add(1)
		r.cnt.active.Add(-1)
		if u := r.up; u != nil && u.back != nil {
			u.front = &relay{rw: conn, ws: u.ws}
			conn = &frontConn{Conn: conn, r: u.front}
			u.set.add(u)
		} else {
			r.up = nil // nothing to close politely: not in the set
		}
	}
	return conn, brw, err
}

// Unwrap gives http.ResponseController the underlying writer (deadlines, full duplex).
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }
