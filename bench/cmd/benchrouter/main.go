// Command benchrouter runs the pieces of the router benchmark (bench/router.sh): an upstream
// that answers every request with a small body, and teal's proxy.Router in front of it with
// blue live. Each role can run in its own process, so that the router under test and the
// upstream it forwards to are scheduled like the real thing.
//
//	benchrouter -role upstream -upstream 127.0.0.1:18081
//	benchrouter -role router -upstream 127.0.0.1:18081 -listen 127.0.0.1:18080
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
	"os"
	"os/signal"
	"runtime/pprof"
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
	role := fs.String("role", "both", "what to run: upstream, router, or both in one process")
	upstream := fs.String("upstream", "127.0.0.1:18081", "the upstream's address (served by role upstream, forwarded to by role router)")
	listen := fs.String("listen", "127.0.0.1:18080", "the address teal's router listens on (role router)")
	bodySize := fs.Int("body", 13, "size in bytes of the upstream's answer")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to `file` until it stops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *role != "upstream" && *role != "router" && *role != "both" {
		return fmt.Errorf("role %q: want upstream, router or both", *role)
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

	var servers []*http.Server
	var lns []net.Listener
	if *role != "router" {
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
	if *role != "upstream" {
		r := proxy.NewRouter()
		r.Logger = log
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
		servers, lns = append(servers, newServer(r.Handler())), append(lns, ln)
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

func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}
