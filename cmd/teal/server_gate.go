package main

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"path/filepath"

	"teal.dev/teal"
	"teal.dev/teal/notify"
	"teal.dev/teal/proxy"
	"teal.dev/teal/sessions"
	"teal.dev/teal/smoke"
)

// verifier returns the smoke tests of cfg, nil when verify: has none.
func verifier(cfg teal.Config, log *slog.Logger) teal.Verifier {
	if len(cfg.Verify.Smoke) == 0 && cfg.Verify.Command == nil {
		return nil
	}
	return smoke.NewVerifier(cfg.Verify, filepath.Dir(cfg.Path), log.With("component", "smoke"))
}

// startNotify posts the controller's events to notify.webhooks until the returned func is
// called; that func gives queued messages a few seconds to go out.
func startNotify(cfg teal.Config, ctl *teal.Controller, log *slog.Logger) (stop func()) {
	if len(cfg.Notify.Webhooks) == 0 {
		return func() {}
	}
	n := notify.NewNotifier(cfg.App, cfg.Notify.Webhooks)
	n.Logger = log.With("component", "notify")
	events, unsubscribe := ctl.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.Run(ctx, events); err != nil {
			n.Logger.Error("notifications", "err", err)
		}
	}()
	return func() {
		unsubscribe()
		cancel()
		<-done
	}
}

// wireTraffic gives the controller the router's shadow traffic and the session store check,
// and sets the router's sticky sessions. It runs before the router serves or routes anything.
func wireTraffic(cfg teal.Config, deps *teal.Deps, r *proxy.Router, token string, log *slog.Logger) {
	// The key is the admin token's: every teal process of the app that shares the token
	// honours the others' cookies, and it survives restarts.
	key := sha256.Sum256([]byte("teal sticky sessions\x00" + token))
	r.Sticky = proxy.Sticky{Enabled: cfg.Release.Sticky, KeepExisting: cfg.Release.StickyExisting, Key: key[:]}
	if cfg.Verify.Shadow.Enabled() {
		deps.Shadow = shadowAdapter{r: r}
	}
	if cfg.Sessions.Redis != "" {
		deps.Sessions = sessions.Store{Checker: &sessions.Checker{URL: cfg.Sessions.Redis, Logger: log.With("component", "sessions")}}
	}
}

// shadowAdapter is the router's shadow traffic as the controller consumes it.
type shadowAdapter struct{ r *proxy.Router }

func (a shadowAdapter) StartShadow(cfg teal.ShadowConfig, to teal.Color) error {
	return a.r.StartShadow(proxy.ShadowConfig{Percent: cfg.Percent, Compare: cfg.Compare, Methods: cfg.ShadowMethods()}, to)
}

func (a shadowAdapter) ShadowReport() teal.ShadowReport { return shadowReport(a.r.ShadowReport()) }
func (a shadowAdapter) StopShadow() teal.ShadowReport   { return shadowReport(a.r.StopShadow()) }

func shadowReport(p proxy.ShadowReport) teal.ShadowReport {
	r := teal.ShadowReport{Mirrored: p.Mirrored, Compared: p.Compared, Mismatches: p.Mismatches, Errors: p.Errors, Skipped: p.Skipped, MismatchRate: p.MismatchRate}
	for _, m := range p.Examples {
		r.Examples = append(r.Examples, teal.ShadowMismatch(m))
	}
	return r
}
