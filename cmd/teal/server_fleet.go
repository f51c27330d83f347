package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
	"teal.dev/teal/haproxy"
	"teal.dev/teal/hook"
	"teal.dev/teal/local"
	"teal.dev/teal/proxy"
)

// instanceProvider is a provider whose instances' output the API can show.
type instanceProvider interface {
	teal.Provider
	api.LogSource
}

// newProvider returns the provider of cfg: local processes, or launch hooks (provider: exec).
func newProvider(cfg teal.Config, log *slog.Logger) instanceProvider {
	if cfg.Provider == "exec" {
		p := hook.NewProvider(cfg.App, cfg.Run, filepath.Dir(cfg.Path), filepath.Join(cfg.DataDir, "logs"))
		p.Logger = log.With("component", "exec")
		return p
	}
	p := local.NewProvider(cfg.App, cfg.DataDir, cfg.Run)
	p.Logger = log
	return p
}

// reloadWatch is how often teal asks HAProxy whether it was reloaded (and so forgot teal's
// servers): a reload makes HAProxy answer 503 until then.
const reloadWatch = time.Second

// newFleetRouter returns the router the controller drives: the built-in one, or a running
// HAProxy (router: haproxy) with the built-in router still serving the preview, watched for
// reloads. stop ends what it started; it is never nil.
func newFleetRouter(ctx context.Context, cfg teal.Config, builtin *proxy.Router, log *slog.Logger) (_ teal.Router, stop func(), _ error) {
	if cfg.Router != "haproxy" {
		return builtin, func() {}, nil
	}
	h := haproxy.NewRouter(cfg.HAProxy.Socket, cfg.HAProxy.Backend)
	h.Logger = log.With("component", "haproxy")
	h.MinSlots = cfg.Run.Instances
	if err := h.Open(ctx); err != nil {
		return nil, nil, fmt.Errorf("router haproxy: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Watch(wctx, reloadWatch)
	}()
	return &teeRouter{h: h, b: builtin}, func() { cancel(); <-done }, nil
}

// teeRouter moves production traffic in HAProxy, and keeps the built-in router's table in step
// for the preview listener (which always serves the idle colour). Traffic counts for analysis
// and status come from HAProxy, which carries the production traffic.
type teeRouter struct {
	h *haproxy.Router
	b *proxy.Router
}

var _ teal.Router = (*teeRouter)(nil)

func (t *teeRouter) SetBackends(ctx context.Context, c teal.Color, addrs []string) error {
	if err := t.h.SetBackends(ctx, c, addrs); err != nil {
		return err
	}
	return t.b.SetBackends(ctx, c, addrs)
}

func (t *teeRouter) Route(ctx context.Context, r teal.Routes) error {
	if err := t.h.Route(ctx, r); err != nil {
		return err
	}
	return t.b.Route(ctx, r)
}

func (t *teeRouter) Drain(ctx context.Context, c teal.Color) error { return t.h.Drain(ctx, c) }

// Counts and Sample are HAProxy's per-colour counts (analysis and teal status).
func (t *teeRouter) Counts(c teal.Color) (requests, failed, open int64) { return t.h.Counts(c) }
func (t *teeRouter) Sample(c teal.Color) teal.TrafficSample             { return t.h.Sample(c) }

// Maintenance and pauses act on the built-in router only; behind HAProxy they would not
// reach production traffic, so they are not offered.
