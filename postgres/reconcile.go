package postgres

import (
	"context"
	"errors"
	"fmt"

	"teal.dev/teal"
)

// Reconcile brings the databases back to the steady state of the traffic teal recorded, after
// the server died in the middle of a switchover: live's role open, idle's role closed, idle's
// database receiving live's writes (subscription live → idle enabled, when it exists), and no
// replication idle → live left behind.
//
// It works whichever side of the switchover the crash happened on, because the steady states
// before and after a switchover have the same shape with the colours named by the traffic:
// if the switch was not recorded, live is the old colour and the half-made reverse direction is
// removed, the forward subscription re-enabled and the old colour's role opened again; if it
// was recorded, live is the new colour and what remained of the old direction is removed.
//
// A write made on idle between its role being opened and the crash (only possible by a
// client that does not go through teal's router, which holds every request until the switch
// is recorded) is not carried to live.
func (d *Database) Reconcile(ctx context.Context, live, idle *teal.DBEnv) error {
	if d.cfg.Mode == ModeSnapshot {
		return d.reconcileSnapshot(ctx, live, idle)
	}
	s := &switchover{d: d, from: live, to: idle}
	var err error
	if s.fc, err = d.colorOf(live); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if s.tc, err = d.colorOf(idle); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if s.fromDB, err = d.Admin(ctx, live.Server, live.Name); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if s.toDB, err = d.Admin(ctx, idle.Server, idle.Name); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var errs []error
	// idle may have been opened: nothing of it may write any more.
	if err := d.freezeRole(ctx, s.toDB, idle.Role); err != nil {
		errs = append(errs, err)
	} else if err := d.closeRole(ctx, s.toDB, idle.Role); err != nil {
		errs = append(errs, err)
	}
	// The direction idle → live (a reverse made before a crash, or the old forward one).
	if err := s.dropReverse(ctx); err != nil {
		errs = append(errs, err)
	}
	// The direction live → idle keeps idle in sync.
	fwd := d.SubName(s.fc, s.tc)
	st, err := subscriptionState(ctx, s.toDB, fwd)
	switch {
	case err != nil:
		errs = append(errs, err)
	case st.exists && !st.enabled:
		if _, err := s.toDB.Exec(ctx, "ALTER SUBSCRIPTION "+quoteIdent(fwd)+" ENABLE"); err != nil {
			errs = append(errs, fmt.Errorf("re-enable subscription %s: %w", fwd, err))
		}
	}
	if err := d.openRole(ctx, s.fromDB, live.Role); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reconcile databases after a restart (live %s): %w", s.fc, err)
	}
	d.log().Info("databases reconciled with the recorded traffic", "live", s.fc, "live_db", live.Name, "idle_db", idle.Name)
	return nil
}

// reconcileSnapshot is Reconcile in mode snapshot, where nothing replicates: live's role is
// opened again and idle's closed, if idle's database still exists (a switchover cut off after
// dropping it leaves none; the next Prepare or Switchover makes it again).
func (d *Database) reconcileSnapshot(ctx context.Context, live, idle *teal.DBEnv) error {
	liveDB, err := d.Admin(ctx, live.Server, live.Name)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if err := d.openRole(ctx, liveDB, live.Role); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	admin, err := d.Admin(ctx, idle.Server, "postgres")
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", idle.Name).Scan(&exists); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if !exists {
		return nil
	}
	idleDB, err := d.Admin(ctx, idle.Server, idle.Name)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if err := d.freezeRole(ctx, idleDB, idle.Role); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	return d.closeRole(ctx, idleDB, idle.Role)
}
