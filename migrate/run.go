package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// historyTable is teal's migration history, next to goose's own version table.
const historyTable = "teal_migrations"

const createHistory = `CREATE TABLE IF NOT EXISTS ` + historyTable + ` (
	version     bigint PRIMARY KEY,
	name        text,
	sha256      text,
	applied_at  timestamptz,
	actor       text,
	release_id  bigint,
	duration_ms bigint
)`

// run has goose apply every pending migration up to and including target, under goose's
// advisory lock, and returns what was applied. Goose reads its version table again once it
// holds the lock, so a migrator that waited for another one applies only what is still
// pending: never twice.
func (m *Migrator) run(ctx context.Context, migs []Migration, target int64) ([]AppliedMigration, error) {
	rec := &recorder{}
	gms := make([]*goose.Migration, 0, len(migs))
	byVersion := make(map[int64]string, len(migs))
	for i := range migs {
		f := &migs[i]
		byVersion[f.Version] = f.Name
		up := &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error { return m.applyTx(ctx, tx, f, rec) }}
		if f.NoTransaction {
			up = &goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error { return m.applyNoTx(ctx, db, f, rec) }}
		}
		gms = append(gms, goose.NewGoMigration(f.Version, up, nil))
	}
	secs := uint64(max(1, (m.LockTimeout+time.Second-1)/time.Second))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, secs))
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, m.db, nil,
		goose.WithGoMigrations(gms...),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(locker),
		goose.WithSlog(m.log()),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	results, err := p.UpTo(ctx, target)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		results = partial.Applied
	}
	// Only what goose committed: a migration function may have run in a transaction that then
	// failed to commit.
	committed := make(map[int64]bool, len(results))
	for _, r := range results {
		committed[r.Source.Version] = true
	}
	var applied []AppliedMigration
	for _, a := range rec.list() {
		if committed[a.Version] {
			applied = append(applied, a)
			m.log().Info("migration applied", "migration", a.Name, "duration", a.Duration, "release", a.ReleaseID)
		}
	}
	switch {
	case err == nil:
		return applied, nil
	case partial != nil && partial.Failed != nil:
		return applied, fmt.Errorf("apply migration %s: %w", byVersion[partial.Failed.Source.Version], partial.Err)
	case strings.Contains(err.Error(), "failed to acquire lock"):
		return applied, fmt.Errorf("take the migration lock (another migrator held it for %s): %w", m.LockTimeout, err)
	default:
		return applied, fmt.Errorf("apply migrations: %w", err)
	}
}

// recorder collects the migrations applied during one run; goose calls the migration
// functions one at a time, but the no-transaction ones on other connections.
type recorder struct {
	mu      sync.Mutex
	applied []AppliedMigration
}

func (r *recorder) add(a AppliedMigration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, a)
}

func (r *recorder) list() []AppliedMigration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]AppliedMigration(nil), r.applied...)
}

// execer is a *sql.Tx or a *sql.Conn.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// applyTx runs f inside goose's transaction: lock_timeout for this transaction only, the
// statements under a savepoint so that a lock_timeout can be retried without losing the
// transaction, and the history row, committed together with goose's version row.
func (m *Migrator) applyTx(ctx context.Context, tx *sql.Tx, f *Migration, rec *recorder) error {
	start := time.Now()
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", m.StatementLockTimeout.Milliseconds())); err != nil {
		return fmt.Errorf("set lock_timeout: %w", err)
	}
	err := m.retry(ctx, f, func() error {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT teal_migration"); err != nil {
			return err
		}
		if err := runStatements(ctx, tx, f.Statements); err != nil {
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT teal_migration"); rerr != nil {
				return errors.Join(err, rerr)
			}
			return err
		}
		_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT teal_migration")
		return err
	})
	if err != nil {
		return err
	}
	a, err := m.record(ctx, tx, f, start)
	if err != nil {
		return err
	}
	rec.add(a)
	return nil
}

// applyNoTx runs a NO TRANSACTION migration (CREATE INDEX CONCURRENTLY …) statement by
// statement on one connection with the session's lock_timeout set; a statement failing on the
// lock is retried on its own, as those before it are committed. The history row is written
// right after.
func (m *Migrator) applyNoTx(ctx context.Context, db *sql.DB, f *Migration, rec *recorder) error {
	start := time.Now()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET lock_timeout = %d", m.StatementLockTimeout.Milliseconds())); err != nil {
		return fmt.Errorf("set lock_timeout: %w", err)
	}
	defer func() {
		// The connection goes back to the pool: leave it as it was found (best effort).
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "RESET lock_timeout")
	}()
	for i := range f.Statements {
		if err := m.retry(ctx, f, func() error { return runStatements(ctx, conn, f.Statements[i:i+1]) }); err != nil {
			return err
		}
	}
	a, err := m.record(ctx, conn, f, start)
	if err != nil {
		return err
	}
	rec.add(a)
	return nil
}

// runStatements executes stmts in order; an error names the statement.
func runStatements(ctx context.Context, ex execer, stmts []Statement) error {
	for _, s := range stmts {
		if _, err := ex.ExecContext(ctx, s.SQL); err != nil {
			return fmt.Errorf("statement %q: %w", brief(s.SQL), err)
		}
	}
	return nil
}

// retry runs fn, again after a backoff each time it fails on lock_timeout, up to m.Retries
// more times.
func (m *Migrator) retry(ctx context.Context, f *Migration, fn func() error) error {
	backoff := m.RetryBackoff
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !isLockTimeout(err) || attempt > m.Retries {
			return err
		}
		m.log().Warn("migration waited too long for a lock, retrying",
			"migration", f.Name, "attempt", attempt, "of", m.Retries, "backoff", backoff, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while waiting to retry: %w)", err, ctx.Err())
		case <-t.C:
		}
		backoff *= 2
	}
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available.
func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03"
}

// record writes f's history row. Goose's own version table has an identity key whose rows
// may have arrived by logical replication, which does not carry sequences: its sequence is
// moved past them first, or goose's insert would collide on a copy.
func (m *Migrator) record(ctx context.Context, ex execer, f *Migration, start time.Time) (AppliedMigration, error) {
	a := AppliedMigration{
		Version: f.Version, Name: f.Name, SHA256: f.SHA256,
		Actor: m.Actor, ReleaseID: m.ReleaseID,
		AppliedAt: time.Now().UTC(), Duration: time.Since(start),
	}
	if _, err := ex.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('`+goose.DefaultTablename+`', 'id'), max(id))
		FROM `+goose.DefaultTablename+` HAVING max(id) IS NOT NULL`); err != nil {
		return a, fmt.Errorf("sync goose version sequence: %w", err)
	}
	if _, err := ex.ExecContext(ctx, createHistory); err != nil {
		return a, fmt.Errorf("create %s: %w", historyTable, err)
	}
	// ON CONFLICT: a NO TRANSACTION migration whose goose row was lost in a crash runs again.
	_, err := ex.ExecContext(ctx, `INSERT INTO `+historyTable+` (version, name, sha256, applied_at, actor, release_id, duration_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (version) DO UPDATE SET name = excluded.name, sha256 = excluded.sha256, applied_at = excluded.applied_at,
			actor = excluded.actor, release_id = excluded.release_id, duration_ms = excluded.duration_ms`,
		a.Version, a.Name, a.SHA256, a.AppliedAt, a.Actor, a.ReleaseID, a.Duration.Milliseconds())
	if err != nil {
		return a, fmt.Errorf("record migration %s: %w", f.Name, err)
	}
	return a, nil
}

// History returns the applied migrations, oldest first: teal's history rows, plus versions
// goose applied before teal kept history (no checksum, not validated). A database that never
// saw a migration has none.
func (m *Migrator) History(ctx context.Context) ([]AppliedMigration, error) {
	var hasTeal, hasGoose bool
	err := m.db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL`,
		historyTable, goose.DefaultTablename).Scan(&hasTeal, &hasGoose)
	if err != nil {
		return nil, fmt.Errorf("read migration history: %w", err)
	}
	var out []AppliedMigration
	seen := make(map[int64]bool)
	if hasTeal {
		rows, err := m.db.QueryContext(ctx, `SELECT version, coalesce(name, ''), coalesce(sha256, ''), coalesce(actor, ''),
			coalesce(release_id, 0), coalesce(applied_at, 'epoch'), coalesce(duration_ms, 0)
			FROM `+historyTable+` ORDER BY version`)
		if err != nil {
			return nil, fmt.Errorf("read migration history: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var a AppliedMigration
			var ms int64
			if err := rows.Scan(&a.Version, &a.Name, &a.SHA256, &a.Actor, &a.ReleaseID, &a.AppliedAt, &ms); err != nil {
				return nil, fmt.Errorf("read migration history: %w", err)
			}
			a.Duration = time.Duration(ms) * time.Millisecond
			out = append(out, a)
			seen[a.Version] = true
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read migration history: %w", err)
		}
	}
	if hasGoose {
		// Goose's table is the record of what goose applied (any row, as goose reads it); teal's
		// rows are written in the same transaction, so a version only goose knows predates teal.
		rows, err := m.db.QueryContext(ctx, `SELECT version_id, max(tstamp) FROM `+goose.DefaultTablename+`
			WHERE version_id > 0 GROUP BY version_id ORDER BY version_id`)
		if err != nil {
			return nil, fmt.Errorf("read goose versions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var a AppliedMigration
			if err := rows.Scan(&a.Version, &a.AppliedAt); err != nil {
				return nil, fmt.Errorf("read goose versions: %w", err)
			}
			if !seen[a.Version] {
				out = append(out, a)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read goose versions: %w", err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}
