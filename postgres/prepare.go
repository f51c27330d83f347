package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"teal.dev/teal"
	"teal.dev/teal/migrate"
)

// Prepare creates t.Color's database and brings it to the version's schema.
//
// The first release (t.Live == nil) works on the production database in place: it creates the
// colour's role and the fence table, applies every migration and opens the role. Nothing is
// replicated yet, so there is nothing to protect.
//
// Every later release clones: a new database on the preproduction server, the live database's
// schema, a publication, a slot and a subscription (filled by copy_data or by an
// exported-snapshot dump), the colour's role closed on it, the migrations that are safe while
// replicating, a verification against the live data and ANALYZE.
//
// Prepare is restartable: called again for the same colour and version after a crash, it
// continues when the copy's subscription exists and is enabled (the copy was filled or is
// being filled; migrations and verification are idempotent), and otherwise drops whatever the
// crashed attempt left (subscription, slot, publication, database) and starts over.
func (d *Database) Prepare(ctx context.Context, t teal.DBTarget, progress teal.DBProgress) (*teal.DBEnv, error) {
	if d.cfg.Mode == ModeSnapshot {
		return d.snapshotPrepare(ctx, t, progress)
	}
	if progress == nil {
		progress = func(string, map[string]any) {}
	}
	if !t.Color.Valid() {
		return nil, fmt.Errorf("prepare database: colour %q: want blue or green", t.Color)
	}
	if t.Live == nil {
		return d.prepareInPlace(ctx, t, progress)
	}
	if d.shared() {
		return d.prepareShared(ctx, t, progress)
	}
	return d.prepareClone(ctx, t, progress)
}

// prepareInPlace is the first release: the production database becomes t.Color's.
func (d *Database) prepareInPlace(ctx context.Context, t teal.DBTarget, progress teal.DBProgress) (*teal.DBEnv, error) {
	log := d.log().With("app", d.app, "color", t.Color, "version", t.Version)
	if err := d.checkPreflight(ctx, t, progress); err != nil {
		return nil, err
	}
	role, _, err := d.ensureRole(ctx, d.prod.addr, t.Color)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", d.prodDB, err)
	}
	db, err := d.Admin(ctx, d.prod.addr, d.prodDB)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", d.prodDB, err)
	}
	if err := ensureFenceTable(ctx, db); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", d.prodDB, err)
	}
	dir := d.migrationsDir(t.Artifact)
	progress("migrating the production database in place", map[string]any{"database": d.prodDB})
	if _, err := d.migrate(ctx, d.prod.addr, d.prodDB, dir, t.Actor, t.ReleaseID, false, nil); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", d.prodDB, err)
	}
	if err := d.openRole(ctx, db, role); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", d.prodDB, err)
	}
	if err := analyze(ctx, db); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", d.prodDB, err)
	}
	log.Info("production database prepared in place", "database", d.prodDB, "role", role)
	return &teal.DBEnv{
		Name:       d.prodDB,
		Role:       role,
		Server:     d.prod.addr,
		Production: true,
		Version:    t.Version,
		Migrations: dir,
	}, nil
}

// prepareClone is every later release: t.Color gets its own synced copy of t.Live.
func (d *Database) prepareClone(ctx context.Context, t teal.DBTarget, progress teal.DBProgress) (*teal.DBEnv, error) {
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
	log := d.log().With("app", d.app, "color", t.Color, "version", t.Version, "database", name)
	live, err := d.Admin(ctx, t.Live.Server, t.Live.Name)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	sub := d.SubName(from, t.Color)

	resume, err := d.subscriptionEnabled(ctx, d.preprod, name, sub)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	if resume {
		log.Info("continuing the copy a previous attempt started", "subscription", sub)
		progress("continuing the copy a previous attempt started", map[string]any{"database": name})
	} else {
		if err := d.checkPreflight(ctx, t, progress); err != nil {
			return nil, err
		}
		if err := d.clone(ctx, t, from, name, live, progress); err != nil {
			return nil, fmt.Errorf("prepare database %s: %w", name, err)
		}
	}

	cp, err := d.Admin(ctx, d.preprod.addr, name)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	if err := d.waitSynced(ctx, live, cp, sub, progress); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	// Sequences are not replicated. The copy's own writes before the switch (the migration
	// history rows its migrations add) must not reuse ids the live side already handed out.
	if err := advanceSequences(ctx, live, cp); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	role, err := d.closedRoleOn(ctx, cp, t.Color)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}

	dir := d.migrationsDir(t.Artifact)
	progress("migrating the copy", map[string]any{"database": name})
	held, err := d.migrate(ctx, d.preprod.addr, name, dir, t.Actor, t.ReleaseID, true, nil)
	if err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	// Closing again grants SELECT on the tables the migrations created (default privileges
	// cover them too; this also covers migrations that switched roles or schemas).
	if err := d.closeRole(ctx, cp, role); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}

	mode := d.cfg.Verify
	if mode == "" {
		mode = teal.DefaultVerify
	}
	progress("verifying the copy", map[string]any{"database": name, "verify": mode})
	if err := d.verify(ctx, live, cp, mode); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	if err := analyze(ctx, cp); err != nil {
		return nil, fmt.Errorf("prepare database %s: %w", name, err)
	}
	log.Info("copy prepared", "role", role, "held_back", held)
	return &teal.DBEnv{
		Name:       name,
		Role:       role,
		Server:     d.preprod.addr,
		Version:    t.Version,
		HeldBack:   held,
		Migrations: dir,
	}, nil
}

// InstanceEnv returns DATABASE_URL for env's colour: its own role on its own database. It
// carries the role's password and goes only to the instances' environment.
func (d *Database) InstanceEnv(ctx context.Context, env *teal.DBEnv) (map[string]string, error) {
	if env == nil {
		return nil, errors.New("instance environment: no database")
	}
	pw, err := d.password(env.Role)
	if err != nil {
		return nil, fmt.Errorf("instance environment of %s: %w", env.Name, err)
	}
	u, err := d.ConnString(env.Server, env.Name, env.Role, pw)
	if err != nil {
		return nil, fmt.Errorf("instance environment of %s: %w", env.Name, err)
	}
	return map[string]string{"DATABASE_URL": u}, nil
}

// migrationsDir resolves database.migrations for an artifact; "" means no migrations.
func (d *Database) migrationsDir(artifact string) string {
	return strings.ReplaceAll(d.cfg.Migrations, "{artifact}", artifact)
}

// migrate applies migrations of dir to database db on the server at addr and returns the
// versions held back (replicating only): with versions nil, every pending one (held back from
// the first "after cutover only" file when replicating); else exactly those (UpTo). A missing
// directory is no migrations. It runs on connections of its own: the migrator changes session
// settings (lock_timeout) and holds an advisory lock, which must not leak into the admin pool.
func (d *Database) migrate(ctx context.Context, addr, db, dir, actor string, releaseID int64, replicating bool, versions []int64) ([]int64, error) {
	if dir == "" {
		return nil, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	srv, err := d.serverOf(addr)
	if err != nil {
		return nil, err
	}
	cc := srv.cfg.Copy()
	cc.Database = db
	sqlDB := stdlib.OpenDB(*cc)
	defer sqlDB.Close()
	m := migrate.New(sqlDB, dir)
	m.Logger = d.log().With("app", d.app, "database", db)
	m.Actor, m.ReleaseID = actor, releaseID
	start := time.Now()
	var res *migrate.Result
	if versions == nil {
		res, err = m.Up(ctx, migrate.UpOptions{Replicating: replicating})
	} else {
		res, err = m.UpTo(ctx, versions)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", db, err)
	}
	applied := make([]int64, 0, len(res.Applied))
	for _, a := range res.Applied {
		applied = append(applied, a.Version)
	}
	d.log().Info("migrations applied", "app", d.app, "database", db, "applied", applied,
		"held_back", res.HeldBack, "replicating", replicating, "took", time.Since(start).Round(time.Millisecond))
	return res.HeldBack, nil
}

// advanceSequences moves every sequence of the copy at least as far as the live database's
// same sequence, never back: on a restarted Prepare the copy's migrations may already have
// taken values of their own (the migration history's ids), and going back would hand them
// out again.
func advanceSequences(ctx context.Context, live, cp *pgxpool.Pool) error {
	rows, err := live.Query(ctx, `SELECT format('%I.%I', schemaname, sequencename), last_value
		FROM pg_sequences WHERE last_value IS NOT NULL
		AND schemaname NOT LIKE 'pg\_%' AND schemaname <> 'information_schema'`)
	if err != nil {
		return fmt.Errorf("sequences: %w", err)
	}
	type seq struct {
		name string
		last int64
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seq, error) {
		var s seq
		return s, r.Scan(&s.name, &s.last)
	})
	if err != nil {
		return fmt.Errorf("sequences: %w", err)
	}
	b := &pgx.Batch{}
	for _, s := range seqs {
		b.Queue(`SELECT setval($1::text::regclass, $2) WHERE NOT EXISTS (SELECT 1 FROM pg_sequences p
			WHERE format('%I.%I', p.schemaname, p.sequencename) = $1::text AND p.last_value IS NOT NULL
			AND ((p.increment_by > 0 AND p.last_value >= $2) OR (p.increment_by < 0 AND p.last_value <= $2)))`, s.name, s.last)
	}
	if err := cp.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("sequences: advance on the copy: %w", err)
	}
	return nil
}

// analyze refreshes the planner's statistics: a fresh copy has none, and the first queries
// after the switch would be planned blind.
func analyze(ctx context.Context, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}
