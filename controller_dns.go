package teal

import (
	"context"
	"fmt"
	"time"
)

// This file is the DNS part of the controller: the record follows the router at every switch
// and rollback, and an old colour whose endpoint still gets requests (clients that ignore
// TTLs) is not terminated until it has been quiet. It does nothing when Deps.DNS is nil.

// checkDNS validates the DNS provider before a release changes anything.
func (c *Controller) checkDNS(ctx context.Context, rel *Release) error {
	if c.d.DNS == nil {
		return nil
	}
	step := c.beginStep(ctx, rel, "dns-check")
	err := c.d.DNS.Check(ctx)
	if err != nil {
		err = fmt.Errorf("dns (%s): %w", c.cfg.DNS.Provider, err)
	}
	c.endStep(ctx, rel, step, err)
	if err != nil {
		return err
	}
	return c.setDNSTTL(ctx, rel, c.cfg.DNS.TTL)
}

// setDNSTTL re-publishes the record with ttl, for the TTL discipline around a release: with
// dns.rest_ttl set, the record carries it between releases and dns.ttl during one, lowered
// when a release starts (long before its switch, so that caches have let the long TTL expire by
// then) and restored when it ends.
func (c *Controller) setDNSTTL(ctx context.Context, rel *Release, ttl time.Duration) error {
	setter, ok := c.d.DNS.(DNSTTLSetter)
	if c.d.DNS == nil || c.cfg.DNS.RestTTL <= 0 || !ok {
		return nil
	}
	c.mu.Lock()
	live, t, prev := c.sys.Live, c.sys.Traffic, c.sys.DNS
	c.mu.Unlock()
	if live == "" || (prev != nil && prev.TTL == TTLSeconds(ttl)) {
		return nil
	}
	step := c.beginStep(ctx, rel, "dns-ttl")
	st, err := setter.SetTTL(ctx, t, ttl, prev)
	if err != nil {
		err = fmt.Errorf("dns (%s) ttl %s: %w", c.cfg.DNS.Provider, ttl, err)
	} else {
		c.mu.Lock()
		c.sys.DNS = st
		err = c.saveSystemLocked(ctx)
		c.mu.Unlock()
	}
	c.endStep(ctx, rel, step, err)
	return err
}

// waitDNSTTL waits, before a release's switch, until caches have had dns.rest_ttl to forget the
// record's long TTL since it was lowered to dns.ttl: only then does the switch reach clients
// within dns.ttl.
func (c *Controller) waitDNSTTL(ctx context.Context, rel *Release) error {
	c.mu.Lock()
	st := c.sys.DNS
	c.mu.Unlock()
	if c.d.DNS == nil || c.cfg.DNS.RestTTL <= 0 || st == nil || st.TTL != TTLSeconds(c.cfg.DNS.TTL) {
		return nil
	}
	wait := time.Until(st.Changed.Add(c.cfg.DNS.RestTTL))
	if wait <= 0 {
		return nil
	}
	step := c.beginStep(ctx, rel, "dns-ttl-wait")
	var err error
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.endStep(ctx, rel, step, err)
	return err
}

// switchDNS points the record at traffic t (persisting the previous value first) and, with
// dns.confirm, waits until the authoritative servers answer it — the provider does that as
// part of Set.
func (c *Controller) switchDNS(ctx context.Context, rel *Release, t Traffic) error {
	if c.d.DNS == nil {
		return nil
	}
	step := c.beginStep(ctx, rel, "dns")
	c.mu.Lock()
	prev := c.sys.DNS
	c.mu.Unlock()
	st, err := c.d.DNS.Set(ctx, t, prev)
	if err != nil {
		err = fmt.Errorf("dns (%s) change to blue %d%% green %d%%: %w", c.cfg.DNS.Provider, t.Blue, t.Green, err)
	} else {
		c.mu.Lock()
		c.sys.DNS = st
		err = c.saveSystemLocked(ctx)
		c.mu.Unlock()
		c.event(ctx, rel, EventTraffic, ActorSystem, fmt.Sprintf("dns: %s answers %v (ttl %ds)", c.cfg.DNS.Record, st.Values, st.TTL), map[string]any{"values": st.Values})
	}
	c.endStep(ctx, rel, step, err)
	return err
}

// syncDNS makes the record match the recorded traffic at start (a switch that was cut off, or
// dns: configured after the last release).
func (c *Controller) syncDNS(ctx context.Context) error {
	c.mu.Lock()
	live, t, st := c.sys.Live, c.sys.Traffic, c.sys.DNS
	c.mu.Unlock()
	if c.d.DNS == nil || live == "" || (st != nil && st.Traffic == t) {
		return nil
	}
	return c.switchDNS(ctx, nil, t)
}

// endpointQuiet reports whether the endpoint of colour col has had no request for dns.quiet;
// without DNS, or with a router that does not count endpoints, it always has.
func (c *Controller) endpointQuiet(col Color) (bool, time.Time) {
	if c.d.DNS == nil {
		return true, time.Time{}
	}
	es, ok := c.d.Router.(interface {
		EndpointStats(c Color) (int64, time.Time)
	})
	if !ok {
		return true, time.Time{}
	}
	_, last := es.EndpointStats(col)
	return last.IsZero() || time.Since(last) >= c.cfg.DNS.Quiet, last
}
