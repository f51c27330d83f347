package postgres

import (
	"context"
	"fmt"

	"teal.dev/teal"
)

// Mode shared: both colours use one database, the live one; only the roles move. There is
// nothing to copy, sync or verify, and no write can be lost at a switch (there is one copy of
// the data), but the old version keeps running on the new schema until it is gone: before the
// switch only migrations that are safe before cutover run (what the old version can live
// with), and the contract steps are held back until the old colour is retired
// (expand/contract across the switch).

// ModeShared is database.mode for one database shared by both colours.
const ModeShared = "shared"

func (d *Database) shared() bool { return d.cfg.Mode == ModeShared }

// prepareShared gives t.Color its own role on the live database (closed: the preview may read,
// not write) and applies the version's safe migrations to the live database itself.
func (d *Database) prepareShared(ctx context.Context, t teal.DBTarget, progress teal.DBProgress) (*teal.DBEnv, error) {
	live := t.Live
	role, _, err := d.ensureRole(ctx, live.Server, t.Color)
	if err != nil {
		return nil, fmt.Errorf("prepare shared database %s: %w", live.Name, err)
	}
	db, err := d.Admin(ctx, live.Server, live.Name)
	if err != nil {
		return nil, fmt.Errorf("prepare shared database %s: %w", live.Name, err)
	}
	dir := d.migrationsDir(t.Artifact)
	progress("migrating the shared database: safe-before-cutover steps only", map[string]any{"database": live.Name})
	// Replicating: the same rules as for a copy — nothing the live version cannot live with.
	held, err := d.migrate(ctx, live.Server, live.Name, dir, t.Actor, t.ReleaseID, true, nil)
	if err != nil {
		return nil, fmt.Errorf("prepare shared database %s: %w", live.Name, err)
	}
	if err := d.closeRole(ctx, db, role); err != nil {
		return nil, fmt.Errorf("prepare shared database %s: %w", live.Name, err)
	}
	return &teal.DBEnv{Name: live.Name, Role: role, Server: live.Server, Production: live.Production,
		Version: t.Version, HeldBack: held, Migrations: dir}, nil
}

// sameDatabase reports whether two colours' databases are one (mode shared).
func sameDatabase(a, b *teal.DBEnv) bool {
	return a != nil && b != nil && a.Server == b.Server && a.Name == b.Name
}

// teardownShared takes a failed release's role off the shared database; the data stays.
func (d *Database) teardownShared(ctx context.Context, env *teal.DBEnv) error {
	db, err := d.Admin(ctx, env.Server, env.Name)
	if err != nil {
		return fmt.Errorf("teardown %s's role: %w", env.Role, err)
	}
	if err := d.freezeRole(ctx, db, env.Role); err != nil {
		return fmt.Errorf("teardown %s's role: %w", env.Role, err)
	}
	return nil
}

// retireShared runs the held-back contract steps on the shared database once the old colour
// is gone, and takes the old colour's role off it.
func (d *Database) retireShared(ctx context.Context, live, old *teal.DBEnv) error {
	db, err := d.Admin(ctx, live.Server, live.Name)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	if err := d.freezeRole(ctx, db, old.Role); err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	if len(live.HeldBack) > 0 {
		if _, err := d.migrate(ctx, live.Server, live.Name, live.Migrations, "teal", 0, false, live.HeldBack); err != nil {
			return fmt.Errorf("retire: held-back migrations: %w", err)
		}
		live.HeldBack = nil
	}
	return nil
}
