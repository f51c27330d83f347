package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"teal.dev/teal"
)

// Mode snapshot (database.mode: snapshot) is for teams that accept downtime: nothing
// replicates. Prepare gives the new colour a preview copy made from a full dump of the live
// database, with every migration applied; the live database keeps changing meanwhile, so the
// copy is only for looking at. At the switch the router shows its maintenance page, the old
// colour's writes are frozen, and the new colour's database is made again from a fresh dump
// of the old one, migrated and opened: the writes of the whole downtime window are in it, and
// none is lost. There is no way back without losing the writes made since: CanSwitchBack
// always refuses, and a rollback is ForceSwitchover.

// ModeSnapshot is database.mode snapshot.
const ModeSnapshot = "snapshot"

// Steps of a switchover in mode snapshot, as named in teal.SwitchReport and in errors.
const (
	stepDropCopy = "drop copy" // to's preview copy and its sessions go
	stepDump     = "dump and restore"
	stepMigrate  = "migrate"
	stepClose    = "close" // from's role: frozen → closed, after the window
)

// snapshotPrepare is Prepare in mode snapshot; the first release is migrated in place as in
// every mode.
func (d *Database) snapshotPrepare(ctx context.Context, t teal.DBTarget, progress teal.DBProgress) (*teal.DBEnv, error) {
	if progress == nil {
		progress = func(string, map[string]any) {}
	}
	if !t.Color.Valid() {
		return nil, fmt.Errorf("prepare database: colour %q: want blue or green", t.Color)
	}
	if t.Live == nil {
		return d.prepareInPlace(ctx, t, progress)
	}
	from, err := d.colorOf(t.Live)
	if err != nil {
		return nil, fmt.Errorf("prepare database: live database: %w", err)
	}
	if from == t.Color {
		return nil, fmt.Errorf("prepare database: colour %s is the live colour", t.Color)
	}
	name := d.DBName(t.Color, t.Version)
	if t.Live.Server == d.preprod.addr && t.Live.Name == name {
		return nil, teal.Errorf(teal.ErrRefused, "give the release another version, or change database.name_template",
			"prepare database: %s on %s is the live database: it cannot be replaced by a copy", name, d.preprod.addr)
	}
	if err := d.checkPreflight(ctx, t, progress); err != nil {
		return nil, err
	}
	log := d.log().With("app", d.app, "color", t.Color, "version", t.Version, "database", name, "mode", ModeSnapshot)
	progress("copying "+t.Live.Name+" into "+name+" (a preview: the live database keeps changing)", map[string]any{"database": name})
	// A restarted Prepare starts over: the copy is only a preview, remade at the switch.
	if err := d.snapshotCopy(ctx, t.Live, name); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	cp, err := d.Admin(ctx, d.preprod.addr, name)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	role, err := d.closedRoleOn(ctx, cp, t.Color)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	dir := d.migrationsDir(t.Artifact)
	progress("migrating the copy", map[string]any{"database": name})
	// Nothing replicates into the copy: every migration runs, contract steps included.
	if _, err := d.migrate(ctx, d.preprod.addr, name, dir, t.Actor, t.ReleaseID, false, nil); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	// Again, for the tables the migrations created: preview instances may read them too.
	if err := d.closeRole(ctx, cp, role); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	if err := analyze(ctx, cp); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	log.Info("preview copy prepared", "role", role)
	return &teal.DBEnv{Name: name, Role: role, Server: d.preprod.addr, Version: t.Version, Migrations: dir}, nil
}

// snapshotCopy (re)creates database name on the preproduction server as a full copy of
// src: whatever has that name is dropped first, then a parallel directory-format dump of
// src's schema and data (one consistent snapshot, shared by pg_dump's workers) is restored
// into a new database with src's encoding and collation. Ownership and grants are not
// copied: the admin owns everything and the colour's role gets its grants from its state.
func (d *Database) snapshotCopy(ctx context.Context, src *teal.DBEnv, name string) error {
	srcSrv, err := d.serverOf(src.Server)
	if err != nil {
		return err
	}
	srcDB, err := d.Admin(ctx, src.Server, src.Name)
	if err != nil {
		return err
	}
	if err := d.dropCopy(ctx, d.preprod.addr, name); err != nil {
		return fmt.Errorf("drop the previous copy: %w", err)
	}
	tmp, err := os.MkdirTemp("", "teal-snapshot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dump := filepath.Join(tmp, "dump")
	if err := d.runTool(ctx, "pg_dump", srcSrv, src.Name, "--format=directory", "--jobs=2", "--file="+dump,
		"--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions", "--no-tablespaces"); err != nil {
		return fmt.Errorf("dump %s: %w", src.Name, err)
	}
	if err := d.createDatabase(ctx, srcDB, name); err != nil {
		return err
	}
	if err := d.runTool(ctx, "pg_restore", d.preprod, name, "--jobs=2", "--no-owner", "--no-privileges",
		"--no-tablespaces", "--exit-on-error", dump); err != nil {
		return fmt.Errorf("restore into %s: %w", name, err)
	}
	return nil
}

// snapshotPreflight checks what mode snapshot needs of a later release: recent servers, and
// an admin user that can read the live database whole, create databases on the
// preproduction server and create the colours' roles. Replication settings do not matter.
func (d *Database) snapshotPreflight(ctx context.Context, t teal.DBTarget) (problems, warnings []string, err error) {
	if _, err := d.colorOf(t.Live); err != nil {
		return nil, nil, err
	}
	live, err := d.Admin(ctx, t.Live.Server, t.Live.Name)
	if err != nil {
		return nil, nil, err
	}
	recv, err := d.maintenance(ctx, d.preprod)
	if err != nil {
		return nil, nil, err
	}
	p, err := checkVersion(ctx, live, t.Live.Server)
	if err != nil {
		return nil, nil, err
	}
	problems = append(problems, p...)
	if d.preprod.addr != t.Live.Server {
		p, err := checkVersion(ctx, recv, d.preprod.addr)
		if err != nil {
			return nil, nil, err
		}
		problems = append(problems, p...)
	}
	// Reading everything: pg_dump needs SELECT on every table and sequence.
	r, err := roleOf(ctx, live)
	if err != nil {
		return nil, nil, err
	}
	if !r.super {
		unreadable, err := queryStrings(ctx, live, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
			AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1 LIMIT 10`)
		if err != nil {
			return nil, nil, fmt.Errorf("privileges of the admin user: %w", err)
		}
		if len(unreadable) > 0 {
			problems = append(problems, fmt.Sprintf("admin user %s cannot read %v in %s, so it cannot dump it: GRANT pg_read_all_data TO %s (or use a superuser)",
				r.user, unreadable, t.Live.Name, quoteIdent(r.user)))
		}
	}
	rr, err := roleOf(ctx, recv)
	if err != nil {
		return nil, nil, err
	}
	if !rr.super {
		if !rr.createDB {
			problems = append(problems, fmt.Sprintf("admin user %s on %s cannot create the colours' databases: ALTER ROLE %s CREATEDB (or use a superuser)",
				rr.user, d.preprod.addr, quoteIdent(rr.user)))
		}
		if !rr.createRole {
			problems = append(problems, fmt.Sprintf("admin user %s on %s cannot create the colours' login roles: ALTER ROLE %s CREATEROLE (or use a superuser)",
				rr.user, d.preprod.addr, quoteIdent(rr.user)))
		}
	}
	return problems, nil, nil
}

// snapshotSwitchover is Switchover in mode snapshot. The caller has put the router in
// maintenance and drained requests. In order, each step timed:
//
//	freeze from's role → drop to's preview copy (its sessions go) → make it again from a
//	fresh dump of from → every migration → open to's role → route
//
// and after it, from's role is closed (it may read, not write). The window is bounded by ctx
// only, not by database.freeze_timeout: it lasts as long as the dump and restore, which is
// the downtime this mode accepts; Report.Freeze measures it. A step that fails before traffic
// moved opens from's role again and leaves to's database as the step left it (a later
// Switchover or Prepare remakes it); the error wraps teal.ErrRefused and names the step.
func (d *Database) snapshotSwitchover(ctx context.Context, from, to *teal.DBEnv, route func(context.Context) error) (*teal.SwitchReport, error) {
	s := &switchover{d: d, from: from, to: to}
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
	switch {
	case to.Production:
		return nil, teal.Errorf(teal.ErrRefused, "roll back with --force, which keeps the production database as it is",
			"database switchover %s → %s: %s is the production database: mode snapshot would replace it with a copy", s.fc, s.tc, to.Name)
	case to.Server == from.Server && to.Name == from.Name:
		return nil, teal.Errorf(teal.ErrRefused, "give the release another version, or change database.name_template",
			"database switchover %s → %s: both colours are database %s", s.fc, s.tc, to.Name)
	case to.Server != d.preprod.addr:
		return nil, teal.Errorf(teal.ErrRefused, "release again: Prepare makes the copy on database.preproduction's server",
			"database switchover %s → %s: %s is on %s, not on database.preproduction's server %s", s.fc, s.tc, to.Name, to.Server, d.preprod.addr)
	}
	log := d.log().With("step", "switchover", "mode", ModeSnapshot, "from", string(s.fc), "to", string(s.tc))

	err = s.step(stepPrepare, func() error {
		var err error
		if s.fromDB, err = d.Admin(ctx, from.Server, from.Name); err != nil {
			return err
		}
		// The connection is made now, not inside the window.
		return s.fromDB.Ping(ctx)
	})
	if err != nil {
		return &s.report, teal.Errorf(teal.ErrRefused, "fix the cause and switch again; writes were never frozen",
			"database switchover %s → %s: %s: %v; %s serves as before", s.fc, s.tc, stepPrepare, err, s.fc)
	}
	// The migrations at the switch are recorded as the ones Prepare ran: same release, same
	// actor.
	actor, releaseID := d.snapshotHistory(ctx, to)

	frozeAt := time.Now()
	steps := []struct {
		name string
		fn   func() error
	}{
		{stepFreeze, func() error {
			s.frozen = true
			return d.freezeRole(ctx, s.fromDB, from.Role)
		}},
		{stepDropCopy, func() error { return d.dropCopy(ctx, to.Server, to.Name) }},
		{stepDump, func() error { return d.snapshotCopy(ctx, from, to.Name) }},
		{stepMigrate, func() error {
			_, err := d.migrate(ctx, to.Server, to.Name, to.Migrations, actor, releaseID, false, nil)
			return err
		}},
		{stepOpen, func() error {
			var err error
			if s.toDB, err = d.Admin(ctx, to.Server, to.Name); err != nil {
				return err
			}
			if _, _, err := d.ensureRole(ctx, to.Server, s.tc); err != nil {
				return err
			}
			// The switch time, for CanSwitchBack's message: a fence row as a clone-mode
			// switchover leaves one.
			if _, err := s.toDB.Exec(ctx, "INSERT INTO public."+FenceTable+" (note) VALUES ($1)", switchNote(s.fc, s.tc)); err != nil {
				return fmt.Errorf("record the switch: %w", err)
			}
			s.opened = true
			err = d.openRole(ctx, s.toDB, to.Role)
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
			return &s.report, s.snapshotUndo(ctx, log, st.name, err)
		}
	}
	_ = s.step(stepClose, func() error {
		if err := d.closeRole(ctx, s.fromDB, from.Role); err != nil {
			log.Warn("switchover: old colour's role not closed (it stays frozen)", "err", err)
		}
		return nil
	})
	log.Info("switchover done", "freeze", s.report.Freeze)
	return &s.report, nil
}

// snapshotUndo puts from back after a snapshot switchover failed at step failed: to's role,
// if it was opened, frozen and closed again; from's role opened. to's database stays as the
// step left it: it is only a copy, remade by the next attempt.
func (s *switchover) snapshotUndo(ctx context.Context, log *slog.Logger, failed string, err error) error {
	d := s.d
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var errs []error
	if s.opened {
		if err := d.freezeRole(uctx, s.toDB, s.to.Role); err != nil {
			errs = append(errs, err)
		} else if err := d.closeRole(uctx, s.toDB, s.to.Role); err != nil {
			errs = append(errs, err)
		}
	}
	if s.frozen {
		if err := d.openRole(uctx, s.fromDB, s.from.Role); err != nil {
			errs = append(errs, err)
		}
	}
	if uerr := errors.Join(errs...); uerr != nil {
		log.Error("switchover undo incomplete", "failed_step", failed, "err", err, "undo_err", uerr)
		return teal.Errorf(teal.ErrRefused, fmt.Sprintf("check role %s on %s (it should be open) before anything else", s.from.Role, s.from.Name),
			"database switchover %s → %s (snapshot): %s: %v; undo incomplete: %v", s.fc, s.tc, failed, err, uerr)
	}
	log.Warn("switchover undone", "failed_step", failed, "err", err)
	return teal.Errorf(teal.ErrRefused, "fix the cause and switch again; the new colour's copy is remade then",
		"database switchover %s → %s (snapshot): %s: %v; undone, %s serves as before", s.fc, s.tc, failed, err, s.fc)
}

// snapshotHistory returns the actor and release of the last migration recorded on env's
// database (the ones its Prepare ran), or teal's own when there is none.
func (d *Database) snapshotHistory(ctx context.Context, env *teal.DBEnv) (actor string, releaseID int64) {
	actor = "teal"
	db, err := d.Admin(ctx, env.Server, env.Name)
	if err != nil {
		return actor, 0
	}
	var a string
	var r int64
	err = db.QueryRow(ctx, `SELECT coalesce(actor, ''), coalesce(release_id, 0) FROM teal_migrations
		ORDER BY applied_at DESC NULLS LAST LIMIT 1`).Scan(&a, &r)
	if err != nil || a == "" {
		return actor, r
	}
	return a, r
}

// snapshotCanSwitchBack is CanSwitchBack in mode snapshot: always refused, since nothing
// carries live's writes back to old.
func (d *Database) snapshotCanSwitchBack(ctx context.Context, live, old *teal.DBEnv) error {
	lc, err := d.colorOf(live)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	oc, err := d.colorOf(old)
	if err != nil {
		return fmt.Errorf("check rollback: %w", err)
	}
	when := "the switch"
	if db, err := d.Admin(ctx, live.Server, live.Name); err == nil {
		when = d.switchTime(ctx, db, oc, lc)
	}
	return teal.Errorf(teal.ErrRefused, "--force rolls back anyway",
		"snapshot mode keeps no reverse replication: every write made on %s (%s) since %s would not be on %s (%s)",
		lc, live.Name, when, oc, old.Name)
}

// snapshotReady is Ready in mode snapshot: nothing replicates, so there is no lag to wait
// for; the copy only has to exist.
func (d *Database) snapshotReady(_ context.Context, env *teal.DBEnv) (teal.DBLag, error) {
	lag := teal.DBLag{Checked: time.Now()}
	if env == nil {
		return lag, errors.New("database ready: no database")
	}
	return lag, nil
}
