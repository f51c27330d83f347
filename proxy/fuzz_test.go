package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sync/atomic"
	"testing"

	"teal.dev/teal"
)

// FuzzRouter_SetBackends: an accepted address is a host:port that makes an http URL with that
// very host, so a backend can never redirect requests somewhere its address does not say.
func FuzzRouter_SetBackends(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8080", "[::1]:80", "app-1.internal:65535", ":80",
		"127.0.0.1", "a@b:80", "h/x:1", "h:0", "h:65536", "[fe80::1%eth0]:80", "h:+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		r := NewRouter()
		if err := r.SetBackends(context.Background(), teal.Blue, []string{addr}); err != nil {
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			t.Fatalf("accepted %q, which is not host:port: %v", addr, err)
		}
		u, err := url.Parse("http://" + addr + "/")
		if err != nil {
			t.Fatalf("accepted %q, which makes no URL: %v", addr, err)
		}
		if u.Host != addr || u.User != nil || u.Path != "/" {
			t.Fatalf("accepted %q, which makes URL %#v", addr, u)
		}
		if p := r.table.Load().pools[blue]; p == nil || len(p.backends) != 1 || p.backends[0].addr != addr {
			t.Fatalf("accepted %q but the blue pool is %+v", addr, p)
		}
	})
}

// FuzzRouter_Route: an accepted split sends each colour exactly its share of every 100
// consecutive requests, whatever the starting point of the sequence.
func FuzzRouter_Route(f *testing.F) {
	f.Add(30, 70, uint64(0))
	f.Add(100, 0, uint64(7))
	f.Add(0, 0, uint64(1))
	f.Add(1, 99, uint64(1<<62)-3)
	f.Add(50, 51, uint64(0))
	f.Fuzz(func(t *testing.T, b, g int, start uint64) {
		r := NewRouter()
		routes := teal.Routes{Traffic: teal.Traffic{Blue: b, Green: g}}
		if err := r.Route(context.Background(), routes); err != nil {
			return
		}
		if r.Routes() != routes {
			t.Fatalf("Routes() = %+v, want %+v", r.Routes(), routes)
		}
		tb := newTable(routes, [2]*pool{{}, {}})
		var seq atomic.Uint64
		// Where the sequence wraps, at 2^64 (not a multiple of 100), one window is off by
		// one: that is half a million years of requests at a million a second.
		seq.Store(start % (1 << 62))
		var got [3]int
		for range 100 {
			c, _ := tb.pickLive(&seq)
			got[c]++
		}
		want := [3]int{b, g, 0}
		if b+g == 0 {
			want = [3]int{0, 0, 100}
		}
		if got != want {
			t.Fatalf("split %d/%d from %d: got %v per colour over 100 requests, want %v", b, g, start, got, want)
		}
	})
}

// FuzzServerRequest sends arbitrary bytes as a request stream to net/http's server and to
// Server, both with an echo handler. Server must never answer with a 2xx what net/http
// rejects, nor the other way round, and must not crash. Where the fast path takes a head,
// it must read it as http.ReadRequest does: the same method, target, fields, Host and
// length.
func FuzzServerRequest(f *testing.F) {
	for _, rc := range serverRequests {
		f.Add([]byte(rc.raw))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\nabcdefg"))
	f.Add([]byte("GET /?a=%zz HTTP/1.1\r\nHost: [::1]:80\r\nX: \xff\r\n\r\n"))
	echo := serverHandlers["echo"]
	fr := startFronts(f, echo)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var h reqHead
		if parseHead(&h, raw, nil) == headComplete {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatalf("the fast path took a head http.ReadRequest rejects (%v): %q", err, raw)
			}
			host := h.url.Host // absolute-form wins, as newRequest does it
			if host == "" {
				host = h.host
			}
			got := fmt.Sprintf("%s %s 1.%d host=%q cl=%d", h.method, h.uri, h.minor, host, h.contentLength)
			want := fmt.Sprintf("%s %s %d.%d host=%q cl=%d", req.Method, req.RequestURI, req.ProtoMajor,
				req.ProtoMinor, req.Host, req.ContentLength)
			if got != want {
				t.Fatalf("fast path read %s, net/http %s, from %q", got, want, raw)
			}
			fields := http.Header{}
			for _, fl := range h.fields {
				fields[fl.key] = append(fields[fl.key], fl.value)
			}
			delete(fields, "Host")
			if hp := fields["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" && fields["Cache-Control"] == nil {
				fields["Cache-Control"] = []string{"no-cache"} // newRequest's fixPragmaCacheControl
			}
			req.Header.Del("Host")
			if a, b := fmt.Sprint(fields), fmt.Sprint(req.Header); a != b {
				t.Fatalf("fast path read fields %s, net/http %s, from %q", a, b, raw)
			}
		}
		want := statusClasses(rawStream(t, fr.std, string(raw)))
		got := statusClasses(rawStream(t, fr.own, string(raw)))
		if got != want {
			t.Fatalf("Server answered with statuses %q, net/http with %q, to %q", got, want, raw)
		}
	})
}

// statusClasses returns the classes (2, 4, ...) of the statuses of the responses in stream.
func statusClasses(stream string) string {
	var out []byte
	for _, m := range statusLine.FindAllStringSubmatch(stream, -1) {
		out = append(out, m[1][0])
	}
	return string(out)
}

var statusLine = regexp.MustCompile(`HTTP/1\.[01] ([0-9]{3}) `)
