// Command benchrouter runs the pieces of the router benchmark (bench/router.sh): an upstream
// that answers every request with a small body, teal's proxy.Router in front of it with blue
// live, and, as a peer to compare with, a plain httputil.ReverseProxy in front of it. Each
// role can run in its own process, so that the proxy under test and the upstream it forwards
// to are scheduled like the real thing.
//
//	benchrouter -role upstream -upstream 127.0.0.1:18081
//	benchrouter -role router -upstream 127.0.0.1:18081 -listen 127.0.0.1:18080
//	benchrouter -role router -transport http ...     # teal over http.Transport, the old path
//	benchrouter -role router -server nethttp ...     # teal behind net/http's server
//	benchrouter -role httputil -upstream 127.0.0.1:18081 -listen 127.0.0.1:18083
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrouter:", err)
		os.Exit(1)
	}
}

// run serves the chosen roles until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchrouter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "both", "what to run: upstream, router, httputil, or both (upstream and router) in one process")
	upstream := fs.String("upstream", "127.0.0.1:18081", "the upstream's address (served by role upstream, forwarded to by the proxies)")
	listen := fs.String("listen", "127.0.0.1:18080", "the address the proxy listens on (roles router and httputil)")
	transport := fs.String("transport", "pool", "role router: teal's own connection pool (pool), or httputil.ReverseProxy over http.Transport (http)")
	front := fs.String("server", "own", "role router: the router's own HTTP/1.1 server in front (own), or net/http's (nethttp)")
	bodySize := fs.Int("body", 13, "size in bytes of the upstream's answer")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to `file` until it stops")
	traceFile := fs.String("trace", "", "write a runtime trace (go tool trace) of this process to `file` until it stops")
	closeCheck := fs.Duration("closecheck", proxy.DefaultCloseCheckDelay, "role router, own server: its CloseCheckDelay (negative: never watch)")
	readHeader := fs.Duration("readheader", 10*time.Second, "the proxies' ReadHeaderTimeout (0: none)")
	idle := fs.Duration("idle", 2*time.Minute, "the proxies' IdleTimeout (0: ReadHeaderTimeout's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *role != "upstream" && *role != "router" && *role != "httputil" && *role != "both" {
		return fmt.Errorf("role %q: want upstream, router, httputil or both", *role)
	}
	if *transport != "pool" && *transport != "http" {
		return fmt.Errorf("transport %q: want pool or http", *transport)
	}
	if *front != "own" && *front != "nethttp" {
		return fmt.Errorf("server %q: want own or nethttp", *front)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		defer trace.Stop()
	}

	var servers []server
	var lns []net.Listener
	if *role == "upstream" || *role == "both" {
		body := []byte(strings.Repeat("hello, world\n", *bodySize/13+1)[:max(*bodySize, 0)])
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(body)
		})
		ln, err := net.Listen("tcp", *upstream)
		if err != nil {
			return fmt.Errorf("listen for the upstream: %w", err)
		}
		servers, lns = append(servers, newServer(h)), append(lns, ln)
	}
	if *role == "httputil" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("listen for httputil: %w", err)
		}
		servers, lns = append(servers, newServer(plainProxy(*upstream))), append(lns, ln)
	}
	if *role == "router" || *role == "both" {
		r := proxy.NewRouter()
		r.Logger = log
		if *transport == "http" {
			r.Transport = proxy.NewTransport().HTTP
		}
		defer func() { _ = r.Close() }()
		if err := r.SetBackends(ctx, teal.Blue, []string{*upstream}); err != nil {
			return err
		}
		if err := r.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)}); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("listen for the router: %w", err)
		}
		if *front == "own" {
			servers = append(servers, &proxy.Server{Handler: r.Handler(), ReadHeaderTimeout: *readHeader,
				IdleTimeout: *idle, CloseCheckDelay: *closeCheck})
		} else {
			servers = append(servers, newServer(r.Handler()))
		}
		lns = append(lns, ln)
	}

	errc := make(chan error, len(servers))
	for i, s := range servers {
		log.Info("serving", "addr", lns[i].Addr().String())
		go func() { errc <- s.Serve(lns[i]) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var first error
	for _, s := range servers {
		if err := s.Shutdown(shutdown); err != nil && first == nil {
			first = fmt.Errorf("shut down: %w", err)
		}
	}
	return first
}

// server is what serves a listener: an http.Server or the router's own proxy.Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}

// plainProxy is the peer teal is compared with: httputil.ReverseProxy as its documentation
// sets it up, over http.DefaultTransport's settings with the idle pool per host raised to
// teal's, doing what teal does to a request (the client's Host kept, X-Forwarded-* set).
func plainProxy(upstream string) http.Handler {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = proxy.DefaultMaxIdleConnsPerHost
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = upstream
			pr.SetXForwarded()
		},
		Transport: tr,
	}
}
