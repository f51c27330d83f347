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
	status   int  // the final status; 0 until one is written
	hijacked bool // the connection was taken over for a protocol switch (WebSocket)
	done     bool // the proxy returned normally
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
	r.w.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
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
// Protocols; the upgraded connection stays counted in flight until the proxy returns.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(r.w).Hijack()
	if err == nil && !r.hijacked {
		r.hijacked = true
		r.status = http.StatusSwitchingProtocols
		r.cnt.openConns.Add(1)
	}
	return conn, brw, err
}

// Unwrap gives http.ResponseController the underlying writer (deadlines, full duplex).
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }
