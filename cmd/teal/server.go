package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"teal.dev/teal"
	"teal.dev/teal/api"
	"teal.dev/teal/artifact"
	"teal.dev/teal/dashboard"
	"teal.dev/teal/health"
	"teal.dev/teal/postgres"
	"teal.dev/teal/proxy"
	"teal.dev/teal/sqlite"
)

func newServerCmd(g *globals) *cobra.Command {
	var stopInstances, noTakeover bool
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the controller, router and API in the foreground",
		Long: `Runs everything teal needs for one app (controller, router, API), in the foreground, until SIGTERM or SIGINT.
Instances keep running when the server stops and are re-adopted at its next start,
unless --stop-instances is given.

Started while a server of the same data_dir runs, it takes over that server's listening
sockets, and the old one drains and exits: no connection is refused. SIGHUP makes the
running server start its binary again (as it is on disk now) to take over the same way.
See docs/restarts.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := teal.LoadConfig(g.configPath)
			if err != nil {
				return err
			}
			s := &server{Config: cfg, Logger: g.logger(cmd.ErrOrStderr()), StopInstances: stopInstances, Out: cmd.OutOrStdout()}
			return runServer(cmd.Context(), s, noTakeover)
		},
	}
	cmd.Flags().BoolVar(&stopInstances, "stop-instances", false, "stop every instance when the server stops")
	cmd.Flags().BoolVar(&noTakeover, "no-takeover", false, "fail when a server of the same data_dir runs, instead of taking over from it")
	return cmd
}

// server is one running teal server: every part wired together. It is also what the demo runs
// in-process.
type server struct {
	Config        teal.Config
	Logger        *slog.Logger
	StopInstances bool
	Out           io.Writer // where the start banner goes; nil = nowhere

	ctl   *teal.Controller
	store *sqlite.Store
	// logs or logStreams is where instance output comes from: files of local processes and
	// launch hooks, or pods' logs from the Kubernetes API.
	logs       api.LogSource
	logStreams api.LogStreamer
	monitor    *health.Monitor // nil on Kubernetes: pod readiness is the health
	router     *proxy.Router
	db         *postgres.Database // nil with database.mode: none
	closeDNS   func() error       // nil without dns:
	stopRouter func()             // ends the HAProxy reload watch; nil without router: haproxy
	// stopNotify ends the webhook notifications; nil before Start.
	stopNotify func()
	// endpoints are the colours' own addresses (dns.targets), served by the router.
	endpoints []endpoint
	https     []httpServer
	token     string
	// handover: listeners by name, inherited sockets, draining (server_handoff.go).
	handover

	// Addresses actually bound (ports may be 0 in the config).
	ListenAddr, PreviewAddr, AdminAddr string
}

// Start opens the state, re-adopts instances, binds the listeners and serves. The listening
// sockets are bound before the controller resumes, so that connections arriving while the
// routing table is restored wait in the kernel's backlog instead of being refused.
func (s *server) Start(ctx context.Context) (err error) {
	cfg := s.Config
	log := s.Logger.With("app", cfg.App)
	defer func() {
		if err != nil {
			s.closeParts(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data_dir: %w", err)
	}
	if s.token, err = ensureToken(cfg.AdminTokenFile); err != nil {
		return err
	}

	// Bind first: a restart should queue connections, not refuse them. With router: none
	// (Kubernetes: the Service is the router) teal serves no traffic, only its API.
	var lnLive net.Listener
	var lns []net.Listener
	if cfg.Router != "none" {
		if lnLive, err = s.listen("live", cfg.Listen); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
		lns = append(lns, lnLive)
		s.ListenAddr = lnLive.Addr().String()
	}
	defer func() {
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
		}
	}()
	var lnPreview net.Listener
	if cfg.Preview != "" && cfg.Preview != "none" {
		if lnPreview, err = s.listen("preview", cfg.Preview); err != nil {
			return fmt.Errorf("listen preview %s: %w", cfg.Preview, err)
		}
		lns = append(lns, lnPreview)
		s.PreviewAddr = lnPreview.Addr().String()
	}
	lnAdmin, err := s.listen("admin", cfg.Admin)
	if err != nil {
		return fmt.Errorf("listen admin %s: %w", cfg.Admin, err)
	}
	lns = append(lns, lnAdmin)
	s.AdminAddr = lnAdmin.Addr().String()
	// Taking over: every inherited listener is held; the old server may stop its state.
	if err := s.stopPrevious(ctx); err != nil {
		return err
	}

	s.store = sqlite.NewStore(filepath.Join(cfg.DataDir, "teal.db"))
	s.store.Logger = log
	if err := s.store.Open(ctx); err != nil {
		return fmt.Errorf("open state store: %w", err)
	}
	arts := artifact.NewStore(filepath.Join(cfg.DataDir, "artifacts"))
	arts.Logger = log
	if err := arts.Open(ctx); err != nil {
		return fmt.Errorf("open artifact store: %w", err)
	}
	s.router = proxy.NewRouter()
	s.router.Logger = log
	deps := teal.Deps{Store: s.store, Artifacts: arts}
	if cfg.Provider == "kubernetes" {
		// The cluster runs, routes and health-checks: the provider is all three.
		kp, err := newKubeProvider(cfg, log)
		if err != nil {
			return err
		}
		if err := rebuildFromCluster(ctx, kp, s.store, arts, log); err != nil {
			return err
		}
		deps.Provider, deps.Router, deps.Health = kp, kp, kp.Health()
		s.logStreams = kp
	} else {
		p := newProvider(cfg, log)
		s.monitor = health.NewMonitor(cfg.Health)
		s.monitor.Logger = log
		router, stop, err := newFleetRouter(ctx, cfg, s.router, log)
		if err != nil {
			return err
		}
		s.stopRouter = stop
		deps.Provider, deps.Router, deps.Health = p, router, s.monitor
		s.logs = p
	}
	if cfg.Database.Mode != "" && cfg.Database.Mode != "none" {
		s.db = postgres.NewDatabase(cfg.App, cfg.Database, filepath.Join(cfg.DataDir, "secrets"))
		s.db.Logger = log.With("component", "database")
		if err := s.db.Open(ctx); err != nil {
			return fmt.Errorf("open database step: %w", err)
		}
		deps.Database = s.db
	}
	if cfg.DNS.Provider != "" {
		sys, err := s.store.System(ctx)
		if err != nil {
			return err
		}
		dns, closeDNS, err := openDNS(ctx, cfg, s.ListenAddr, sys.DNS, log.With("component", "dns"))
		if err != nil {
			return err
		}
		s.closeDNS = closeDNS
		deps.DNS = dns
		eps, err := listenEndpoints(cfg, s.ListenAddr, s.listen)
		if err != nil {
			return err
		}
		for col, ln := range eps {
			lns = append(lns, ln)
			s.endpoints = append(s.endpoints, endpoint{ln: ln, h: s.router.ColorHandler(col)})
		}
	}
	deps.Verifier = verifier(cfg, log)
	wireTraffic(cfg, &deps, s.router, s.token, log)
	s.ctl = teal.NewController(cfg, deps)
	s.ctl.Logger = log
	s.ctl.StopInstances = s.StopInstances

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.router.Collectors()...)
	reg.MustRegister(s.ctl.Metrics().Collectors()...)

	apiSrv := api.NewServer(s.ctl, arts, s.logs, s.token)
	apiSrv.LogStreams = s.logStreams
	apiSrv.Logger = log
	apiSrv.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	apiSrv.MetricsToken = cfg.MetricsToken
	if cfg.TokensFile != "" {
		if apiSrv.Tokens, err = api.LoadTokens(cfg.TokensFile); err != nil {
			return err
		}
	}
	dash := dashboard.New(s.ctl, apiSrv)
	dash.Logger = log.With("component", "dashboard")
	apiSrv.Dashboard = dash

	// Subscribed before Open, so that a resumed release's first events are announced too.
	s.stopNotify = startNotify(cfg, s.ctl, log)
	if err := s.ctl.Open(ctx); err != nil {
		return fmt.Errorf("start controller: %w", err)
	}
	if lnLive != nil {
		s.serve(lnLive, s.router.Handler(), true, log)
	}
	if lnPreview != nil {
		s.serve(lnPreview, s.router.PreviewHandler(), true, log)
	}
	for _, ep := range s.endpoints {
		s.serve(ep.ln, ep.h, true, log)
	}
	admin := s.serve(lnAdmin, apiSrv.Handler(), false, log)
	// Event streams and followed logs never end by themselves: end them at shutdown, or
	// Shutdown waits for its whole deadline.
	admin.RegisterOnShutdown(func() { _ = apiSrv.Close() })

	if s.Out != nil {
		if s.ListenAddr != "" {
			fmt.Fprintf(s.Out, "teal: serving %s — traffic http://%s", cfg.App, s.ListenAddr)
		} else {
			fmt.Fprintf(s.Out, "teal: serving %s — traffic through Service %s/%s", cfg.App, cfg.Kubernetes.Namespace, cfg.Kubernetes.Service)
		}
		if s.PreviewAddr != "" {
			fmt.Fprintf(s.Out, ", preview http://%s", s.PreviewAddr)
		}
		fmt.Fprintf(s.Out, ", admin http://%s\n", s.AdminAddr)
	}
	return nil
}

// httpServer is what serves one listener: the router's own HTTP/1.1 server for traffic
// (proxy.Server), net/http's for the API.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
	RegisterOnShutdown(func())
}

// serve serves h on ln: with the router's own server (proxy.Server, fewer system calls per
// request) when router is set, else with net/http's.
func (s *server) serve(ln net.Listener, h http.Handler, router bool, log *slog.Logger) httpServer {
	h, connState := s.track(h)
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	var srv httpServer
	if router {
		srv = &proxy.Server{Handler: h, ConnState: connState, ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout: 2 * time.Minute, ErrorLog: errorLog}
	} else {
		srv = &http.Server{Handler: h, ConnState: connState, ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout: 2 * time.Minute, ErrorLog: errorLog}
	}
	s.https = append(s.https, srv)
	s.served = append(s.served, servedListener{ln: ln, srv: srv})
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !s.drained(err) {
			log.Error("serve", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return srv
}

// Close stops serving (letting requests in flight finish within ctx), then stops the controller;
// instances keep running unless StopInstances.
func (s *server) Close(ctx context.Context) error {
	var first error
	for _, srv := range s.https {
		if err := srv.Shutdown(ctx); err != nil && first == nil {
			first = fmt.Errorf("stop serving: %w", err)
		}
	}
	if err := s.closeParts(ctx); err != nil && first == nil {
		first = err
	}
	return first
}

func (s *server) closeParts(ctx context.Context) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if s.ctl != nil {
		s.ctl.StopInstances = s.StopInstances // the demo decides at the end
		keep(s.ctl.Close(ctx))
	}
	if s.stopNotify != nil {
		s.stopNotify() // after the controller: its last events go out too
	}
	if s.monitor != nil {
		keep(s.monitor.Close())
	}
	if s.stopRouter != nil {
		s.stopRouter()
	}
	if s.db != nil {
		keep(s.db.Close())
	}
	if s.closeDNS != nil {
		keep(s.closeDNS())
	}
	if s.store != nil {
		keep(s.store.Close())
	}
	return first
}

// endpoint is a colour's own listener and the router's handler for it.
type endpoint struct {
	ln net.Listener
	h  http.Handler
}

// ensureToken returns the admin token, creating the file (0600, random) when it does not exist.
func ensureToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("admin_token_file %s is empty: delete it and teal creates a new token", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read admin_token_file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create admin_token_file directory: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ensureToken(path) // another process won the race
	}
	if err != nil {
		return "", fmt.Errorf("create admin_token_file: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("write admin_token_file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("write admin_token_file: %w", err)
	}
	return tok, f.Close()
}
