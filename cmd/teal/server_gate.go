package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"teal.dev/teal"
	"teal.dev/teal/notify"
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
