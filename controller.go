package teal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"teal.dev/teal/window"
)

// Deps are the parts a Controller drives. All are required but Database, which is nil when
// the database step is off (database.mode: none).
type Deps struct {
	Store     Store
	Provider  Provider
	Router    Router
	Health    Health
	Artifacts Artifacts
	Database  Database
	DNS       DNS // nil when dns: is not configured
	// Verifier runs the smoke checks in the verifying phase; nil when verify: has none.
	Verifier Verifier
	// Shadow mirrors live traffic to the new colour (verify.shadow); nil without it.
	Shadow Shadower
	// Sessions is the shared session store checked before the gate; nil without sessions:.
	Sessions SessionStore
	// Now tells the time for release windows; nil is time.Now.
	Now func() time.Time
}

// holder is a router that can hold new requests while writes move between databases.
type holder interface {
	Hold() (release func())
	DrainRequests(ctx context.Context, c Color) error
}

// Controller moves releases through their lifecycle (spec/README.md): provisioning,
// verifying, awaiting-release, switching, released. It persists every step before and after it
// acts, so that a server killed at any point resumes the release, or returns it to a safe state,
// at its next start.
//
// Invariant: the router is only ever pointed at a colour whose instances passed their health
// checks, and the old colour keeps running until traffic has left it.
type Controller struct {
	// Logger receives the controller's log; nil discards.
	Logger *slog.Logger
	// StopInstances stops every instance at Close instead of leaving them running for the
	// next server process to adopt.
	StopInstances bool

	cfg     Config
	d       Deps
	metrics *Metrics

	mu     sync.Mutex
	sys    *System
	cur    *Release    // the release in progress, nil when none
	run    *releaseRun // its goroutine
	subs   map[chan *Event]struct{}
	retire *time.Timer // terminates the standby colour
	closed bool

	stopHousekeeping context.CancelFunc // ends the database housekeeping goroutine
	lag              map[Color]DBLag    // latest replication lag measured per colour
	window           *window.Window     // release.window; nil allows any time
	judgement        *Judgement         // the latest post-switch analysis
	shadowRep        *ShadowReport      // the latest shadow traffic report

	wg sync.WaitGroup
}

// trafficCounter is a router that counts what it forwarded to each colour.
type trafficCounter interface {
	// Counts returns the production requests answered from c, those that failed (5xx or
	// upstream error), and the requests and upgraded connections open now.
	Counts(c Color) (requests, failed, open int64)
}

// releaseRun is the goroutine driving the release in progress.
type releaseRun struct {
	cancel   context.CancelCauseFunc
	promote  chan promotion       // buffered 1
	rollback chan rollbackRequest // during post_check; buffered 1
	done     chan struct{}
	// checking is set while the post-switch analysis or the weighted steps run: promote
	// then moves on and rollback returns to the old colour. Guarded by Controller.mu.
	checking bool
	// stepping is set during weighted steps; paused holds the weight (by whom).
	stepping bool
	paused   string
	// full is set when the gate was opened with teal promote --full: no weighted steps.
	full bool
}

// promotion is a decision to go on: at the gate, at a weighted step (Full: skip the remaining
// steps), or at the post-switch analysis.
type promotion struct {
	actor string
	full  bool
}

// errShutdown is the cancel cause when the server stops: the release is left as persisted, to
// be resumed at the next start.
var errShutdown = errors.New("server shutting down")

// errAborted is the cancel cause of teal abort.
var errAborted = errors.New("aborted")

// NewController returns a controller for cfg. Call Open before anything else.
func NewController(cfg Config, d Deps) *Controller {
	return &Controller{
		cfg:     cfg,
		d:       d,
		metrics: NewMetrics(),
		subs:    make(map[chan *Event]struct{}),
	}
}

// Metrics returns the controller's Prometheus metrics.
func (c *Controller) Metrics() *Metrics { return c.metrics }

func (c *Controller) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Open loads the persisted state, re-adopts running instances, restores the routing table and
// resumes the release in progress.
func (c *Controller) Open(ctx context.Context) error {
	w, err := parseWindow(c.cfg.Release.Window)
	if err != nil {
		return err
	}
	c.window = w
	sys, err := c.d.Store.System(ctx)
	if err != nil {
		return fmt.Errorf("load system state: %w", err)
	}
	c.sys = sys
	rels, err := c.d.Store.Releases(ctx, 1)
	if err != nil {
		return fmt.Errorf("load releases: %w", err)
	}
	var cur *Release
	if len(rels) == 1 && !rels[0].Done() {
		cur = rels[0]
	}

	// Re-adopt every colour that has instances. The live colour first: it carries traffic.
	order := []Color{Blue, Green}
	if sys.Live == Green {
		order = []Color{Green, Blue}
	}
	for _, col := range order {
		env := sys.Env(col)
		if len(env.Instances) == 0 || env.State == EnvTerminated || env.State == EnvEmpty {
			continue
		}
		if err := c.adopt(ctx, env); err != nil {
			if col == sys.Live {
				return fmt.Errorf("re-adopt live colour %s: %w", col, err)
			}
			c.log().Warn("re-adopt idle colour", "color", col, "err", err)
			c.event(ctx, cur, EventError, ActorSystem, fmt.Sprintf("re-adopt %s: %v", col, err), nil)
		}
	}
	if err := c.reconcileDatabases(ctx, cur); err != nil {
		return err
	}
	if err := c.d.Router.Route(ctx, c.routes()); err != nil {
		return fmt.Errorf("restore routes: %w", err)
	}
	if err := c.syncDNS(ctx); err != nil {
		c.log().Error("dns at start", "err", err)
		c.event(ctx, cur, EventError, ActorSystem, err.Error(), nil)
	}
	c.metrics.setTraffic(sys.Traffic)
	c.scheduleRetire()
	if c.d.Database != nil {
		if cur == nil {
			c.reportLeftovers(ctx) // a release in progress has its own objects in flight
		}
		hctx, cancel := context.WithCancel(context.Background())
		c.stopHousekeeping = cancel
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.housekeep(hctx)
		}()
	}

	if cur != nil {
		c.log().Info("resuming release", "release", cur.ID, "version", cur.Version, "phase", cur.Phase)
		c.event(ctx, cur, EventAction, ActorSystem, fmt.Sprintf("server restarted: resuming release #%d at %s", cur.ID, cur.Phase), nil)
		c.mu.Lock()
		c.start(cur)
		c.mu.Unlock()
	}
	return nil
}

// adopt takes over the recorded instances of env and starts watching their health. Each
// instance gets one immediate direct probe, so that traffic (and the preview) resume as soon as
// the router is up instead of after health.healthy_after intervals: an instance that was healthy
// before the restart still passes a check before it takes traffic again.
func (c *Controller) adopt(ctx context.Context, env *Environment) error {
	art, err := c.d.Artifacts.Get(ctx, env.Version)
	if err != nil {
		return fmt.Errorf("artifact of %s: %w", env.Version, err)
	}
	req, err := c.launchRequest(ctx, env.Color, art)
	if err != nil {
		return err
	}
	insts, err := c.d.Provider.Adopt(ctx, req, env.Instances)
	if err != nil {
		return err
	}
	env.Instances = insts
	if err := c.saveSystem(ctx); err != nil {
		return err
	}
	var ok []string
	for _, in := range insts {
		if c.probeInstance(ctx, in) == nil {
			ok = append(ok, in.Addr)
		}
	}
	if err := c.d.Router.SetBackends(ctx, env.Color, ok); err != nil {
		return err
	}
	c.watch(env.Color, insts)
	return nil
}

// instanceProber is a Health that checks one instance itself. The Kubernetes one asks whether
// the pod is Ready: teal often cannot reach pod addresses, and must never guess at them.
type instanceProber interface {
	Probe(ctx context.Context, in Instance) error
}

// probeInstance checks one instance once: through the Health when it can, else over HTTP.
func (c *Controller) probeInstance(ctx context.Context, in Instance) error {
	if p, ok := c.d.Health.(instanceProber); ok {
		return p.Probe(ctx, in)
	}
	return c.probe(ctx, in.Addr)
}

// probe checks one instance once, the way the health monitor does.
func (c *Controller) probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Health.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+c.cfg.Health.Path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %d", c.cfg.Health.Path, resp.StatusCode)
	}
	return nil
}

func (c *Controller) watch(col Color, insts []Instance) {
	c.d.Health.Watch(col, insts, func(healthy []string) {
		// Backends follow health; the router decides whether the colour gets traffic.
		if err := c.d.Router.SetBackends(context.Background(), col, healthy); err != nil {
			c.log().Error("set backends", "color", col, "err", err)
		}
		c.broadcast(&Event{Time: time.Now().UTC(), Kind: EventHealth,
			Message: fmt.Sprintf("%s: %d healthy", col, len(healthy)),
			Attrs:   map[string]any{"color": string(col), "healthy": len(healthy)}})
	})
}

// Close stops the release goroutine (the release stays persisted and resumes at the next
// start) and detaches from — or, with StopInstances, stops — the instances.
func (c *Controller) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	run := c.run
	if c.retire != nil {
		c.retire.Stop()
	}
	c.mu.Unlock()
	if run != nil {
		run.cancel(errShutdown)
		<-run.done
	}
	if c.stopHousekeeping != nil {
		c.stopHousekeeping()
	}
	c.wg.Wait()
	var first error
	if c.StopInstances {
		for _, col := range Colors {
			c.d.Health.Unwatch(col)
			if err := c.d.Provider.Stop(ctx, col); err != nil && first == nil {
				first = err
			}
		}
	} else {
		c.d.Provider.Detach()
	}
	for _, col := range Colors {
		c.d.Health.Unwatch(col)
	}
	return first
}

// Deploy starts a release of req.Version to the idle colour.
func (c *Controller) Deploy(ctx context.Context, req DeployRequest) (*Release, error) {
	art, err := c.d.Artifacts.Get(ctx, req.Version)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(ErrNotFound, fmt.Sprintf("push it first: teal artifact push PATH --version %s (or teal deploy %s --artifact PATH)", req.Version, req.Version),
			"no artifact for version %q", req.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("artifact of %s: %w", req.Version, err)
	}
	return c.startRelease(ctx, art, actorOr(req.Actor), false)
}

func (c *Controller) startRelease(ctx context.Context, art *Artifact, actor string, promoted bool) (*Release, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, Errorf(ErrConflict, "", "the server is shutting down")
	}
	if c.cur != nil {
		return nil, Errorf(ErrConflict, "wait for it, or end it with teal promote or teal abort",
			"release #%d of %s is in progress (%s)", c.cur.ID, c.cur.Version, c.cur.Phase)
	}
	now := time.Now().UTC()
	rel := &Release{Version: art.Version, Digest: art.Digest, Color: Blue, Phase: PhaseProvisioning, Actor: actor, Created: now, Steps: []Step{}}
	if c.d.Database != nil {
		// The database comes first: instances start with DATABASE_URL and expect its
		// schema to be there.
		rel.Phase = PhaseDatabase
	}
	if c.sys.Live != "" {
		rel.From = c.sys.Live
		rel.Color = c.sys.Live.Other()
	}
	if promoted {
		rel.Promoted = &now
	}
	if err := c.d.Store.CreateRelease(ctx, rel); err != nil {
		return nil, fmt.Errorf("record release: %w", err)
	}
	// A phase event: the release entered its first phase (notifications announce it).
	c.eventLocked(ctx, rel, EventPhase, actor, fmt.Sprintf("release #%d of %s to %s started by %s: %s", rel.ID, rel.Version, rel.Color, actor, rel.Phase),
		map[string]any{"phase": string(rel.Phase), "version": rel.Version, "color": string(rel.Color)})
	c.cur = rel
	c.start(rel)
	return cloneRelease(rel), nil
}

// start runs rel's goroutine; c.mu is held.
func (c *Controller) start(rel *Release) {
	ctx, cancel := context.WithCancelCause(context.Background())
	run := &releaseRun{cancel: cancel, promote: make(chan promotion, 1), rollback: make(chan rollbackRequest, 1), done: make(chan struct{})}
	c.cur = rel
	c.run = run
	if rel.Promoted != nil {
		run.promote <- promotion{actor: rel.Actor}
	}
	go func() {
		defer close(run.done)
		c.drive(ctx, rel, run)
	}()
}

// Promote opens the gate of the release in progress. With no release in progress, a release
// that was rolled back while its colour is still warm is released again.
func (c *Controller) Promote(ctx context.Context, actor string) (*Release, error) {
	return c.promote(ctx, actor, false)
}

// PromoteFull is Promote that, during weighted steps, skips the remaining steps: all traffic
// moves to the new colour at once.
func (c *Controller) PromoteFull(ctx context.Context, actor string) (*Release, error) {
	return c.promote(ctx, actor, true)
}

func (c *Controller) promote(ctx context.Context, actor string, full bool) (*Release, error) {
	actor = actorOr(actor)
	c.mu.Lock()
	rel, run := c.cur, c.run
	if rel == nil {
		c.mu.Unlock()
		return c.repromote(ctx, actor)
	}
	if run.checking {
		// Weighted steps or the post-switch analysis run: promote moves on now.
		out := cloneRelease(rel)
		c.mu.Unlock()
		select {
		case run.promote <- promotion{actor: actor, full: full}:
		default:
		}
		return out, nil
	}
	if rel.Phase != PhaseAwaitingRelease && rel.Phase != PhaseProvisioning && rel.Phase != PhaseVerifying && rel.Phase != PhaseDatabase {
		c.mu.Unlock()
		return nil, Errorf(ErrConflict, "", "release #%d is already %s", rel.ID, rel.Phase)
	}
	if rel.Promoted != nil {
		c.mu.Unlock()
		return cloneRelease(rel), nil
	}
	if err := c.promotable(rel); err != nil {
		c.mu.Unlock()
		c.event(ctx, rel, EventAction, actor, fmt.Sprintf("promotion of release #%d refused: %v", rel.ID, err), nil)
		return nil, err
	}
	now := time.Now().UTC()
	rel.Promoted = &now
	err := c.d.Store.UpdateRelease(ctx, rel)
	out := cloneRelease(rel)
	c.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("record promotion: %w", err)
	}
	select {
	case run.promote <- promotion{actor: actor, full: full}:
	default:
	}
	msg := fmt.Sprintf("release #%d promoted", rel.ID)
	if rel.Phase != PhaseAwaitingRelease {
		msg += " (it switches as soon as it reaches the gate)"
	}
	c.event(ctx, rel, EventAction, actor, msg, nil)
	return out, nil
}

// repromote releases again the version of the latest release when it was rolled back and its
// colour is still running it, warm.
func (c *Controller) repromote(ctx context.Context, actor string) (*Release, error) {
	rels, err := c.d.Store.Releases(ctx, 1)
	if err != nil {
		return nil, err
	}
	if len(rels) == 0 || rels[0].Outcome == nil || *rels[0].Outcome != OutcomeRolledBack {
		return nil, Errorf(ErrConflict, "start one with teal deploy VERSION", "no release is waiting to be promoted")
	}
	last := rels[0]
	c.mu.Lock()
	env := c.sys.Env(last.Color)
	warm := c.sys.Live == last.Color.Other() && env.Version == last.Version && env.Digest == last.Digest &&
		(env.State == EnvReady || env.State == EnvDraining)
	c.mu.Unlock()
	if !warm {
		return nil, Errorf(ErrConflict, fmt.Sprintf("deploy it again: teal deploy %s", last.Version),
			"release #%d (%s) was rolled back and its colour %s no longer runs it", last.ID, last.Version, last.Color)
	}
	if err := c.windowClosed(); err != nil {
		return nil, err
	}
	art, err := c.d.Artifacts.Get(ctx, last.Version)
	if err != nil {
		return nil, err
	}
	return c.startRelease(ctx, art, actor, true)
}

// Abort ends the release in progress before its switch and tears down its colour.
func (c *Controller) Abort(ctx context.Context, actor string) (*Release, error) {
	actor = actorOr(actor)
	c.mu.Lock()
	rel, run := c.cur, c.run
	if rel == nil {
		c.mu.Unlock()
		return nil, Errorf(ErrConflict, "", "no release is in progress")
	}
	if rel.Phase == PhaseSwitching || rel.Phase == PhaseReleased {
		c.mu.Unlock()
		return nil, Errorf(ErrConflict, "use teal rollback once it is released", "release #%d is %s: too late to abort", rel.ID, rel.Phase)
	}
	c.mu.Unlock()
	c.event(ctx, rel, EventAction, actor, fmt.Sprintf("abort of release #%d requested", rel.ID), nil)
	run.cancel(fmt.Errorf("%w by %s", errAborted, actor))
	select {
	case <-run.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	got, err := c.d.Store.Release(ctx, rel.ID)
	if err != nil {
		return nil, err
	}
	if got.Outcome != nil && *got.Outcome != OutcomeAborted {
		return got, Errorf(ErrConflict, "", "release #%d ended %s before the abort took effect", got.ID, *got.Outcome)
	}
	return got, nil
}

// Rollback sends all traffic back to the previous colour, which must still be running.
func (c *Controller) Rollback(ctx context.Context, req RollbackRequest) (*Release, error) {
	actor := actorOr(req.Actor)
	c.mu.Lock()
	if c.cur != nil {
		rel, run := c.cur, c.run
		checking := run.checking
		c.mu.Unlock()
		if checking {
			return c.rollbackChecking(ctx, rel, run, rollbackRequest{actor: actor, force: req.Force})
		}
		return nil, Errorf(ErrConflict, "end it with teal abort", "release #%d of %s is in progress (%s): nothing has switched yet", rel.ID, rel.Version, rel.Phase)
	}
	live := c.sys.Live
	if live == "" {
		c.mu.Unlock()
		return nil, Errorf(ErrConflict, "", "nothing is live: nothing to roll back")
	}
	prev := live.Other()
	penv := c.sys.Env(prev)
	warm := penv.State == EnvStandby || penv.State == EnvReady || penv.State == EnvDraining
	if !warm || len(penv.Instances) == 0 {
		c.mu.Unlock()
		hint := "deploy the previous version again with teal deploy VERSION"
		return nil, Errorf(ErrConflict, hint, "nothing to roll back to: %s is %s", prev, penv.State)
	}
	c.mu.Unlock()

	// Only the latest release can be rolled back, and only once: a second rollback would move
	// traffic forward again, which is what promote is for.
	rels, err := c.d.Store.Releases(ctx, 1)
	if err != nil {
		return nil, err
	}
	if len(rels) == 0 || rels[0].Color != live || rels[0].Outcome == nil || *rels[0].Outcome != OutcomeReleased {
		msg := "the latest release did not make " + string(live) + " live"
		hint := ""
		if len(rels) == 1 && rels[0].Outcome != nil && *rels[0].Outcome == OutcomeRolledBack {
			msg = fmt.Sprintf("release #%d (%s) was already rolled back", rels[0].ID, rels[0].Version)
			hint = "teal promote releases it again"
		}
		return nil, Errorf(ErrConflict, hint, "nothing to roll back: %s", msg)
	}
	last := rels[0]

	healthy := 0
	for _, h := range c.d.Health.State(prev) {
		if h.Healthy {
			healthy++
		}
	}
	if healthy == 0 || (healthy < len(penv.Instances) && !req.Force) {
		return nil, Errorf(ErrRefused, "wait for its instances to pass their health checks, or use --force to roll back to the healthy ones",
			"%s has %d of %d instances healthy", prev, healthy, len(penv.Instances))
	}

	if c.d.Database != nil && !req.Force {
		c.mu.Lock()
		ldb, pdb := c.sys.Env(live).Database, penv.Database
		c.mu.Unlock()
		if ldb != nil && pdb != nil {
			if err := c.d.Database.CanSwitchBack(ctx, ldb, pdb); err != nil {
				return nil, err
			}
		}
	}
	force := false
	if c.d.Database != nil && req.Force {
		// Said before it happens, and recorded: what --force costs.
		c.mu.Lock()
		ldb, pdb := c.sys.Env(live).Database, penv.Database
		c.mu.Unlock()
		if ldb != nil && pdb != nil {
			if err := c.d.Database.CanSwitchBack(ctx, ldb, pdb); err != nil {
				force = true
				c.event(ctx, last, EventAction, actor, fmt.Sprintf("forced rollback: %v", err), nil)
			}
		}
	}
	if err := c.switchTo(ctx, last, prev, actor, "rollback", force); err != nil {
		return nil, err
	}
	c.mu.Lock()
	o := OutcomeRolledBack
	last.Outcome = &o
	last.Error = fmt.Sprintf("rolled back by %s", actor)
	err = c.d.Store.UpdateRelease(ctx, last)
	out := cloneRelease(last)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c.metrics.outcome(o)
	c.event(ctx, last, EventPhase, actor, fmt.Sprintf("release #%d rolled back: traffic is on %s again", last.ID, prev), nil)
	return out, nil
}

// switchTo moves all traffic to col and demotes the other colour: the common core of a
// release's switch and of a rollback. The old colour drains in the background and is kept.
func (c *Controller) switchTo(ctx context.Context, rel *Release, col Color, actor, why string, force bool) error {
	old := col.Other()
	step := c.beginStep(ctx, rel, "switch")
	routes := Routes{Traffic: All(col), Preview: old}
	// route moves traffic and records it; with a database it runs inside the freeze window.
	// The switch is recorded before the router moves: a server killed in between comes
	// back on the new colour, which has every write (the old one is frozen by then). The
	// other order would let the new colour acknowledge writes that a restart, believing the
	// old colour live, would leave behind — e2e/database_test.go caught exactly that.
	route := func(ctx context.Context) error {
		now := time.Now().UTC()
		c.mu.Lock()
		before := *c.sys
		before.Environments = map[Color]*Environment{}
		for k, e := range c.sys.Environments {
			cp := *e
			before.Environments[k] = &cp
		}
		c.sys.Live = col
		c.sys.Traffic, c.sys.Epoch = routes.Traffic, 0
		c.setState(c.sys.Env(col), EnvLive, now)
		c.sys.Env(col).DBRetireAt = nil
		oenv := c.sys.Env(old)
		if len(oenv.Instances) > 0 {
			c.setState(oenv, EnvDraining, now)
		}
		if oenv.Database != nil {
			at := now.Add(c.cfg.Database.KeepOldDatabase)
			oenv.DBRetireAt = &at
		}
		if err := c.saveSystemLocked(ctx); err != nil {
			*c.sys = before
			c.mu.Unlock()
			return err
		}
		c.mu.Unlock()
		if err := c.d.Router.Route(ctx, routes); err != nil {
			c.mu.Lock()
			*c.sys = before
			if serr := c.saveSystemLocked(ctx); serr != nil {
				err = fmt.Errorf("%w; restoring the recorded state: %v", err, serr)
			}
			c.mu.Unlock()
			return fmt.Errorf("route traffic to %s: %w", col, err)
		}
		return nil
	}
	err := c.switchWrites(ctx, rel, col, force, route)
	if err == nil {
		if derr := c.switchDNS(ctx, rel, routes.Traffic); derr != nil {
			// The record could not follow: put the router back, so that both point at the
			// old colour, and say which provider call failed.
			back := Routes{Traffic: All(old), Preview: col}
			if rerr := c.switchWrites(ctx, rel, old, force, func(ctx context.Context) error {
				if err := c.d.Router.Route(ctx, back); err != nil {
					return err
				}
				c.mu.Lock()
				defer c.mu.Unlock()
				now := time.Now().UTC()
				c.sys.Live, c.sys.Traffic, c.sys.Epoch = old, back.Traffic, 0
				c.setState(c.sys.Env(old), EnvLive, now)
				c.setState(c.sys.Env(col), EnvReady, now)
				c.sys.Env(old).DBRetireAt = nil
				return c.saveSystemLocked(ctx)
			}); rerr != nil {
				derr = fmt.Errorf("%w; moving traffic back to %s failed too: %v", derr, old, rerr)
			}
			c.endStep(ctx, rel, step, derr)
			return derr
		}
		c.metrics.switched(routes.Traffic)
		c.event(ctx, rel, EventTraffic, actor, fmt.Sprintf("%s: traffic moved to %s", why, col), map[string]any{"blue": routes.Traffic.Blue, "green": routes.Traffic.Green})
	}
	c.endStep(ctx, rel, step, err)
	if err != nil {
		return err
	}

	// Drain in the background: the switch is done, and the old colour keeps running either way.
	// WebSockets and streams on the old colour go on until release.long_drain.
	switched := time.Now()
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.longDrain(old, switched)
	}()
	go func() {
		defer c.wg.Done()
		dctx, cancel := context.WithTimeout(context.Background(), c.cfg.Release.DrainTimeout)
		defer cancel()
		if err := c.d.Router.Drain(dctx, old); err != nil {
			c.log().Warn("drain", "color", old, "err", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		env := c.sys.Env(old)
		if env.State != EnvDraining || c.sys.Live != col {
			return // something else happened since
		}
		t := time.Now().UTC()
		if why == "rollback" {
			c.setState(env, EnvReady, t)
		} else {
			c.setState(env, EnvStandby, t)
			at := t.Add(c.cfg.Release.KeepOld)
			env.RetireAt = &at
		}
		if err := c.saveSystemLocked(context.Background()); err != nil {
			c.log().Error("save system", "err", err)
		}
		c.scheduleRetireLocked()
	}()
	return nil
}

// drive runs rel from its persisted phase to its end.
func (c *Controller) drive(ctx context.Context, rel *Release, run *releaseRun) {
	err := c.phases(ctx, rel, run)
	cause := context.Cause(ctx)
	var rb *rolledBackError
	switch {
	case err == nil:
	case errors.As(err, &rb):
		c.finish(rel, OutcomeRolledBack, rb.why)
	case errors.Is(cause, errShutdown):
		c.log().Info("release left to resume at next start", "release", rel.ID, "phase", rel.Phase)
		return
	case errors.Is(cause, errAborted):
		c.finish(rel, OutcomeAborted, cause.Error())
	default:
		c.finish(rel, OutcomeFailed, err.Error())
	}
	c.mu.Lock()
	if c.cur == rel {
		c.cur, c.run = nil, nil
	}
	c.mu.Unlock()
}

// phases runs the phases from rel.Phase on. A returned error means the new colour must be
// torn down; finish does that.
func (c *Controller) phases(ctx context.Context, rel *Release, run *releaseRun) error {
	if rel.Phase != PhaseSwitching && rel.Phase != PhaseReleased {
		if err := c.checkDNS(ctx, rel); err != nil {
			return err
		}
	}
	for {
		switch rel.Phase {
		case PhaseDatabase:
			if c.d.Database != nil {
				if err := c.prepareDatabase(ctx, rel); err != nil {
					return err
				}
			}
			c.enter(ctx, rel, PhaseProvisioning)
		case PhaseProvisioning:
			if err := c.provision(ctx, rel); err != nil {
				return err
			}
			c.enter(ctx, rel, PhaseVerifying)
		case PhaseVerifying:
			if err := c.verify(ctx, rel); err != nil {
				return err
			}
			if rel.First() {
				c.enter(ctx, rel, PhaseSwitching)
			} else {
				c.enter(ctx, rel, PhaseAwaitingRelease)
			}
		case PhaseAwaitingRelease:
			if err := c.gate(ctx, rel, run); err != nil {
				return err
			}
			c.enter(ctx, rel, PhaseSwitching)
		case PhaseSwitching:
			// The switch itself must not be interrupted by an abort; a shutdown leaves it
			// persisted either way.
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := c.doSwitch(ctx, rel, run); err != nil {
				return err
			}
			// The analysis after the switch may be interrupted: a shutdown resumes it, and
			// an abort is refused once traffic moved.
			if err := c.postCheck(ctx, rel, run); err != nil {
				return err
			}
			c.enter(ctx, rel, PhaseReleased)
		case PhaseReleased:
			c.finish(rel, OutcomeReleased, "")
			return nil
		default:
			return fmt.Errorf("release #%d: unknown phase %q", rel.ID, rel.Phase)
		}
	}
}

// provision launches (or re-adopts) the new colour's instances and waits for their health.
func (c *Controller) provision(ctx context.Context, rel *Release) error {
	art, err := c.d.Artifacts.Get(ctx, rel.Version)
	if err != nil {
		return fmt.Errorf("artifact of %s: %w", rel.Version, err)
	}
	if art.Digest != rel.Digest {
		return fmt.Errorf("artifact of %s is %s, the release was started with %s", rel.Version, art.Digest, rel.Digest)
	}
	col := rel.Color

	c.mu.Lock()
	env := c.sys.Env(col)
	reuse := env.Version == rel.Version && env.Digest == rel.Digest && len(env.Instances) > 0 &&
		(env.State == EnvReady || env.State == EnvProvisioning || env.State == EnvDraining)
	c.mu.Unlock()

	if reuse {
		// A resumed release, or a re-promotion of a warm colour: take over what runs.
		step := c.beginStep(ctx, rel, "adopt")
		req, err := c.launchRequest(ctx, col, art)
		var insts []Instance
		if err == nil {
			insts, err = c.d.Provider.Adopt(ctx, req, env.Instances)
		}
		if err == nil {
			err = c.recordInstances(ctx, env, insts)
		}
		c.endStep(ctx, rel, step, err)
		if err != nil {
			return fmt.Errorf("adopt %s: %w", col, err)
		}
	} else {
		if err := c.stopIdle(ctx, rel, env); err != nil {
			return err
		}
		step := c.beginStep(ctx, rel, "launch")
		c.mu.Lock()
		now := time.Now().UTC()
		env.Version, env.Digest, env.Instances, env.RetireAt = rel.Version, rel.Digest, nil, nil
		c.setState(env, EnvProvisioning, now)
		err := c.saveSystemLocked(ctx)
		c.mu.Unlock()
		var insts []Instance
		var req LaunchRequest
		if err == nil {
			req, err = c.launchRequest(ctx, col, art)
		}
		if err == nil {
			insts, err = c.d.Provider.Launch(ctx, req)
		}
		if err == nil {
			err = c.recordInstances(ctx, env, insts)
		}
		c.endStep(ctx, rel, step, err)
		if err != nil {
			return fmt.Errorf("launch %s on %s: %w", rel.Version, col, err)
		}
	}

	step := c.beginStep(ctx, rel, "health")
	hctx, cancel := context.WithTimeout(ctx, c.cfg.Health.Deadline)
	err = c.d.Health.Wait(hctx, col)
	cancel()
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%s not healthy within health.deadline %s: %w%s", col, c.cfg.Health.Deadline, err, c.logTails(col))
	}
	c.endStep(ctx, rel, step, err)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.setState(env, EnvReady, time.Now().UTC())
	err = c.saveSystemLocked(ctx)
	c.mu.Unlock()
	return err
}

// recordInstances persists env's new instances and watches their health.
func (c *Controller) recordInstances(ctx context.Context, env *Environment, insts []Instance) error {
	c.mu.Lock()
	env.Instances = insts
	err := c.saveSystemLocked(ctx)
	c.mu.Unlock()
	c.watch(env.Color, insts)
	return err
}

// stopIdle stops what the idle colour still runs (an older version on standby, or a failed
// release) before it is replaced: rollback to it ends here.
func (c *Controller) stopIdle(ctx context.Context, rel *Release, env *Environment) error {
	c.mu.Lock()
	n := len(env.Instances)
	c.mu.Unlock()
	if n == 0 {
		return nil
	}
	step := c.beginStep(ctx, rel, "stop-"+string(env.Color))
	err := c.stopColor(ctx, env.Color)
	c.endStep(ctx, rel, step, err)
	return err
}

// verify checks the new colour before the gate: here, that every instance is still healthy.
func (c *Controller) verify(ctx context.Context, rel *Release) error {
	step := c.beginStep(ctx, rel, "health-check")
	hctx, cancel := context.WithTimeout(ctx, c.cfg.Health.Deadline)
	err := c.d.Health.Wait(hctx, rel.Color)
	cancel()
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%s lost health before the gate: %w%s", rel.Color, err, c.logTails(rel.Color))
	}
	c.endStep(ctx, rel, step, err)
	if err != nil {
		return err
	}
	if err := c.smoke(ctx, rel); err != nil {
		return err
	}
	if err := c.checkSessions(ctx, rel); err != nil {
		return err
	}
	if err := c.shadow(ctx, rel); err != nil {
		return err
	}
	return c.waitDatabaseReady(ctx, rel, c.cfg.Health.Deadline)
}

// gate waits for the release decision: teal promote (the API, the dashboard's Release
// button) or, with approval: auto, the end of auto_after. Auto-promotion waits while a check
// fails or release.window is closed; a promotion made before the gate waits for the window.
func (c *Controller) gate(ctx context.Context, rel *Release, run *releaseRun) error {
	var auto <-chan time.Time
	if c.cfg.Release.Approval == "auto" {
		t := time.NewTimer(c.cfg.Release.AutoAfter)
		defer t.Stop()
		auto = t.C
	}
	step := c.beginStep(ctx, rel, "gate")
	// While waiting, the new colour's replication is watched: an apply error fails the
	// release instead of waiting for a promotion that could only lose writes.
	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	var actor string
	autoDue := false
	waiting := "" // the reason last announced for not opening yet
	c.mu.Lock()
	if rel.Promoted != nil {
		actor = rel.Actor // promoted before it got here (teal promote early, or a re-release)
		select {
		case p := <-run.promote:
			actor = p.actor
		default:
		}
	}
	c.mu.Unlock()
wait:
	for {
		if actor != "" {
			// Promoted: only the window can still hold the gate.
			err := c.windowClosed()
			if err == nil {
				break wait
			}
			if msg := err.Error(); msg != waiting {
				waiting = msg
				c.event(ctx, rel, EventAction, ActorSystem, fmt.Sprintf("release #%d promoted by %s waits: %s", rel.ID, actor, msg), nil)
			}
		} else if autoDue {
			c.mu.Lock()
			err := c.promotable(rel)
			if err == nil {
				now := time.Now().UTC()
				rel.Promoted = &now
			}
			c.mu.Unlock()
			if err == nil {
				actor = ActorAuto
				break wait
			}
			if msg := err.Error(); msg != waiting {
				waiting = msg
				c.event(ctx, rel, EventAction, ActorAuto, "automatic promotion waits: "+msg, nil)
			}
		}
		select {
		case p := <-run.promote:
			actor = p.actor
			c.mu.Lock()
			run.full = p.full
			c.mu.Unlock()
		case <-auto:
			autoDue = true
		case <-watch.C:
			if err := c.databaseBroken(ctx, rel); err != nil {
				c.endStep(ctx, rel, step, err)
				return err
			}
		case <-ctx.Done():
			c.endStep(ctx, rel, step, context.Cause(ctx))
			return context.Cause(ctx)
		}
	}
	// The gate does not open while the copy lags more than database.max_lag.
	if err := c.waitDatabaseReady(ctx, rel, 24*time.Hour); err != nil {
		c.endStep(ctx, rel, step, err)
		return err
	}
	c.endStep(ctx, rel, step, nil)
	c.event(ctx, rel, EventAction, actor, fmt.Sprintf("release #%d: gate opened by %s", rel.ID, actor), nil)
	return nil
}

// rollbackChecking hands a rollback to the release in its post-switch analysis and waits
// until it ends.
func (c *Controller) rollbackChecking(ctx context.Context, rel *Release, run *releaseRun, req rollbackRequest) (*Release, error) {
	select {
	case run.rollback <- req:
	default:
		return nil, Errorf(ErrConflict, "", "a rollback of release #%d is already under way", rel.ID)
	}
	select {
	case <-run.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	got, err := c.d.Store.Release(ctx, rel.ID)
	if err != nil {
		return nil, err
	}
	if got.Outcome == nil || *got.Outcome != OutcomeRolledBack {
		return got, Errorf(ErrConflict, "", "release #%d ended %s before the rollback took effect", got.ID, orText(string(deref(got.Outcome)), "unfinished"))
	}
	return got, nil
}

func deref(o *Outcome) Outcome {
	if o == nil {
		return ""
	}
	return *o
}

// doSwitch moves traffic to the new colour. Resumed after a crash, it first makes sure the new
// colour is still healthy; if it is not, the release fails and traffic stays where it is.
func (c *Controller) doSwitch(rctx context.Context, rel *Release, run *releaseRun) error {
	// The switch itself must not be interrupted, by an abort or a shutdown; the weighted
	// steps, which wait, may be (a shutdown resumes them at the step they were at).
	ctx := context.WithoutCancel(rctx)
	c.mu.Lock()
	done := c.sys.Live == rel.Color && c.sys.Traffic.Of(rel.Color) == 100
	c.mu.Unlock()
	if done {
		return nil // persisted before a crash
	}
	step := c.beginStep(ctx, rel, "health-before-switch")
	hctx, cancel := context.WithTimeout(ctx, c.cfg.Health.Deadline)
	err := c.d.Health.Wait(hctx, rel.Color)
	cancel()
	c.endStep(ctx, rel, step, err)
	if err != nil {
		return fmt.Errorf("%s is not healthy, traffic stays on %s: %w", rel.Color, orNothing(rel.From), err)
	}
	if err := c.waitDNSTTL(ctx, rel); err != nil {
		return err
	}
	c.mu.Lock()
	full := run.full
	c.mu.Unlock()
	if c.cfg.Release.Strategy == "weighted" && rel.From != "" && !full {
		if err := c.weightedSteps(rctx, rel, run); err != nil {
			return err
		}
	}
	if err := c.switchTo(ctx, rel, rel.Color, ActorSystem, fmt.Sprintf("release #%d", rel.ID), false); err != nil {
		return err
	}
	now := time.Now().UTC()
	c.mu.Lock()
	rel.Switched = &now
	err = c.d.Store.UpdateRelease(ctx, rel)
	c.mu.Unlock()
	return err
}

// finish ends rel with outcome o; a release that did not switch has its colour torn down.
func (c *Controller) finish(rel *Release, o Outcome, why string) {
	ctx := context.Background()
	if o != OutcomeReleased && o != OutcomeRolledBack {
		// A rolled-back colour stays warm, as after teal rollback: teal promote re-releases it.
		c.mu.Lock()
		switched := c.sys.Live == rel.Color
		c.mu.Unlock()
		if !switched {
			step := c.beginStep(ctx, rel, "teardown")
			err := c.stopColor(ctx, rel.Color)
			if derr := c.teardownDatabase(ctx, rel); derr != nil && err == nil {
				err = derr
			}
			c.endStep(ctx, rel, step, err)
		}
	}
	// The release is not over until the record carries its resting TTL again: a release
	// started meanwhile would find the TTL it lowered put back.
	if err := c.setDNSTTL(ctx, rel, c.cfg.DNS.RestTTL); err != nil {
		c.log().Error("restore the DNS TTL", "err", err)
	}
	now := time.Now().UTC()
	c.mu.Lock()
	rel.Outcome = &o
	rel.Error = why
	rel.Finished = &now
	err := c.d.Store.UpdateRelease(ctx, rel)
	if c.cur == rel {
		// Over the moment its outcome is: a deploy that sees it ended may start the next.
		c.cur, c.run = nil, nil
	}
	c.mu.Unlock()
	if err != nil {
		c.log().Error("record outcome", "release", rel.ID, "err", err)
	}
	c.metrics.outcome(o)
	msg := fmt.Sprintf("release #%d of %s %s", rel.ID, rel.Version, o)
	if why != "" {
		msg += ": " + why
	}
	c.event(ctx, rel, EventPhase, ActorSystem, msg, map[string]any{"outcome": string(o), "version": rel.Version, "color": string(rel.Color)})
	c.log().Info("release ended", "release", rel.ID, "version", rel.Version, "outcome", o, "why", why)
}

// teardownDatabase drops the copy a failed or aborted release created.
func (c *Controller) teardownDatabase(ctx context.Context, rel *Release) error {
	c.mu.Lock()
	env := c.sys.Env(rel.Color)
	db := env.Database
	c.mu.Unlock()
	if c.d.Database == nil || db == nil || db.Production || db.Version != rel.Version {
		return nil
	}
	if err := c.d.Database.Teardown(ctx, db); err != nil {
		return fmt.Errorf("drop database %s: %w", db.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	env.Database = nil
	return c.saveSystemLocked(ctx)
}

// stopColor stops col's instances and forgets them. Never called on the live colour.
func (c *Controller) stopColor(ctx context.Context, col Color) error {
	c.closeLongLived(col)
	c.d.Health.Unwatch(col)
	if err := c.d.Router.SetBackends(ctx, col, nil); err != nil {
		return err
	}
	if err := c.d.Provider.Stop(ctx, col); err != nil {
		return fmt.Errorf("stop %s: %w", col, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	env := c.sys.Env(col)
	env.Instances = nil
	env.RetireAt = nil
	c.setState(env, EnvTerminated, time.Now().UTC())
	return c.saveSystemLocked(ctx)
}

// scheduleRetire arms the timer that terminates the standby colour at its RetireAt.
func (c *Controller) scheduleRetire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scheduleRetireLocked()
}

func (c *Controller) scheduleRetireLocked() {
	if c.retire != nil {
		c.retire.Stop()
		c.retire = nil
	}
	if c.closed || c.sys.Live == "" {
		return
	}
	col := c.sys.Live.Other()
	env := c.sys.Env(col)
	if env.State != EnvStandby || env.RetireAt == nil {
		return
	}
	at := *env.RetireAt
	c.retire = time.AfterFunc(time.Until(at), func() {
		c.mu.Lock()
		e := c.sys.Env(col)
		still := e.State == EnvStandby && e.RetireAt != nil && e.RetireAt.Equal(at) && c.cur == nil && !c.closed
		if still {
			c.wg.Add(1)
		}
		c.mu.Unlock()
		if !still {
			return
		}
		defer c.wg.Done()
		if quiet, last := c.endpointQuiet(col); !quiet {
			// Clients that ignore TTLs still reach the old colour: it stays until its
			// endpoint has been quiet for dns.quiet.
			c.mu.Lock()
			if !c.closed {
				c.retire = time.AfterFunc(time.Until(last.Add(c.cfg.DNS.Quiet)), func() {
					c.scheduleRetire()
				})
			}
			c.mu.Unlock()
			return
		}
		ctx := context.Background()
		if err := c.stopColor(ctx, col); err != nil {
			c.log().Error("retire standby colour", "color", col, "err", err)
			return
		}
		c.event(ctx, nil, EventAction, ActorSystem, fmt.Sprintf("%s terminated after release.keep_old %s", col, c.cfg.Release.KeepOld), nil)
	})
}

// logTails returns the last lines of each unhealthy instance's log, when the provider keeps logs.
func (c *Controller) logTails(col Color) string {
	lf, ok := c.d.Provider.(interface {
		LogFile(c Color, index int) (string, error)
	})
	if !ok {
		return ""
	}
	var b strings.Builder
	for _, h := range c.d.Health.State(col) {
		if h.Healthy {
			continue
		}
		path, err := lf.LogFile(col, h.Index)
		if err != nil {
			continue
		}
		tail := tailFile(path, 8)
		if tail == "" {
			continue
		}
		fmt.Fprintf(&b, "\n--- %s/%d log (last lines) ---\n%s", col, h.Index, tail)
	}
	return b.String()
}

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 64<<10 {
		_, _ = f.Seek(-64<<10, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func (c *Controller) launchRequest(ctx context.Context, col Color, art *Artifact) (LaunchRequest, error) {
	req := LaunchRequest{Color: col, Version: art.Version, Digest: art.Digest, Artifact: art.Path}
	c.mu.Lock()
	db := c.sys.Env(col).Database
	c.mu.Unlock()
	if c.d.Database != nil && db != nil {
		env, err := c.d.Database.InstanceEnv(ctx, db)
		if err != nil {
			return req, fmt.Errorf("database environment of %s: %w", col, err)
		}
		req.Env = env
	}
	return req, nil
}

// routes is the routing decision for the persisted state: the preview serves the idle colour
// when it runs anything.
func (c *Controller) routes() Routes {
	r := Routes{Traffic: c.sys.Traffic}
	if r.Traffic.Blue > 0 && r.Traffic.Green > 0 {
		r.Epoch = c.sys.Epoch
	}
	idle := Blue
	if c.sys.Live != "" {
		idle = c.sys.Live.Other()
	}
	if e := c.sys.Env(idle); len(e.Instances) > 0 {
		r.Preview = idle
	}
	return r
}

// enter persists that rel entered phase p.
func (c *Controller) enter(ctx context.Context, rel *Release, p Phase) {
	c.mu.Lock()
	prev := rel.Phase
	rel.Phase = p
	err := c.d.Store.UpdateRelease(ctx, rel)
	c.mu.Unlock()
	if err != nil {
		c.log().Error("record phase", "release", rel.ID, "phase", p, "err", err)
	}
	if p == PhaseVerifying || p == PhaseAwaitingRelease {
		// The preview serves the new colour from the moment it is healthy.
		c.mu.Lock()
		r := c.routes()
		r.Preview = rel.Color
		c.mu.Unlock()
		if err := c.d.Router.Route(ctx, r); err != nil {
			c.log().Error("route preview", "err", err)
		}
	}
	c.metrics.phase(prev, rel)
	c.event(ctx, rel, EventPhase, ActorSystem, fmt.Sprintf("release #%d of %s to %s: %s", rel.ID, rel.Version, rel.Color, p),
		map[string]any{"phase": string(p), "version": rel.Version, "color": string(rel.Color)})
}

// beginStep records that a step started; rel may be nil for actions outside a release.
func (c *Controller) beginStep(ctx context.Context, rel *Release, name string) int {
	if rel == nil {
		return -1
	}
	c.mu.Lock()
	rel.Steps = append(rel.Steps, Step{Name: name, State: StepRunning, Started: time.Now().UTC()})
	i := len(rel.Steps) - 1
	err := c.d.Store.UpdateRelease(ctx, rel)
	c.mu.Unlock()
	if err != nil {
		c.log().Error("record step", "release", rel.ID, "step", name, "err", err)
	}
	c.event(ctx, rel, EventStep, ActorSystem, fmt.Sprintf("%s: running", name), map[string]any{"step": name, "state": string(StepRunning)})
	return i
}

// endStep records how a step ended.
func (c *Controller) endStep(ctx context.Context, rel *Release, i int, stepErr error) {
	if rel == nil || i < 0 {
		return
	}
	now := time.Now().UTC()
	c.mu.Lock()
	s := &rel.Steps[i]
	s.Finished = &now
	s.State = StepDone
	if stepErr != nil {
		s.State = StepFailed
		s.Error = stepErr.Error()
	}
	st := *s
	err := c.d.Store.UpdateRelease(context.WithoutCancel(ctx), rel)
	c.mu.Unlock()
	if err != nil {
		c.log().Error("record step", "release", rel.ID, "step", st.Name, "err", err)
	}
	msg := fmt.Sprintf("%s: %s in %s", st.Name, st.State, st.Duration(now).Round(time.Millisecond))
	if st.Error != "" {
		msg += ": " + firstLine(st.Error)
	}
	c.event(ctx, rel, EventStep, ActorSystem, msg, map[string]any{"step": st.Name, "state": string(st.State), "seconds": st.Duration(now).Seconds()})
}

func (c *Controller) setState(env *Environment, s EnvState, now time.Time) {
	if env.State != s {
		env.State = s
		env.Since = now
	}
}

func (c *Controller) saveSystem(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saveSystemLocked(ctx)
}

func (c *Controller) saveSystemLocked(ctx context.Context) error {
	if err := c.d.Store.SaveSystem(context.WithoutCancel(ctx), c.sys); err != nil {
		return fmt.Errorf("save system state: %w", err)
	}
	return nil
}

// event records and broadcasts an event. Recording is best effort: a store error is logged.
func (c *Controller) event(ctx context.Context, rel *Release, kind, actor, msg string, attrs map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eventLocked(ctx, rel, kind, actor, msg, attrs)
}

func (c *Controller) eventLocked(ctx context.Context, rel *Release, kind, actor, msg string, attrs map[string]any) {
	e := &Event{Time: time.Now().UTC(), Kind: kind, Actor: actor, Message: msg, Attrs: attrs}
	if rel != nil {
		e.ReleaseID = rel.ID
	}
	if err := c.d.Store.AddEvent(context.WithoutCancel(ctx), e); err != nil {
		c.log().Error("record event", "err", err)
	}
	c.log().Info(msg, "kind", kind, "actor", actor, "release", e.ReleaseID)
	c.broadcastLocked(e)
}

func (c *Controller) broadcast(e *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.broadcastLocked(e)
}

// broadcastLocked hands e to every subscriber; a subscriber that does not keep up misses
// events rather than slowing the controller.
func (c *Controller) broadcastLocked(e *Event) {
	for ch := range c.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// Subscribe returns live events until the returned func is called.
func (c *Controller) Subscribe() (<-chan *Event, func()) {
	ch := make(chan *Event, 256)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.subs, ch)
			c.mu.Unlock()
		})
	}
}

// Status reports both colours, the traffic split and the current (or latest) release.
func (c *Controller) Status(ctx context.Context) (*Status, error) {
	c.mu.Lock()
	st := &Status{App: c.cfg.App, Traffic: c.sys.Traffic, LastDBSwitch: c.sys.LastDBSwitch}
	if c.judgement != nil && c.cur != nil {
		j := *c.judgement
		st.Analysis = &j
	}
	st.Paused, st.Maintenance = c.pauseStatusLocked()
	if c.shadowRep != nil && c.cur != nil {
		r := *c.shadowRep
		st.Shadow = &r
	}
	lags := make(map[Color]DBLag, len(c.lag))
	for k, v := range c.lag {
		lags[k] = v
	}
	if c.cur != nil {
		st.Release = cloneRelease(c.cur)
	}
	live := c.sys.Live
	envs := make([]Environment, 0, 2)
	for _, col := range Colors {
		e := *c.sys.Env(col)
		e.Instances = append([]Instance(nil), e.Instances...)
		envs = append(envs, e)
	}
	c.mu.Unlock()

	if st.Release == nil {
		rels, err := c.d.Store.Releases(ctx, 1)
		if err != nil {
			return nil, err
		}
		if len(rels) == 1 {
			st.Release = rels[0]
		}
	}
	for _, e := range envs {
		es := EnvStatus{Environment: e, Health: c.d.Health.State(e.Color)}
		if lag, ok := lags[e.Color]; ok && e.Database != nil && !e.Database.Production && live != e.Color {
			es.DBLag = &lag
		}
		if ep, ok := c.d.Router.(interface {
			EndpointStats(c Color) (int64, time.Time)
		}); ok && c.d.DNS != nil {
			n, last := ep.EndpointStats(e.Color)
			es.EndpointRequests = n
			if !last.IsZero() {
				es.EndpointLast = &last
			}
		}
		if tc, ok := c.d.Router.(trafficCounter); ok {
			es.Requests, es.Errors, es.OpenConnections = tc.Counts(e.Color)
		}
		if ll, ok := c.d.Router.(longLiver); ok {
			es.LongLived = ll.LongLived(e.Color)
		}
		st.Environments = append(st.Environments, es)
		cs := &ColorStatus{Color: e.Color, Version: e.Version, State: e.State}
		switch {
		case live == e.Color:
			st.Live = cs
		case live != "" || e.Color == Blue:
			st.Idle = cs
		}
	}
	return st, nil
}

// Release returns one release with its events.
func (c *Controller) Release(ctx context.Context, id int64) (*Release, []*Event, error) {
	c.mu.Lock()
	if c.cur != nil && c.cur.ID == id {
		r := cloneRelease(c.cur)
		c.mu.Unlock()
		evs, err := c.d.Store.Events(ctx, id)
		return r, evs, err
	}
	c.mu.Unlock()
	r, err := c.d.Store.Release(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	evs, err := c.d.Store.Events(ctx, id)
	return r, evs, err
}

// Releases returns the latest releases, newest first.
func (c *Controller) Releases(ctx context.Context, limit int) ([]*Release, error) {
	return c.d.Store.Releases(ctx, limit)
}

func cloneRelease(r *Release) *Release {
	out := *r
	out.Steps = append([]Step(nil), r.Steps...)
	return &out
}

func actorOr(a string) string {
	if a == "" {
		return "unknown"
	}
	return a
}

func orNothing(c Color) string {
	if c == "" {
		return "nothing"
	}
	return string(c)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
