package teal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"teal.dev/teal/window"
)

// sampler is a router that counts each colour's traffic for analysis.
type sampler interface {
	Sample(c Color) TrafficSample
}

// rollbackRequest asks the release in its post-switch analysis to roll back.
type rollbackRequest struct {
	actor string
	force bool
}

// rolledBackError ends a release whose traffic went back to the old colour.
type rolledBackError struct{ why string }

func (e *rolledBackError) Error() string { return e.why }

// now is the controller's clock.
func (c *Controller) now() time.Time {
	if c.d.Now != nil {
		return c.d.Now()
	}
	return time.Now()
}

// windowClosed returns a refusal when promotions are outside release.window now, else nil.
func (c *Controller) windowClosed() error {
	if c.window == nil {
		return nil
	}
	now := c.now()
	if c.window.Allows(now) {
		return nil
	}
	when := "never (check release.window)"
	if next, ok := c.window.Next(now); ok {
		when = fmt.Sprintf("at %s (in %s)", next.In(now.Location()).Format("Mon 2006-01-02 15:04 MST"), next.Sub(now).Round(time.Minute))
	}
	return Errorf(ErrRefused, "wait until it opens (teal rollback is always allowed), or change release.window",
		"promotion is outside release.window %s: it opens %s", c.window, when)
}

// promotable returns a refusal (ErrRefused, HTTP 422) while a check of rel is failing: the
// release window is closed or, at the gate, an instance of the new colour fails its health
// check. c.mu is held.
func (c *Controller) promotable(rel *Release) error {
	if err := c.windowClosed(); err != nil {
		return err
	}
	if rel.Phase != PhaseAwaitingRelease {
		return nil // checked again when it reaches the gate
	}
	hs := c.d.Health.State(rel.Color)
	bad := 0
	var first InstanceHealth
	for _, h := range hs {
		// Only an instance that is failing its checks refuses the promotion: one not checked
		// enough times yet (just re-adopted by a restarted server) is waited for by the
		// switch's own health-before-switch step.
		if !h.Healthy && h.LastError != "" {
			if bad == 0 {
				first = h
			}
			bad++
		}
	}
	if bad > 0 || len(hs) == 0 {
		msg := fmt.Sprintf("%s has no instances", rel.Color)
		if bad > 0 {
			msg = fmt.Sprintf("%s has %d of %d instances failing their health check (%s: %s)", rel.Color, bad, len(hs), first.Addr, first.LastError)
		}
		return Errorf(ErrRefused, "wait for them to recover (teal status shows them), or end the release with teal abort",
			"release #%d cannot be promoted: %s", rel.ID, msg)
	}
	return nil
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// previewURLer is a router whose preview is reached at a URL of its own (on Kubernetes, the
// preview Service's cluster DNS name).
type previewURLer interface {
	PreviewURL() string
}

// smoke runs the release's smoke checks against the preview of the new colour. Their output is
// kept in the release's events.
func (c *Controller) smoke(ctx context.Context, rel *Release) error {
	if c.d.Verifier == nil {
		return nil
	}
	step := c.beginStep(ctx, rel, "smoke")
	base := ""
	pu, hasPreview := c.d.Router.(previewURLer)
	switch {
	case c.cfg.Preview != "":
		base = "http://" + c.cfg.Preview
	case hasPreview && pu.PreviewURL() != "":
		base = pu.PreviewURL()
	default:
		// No preview listener: the checks go to one of the new colour's instances directly.
		c.mu.Lock()
		if insts := c.sys.Env(rel.Color).Instances; len(insts) > 0 {
			base = "http://" + insts[0].Addr
		}
		c.mu.Unlock()
	}
	out := &capped{max: 64 << 10}
	err := c.d.Verifier.Verify(ctx, VerifyRequest{Release: cloneRelease(rel), BaseURL: base, Output: out})
	if out.Len() > 0 {
		c.event(ctx, rel, EventStep, ActorSystem, fmt.Sprintf("smoke: output (%d bytes)", out.n), map[string]any{"output": out.String()})
	}
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("smoke tests of %s failed, %s stays live: %w", rel.Color, orNothing(rel.From), err)
	}
	c.endStep(ctx, rel, step, err)
	return err
}

// capped keeps the first max bytes written to it, and counts them all.
type capped struct {
	mu  sync.Mutex
	max int
	n   int
	buf bytes.Buffer
}

func (w *capped) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += len(p)
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (w *capped) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *capped) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.buf.String()
	if w.n > w.buf.Len() {
		s += fmt.Sprintf("\n… (%d more bytes)", w.n-w.buf.Len())
	}
	return s
}

// postCheck watches the new colour's traffic for release.post_check after the switch and
// judges it with release.analysis: a failing analysis rolls back at once; too few requests
// extend the check up to three times post_check, then hold the release for a person, who
// decides with teal promote (keep it) or teal rollback. It never passes silently.
func (c *Controller) postCheck(ctx context.Context, rel *Release, run *releaseRun) error {
	pc := c.cfg.Release.PostCheck
	sm, ok := c.d.Router.(sampler)
	if pc <= 0 || !ok || rel.From == "" || stepDone(rel, "post-check") {
		return nil
	}
	step := c.beginStep(ctx, rel, "post-check")
	c.mu.Lock()
	c.judgement = nil
	run.checking = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		run.checking = false
		c.mu.Unlock()
	}()
	a := c.cfg.Release.Analysis
	before := sm.Sample(rel.Color)
	start := time.Now()
	every := min(time.Second, max(pc/20, 50*time.Millisecond))
	tick := time.NewTicker(every)
	defer tick.Stop()
	held := false
	var j Judgement
	for {
		select {
		case pr := <-run.promote:
			actor := pr.actor
			c.setJudgement(&j)
			c.event(ctx, rel, EventAction, actor, fmt.Sprintf("post-check of release #%d accepted by %s (so far: %s)", rel.ID, actor, j.Reason), nil)
			c.endStep(ctx, rel, step, nil)
			return nil
		case rb := <-run.rollback:
			why := fmt.Sprintf("rolled back by %s during post_check", rb.actor)
			if err := c.rollbackTo(ctx, rel, rb.actor, rb.force); err != nil {
				c.event(ctx, rel, EventError, rb.actor, fmt.Sprintf("rollback during post_check failed: %v", err), nil)
				continue
			}
			c.endStep(ctx, rel, step, errors.New(why))
			return &rolledBackError{why: why}
		case <-ctx.Done():
			c.endStep(ctx, rel, step, context.Cause(ctx))
			return context.Cause(ctx)
		case <-tick.C:
		}
		j = a.Judge(sm.Sample(rel.Color).Sub(before))
		c.setJudgement(&j)
		elapsed := time.Since(start)
		switch {
		case j.Verdict == VerdictFail:
			why := "post_check analysis failed: " + j.Reason
			c.event(ctx, rel, EventError, ActorSystem, why+"; rolling back to "+string(rel.From), judgementAttrs(j))
			if err := c.rollbackTo(ctx, rel, ActorSystem, false); err != nil {
				// Traffic stays on the new colour; a person must decide.
				c.event(ctx, rel, EventError, ActorSystem, fmt.Sprintf("automatic rollback failed: %v; decide with teal rollback --force or teal promote", err), nil)
				held = true
				continue
			}
			c.endStep(ctx, rel, step, errors.New(why))
			return &rolledBackError{why: why}
		case j.Verdict == VerdictPass && elapsed >= pc:
			c.event(ctx, rel, EventStep, ActorSystem, "post-check passed: "+j.Reason, judgementAttrs(j))
			c.endStep(ctx, rel, step, nil)
			return nil
		case j.Verdict == VerdictInconclusive && elapsed >= 3*pc && !held:
			held = true
			c.event(ctx, rel, EventAction, ActorSystem, fmt.Sprintf("post-check inconclusive after %s: %s; waiting for a person: teal promote keeps %s, teal rollback returns to %s",
				(3*pc).Round(time.Second), j.Reason, rel.Color, rel.From), judgementAttrs(j))
		}
	}
}

func judgementAttrs(j Judgement) map[string]any {
	return map[string]any{"verdict": string(j.Verdict), "requests": j.Requests, "failed": j.Failed, "error_rate": j.ErrorRate, "p99_seconds": j.P99.Seconds()}
}

func (c *Controller) setJudgement(j *Judgement) {
	cp := *j
	c.mu.Lock()
	c.judgement = &cp
	c.mu.Unlock()
}

// stepDone reports whether rel has a finished step called name.
func stepDone(rel *Release, name string) bool {
	for _, s := range rel.Steps {
		if s.Name == name && s.State == StepDone {
			return true
		}
	}
	return false
}

// rollbackTo moves traffic from rel's colour back to the colour it came from, which must be
// healthy; with a database, CanSwitchBack must agree unless force.
func (c *Controller) rollbackTo(ctx context.Context, rel *Release, actor string, force bool) error {
	prev := rel.From
	healthy, total := 0, 0
	for _, h := range c.d.Health.State(prev) {
		total++
		if h.Healthy {
			healthy++
		}
	}
	if healthy == 0 || (healthy < total && !force) {
		return Errorf(ErrRefused, "wait for its instances to pass their health checks, or use --force to roll back to the healthy ones",
			"%s has %d of %d instances healthy", prev, healthy, total)
	}
	dbForce := false
	if c.d.Database != nil {
		c.mu.Lock()
		ldb, pdb := c.sys.Env(rel.Color).Database, c.sys.Env(prev).Database
		c.mu.Unlock()
		if ldb != nil && pdb != nil {
			if err := c.d.Database.CanSwitchBack(ctx, ldb, pdb); err != nil {
				if !force {
					return err
				}
				dbForce = true
				c.event(ctx, rel, EventAction, actor, fmt.Sprintf("forced rollback: %v", err), nil)
			}
		}
	}
	return c.switchTo(ctx, rel, prev, actor, "rollback", dbForce)
}

// parseWindow reads release.window for the controller.
func parseWindow(w WindowConfig) (*window.Window, error) {
	return w.Schedule()
}
