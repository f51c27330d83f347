package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
)

// Steps of a switchover, as named in teal.SwitchReport and in errors.
const (
	stepPrepare   = "prepare"         // before the window: checks, catch-up, reverse objects made
	stepFreeze    = "freeze"          // from's role: NOLOGIN, DML revoked, backends terminated
	stepFence     = "fence"           // a fence row from → to: every write of from is on to
	stepVerify    = "verify"          // database.verify checksums: the last key range of each table
	stepSequences = "sequences"       // every sequence's position from → to
	stepDisable   = "disable forward" // the subscription from → to stops
	stepReverse   = "reverse sync"    // the reverse slot moved past to's rows, subscription to → from on
	stepOpen      = "open"            // to's role may write
	stepRoute     = "route"           // the caller moves traffic
	stepDrop      = "drop forward"    // after the window: the old direction is removed
)

// Switchover timings that are not configuration.
const (
	// prepareTimeout bounds what precedes the freeze: catching up (itself bounded by
	// freeze_timeout) and creating the reverse publication and subscription, whose DDL may
	// wait on locks of the app's tables.
	prepareTimeout = time.Minute
	// undoTimeout bounds putting everything back after a failed switchover; it does not
	// count against freeze_timeout, which has usually expired by then.
	undoTimeout = 30 * time.Second
	// canSwitchBackFence is how long a fence live → old may take for CanSwitchBack (more
	// while the subscription's worker is starting).
	canSwitchBackFence = 5 * time.Second
)

// freezeTimeout is database.freeze_timeout, or its default when unset.
func (d *Database) freezeTimeout() time.Duration {
	if d.cfg.FreezeTimeout <= 0 {
		return teal.DefaultFreezeTimeout
	}
	return d.cfg.FreezeTimeout
}

// colorOf returns the colour a DBEnv belongs to, from its role.
func (d *Database) colorOf(env *teal.DBEnv) (teal.Color, error) {
	if env == nil {
		return "", errors.New("no database recorded for the colour")
	}
	for _, c := range teal.Colors {
		if env.Role == d.RoleName(c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("database %s: role %q is neither %s nor %s", env.Name, env.Role, d.RoleName(teal.Blue), d.RoleName(teal.Green))
}

// switchover is one run of Switchover: what it has done so far, so that undo knows what to
// take back.
type switchover struct {
	d        *Database
	from, to *teal.DBEnv
	fc, tc   teal.Color
	fromDB   *pgxpool.Pool // admin, on from's database
	toDB     *pgxpool.Pool // admin, on to's database
	// replicated is false when both colours share one database (mode shared): then only the
	// roles move.
	replicated bool
	reverse    bool            // replicate to → from afterwards (database.reverse_sync)
	force      bool            // ForceSwitchover: no fence, no reverse, no replication needed
	fwdRunning bool            // the subscription from → to exists and is enabled
	seqs       []sequenceState // from's sequences, all present on to
	hot        []verifyTable   // tables whose last range the window verifies

	report teal.SwitchReport

	// What has been started; undo takes back each of them, in reverse order.
	frozen, disabled, pubMade, slotMade, subMade, opened bool
}

// step runs fn and records its duration.
func (s *switchover) step(name string, fn func() error) error {
	start := time.Now()
	err := fn()
	s.report.Steps = append(s.report.Steps, teal.TimedStep{Name: name, Duration: time.Since(start)})
	return err
}

// Switchover moves writes from from's database to to's within database.freeze_timeout,
// following the shared model. Before the window, while writes flow: check the subscription
// from → to, let it catch up, and (reverse_sync) make the publication on to with from's
// columns, the subscription to → from (disabled) and its slot. Then the window:
//
//	freeze from's role → fence from → to → copy sequences → disable the subscription
//	from → to → move the reverse slot past what to has and enable the subscription
//	to → from → open to's role → route
//
// and after it: drop the subscription from → to, its slot and from's publication, and leave
// from's role closed (it may read, not write).
//
// Only the freeze is visible to users before route: a step that fails or passes the deadline
// undoes everything, in reverse order, and from serves as before. The forward subscription is
// only disabled inside the window and dropped after route succeeded, so undo can re-enable it.
// A rollback is the same call with the colours swapped: the reverse subscription made here is
// then the forward one. PostgreSQL 15 has no origin filter, so the two directions are never
// enabled at once.
func (d *Database) Switchover(ctx context.Context, from, to *teal.DBEnv, route func(context.Context) error) (*teal.SwitchReport, error) {
	if d.cfg.Mode == ModeSnapshot {
		return d.snapshotSwitchover(ctx, from, to, route)
	}
	return d.switchover(ctx, &switchover{d: d, from: from, to: to}, route)
}

// ForceSwitchover moves writes from from's database to to's without replication: what
// `teal rollback --force` needs when CanSwitchBack refused (reverse sync off or broken).
// Every write made on from since to stopped receiving them stays only on from. It freezes
// from's role, stops the subscription from → to if it still runs, copies the sequences to
// has (so that new keys on to do not collide with rows written on from meanwhile), opens to's
// role and calls route, all within freeze_timeout; afterwards it drops the replication from
// → to and closes from's role. No reverse replication is made: to lacks from's recent rows.
// On failure it is undone like Switchover.
func (d *Database) ForceSwitchover(ctx context.Context, from, to *teal.DBEnv, route func(context.Context) error) (*teal.SwitchReport, error) {
	return d.switchover(ctx, &switchover{d: d, from: from, to: to, force: true}, route)
}

func (d *Database) switchover(ctx context.Context, s *switchover, route func(context.Context) error) (*teal.SwitchReport, error) {
	from, to := s.from, s.to
	var err error
	if s.fc, err = d.colorOf(from); err != nil {
		return nil, fmt.Errorf("database switchover: %w", err)
	}
	if s.tc, err = d.colorOf(to); err != nil {
		return nil, fmt.Errorf("database switchover: %w", err)
	}
	if s.fc == s.tc {
		return nil, teal.Errorf(teal.ErrInvalid, "", "database switchover: %s to itself", s.fc)
	}
	log := d.log().With("step", "switchover", "from", string(s.fc), "to", string(s.tc))

	err = s.step(stepPrepare, func() error {
		pctx, cancel := context.WithTimeout(ctx, prepareTimeout)
		defer cancel()
		return s.prepare(pctx)
	})
	if err != nil {
		// Nothing users see was changed: only the reverse direction may have been begun.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer ucancel()
		if uerr := s.undo(uctx); uerr != nil {
			err = fmt.Errorf("%w; and removing what it made: %w", err, uerr)
		}
		return &s.report, teal.Errorf(teal.ErrRefused, "fix the cause and switch again; writes were never frozen",
			"database switchover %s → %s: %s: %v; %s serves as before", s.fc, s.tc, stepPrepare, err, s.fc)
	}

	timeout := d.freezeTimeout()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	frozeAt := time.Now()
	failed, err := s.window(wctx, route, frozeAt)
	if err != nil {
		if wctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (database.freeze_timeout %v)", err, timeout)
		}
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer ucancel()
		if uerr := s.undo(uctx); uerr != nil {
			log.Error("switchover undo incomplete", "failed_step", failed, "err", err, "undo_err", uerr)
			return &s.report, teal.Errorf(teal.ErrRefused,
				fmt.Sprintf("check role %s (it should be open) and subscription %s on %s before anything else", from.Role, d.SubName(s.fc, s.tc), to.Name),
				"database switchover %s → %s: %s: %v; undo incomplete: %v", s.fc, s.tc, failed, err, uerr)
		}
		log.Warn("switchover undone", "failed_step", failed, "err", err)
		return &s.report, teal.Errorf(teal.ErrRefused,
			fmt.Sprintf("nothing was changed; switch again, or raise database.freeze_timeout (now %v) if %s was only slow", timeout, failed),
			"database switchover %s → %s: %s: %v; undone, %s serves as before", s.fc, s.tc, failed, err, s.fc)
	}

	// Outside the window: traffic has moved, so failures here are leftovers for cleanup, not
	// reasons to move back.
	_ = s.step(stepDrop, func() error {
		if err := s.finish(ctx); err != nil {
			log.Warn("switchover: old direction not removed; cleanup will retry", "err", err)
		}
		return nil
	})
	log.Info("switchover done", "freeze", s.report.Freeze)
	return &s.report, nil
}

// prepare checks and computes everything that can be done before writes are frozen, so
// that the window holds only what must be in it. It changes nothing that matters to users:
// it only removes leftovers of an earlier, interrupted switchover in the same direction.
func (s *switchover) prepare(ctx context.Context) error {
	d := s.d
	var err error
	if s.fromDB, err = d.Admin(ctx, s.from.Server, s.from.Name); err != nil {
		return err
	}
	if s.toDB, err = d.Admin(ctx, s.to.Server, s.to.Name); err != nil {
		return err
	}
	// Connections are made now, not inside the window.
	for _, p := range []*pgxpool.Pool{s.fromDB, s.toDB} {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
	}
	s.replicated = s.from.Server != s.to.Server || s.from.Name != s.to.Name
	if !s.replicated {
		return nil
	}
	fwd := d.SubName(s.fc, s.tc)
	st, err := subscriptionState(ctx, s.toDB, fwd)
	if err != nil {
		return err
	}
	s.fwdRunning = st.exists && st.enabled
	if s.force {
		s.seqs, err = sequencesToSync(ctx, s.fromDB, s.toDB)
		var missing *missingSequencesError
		if errors.As(err, &missing) {
			// Forced: copy what can be copied.
			s.seqs, err = missing.present, nil
			d.log().Warn("forced switchover: sequences missing on the target are not copied", "sequences", strings.Join(missing.names, ", "))
		}
		return err
	}
	switch {
	case !st.exists:
		return fmt.Errorf("subscription %s is missing on %s: %s's writes are not replicated to it", fwd, s.to.Name, s.fc)
	case !st.enabled:
		return fmt.Errorf("subscription %s on %s is disabled (%d apply errors): %s's recent writes may not be on it", fwd, s.to.Name, st.errors, s.fc)
	}
	if s.seqs, err = sequencesToSync(ctx, s.fromDB, s.toDB); err != nil {
		return err
	}
	if err := s.catchUp(ctx); err != nil {
		return err
	}
	if d.cfg.Verify == VerifyChecksums {
		if s.hot, err = hotTables(ctx, s.fromDB); err != nil {
			return err
		}
	}
	s.reverse = d.cfg.ReverseSync
	if !s.reverse {
		return nil
	}
	if err := s.dropReverse(ctx); err != nil {
		return fmt.Errorf("remove leftovers: %w", err)
	}
	pubSQL, err := reversePublication(ctx, d.PubName(s.tc), s.fromDB, s.toDB)
	if err != nil {
		return err
	}
	return s.createReverse(ctx, pubSQL)
}

// catchUp waits, before the freeze and while writes still flow, until replication from → to
// is close behind: the fence inside the window then carries only the last moments of writes.
// It repeats a fence until its round trip is short or stops improving: a fence proves only
// what was committed before it, and writes go on meanwhile. An apply worker that is not
// running yet (a subscription just created or re-enabled starts within
// wal_retrieve_retry_interval, 5 s by default on PostgreSQL 15) is waited for here too.
func (s *switchover) catchUp(ctx context.Context) error {
	const short = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, s.d.freezeTimeout())
	defer cancel()
	prev := time.Duration(-1)
	for {
		rtt, err := fence(ctx, s.fromDB, s.toDB)
		if err != nil {
			return fmt.Errorf("catch up with %s: %w", s.fc, err)
		}
		if rtt <= short || (prev >= 0 && rtt > prev/2) {
			return nil
		}
		prev = rtt
	}
}

// window runs the frozen part of a switchover; it returns the step that failed.
func (s *switchover) window(ctx context.Context, route func(context.Context) error, frozeAt time.Time) (string, error) {
	d := s.d
	steps := []struct {
		name string
		fn   func() error
	}{
		{stepFreeze, func() error {
			s.frozen = true
			return d.freezeRole(ctx, s.fromDB, s.from.Role)
		}},
		{stepFence, func() error {
			if !s.replicated || s.force {
				return nil
			}
			_, err := fenceNote(ctx, s.fromDB, s.toDB, switchNote(s.fc, s.tc))
			return err
		}},
		{stepVerify, func() error {
			if !s.replicated || s.force || len(s.hot) == 0 {
				return nil
			}
			return verifyHot(ctx, s.fromDB, s.toDB, s.hot)
		}},
		{stepSequences, func() error {
			if !s.replicated {
				return nil
			}
			_, err := copySequences(ctx, s.fromDB, s.toDB, s.seqs)
			return err
		}},
		{stepDisable, func() error {
			if !s.replicated || !s.fwdRunning {
				return nil
			}
			s.disabled = true
			return disableSubscription(ctx, s.toDB, d.SubName(s.fc, s.tc))
		}},
		{stepReverse, func() error {
			if !s.reverse {
				return nil
			}
			return s.startReverse(ctx)
		}},
		{stepOpen, func() error {
			s.opened = true
			err := d.openRole(ctx, s.toDB, s.to.Role)
			s.report.Freeze = time.Since(frozeAt)
			return err
		}},
		{stepRoute, func() error {
			if err := route(ctx); err != nil {
				return fmt.Errorf("move traffic: %w", err)
			}
			return nil
		}},
	}
	for _, st := range steps {
		if err := s.step(st.name, st.fn); err != nil {
			return st.name, err
		}
	}
	return "", nil
}

// createReverse prepares replication to → from before the window, everything that takes a
// connection or waits on other transactions: the publication on to's database (first: a slot
// decodes with the catalog as of each change), the subscription on from's database, disabled
// and without copying (from has every row; creating it connects to to's server, ~100 ms), and
// its slot on to's database, made by teal (a subscription on the same cluster must not create
// its own: it would wait for its own transaction). The slot is made last and, until the window
// moves it past them, would send back the rows the forward subscription is still applying:
// the subscription stays disabled until then.
func (s *switchover) createReverse(ctx context.Context, pubSQL string) error {
	d := s.d
	rev := d.SubName(s.tc, s.fc)
	s.pubMade = true
	if _, err := s.toDB.Exec(ctx, pubSQL); err != nil {
		return fmt.Errorf("create publication %s: %w", d.PubName(s.tc), err)
	}
	conn, err := d.ConnString(s.to.Server, s.to.Name, "", "")
	if err != nil {
		return err
	}
	s.subMade = true
	_, err = s.fromDB.Exec(ctx, "CREATE SUBSCRIPTION "+quoteIdent(rev)+" CONNECTION "+quoteLiteral(conn)+
		" PUBLICATION "+quoteIdent(d.PubName(s.tc))+
		" WITH (create_slot = false, slot_name = "+quoteLiteral(rev)+", copy_data = false, disable_on_error = true, enabled = false)")
	if err != nil {
		// Not the statement: it holds the admin password.
		return fmt.Errorf("create subscription %s: %w", rev, err)
	}
	s.slotMade = true
	if _, err := s.toDB.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", rev); err != nil {
		return fmt.Errorf("create slot %s (it waits for every transaction running on %s to end): %w", rev, s.to.Server, err)
	}
	return nil
}

// startReverse starts replication to → from inside the window, once the forward subscription
// has stopped: the slot is moved past everything to's database has written so far (the rows
// from already has), then the subscription is enabled. A slot may only be advanced up to
// flushed WAL, and the forward subscription commits without waiting for the flush: a
// transaction that writes WAL (a logical message, which pgoutput does not send) and commits
// with synchronous_commit on flushes it first. (A transaction that writes no WAL is not
// flushed at commit, even with an xid.)
func (s *switchover) startReverse(ctx context.Context) error {
	d := s.d
	rev := d.SubName(s.tc, s.fc)
	if _, err := s.toDB.Exec(ctx, "SELECT set_config('synchronous_commit', 'on', true), pg_logical_emit_message(true, 'teal', 'switchover')"); err != nil {
		return fmt.Errorf("flush WAL of %s: %w", s.to.Name, err)
	}
	if _, err := s.toDB.Exec(ctx, "SELECT pg_replication_slot_advance($1, pg_current_wal_flush_lsn())", rev); err != nil {
		return fmt.Errorf("advance slot %s: %w", rev, err)
	}
	if _, err := s.fromDB.Exec(ctx, "ALTER SUBSCRIPTION "+quoteIdent(rev)+" ENABLE"); err != nil {
		return fmt.Errorf("enable subscription %s: %w", rev, err)
	}
	return nil
}

// undo takes back what the window did, in reverse order, and opens from's role again.
//
// One case it cannot take back: a write made on to between open and a failed route (by
// something of the new colour that does not come through the router) is not carried to from,
// or is carried by the reverse subscription and then sent back by the re-enabled forward one,
// which stops on the duplicate (disable_on_error). The router holds every request until route,
// so only such side writers can do it.
func (s *switchover) undo(ctx context.Context) error {
	d := s.d
	var errs []error
	if s.opened {
		// to's sessions may have written since it was opened: freezing terminates them
		// (unacknowledged writes roll back), then it is closed again as it was before.
		if err := d.freezeRole(ctx, s.toDB, s.to.Role); err != nil {
			errs = append(errs, err)
		} else if err := d.closeRole(ctx, s.toDB, s.to.Role); err != nil {
			errs = append(errs, err)
		}
	}
	if s.pubMade || s.slotMade || s.subMade {
		if err := s.dropReverse(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.disabled {
		fwd := d.SubName(s.fc, s.tc)
		if _, err := s.toDB.Exec(ctx, "ALTER SUBSCRIPTION "+quoteIdent(fwd)+" ENABLE"); err != nil {
			errs = append(errs, fmt.Errorf("re-enable subscription %s: %w", fwd, err))
		}
	}
	if s.frozen {
		if err := d.openRole(ctx, s.fromDB, s.from.Role); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dropReverse removes the subscription to → from, its slot and to's publication, whichever
// exist. A walsender still serving the slot belongs to the subscription just dropped.
func (s *switchover) dropReverse(ctx context.Context) error {
	d := s.d
	rev := d.SubName(s.tc, s.fc)
	if err := dropSubscription(ctx, s.fromDB, rev); err != nil {
		return err
	}
	if err := dropSlot(ctx, s.toDB, rev, true); err != nil {
		return err
	}
	pub := d.PubName(s.tc)
	if _, err := s.toDB.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(pub)); err != nil {
		return fmt.Errorf("drop publication %s: %w", pub, err)
	}
	return nil
}

// finish removes the old direction after traffic moved: the subscription from → to (only
// disabled in the window, so undo could re-enable it), its slot on from's server (an idle slot
// retains WAL without limit) and from's publication. from's role goes from frozen to closed:
// its standby instances can connect and read, and still cannot write.
func (s *switchover) finish(ctx context.Context) error {
	d := s.d
	var errs []error
	if s.replicated {
		fwd := d.SubName(s.fc, s.tc)
		if err := dropSubscription(ctx, s.toDB, fwd); err != nil {
			errs = append(errs, err)
		} else if err := dropSlot(ctx, s.fromDB, fwd, true); err != nil {
			errs = append(errs, err)
		}
		pub := d.PubName(s.fc)
		if _, err := s.fromDB.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(pub)); err != nil {
			errs = append(errs, fmt.Errorf("drop publication %s: %w", pub, err))
		}
	}
	if err := d.closeRole(ctx, s.fromDB, s.from.Role); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// switchNote is the note of a switchover's fence row; CanSwitchBack finds the switch time by it.
func switchNote(from, to teal.Color) string { return fmt.Sprintf("switchover %s to %s", from, to) }

// subState is a subscription as the catalogs show it.
type subState struct {
	exists, enabled bool
	errors          int64 // apply + sync errors since the statistics were reset
}

// subscriptionState returns the state of subscription name on db's database.
func subscriptionState(ctx context.Context, db *pgxpool.Pool, name string) (subState, error) {
	var st subState
	rows, err := db.Query(ctx, `SELECT s.subenabled, coalesce(x.apply_error_count + x.sync_error_count, 0)
		FROM pg_subscription s LEFT JOIN pg_stat_subscription_stats x ON x.subid = s.oid
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, name)
	if err != nil {
		return st, fmt.Errorf("read subscription %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		st.exists = true
		if err := rows.Scan(&st.enabled, &st.errors); err != nil {
			return st, fmt.Errorf("read subscription %s: %w", name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("read subscription %s: %w", name, err)
	}
	return st, nil
}

// disableSubscription disables subscription name on db's database and waits until its apply
// worker has exited: only then can nothing more arrive through it.
func disableSubscription(ctx context.Context, db *pgxpool.Pool, name string) error {
	if _, err := db.Exec(ctx, "ALTER SUBSCRIPTION "+quoteIdent(name)+" DISABLE"); err != nil {
		return fmt.Errorf("disable subscription %s: %w", name, err)
	}
	// An idle apply worker notices it was disabled only at its next wake-up (up to a second):
	// terminate it. That is safe: its progress is committed with each applied transaction,
	// and a disabled subscription is not restarted.
	const running = "FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL"
	if _, err := db.Exec(ctx, "SELECT pg_terminate_backend(pid) "+running, name); err != nil {
		return fmt.Errorf("disable subscription %s: %w", name, err)
	}
	wait := time.Millisecond
	for {
		var workers int
		if err := db.QueryRow(ctx, "SELECT count(*) "+running, name).Scan(&workers); err != nil {
			return fmt.Errorf("disable subscription %s: %w", name, err)
		}
		if workers == 0 {
			return nil
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("disable subscription %s: %d workers still running: %w", name, workers, err)
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// dropSubscription drops subscription name on db's database if it exists, leaving its slot on
// the sending server (dropSlot removes it): DROP SUBSCRIPTION would otherwise connect to the
// sender to drop it, and fail when it cannot.
func dropSubscription(ctx context.Context, db *pgxpool.Pool, name string) error {
	st, err := subscriptionState(ctx, db, name)
	if err != nil || !st.exists {
		return err
	}
	q := quoteIdent(name)
	for _, stmt := range []string{
		"ALTER SUBSCRIPTION " + q + " DISABLE",
		"ALTER SUBSCRIPTION " + q + " SET (slot_name = NONE)",
		"DROP SUBSCRIPTION " + q,
	} {
		if _, err := db.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("drop subscription %s: %w", name, err)
		}
	}
	return nil
}

// dropSlot drops replication slot name on db's server if it exists. Callers drop the
// subscription first; with force, a walsender that still holds the slot (it notices its
// subscriber is gone only at its next send) is terminated, else a slot in use is an error.
func dropSlot(ctx context.Context, db *pgxpool.Pool, name string, force bool) error {
	wait := time.Millisecond
	for {
		var pid *int32
		err := db.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&pid)
		if err != nil {
			if isNoRows(err) {
				return nil
			}
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		if pid == nil {
			_, err := db.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name)
			if err == nil {
				return nil
			}
			// It may have become active, or been dropped, meanwhile: look again.
			if ctx.Err() != nil {
				return fmt.Errorf("drop slot %s: %w", name, err)
			}
		} else if !force {
			return fmt.Errorf("drop slot %s: in use by process %d", name, *pid)
		} else if _, err := db.Exec(ctx, "SELECT pg_terminate_backend($1)", *pid); err != nil {
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// table is a user table with its columns, in order.
type table struct {
	schema, name string
	columns      []string
	generated    map[string]bool
	identity     []string // replica identity columns; nil with REPLICA IDENTITY FULL/NOTHING
	identFull    bool
}

func (t *table) key() string { return t.schema + "." + t.name }

// userTables lists the permanent tables of db's database (partitions through their root).
func userTables(ctx context.Context, db *pgxpool.Pool) (map[string]*table, error) {
	rows, err := db.Query(ctx, `SELECT n.nspname, c.relname, a.attname, a.attgenerated <> '', c.relreplident,
			coalesce(a.attnum = ANY (
				SELECT unnest(i.indkey) FROM pg_index i WHERE i.indrelid = c.oid
				AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))
			), false)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
		AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
		ORDER BY 1, 2, a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	out := map[string]*table{}
	for rows.Next() {
		var schema, name, col, ident string
		var generated, inIdentity bool
		if err := rows.Scan(&schema, &name, &col, &generated, &ident, &inIdentity); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		t := out[schema+"."+name]
		if t == nil {
			t = &table{schema: schema, name: name, generated: map[string]bool{}, identFull: ident == "f"}
			out[t.key()] = t
		}
		t.columns = append(t.columns, col)
		t.generated[col] = generated
		if inIdentity {
			t.identity = append(t.identity, col)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return out, nil
}

// reversePublication returns the CREATE PUBLICATION that sends to's changes back to from:
// every table both sides have, each with a column list of the columns from has (to may have
// more, added by the new version's migrations; PG15 column lists). Tables only to has are
// left out. A table whose replica identity on to is not within that list could not publish
// its updates, and is an error naming it.
func reversePublication(ctx context.Context, pub string, fromDB, toDB *pgxpool.Pool) (string, error) {
	fromTables, err := userTables(ctx, fromDB)
	if err != nil {
		return "", fmt.Errorf("source: %w", err)
	}
	toTables, err := userTables(ctx, toDB)
	if err != nil {
		return "", fmt.Errorf("target: %w", err)
	}
	keys := make([]string, 0, len(toTables))
	for k := range toTables {
		if fromTables[k] != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var items, problems []string
	for _, k := range keys {
		ft, tt := fromTables[k], toTables[k]
		onTo := map[string]bool{}
		for _, c := range tt.columns {
			onTo[c] = !tt.generated[c]
		}
		var cols []string
		in := map[string]bool{}
		for _, c := range ft.columns {
			// Generated columns are computed by the receiving side, never sent.
			if onTo[c] && !ft.generated[c] {
				cols = append(cols, quoteIdent(c))
				in[c] = true
			}
		}
		switch {
		case len(cols) == 0:
			problems = append(problems, k+" has no column in common")
			continue
		case tt.identFull && len(cols) != len(tt.columns):
			problems = append(problems, k+" has REPLICA IDENTITY FULL and columns the old side lacks")
			continue
		}
		for _, c := range tt.identity {
			if !in[c] {
				problems = append(problems, fmt.Sprintf("%s: replica identity column %s is not on the old side", k, c))
			}
		}
		items = append(items, pgxIdent(tt.schema, tt.name)+" ("+strings.Join(cols, ", ")+")")
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("reverse replication impossible: %s", strings.Join(problems, "; "))
	}
	if len(items) == 0 {
		return "", errors.New("reverse replication: no table in common")
	}
	return "CREATE PUBLICATION " + quoteIdent(pub) + " FOR TABLE " + strings.Join(items, ", "), nil
}

// CanSwitchBack returns nil when switching from live back to old loses no write: the
// subscription live → old exists on old's database, is enabled, has had no error, and a fence
// from live arrives on old within 5 s (plus wal_retrieve_retry_interval while its worker is
// starting). Otherwise it says what a rollback would lose.
func (d *Database) CanSwitchBack(ctx context.Context, live, old *teal.DBEnv) error {
	if d.cfg.Mode == ModeSnapshot {
		return d.snapshotCanSwitchBack(ctx, live, old)
	}
	lc, err := d.colorOf(live)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	oc, err := d.colorOf(old)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	if live.Server == old.Server && live.Name == old.Name {
		return nil // one shared database: nothing to lose
	}
	liveDB, err := d.Admin(ctx, live.Server, live.Name)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	oldDB, err := d.Admin(ctx, old.Server, old.Name)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	const hint = "--force rolls back anyway"
	lost := fmt.Sprintf("every write made on %s since %s would not be on %s", lc, d.switchTime(ctx, liveDB, oc, lc), oc)
	sub := d.SubName(lc, oc)
	st, err := subscriptionState(ctx, oldDB, sub)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	switch {
	case !st.exists && !d.cfg.ReverseSync:
		return teal.Errorf(teal.ErrRefused, hint, "reverse sync is off: %s", lost)
	case !st.exists:
		return teal.Errorf(teal.ErrRefused, hint, "reverse replication %s is missing on %s: %s", sub, old.Name, lost)
	case !st.enabled:
		return teal.Errorf(teal.ErrRefused, hint, "reverse replication %s is disabled (%d apply errors): %s", sub, st.errors, lost)
	case st.errors > 0:
		return teal.Errorf(teal.ErrRefused, hint, "reverse replication %s has had %d apply errors: some of %s may be missing", sub, st.errors, lost)
	}
	// A worker that has not started yet (PostgreSQL 15 starts subscriptions' workers at most
	// once per wal_retrieve_retry_interval) gets that long on top.
	allow := canSwitchBackFence
	var running bool
	var retryMS int64
	err = oldDB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL),
		(SELECT setting::bigint FROM pg_settings WHERE name = 'wal_retrieve_retry_interval')`, sub).Scan(&running, &retryMS)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	if !running {
		allow += time.Duration(retryMS) * time.Millisecond
	}
	fctx, cancel := context.WithTimeout(ctx, allow)
	defer cancel()
	if _, err := fenceNote(fctx, liveDB, oldDB, "rollback check"); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("check rollback: %w", err)
		}
		return teal.Errorf(teal.ErrRefused, hint, "reverse replication %s is behind (%v): %s", sub, err, lost)
	}
	return nil
}

// switchTime describes when writes moved from one colour to the other, from the fence row the
// switchover left in to's fence table.
func (d *Database) switchTime(ctx context.Context, db *pgxpool.Pool, from, to teal.Color) string {
	var at *time.Time
	err := db.QueryRow(ctx, "SELECT max(at) FROM public."+FenceTable+" WHERE note = $1", switchNote(from, to)).Scan(&at)
	if err != nil || at == nil {
		return "the switch"
	}
	return "the switch at " + at.UTC().Format(time.RFC3339)
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
