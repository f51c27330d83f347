package kube_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/artifact"
	"teal.dev/teal/internal/testutil"
	"teal.dev/teal/kube"
	"teal.dev/teal/sqlite"
)

// controllerEnv is teal's controller wired to the kube provider as cmd/teal would: the
// Provider is also the Router, its pod-readiness Health replaces HTTP probes.
type controllerEnv struct {
	f     *fixture
	store *sqlite.Store
	arts  *artifact.Store
	cfg   teal.Config
	ctl   *teal.Controller
}

func newControllerEnv(t *testing.T) *controllerEnv {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t, nil)
	dir := t.TempDir()
	e := &controllerEnv{f: f, store: sqlite.NewStore(filepath.Join(dir, "state.db")), arts: artifact.NewStore(filepath.Join(dir, "artifacts"))}
	if err := e.store.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	if err := e.arts.Open(ctx); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		if _, _, err := e.arts.PushImage(ctx, v, "registry.example/shop:"+v+"@"+digestOf(v)); err != nil {
			t.Fatalf("push image %s: %v", v, err)
		}
	}
	e.cfg = teal.DefaultConfig()
	e.cfg.App = "shop"
	e.cfg.Provider = "kubernetes"
	e.cfg.Run.Instances = f.opts.Instances
	e.cfg.Health = f.opts.Health
	e.start(f.p)
	return e
}

// start opens a controller (a teal server starting) with provider p.
func (e *controllerEnv) start(p *kube.Provider) {
	e.f.t.Helper()
	e.ctl = teal.NewController(e.cfg, teal.Deps{Store: e.store, Provider: p, Router: p, Health: p.Health(), Artifacts: e.arts})
	if err := e.ctl.Open(context.Background()); err != nil {
		e.f.t.Fatalf("controller Open: %v", err)
	}
	ctl := e.ctl
	e.f.t.Cleanup(func() { _ = ctl.Close(context.Background()) })
}

// waitRelease waits until release id is done or in phase.
func (e *controllerEnv) waitRelease(id int64, phase teal.Phase) *teal.Release {
	e.f.t.Helper()
	var rel *teal.Release
	testutil.WaitFor(e.f.t, 60*time.Second, "release in "+string(phase), func() bool {
		r, _, err := e.ctl.Release(context.Background(), id)
		if err != nil {
			e.f.t.Fatalf("Release(%d): %v", id, err)
		}
		rel = r
		return r.Done() || r.Phase == phase
	})
	if rel.Outcome != nil && *rel.Outcome != teal.OutcomeReleased {
		e.f.t.Fatalf("release #%d %s: %s: %s", rel.ID, rel.Version, *rel.Outcome, rel.Error)
	}
	return rel
}

// TestController_Kubernetes runs releases through teal's controller on the kube provider: the
// first release, a second one previewed and promoted, and a rollback.
func TestController_Kubernetes(t *testing.T) {
	e := newControllerEnv(t)
	f := e.f
	ctx := context.Background()

	rel, err := e.ctl.Deploy(ctx, teal.DeployRequest{Version: "v1", Actor: "test"})
	if err != nil {
		t.Fatalf("Deploy(v1): %v", err)
	}
	e.waitRelease(rel.ID, teal.PhaseReleased)
	if got := f.selects("shop"); got != rel.Color {
		t.Fatalf("shop selects %q after the first release, want %q", got, rel.Color)
	}
	f.wantEndpoints("shop", string(rel.Color)+"/v1", string(rel.Color)+"/v1")
	live := rel.Color

	rel, err = e.ctl.Deploy(ctx, teal.DeployRequest{Version: "v2", Actor: "test"})
	if err != nil {
		t.Fatalf("Deploy(v2): %v", err)
	}
	e.waitRelease(rel.ID, teal.PhaseAwaitingRelease)
	if got := f.selects("shop-preview"); got != live.Other() {
		t.Fatalf("preview selects %q at the gate, want the idle %q", got, live.Other())
	}
	f.wantEndpoints("shop", string(live)+"/v1", string(live)+"/v1")

	// teal restarts at the gate: the new controller re-adopts both colours, asking the pods'
	// readiness (Health.Probe) instead of dialling kwok's pod IPs, which are not on this
	// machine, and the release waits at the gate again.
	if err := e.ctl.Close(ctx); err != nil {
		t.Fatalf("controller Close: %v", err)
	}
	e.start(f.provider(nil))
	e.waitRelease(rel.ID, teal.PhaseAwaitingRelease)
	if _, err := e.ctl.Promote(ctx, "test"); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	e.waitRelease(rel.ID, teal.PhaseReleased)
	if got := f.selects("shop"); got != live.Other() {
		t.Fatalf("shop selects %q after promotion, want %q", got, live.Other())
	}
	f.wantEndpoints("shop", string(live.Other())+"/v2", string(live.Other())+"/v2")
	var st *teal.Status
	testutil.WaitFor(t, 30*time.Second, string(live)+" drained to standby", func() bool {
		if st, err = e.ctl.Status(ctx); err != nil {
			t.Fatal(err)
		}
		for _, env := range st.Environments {
			if env.Color == live && env.State == teal.EnvDraining {
				return false
			}
		}
		return true
	})
	for _, env := range st.Environments {
		want := teal.EnvStandby // kept at full size for release.keep_old
		if env.Color == live.Other() {
			want = teal.EnvLive
		}
		if env.State != want || len(env.Instances) != 2 {
			t.Fatalf("status: %s is %s with %d instances, want %s with 2", env.Color, env.State, len(env.Instances), want)
		}
		for _, h := range env.Health {
			if !h.Healthy {
				t.Fatalf("status: %s instance %d not healthy: %s", env.Color, h.Index, h.LastError)
			}
		}
	}

	if _, err := e.ctl.Rollback(ctx, teal.RollbackRequest{Actor: "test"}); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	testutil.WaitFor(t, 30*time.Second, "the Service back on "+string(live), func() bool { return f.selects("shop") == live })
	f.wantEndpoints("shop", string(live)+"/v1", string(live)+"/v1")
}
