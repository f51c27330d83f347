package teal

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Shadower mirrors a share of the live requests to the idle colour and compares the answers
// (verify.shadow).
type Shadower interface {
	StartShadow(cfg ShadowConfig, to Color) error
	ShadowReport() ShadowReport
	StopShadow() ShadowReport
}

// ShadowReport is what mirroring found so far.
type ShadowReport struct {
	Mirrored     int64            `json:"mirrored"`   // requests copied to the idle colour
	Compared     int64            `json:"compared"`   // of those, answered by both and compared
	Mismatches   int64            `json:"mismatches"` // compared and different
	Errors       int64            `json:"errors"`     // the idle colour did not answer
	Skipped      int64            `json:"skipped"`    // not mirrored: too many in flight
	MismatchRate float64          `json:"mismatch_rate"`
	Examples     []ShadowMismatch `json:"examples,omitempty"` // the first distinct ones
}

// ShadowMismatch is one request whose mirrored answer differed from the live one.
type ShadowMismatch struct {
	Method       string `json:"method"`
	Path         string `json:"path"`
	LiveStatus   int    `json:"live_status"`
	ShadowStatus int    `json:"shadow_status"`
	Note         string `json:"note,omitempty"`
	Count        int64  `json:"count"`
}

// SessionStore is the shared session store the app uses (sessions:), checked before the gate.
type SessionStore interface {
	// Check returns nil when the store can be reached and written; else an error that names
	// the store (without its password) and what failed.
	Check(ctx context.Context) error
}

// checkSessions verifies, before the gate, that the session store answers.
func (c *Controller) checkSessions(ctx context.Context, rel *Release) error {
	if c.d.Sessions == nil {
		return nil
	}
	step := c.beginStep(ctx, rel, "sessions")
	err := c.d.Sessions.Check(ctx)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("the session store cannot be reached, so users would lose their sessions at the switch: %w", err)
	}
	c.endStep(ctx, rel, step, err)
	return err
}

// shadow mirrors verify.shadow.percent of the live requests to the new colour for
// verify.shadow.duration and fails the release when more than max_mismatch of the compared
// answers differ. Too few compared requests (fewer than release.analysis.min_requests) extend
// it up to three times the duration; then the release goes on to the gate with a warning: a
// person decides there.
func (c *Controller) shadow(ctx context.Context, rel *Release) error {
	cfg := c.cfg.Verify.Shadow
	if c.d.Shadow == nil || !cfg.Enabled() || rel.From == "" {
		return nil
	}
	step := c.beginStep(ctx, rel, "shadow")
	c.mu.Lock()
	c.shadowRep = nil
	c.mu.Unlock()
	if err := c.d.Shadow.StartShadow(cfg, rel.Color); err != nil {
		c.endStep(ctx, rel, step, err)
		return fmt.Errorf("start shadow traffic: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.d.Shadow.StopShadow()
		}
	}()
	start := time.Now()
	tick := time.NewTicker(min(time.Second, max(cfg.Duration/20, 50*time.Millisecond)))
	defer tick.Stop()
	min := int64(c.cfg.Release.Analysis.MinRequests)
	for {
		select {
		case <-ctx.Done():
			c.endStep(ctx, rel, step, context.Cause(ctx))
			return context.Cause(ctx)
		case <-tick.C:
		}
		rep := c.d.Shadow.ShadowReport()
		c.setShadowReport(&rep)
		el := time.Since(start)
		if el < cfg.Duration || (rep.Compared < min && el < 3*cfg.Duration) {
			continue
		}
		rep = c.d.Shadow.StopShadow()
		stopped = true
		c.setShadowReport(&rep)
		attrs := map[string]any{"mirrored": rep.Mirrored, "compared": rep.Compared, "mismatches": rep.Mismatches, "errors": rep.Errors, "skipped": rep.Skipped}
		var err error
		switch {
		case rep.Compared < min:
			c.event(ctx, rel, EventAction, ActorSystem, fmt.Sprintf("shadow traffic inconclusive: %d answers compared in %s, fewer than release.analysis.min_requests %d; decide at the gate",
				rep.Compared, el.Round(time.Second), min), attrs)
		case rep.MismatchRate > cfg.MaxMismatch:
			err = fmt.Errorf("shadow traffic: %d of %d compared answers of %s differed (%s), over verify.shadow.max_mismatch %s: %s",
				rep.Mismatches, rep.Compared, rel.Color, pct(rep.MismatchRate), pct(cfg.MaxMismatch), examples(rep.Examples))
		default:
			c.event(ctx, rel, EventStep, ActorSystem, fmt.Sprintf("shadow traffic: %d of %d compared answers differed (%s)", rep.Mismatches, rep.Compared, pct(rep.MismatchRate)), attrs)
		}
		c.endStep(ctx, rel, step, err)
		return err
	}
}

// examples lists mismatches as `GET /broken: live 200, green 500 (12×)`.
func examples(ms []ShadowMismatch) string {
	var b strings.Builder
	for i, m := range ms {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(ms)-5)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s: live %d, new %d (%d×)", m.Method, m.Path, m.LiveStatus, m.ShadowStatus, m.Count)
		if m.Note != "" {
			fmt.Fprintf(&b, " %s", m.Note)
		}
	}
	return b.String()
}

func (c *Controller) setShadowReport(r *ShadowReport) {
	cp := *r
	c.mu.Lock()
	c.shadowRep = &cp
	c.mu.Unlock()
}
