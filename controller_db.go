package teal

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file is the database step's part of the controller: preparing the new colour's
// database, holding the gate while it lags, moving writes at the switch, and retiring old
// copies. It does nothing when Deps.Database is nil.

// warmReuse reports whether col already runs rel's version with everything prepared: a
// re-promotion after a rollback.
func warmReuse(env *Environment, rel *Release) bool {
	return env.Version == rel.Version && env.Digest == rel.Digest && len(env.Instances) > 0 &&
		(env.State == EnvReady || env.State == EnvDraining)
}

// prepareDatabase gives rel's colour its database: the production database migrated in place
// on the first release, else a copy of the live one, in sync, migrated and verified.
func (c *Controller) prepareDatabase(ctx context.Context, rel *Release) error {
	col := rel.Color
	c.mu.Lock()
	env := c.sys.Env(col)
	reuse := warmReuse(env, rel) && env.Database != nil && env.Database.Version == rel.Version
	var live *DBEnv
	if rel.From != "" {
		live = c.sys.Env(rel.From).Database
	}
	c.mu.Unlock()
	if reuse {
		return nil // the copy is in sync since the rollback that left it warm
	}
	if rel.From != "" && live == nil {
		return fmt.Errorf("the live colour %s has no database recorded: was database.mode turned on after its release? release it again first", rel.From)
	}

	// The idle colour may still run an older version on an older copy: stop it, then retire
	// that copy (its held-back migrations run on the live database now that nothing old is
	// left to replicate back to).
	if err := c.stopIdle(ctx, rel, env); err != nil {
		return err
	}
	c.mu.Lock()
	old := env.Database
	c.mu.Unlock()
	if old != nil && !(old.Version == rel.Version && !old.Production && live != nil) {
		if err := c.retireDatabase(ctx, rel, live, old); err != nil {
			return err
		}
	}

	art, err := c.d.Artifacts.Get(ctx, rel.Version)
	if err != nil {
		return fmt.Errorf("artifact of %s: %w", rel.Version, err)
	}
	t := DBTarget{ReleaseID: rel.ID, Actor: rel.Actor, Color: col, Version: rel.Version, Artifact: art.Path, Live: live}

	c.mu.Lock()
	env.Version, env.Digest, env.Instances, env.RetireAt = rel.Version, rel.Digest, nil, nil
	c.setState(env, EnvProvisioning, time.Now().UTC())
	err = c.saveSystemLocked(ctx)
	c.mu.Unlock()
	if err != nil {
		return err
	}

	step := c.beginStep(ctx, rel, "db-preflight")
	err = c.d.Database.Preflight(ctx, t)
	c.endStep(ctx, rel, step, err)
	if err != nil {
		return err
	}

	step = c.beginStep(ctx, rel, "db-prepare")
	dbenv, err := c.d.Database.Prepare(ctx, t, func(msg string, attrs map[string]any) {
		c.event(ctx, rel, EventStep, ActorSystem, "db-prepare: "+msg, attrs)
	})
	if dbenv != nil {
		// Recorded even on failure, so that teardown finds what was created.
		c.mu.Lock()
		env.Database = dbenv
		if serr := c.saveSystemLocked(ctx); serr != nil && err == nil {
			err = serr
		}
		c.mu.Unlock()
	}
	c.endStep(ctx, rel, step, err)
	return err
}

// retireDatabase applies live's held-back migrations and drops old's copy.
func (c *Controller) retireDatabase(ctx context.Context, rel *Release, live, old *DBEnv) error {
	step := c.beginStep(ctx, rel, "db-retire")
	err := c.d.Database.Retire(ctx, live, old)
	c.endStep(ctx, rel, step, err)
	if err != nil {
		return fmt.Errorf("retire database %s: %w", old.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, col := range Colors {
		e := c.sys.Env(col)
		if e.Database == old {
			e.Database = nil
			e.DBRetireAt = nil
		}
		if e.Database == live {
			live.HeldBack = nil
		}
	}
	return c.saveSystemLocked(ctx)
}

// waitDatabaseReady waits until the new colour's copy is within max_lag, up to deadline. An
// error that is not about lag (replication broke) fails at once.
func (c *Controller) waitDatabaseReady(ctx context.Context, rel *Release, deadline time.Duration) error {
	c.mu.Lock()
	db := c.sys.Env(rel.Color).Database
	c.mu.Unlock()
	if c.d.Database == nil || db == nil {
		return nil
	}
	step := c.beginStep(ctx, rel, "db-ready")
	ctx2, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var err error
	for {
		var lag DBLag
		lag, err = c.d.Database.Ready(ctx2, db)
		c.noteLag(rel.Color, lag, err)
		if err == nil {
			c.event(ctx, rel, EventStep, ActorSystem, fmt.Sprintf("db-ready: lag %d bytes, fence %s", lag.Bytes, lag.Fence.Round(time.Microsecond)),
				map[string]any{"lag_bytes": lag.Bytes, "fence_seconds": lag.Fence.Seconds()})
			break
		}
		if !errors.Is(err, ErrRefused) || ctx2.Err() != nil {
			break
		}
		select {
		case <-ctx2.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	c.endStep(ctx, rel, step, err)
	return err
}

// databaseBroken returns a non-nil error when the new colour's replication failed (not when
// it merely lags): the gate must not open, and the release fails.
func (c *Controller) databaseBroken(ctx context.Context, rel *Release) error {
	c.mu.Lock()
	db := c.sys.Env(rel.Color).Database
	c.mu.Unlock()
	if c.d.Database == nil || db == nil {
		return nil
	}
	lag, err := c.d.Database.Ready(ctx, db)
	c.noteLag(rel.Color, lag, err)
	if err == nil || errors.Is(err, ErrRefused) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("database of %s: %w", rel.Color, err)
}

// switchWrites moves traffic to col inside a database switchover: the router holds new
// requests, in-flight ones finish, writes move, traffic moves, held requests go on to col.
// With no database (or on the first release) it just routes.
func (c *Controller) switchWrites(ctx context.Context, rel *Release, col Color, force bool, route func(context.Context) error) error {
	old := col.Other()
	c.mu.Lock()
	from, to := c.sys.Env(old).Database, c.sys.Env(col).Database
	c.mu.Unlock()
	if c.d.Database == nil || from == nil || to == nil || c.sys.Live == "" {
		return route(ctx)
	}
	h, ok := c.d.Router.(holder)
	if !ok {
		return fmt.Errorf("the router cannot hold requests, which a database switchover needs")
	}
	if c.cfg.Database.Mode == "snapshot" && !force {
		// Snapshot mode copies the data at the switch: users see a maintenance page
		// meanwhile, and the downtime is measured.
		m, ok := c.d.Router.(interface{ Maintenance(on bool) })
		if !ok {
			return fmt.Errorf("the router has no maintenance mode, which database.mode snapshot needs")
		}
		m.Maintenance(true)
		start := time.Now()
		defer func() {
			m.Maintenance(false)
			down := time.Since(start)
			c.metrics.downtime(down)
			c.event(ctx, rel, EventTraffic, ActorSystem, fmt.Sprintf("maintenance page shown for %s (database.mode snapshot)", down.Round(time.Millisecond)),
				map[string]any{"downtime_seconds": down.Seconds()})
		}()
	} else {
		release := h.Hold()
		defer release()
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.Database.FreezeTimeout)
	err := h.DrainRequests(dctx, old)
	cancel()
	if err != nil {
		return Errorf(ErrRefused, "long requests keep the old colour busy: retry, or raise database.freeze_timeout",
			"switchover not started, traffic stays on %s: %v", old, err)
	}
	switchover := c.d.Database.Switchover
	if force {
		switchover = c.d.Database.ForceSwitchover
	}
	rep, err := switchover(ctx, from, to, route)
	if rep != nil {
		c.mu.Lock()
		c.sys.LastDBSwitch = rep
		if serr := c.saveSystemLocked(ctx); serr != nil {
			c.log().Error("record the switchover's timing", "err", serr)
		}
		c.mu.Unlock()
		c.metrics.freeze(rep.Freeze)
		attrs := map[string]any{"freeze_seconds": rep.Freeze.Seconds()}
		for _, s := range rep.Steps {
			attrs[s.Name+"_seconds"] = s.Duration.Seconds()
		}
		c.event(ctx, rel, EventStep, ActorSystem, fmt.Sprintf("database switchover %s → %s: writes frozen for %s", old, col, rep.Freeze.Round(time.Microsecond)), attrs)
	}
	return err
}

// housekeep retires old database copies whose keep_old_database is over, once their
// colour's instances are gone. It runs every second while the database step is on.
func (c *Controller) housekeep(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		if c.cur != nil || c.sys.Live == "" {
			c.mu.Unlock()
			continue
		}
		live := c.sys.Env(c.sys.Live).Database
		old := c.sys.Env(c.sys.Live.Other())
		due := live != nil && old.Database != nil && old.State == EnvTerminated &&
			old.DBRetireAt != nil && time.Now().After(*old.DBRetireAt)
		odb := old.Database
		c.mu.Unlock()
		if !due {
			continue
		}
		if err := c.retireDatabase(ctx, nil, live, odb); err != nil {
			c.log().Error("retire old database", "err", err)
			c.event(ctx, nil, EventError, ActorSystem, err.Error(), nil)
			continue
		}
		c.event(ctx, nil, EventAction, ActorSystem, fmt.Sprintf("database %s retired after database.keep_old_database %s", odb.Name, c.cfg.Database.KeepOldDatabase), nil)
	}
}

// reconcileDatabases runs at start: when the server died during a switchover (or after it,
// before its last steps), the databases are brought to the steady state of the traffic that
// was recorded — the record decides which colour writes.
func (c *Controller) reconcileDatabases(ctx context.Context, cur *Release) error {
	if c.d.Database == nil || c.sys.Live == "" || (cur != nil && cur.Phase != PhaseSwitching) {
		return nil // a release before its switch resumes its own step
	}
	live, idle := c.sys.Env(c.sys.Live).Database, c.sys.Env(c.sys.Live.Other()).Database
	if live == nil || idle == nil {
		return nil
	}
	return c.d.Database.Reconcile(ctx, live, idle)
}

// noteLag keeps the latest lag measured for col, for status.
func (c *Controller) noteLag(col Color, lag DBLag, err error) {
	if err != nil && !errors.Is(err, ErrRefused) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lag == nil {
		c.lag = map[Color]DBLag{}
	}
	c.lag[col] = lag
}

// reportLeftovers says, at start, what replication objects of the app no recorded database
// refers to (a crashed attempt, a manual experiment): an inactive slot retains WAL without
// limit, so each is an event with the SQL that removes it.
func (c *Controller) reportLeftovers(ctx context.Context) {
	lf, ok := c.d.Database.(interface {
		Leftovers(ctx context.Context, known []*DBEnv) ([]string, error)
	})
	if !ok {
		return
	}
	c.mu.Lock()
	var known []*DBEnv
	for _, col := range Colors {
		if db := c.sys.Env(col).Database; db != nil {
			known = append(known, db)
		}
	}
	c.mu.Unlock()
	found, err := lf.Leftovers(ctx, known)
	if err != nil {
		c.log().Warn("look for leftover replication objects", "err", err)
		return
	}
	for _, f := range found {
		c.log().Warn("leftover replication object", "what", f)
		c.event(ctx, nil, EventError, ActorSystem, "leftover: "+f, nil)
	}
}
