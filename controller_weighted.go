package teal

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// weightedSteps moves traffic to rel's colour in release.steps, holding each step for
// release.step_hold while the analysis judges the new colour's share: a failure rolls back at
// once; too few requests hold the step longer, up to three times step_hold, then wait for a
// person. teal promote moves to the next step now (--full: to all traffic), teal pause holds the
// current weight, teal rollback returns to the old colour. The last step, all traffic, is the
// ordinary switch that follows.
func (c *Controller) weightedSteps(ctx context.Context, rel *Release, run *releaseRun) error {
	// A router that cannot count per colour (a Kubernetes HTTPRoute) gives no analysis:
	// each step passes once step_hold is over, and a person can still hold or roll back.
	sm, counted := c.d.Router.(sampler)
	c.mu.Lock()
	run.checking, run.stepping = true, true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		run.checking, run.stepping, run.paused = false, false, ""
		c.mu.Unlock()
	}()
	if so, ok := c.d.Router.(stickyOld); ok && c.cfg.Release.StickyExisting {
		if err := so.SetStickyOld(rel.From); err != nil {
			return err
		}
		defer func() { _ = so.SetStickyOld("") }()
	}
	hold := c.cfg.Release.StepHold
	for _, w := range c.cfg.Release.Steps {
		name := fmt.Sprintf("weight-%d", w)
		if stepDone(rel, name) {
			continue
		}
		step := c.beginStep(ctx, rel, name)
		if err := c.setWeight(ctx, rel, w); err != nil {
			c.endStep(ctx, rel, step, err)
			return err
		}
		var before TrafficSample
		if counted {
			before = sm.Sample(rel.Color)
		}
		start := time.Now()
		tick := time.NewTicker(min(time.Second, max(hold/20, 50*time.Millisecond)))
		held := false
		var next promotion
	judge:
		for {
			select {
			case p := <-run.promote:
				next = p
				c.event(ctx, rel, EventAction, p.actor, fmt.Sprintf("release #%d: %s moved on from %d%% by %s%s", rel.ID, rel.Color, w, p.actor, map[bool]string{true: " (all traffic now)"}[p.full]), nil)
				break judge
			case rb := <-run.rollback:
				tick.Stop()
				why := fmt.Sprintf("rolled back by %s at %d%%", rb.actor, w)
				if err := c.unweight(ctx, rel, rb.actor, why); err != nil {
					c.event(ctx, rel, EventError, rb.actor, fmt.Sprintf("rollback at %d%% failed: %v", w, err), nil)
					continue
				}
				c.endStep(ctx, rel, step, errors.New(why))
				return &rolledBackError{why: why}
			case <-ctx.Done():
				tick.Stop()
				c.endStep(ctx, rel, step, context.Cause(ctx))
				return context.Cause(ctx)
			case <-tick.C:
			}
			j := Judgement{Verdict: VerdictPass, Reason: "no analysis: the router does not count requests per colour; step_hold is over"}
			if counted {
				j = c.cfg.Release.Analysis.Judge(sm.Sample(rel.Color).Sub(before))
				c.setJudgement(&j)
			} else if time.Since(start) < hold {
				j = Judgement{Verdict: VerdictInconclusive, Reason: "no analysis: waiting for step_hold"}
			}
			c.mu.Lock()
			paused := run.paused
			c.mu.Unlock()
			elapsed := time.Since(start)
			switch {
			case j.Verdict == VerdictFail:
				tick.Stop()
				why := fmt.Sprintf("analysis failed at %d%%: %s", w, j.Reason)
				c.event(ctx, rel, EventError, ActorSystem, why+"; rolling back to "+string(rel.From), judgementAttrs(j))
				if err := c.unweight(ctx, rel, ActorSystem, why); err != nil {
					c.endStep(ctx, rel, step, err)
					return fmt.Errorf("%s; and moving traffic back failed: %w", why, err)
				}
				c.endStep(ctx, rel, step, errors.New(why))
				return &rolledBackError{why: why}
			case paused != "":
				// Held at this weight: the analysis goes on (a failure still rolls back).
			case j.Verdict == VerdictPass && elapsed >= hold:
				c.event(ctx, rel, EventStep, ActorSystem, fmt.Sprintf("%d%%: analysis passed: %s", w, j.Reason), judgementAttrs(j))
				break judge
			case j.Verdict == VerdictInconclusive && elapsed >= 3*hold && !held:
				held = true
				c.event(ctx, rel, EventAction, ActorSystem, fmt.Sprintf("%d%%: analysis inconclusive after %s: %s; waiting for a person: teal promote goes on, teal rollback returns to %s",
					w, (3*hold).Round(time.Second), j.Reason, rel.From), judgementAttrs(j))
			}
		}
		tick.Stop()
		c.endStep(ctx, rel, step, nil)
		if next.full {
			return nil
		}
	}
	return nil
}

// setWeight gives rel's colour w percent of the traffic, the old colour the rest, and records
// it before the router moves (a restart comes back with the same split).
func (c *Controller) setWeight(ctx context.Context, rel *Release, w int) error {
	t := Traffic{}
	switch rel.Color {
	case Blue:
		t = Traffic{Blue: w, Green: 100 - w}
	default:
		t = Traffic{Blue: 100 - w, Green: w}
	}
	c.mu.Lock()
	c.sys.Traffic, c.sys.Epoch = t, rel.ID
	err := c.saveSystemLocked(ctx)
	r := c.routes()
	r.Preview = rel.Color
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.d.Router.Route(ctx, r); err != nil {
		return fmt.Errorf("route %d%% to %s: %w", w, rel.Color, err)
	}
	if c.cfg.DNS.Weighted {
		if err := c.switchDNS(ctx, rel, t); err != nil {
			return err
		}
	}
	c.metrics.setTraffic(t)
	c.event(ctx, rel, EventTraffic, ActorSystem, fmt.Sprintf("release #%d: %d%% of traffic to %s", rel.ID, w, rel.Color),
		map[string]any{"blue": t.Blue, "green": t.Green})
	return nil
}

// unweight sends all traffic back to the colour rel came from: instant, a table swap.
func (c *Controller) unweight(ctx context.Context, rel *Release, actor, why string) error {
	t := All(rel.From)
	c.mu.Lock()
	c.sys.Traffic, c.sys.Epoch = t, 0
	err := c.saveSystemLocked(ctx)
	r := c.routes()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.d.Router.Route(ctx, r); err != nil {
		return fmt.Errorf("route all traffic to %s: %w", rel.From, err)
	}
	if c.cfg.DNS.Weighted {
		if err := c.switchDNS(ctx, rel, t); err != nil {
			c.event(ctx, rel, EventError, actor, fmt.Sprintf("DNS did not follow the rollback: %v", err), nil)
		}
	}
	c.metrics.setTraffic(t)
	c.event(ctx, rel, EventTraffic, actor, fmt.Sprintf("%s: all traffic back on %s", why, rel.From), map[string]any{"blue": t.Blue, "green": t.Green})
	at := time.Now()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.longDrain(rel.Color, at)
	}()
	return nil
}

// Pause holds a weighted release at its current weight until Resume: the analysis goes on,
// and a failing one still rolls back.
func (c *Controller) Pause(ctx context.Context, actor string) (*Release, error) {
	actor = actorOr(actor)
	c.mu.Lock()
	rel, run := c.cur, c.run
	if rel == nil || run == nil || !run.stepping {
		c.mu.Unlock()
		return nil, Errorf(ErrConflict, "teal pause --requests holds requests in the router instead", "no weighted release is moving traffic: nothing to pause")
	}
	already := run.paused != ""
	run.paused = actor
	out := cloneRelease(rel)
	c.mu.Unlock()
	if !already {
		c.event(ctx, rel, EventAction, actor, fmt.Sprintf("release #%d paused at its current weight by %s", rel.ID, actor), nil)
	}
	return out, nil
}

// Resume lets a paused weighted release go on.
func (c *Controller) Resume(ctx context.Context, actor string) (*Release, error) {
	actor = actorOr(actor)
	c.mu.Lock()
	rel, run := c.cur, c.run
	if rel == nil || run == nil || run.paused == "" {
		c.mu.Unlock()
		return nil, Errorf(ErrConflict, "", "no release is paused")
	}
	run.paused = ""
	out := cloneRelease(rel)
	c.mu.Unlock()
	c.event(ctx, rel, EventAction, actor, fmt.Sprintf("release #%d resumed by %s", rel.ID, actor), nil)
	return out, nil
}

// requestPauser is a router that can hold new requests (teal pause --requests).
type requestPauser interface {
	Pause(max time.Duration, queue int)
	Resume()
	Paused() (since time.Time, waiting int, ok bool)
}

// maintainer is a router that can answer every request 503 with a maintenance page.
type maintainer interface {
	Maintenance(on bool)
	InMaintenance() bool
}

// DefaultPauseQueue bounds the requests a paused router holds; more are answered 503.
const DefaultPauseQueue = 10000

// PauseRequests holds new production requests in the router, for a short cut-over done by
// hand, until ResumeRequests or release.max_pause (max, when over 0 and shorter).
func (c *Controller) PauseRequests(ctx context.Context, actor string, max time.Duration) error {
	p, ok := c.d.Router.(requestPauser)
	if !ok {
		return Errorf(ErrRefused, "", "this router cannot hold requests")
	}
	if max <= 0 || max > c.cfg.Release.MaxPause {
		max = c.cfg.Release.MaxPause
	}
	p.Pause(max, DefaultPauseQueue)
	c.event(ctx, c.current(), EventAction, actorOr(actor), fmt.Sprintf("new requests held by %s for at most %s (teal resume --requests lets them go)", actorOr(actor), max), nil)
	return nil
}

// ResumeRequests lets held requests go on.
func (c *Controller) ResumeRequests(ctx context.Context, actor string) error {
	p, ok := c.d.Router.(requestPauser)
	if !ok {
		return Errorf(ErrRefused, "", "this router cannot hold requests")
	}
	if _, _, paused := p.Paused(); !paused {
		return Errorf(ErrConflict, "", "requests are not held")
	}
	p.Resume()
	c.event(ctx, c.current(), EventAction, actorOr(actor), "held requests released by "+actorOr(actor), nil)
	return nil
}

// Maintenance turns the maintenance page on or off: every production request is answered 503
// with Retry-After while it is on.
func (c *Controller) Maintenance(ctx context.Context, actor string, on bool) error {
	m, ok := c.d.Router.(maintainer)
	if !ok {
		return Errorf(ErrRefused, "", "this router has no maintenance mode")
	}
	m.Maintenance(on)
	state := "off"
	if on {
		state = "on: every request is answered 503 with Retry-After"
	}
	c.event(ctx, c.current(), EventAction, actorOr(actor), fmt.Sprintf("maintenance %s (by %s)", state, actorOr(actor)), nil)
	return nil
}

// current returns the release in progress, nil when none.
func (c *Controller) current() *Release {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// pauseStatus says what is paused, for Status; c.mu is held.
func (c *Controller) pauseStatusLocked() (*PauseStatus, bool) {
	var ps *PauseStatus
	if c.run != nil && c.run.paused != "" {
		ps = &PauseStatus{Release: c.run.paused}
	}
	if p, ok := c.d.Router.(requestPauser); ok {
		if since, waiting, paused := p.Paused(); paused {
			if ps == nil {
				ps = &PauseStatus{}
			}
			ps.Requests, ps.Since, ps.Waiting = true, &since, waiting
		}
	}
	m, ok := c.d.Router.(maintainer)
	return ps, ok && m.InMaintenance()
}

// longLiver is a router that keeps WebSockets, SSE and streams on the colour they started on
// and can close them politely (WebSocket close 1001).
type longLiver interface {
	LongLived(c Color) int64
	CloseLongLived(c Color) int
}

// longDrain lets the long-lived connections of old, the colour traffic just left, go on until
// they end or release.long_drain after the switch at, then closes those still open politely.
// It gives up as soon as old takes traffic again (a rollback).
func (c *Controller) longDrain(old Color, at time.Time) {
	ll, ok := c.d.Router.(longLiver)
	if !ok {
		return
	}
	deadline := time.NewTimer(time.Until(at.Add(c.cfg.Release.LongDrain)))
	defer deadline.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		if ll.LongLived(old) == 0 {
			return
		}
		c.mu.Lock()
		back, closed := c.sys.Traffic.Of(old) > 0, c.closed
		c.mu.Unlock()
		if back || closed {
			return
		}
		select {
		case <-deadline.C:
			if n := ll.CloseLongLived(old); n > 0 {
				c.event(context.Background(), nil, EventAction, ActorSystem,
					fmt.Sprintf("release.long_drain %s expired: %d long-lived connections on %s closed (WebSocket 1001 going away)", c.cfg.Release.LongDrain, n, old), map[string]any{"color": string(old), "closed": n})
			}
			return
		case <-poll.C:
		}
	}
}

// closeLongLived closes what is still open on col politely before its instances stop.
func (c *Controller) closeLongLived(col Color) {
	if ll, ok := c.d.Router.(longLiver); ok && ll.LongLived(col) > 0 {
		n := ll.CloseLongLived(col)
		c.log().Info("long-lived connections closed before stopping", "color", col, "closed", n)
	}
}

// stickyOld is a router that keeps clients with an existing app session on the old colour
// during weighted steps (release.sticky_existing).
type stickyOld interface {
	SetStickyOld(c Color) error
}
