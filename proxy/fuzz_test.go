package proxy

import (
	"context"
	"net"
	"net/url"
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
