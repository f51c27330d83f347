package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"teal.dev/teal"
	"teal.dev/teal/artifact"
	"teal.dev/teal/kube"
	"teal.dev/teal/sqlite"
)

// newKubeProvider returns provider: kubernetes, from the kubernetes: section and the run: and
// health: keys that mean something on Kubernetes.
func newKubeProvider(cfg teal.Config, log *slog.Logger) (*kube.Provider, error) {
	p, err := kube.New(kube.Options{
		App: cfg.App, Kube: cfg.Kubernetes, Instances: cfg.Run.Instances, Env: cfg.Run.Env,
		StopTimeout: cfg.Run.StopTimeout, Health: cfg.Health, Log: log.With("component", "kubernetes"),
	})
	if err != nil {
		return nil, fmt.Errorf("provider kubernetes: %w", err)
	}
	return p, nil
}

// rebuildFromCluster gives a teal without state (a new data_dir, a pod without a volume) the
// state the cluster holds: which colour is live, what each colour runs, and each version's
// pinned image as its artifact. A teal with state keeps it; the controller re-adopts from it.
func rebuildFromCluster(ctx context.Context, p *kube.Provider, store *sqlite.Store, arts *artifact.Store, log *slog.Logger) error {
	saved, err := store.System(ctx)
	if err != nil {
		return err
	}
	for _, c := range teal.Colors {
		if saved.Env(c).Version != "" {
			return nil
		}
	}
	sys, err := p.System(ctx)
	if err != nil {
		return fmt.Errorf("read the app's state from the cluster: %w", err)
	}
	found := false
	for _, c := range teal.Colors {
		env := sys.Env(c)
		if env.Version == "" {
			continue
		}
		found = true
		ref, err := p.ImageOf(ctx, c)
		if err != nil {
			return err
		}
		if _, err := arts.Get(ctx, env.Version); errors.Is(err, teal.ErrNotFound) && ref != "" {
			if _, _, err := arts.PushImage(ctx, env.Version, ref); err != nil {
				return fmt.Errorf("register %s's image %s as the artifact of %s: %w", c, ref, env.Version, err)
			}
		}
	}
	if !found {
		return nil
	}
	if err := store.SaveSystem(ctx, sys); err != nil {
		return err
	}
	log.Info("state rebuilt from the cluster", "live", sys.Live, "blue", sys.Env(teal.Blue).Version, "green", sys.Env(teal.Green).Version)
	return nil
}
