package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
)

// minServerVersion is the oldest PostgreSQL teal works with (server_version_num): 15 brings
// column lists in publications (reverse replication) and disable_on_error.
const minServerVersion = 150000

// longTransaction is the age from which an open transaction on the sending server is a
// problem: creating a logical slot waits for every transaction running at that moment.
const longTransaction = 5 * time.Minute

// Preflight checks the servers before anything is created and returns one error (wrapping
// teal.ErrRefused) listing every problem with its fix. Warnings that do not block are logged.
// The first release (t.Live == nil) only needs a recent server and the privileges to create
// a role and migrate; a clone needs logical replication on both servers and live data it can
// replicate.
func (d *Database) Preflight(ctx context.Context, t teal.DBTarget) error {
	return d.checkPreflight(ctx, t, nil)
}

// checkPreflight runs the checks, sends warnings to the log and progress (when not nil), and
// returns the problems as one error.
func (d *Database) checkPreflight(ctx context.Context, t teal.DBTarget, progress teal.DBProgress) error {
	problems, warnings, err := d.preflight(ctx, t)
	if err != nil {
		return fmt.Errorf("database preflight: %w", err)
	}
	for _, w := range warnings {
		d.log().Warn("database preflight", "app", d.app, "warning", w)
		if progress != nil {
			progress("preflight warning: "+w, map[string]any{"warning": w})
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return teal.Errorf(teal.ErrRefused, "fix every problem listed, then start the release again",
		"database preflight found %d problem(s):\n- %s", len(problems), strings.Join(problems, "\n- "))
}

// preflight returns the blocking problems and the warnings. err is for a check that could not
// run at all (a server that cannot be reached).
func (d *Database) preflight(ctx context.Context, t teal.DBTarget) (problems, warnings []string, err error) {
	if d.cfg.Mode == ModeSnapshot && t.Live != nil {
		return d.snapshotPreflight(ctx, t)
	}
	// The first release, and every release in mode shared, only migrates the production
	// database: nothing replicates.
	if t.Live == nil || d.shared() {
		db, err := d.Admin(ctx, d.prod.addr, d.prodDB)
		if err != nil {
			return nil, nil, err
		}
		p, err := checkVersion(ctx, db, d.prod.addr)
		if err != nil {
			return nil, nil, err
		}
		problems = append(problems, p...)
		p, err = checkInPlacePrivileges(ctx, db, d.prod.addr, d.prodDB)
		if err != nil {
			return nil, nil, err
		}
		return append(problems, p...), nil, nil
	}

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
	sendAddr, recvAddr := t.Live.Server, d.preprod.addr
	p, err := checkVersion(ctx, live, sendAddr)
	if err != nil {
		return nil, nil, err
	}
	problems = append(problems, p...)
	if recvAddr != sendAddr {
		p, err := checkVersion(ctx, recv, recvAddr)
		if err != nil {
			return nil, nil, err
		}
		problems = append(problems, p...)
	}
	checks := []func(context.Context) ([]string, []string, error){
		func(ctx context.Context) ([]string, []string, error) {
			return checkSender(ctx, live, sendAddr, t.Live.Name)
		},
		func(ctx context.Context) ([]string, []string, error) { return checkReceiver(ctx, recv, recvAddr) },
		func(ctx context.Context) ([]string, []string, error) { return checkLiveData(ctx, live, t.Live.Name) },
		func(ctx context.Context) ([]string, []string, error) {
			// What this release would create (or restart) is expected; anything else teal named
			// for the app is a leftover that would collide or retain WAL.
			target := &teal.DBEnv{Name: d.DBName(t.Color, t.Version), Server: d.preprod.addr, Role: d.RoleName(t.Color)}
			left, err := d.leftovers(ctx, []*teal.DBEnv{t.Live, target})
			return left, nil, err
		},
	}
	for _, check := range checks {
		p, w, err := check(ctx)
		if err != nil {
			return nil, nil, err
		}
		problems = append(problems, p...)
		warnings = append(warnings, w...)
	}
	return problems, warnings, nil
}

// checkVersion: both servers must run PostgreSQL 15 or newer.
func checkVersion(ctx context.Context, db *pgxpool.Pool, addr string) ([]string, error) {
	var num int
	var ver string
	if err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('server_version')").Scan(&num, &ver); err != nil {
		return nil, fmt.Errorf("server version of %s: %w", addr, err)
	}
	if num < minServerVersion {
		return []string{fmt.Sprintf("server %s runs PostgreSQL %s; teal needs 15 or newer (column lists, disable_on_error): upgrade the server", addr, ver)}, nil
	}
	return nil, nil
}

// adminRole is what the admin user may do on a server.
type adminRole struct {
	user                                   string
	super, createDB, createRole, replicate bool
}

func roleOf(ctx context.Context, db *pgxpool.Pool) (adminRole, error) {
	var r adminRole
	err := db.QueryRow(ctx, `SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication
		FROM pg_roles WHERE rolname = current_user`).Scan(&r.user, &r.super, &r.createDB, &r.createRole, &r.replicate)
	if err != nil {
		return r, fmt.Errorf("privileges of the admin user: %w", err)
	}
	return r, nil
}

// checkInPlacePrivileges: the first release creates a role, the fence table and runs the
// migrations in the production database.
func checkInPlacePrivileges(ctx context.Context, db *pgxpool.Pool, addr, name string) ([]string, error) {
	r, err := roleOf(ctx, db)
	if err != nil || r.super {
		return nil, err
	}
	var create bool
	if err := db.QueryRow(ctx, `SELECT has_database_privilege(current_database(), 'CREATE')
		AND has_schema_privilege('public', 'CREATE')`).Scan(&create); err != nil {
		return nil, fmt.Errorf("privileges of the admin user: %w", err)
	}
	var p []string
	if !r.createRole {
		p = append(p, fmt.Sprintf("admin user %s on %s cannot create the colours' login roles: ALTER ROLE %s CREATEROLE (or use a superuser)", r.user, addr, quoteIdent(r.user)))
	}
	if !create {
		p = append(p, fmt.Sprintf("admin user %s cannot create tables in database %s (fence table, migrations): GRANT CREATE ON DATABASE %s, SCHEMA public TO %s", r.user, name, quoteIdent(name), quoteIdent(r.user)))
	}
	return p, nil
}

// serverSetting reads one server setting.
func serverSetting(ctx context.Context, db *pgxpool.Pool, name string) (string, error) {
	var v string
	if err := db.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		return "", fmt.Errorf("setting %s: %w", name, err)
	}
	return v, nil
}

func intSetting(ctx context.Context, db *pgxpool.Pool, name string) (int, error) {
	v, err := serverSetting(ctx, db, name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("setting %s: %q is not a number", name, v)
	}
	return n, nil
}

// checkSender checks the server of the live database: logical WAL, free slots and senders,
// the admin's rights to publish and create slots, transactions a new slot would wait for,
// and the WAL retention cap.
func checkSender(ctx context.Context, live *pgxpool.Pool, addr, name string) (problems, warnings []string, err error) {
	wal, err := serverSetting(ctx, live, "wal_level")
	if err != nil {
		return nil, nil, err
	}
	if wal != "logical" {
		problems = append(problems, fmt.Sprintf("server %s has wal_level=%s; logical replication needs wal_level=logical: ALTER SYSTEM SET wal_level = logical and restart the server (Amazon RDS: rds.logical_replication = 1 in the parameter group)", addr, wal))
	}

	var slots, slotsUsed, senders, sendersUsed int
	err = live.QueryRow(ctx, `SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots),
		current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)`).Scan(&slots, &slotsUsed, &senders, &sendersUsed)
	if err != nil {
		return nil, nil, fmt.Errorf("replication capacity of %s: %w", addr, err)
	}
	// One slot and one sender stream the changes; while copying, every table sync worker
	// holds a temporary slot and a sender too. Assume the default of 2 sync workers.
	const need = 3
	if free := slots - slotsUsed; free < need {
		problems = append(problems, fmt.Sprintf("server %s has %d of max_replication_slots=%d free; a clone needs %d (one slot, plus one per table sync worker while copying): raise max_replication_slots (restart) or drop unused slots", addr, max(free, 0), slots, need))
	}
	if free := senders - sendersUsed; free < need {
		problems = append(problems, fmt.Sprintf("server %s has %d of max_wal_senders=%d free; a clone needs %d: raise max_wal_senders (restart)", addr, max(free, 0), senders, need))
	}

	r, err := roleOf(ctx, live)
	if err != nil {
		return nil, nil, err
	}
	if !r.super {
		if !r.replicate {
			problems = append(problems, fmt.Sprintf("admin user %s on %s cannot create replication slots: ALTER ROLE %s REPLICATION (Amazon RDS: GRANT rds_replication TO %s)", r.user, addr, quoteIdent(r.user), quoteIdent(r.user)))
		}
		var create bool
		var notOwned []string
		if err := live.QueryRow(ctx, "SELECT has_database_privilege(current_database(), 'CREATE')").Scan(&create); err != nil {
			return nil, nil, fmt.Errorf("privileges of the admin user: %w", err)
		}
		if !create {
			problems = append(problems, fmt.Sprintf("admin user %s cannot create a publication in database %s: GRANT CREATE ON DATABASE %s TO %s", r.user, name, quoteIdent(name), quoteIdent(r.user)))
		}
		notOwned, err = queryStrings(ctx, live, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+userTableFilter+`
			AND NOT pg_has_role(current_user, c.relowner, 'USAGE') ORDER BY 1`)
		if err != nil {
			return nil, nil, fmt.Errorf("table owners: %w", err)
		}
		if len(notOwned) > 0 {
			problems = append(problems, fmt.Sprintf("admin user %s does not own (and cannot publish) tables %s: GRANT the owning role to %s, or use a superuser", r.user, strings.Join(notOwned, ", "), quoteIdent(r.user)))
		}
	}

	rows, err := live.Query(ctx, `SELECT pid, coalesce(usename, ''), coalesce(datname, ''), (extract(epoch FROM now() - xact_start))::bigint
		FROM pg_stat_activity WHERE xact_start < now() - $1::interval AND pid <> pg_backend_pid()
		UNION ALL
		SELECT 0, owner, database, (extract(epoch FROM now() - prepared))::bigint FROM pg_prepared_xacts WHERE prepared < now() - $1::interval
		ORDER BY 4 DESC`, longTransaction.String())
	if err != nil {
		return nil, nil, fmt.Errorf("long transactions on %s: %w", addr, err)
	}
	for rows.Next() {
		var pid int
		var user, db string
		var secs int64
		if err := rows.Scan(&pid, &user, &db, &secs); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("long transactions on %s: %w", addr, err)
		}
		age := (time.Duration(secs) * time.Second).String()
		if pid == 0 {
			problems = append(problems, fmt.Sprintf("a prepared transaction of %s in database %s on %s is %s old; creating a replication slot waits for it: COMMIT PREPARED or ROLLBACK PREPARED it (see pg_prepared_xacts)", user, db, addr, age))
		} else {
			problems = append(problems, fmt.Sprintf("a transaction of %s in database %s on %s (pid %d) has been open for %s; creating a replication slot waits for it: end it, or SELECT pg_terminate_backend(%d)", user, db, addr, pid, age, pid))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("long transactions on %s: %w", addr, err)
	}

	keep, err := serverSetting(ctx, live, "max_slot_wal_keep_size")
	if err != nil {
		return nil, nil, err
	}
	if keep == "-1" {
		warnings = append(warnings, fmt.Sprintf("server %s has max_slot_wal_keep_size=-1: a slot whose subscriber stops keeps WAL without limit and can fill the disk; cap it, e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB' (reload)", addr))
	}
	return problems, warnings, nil
}

// checkReceiver checks the server the copy is created on: the admin creates databases, roles
// and subscriptions, and logical replication workers are free.
func checkReceiver(ctx context.Context, recv *pgxpool.Pool, addr string) (problems, warnings []string, err error) {
	r, err := roleOf(ctx, recv)
	if err != nil {
		return nil, nil, err
	}
	num, err := intSetting(ctx, recv, "server_version_num")
	if err != nil {
		return nil, nil, err
	}
	if !r.super {
		var canSubscribe bool
		if num >= 160000 {
			if err := recv.QueryRow(ctx, "SELECT pg_has_role(current_user, 'pg_create_subscription', 'MEMBER')").Scan(&canSubscribe); err != nil {
				return nil, nil, fmt.Errorf("privileges of the admin user: %w", err)
			}
		}
		if !canSubscribe {
			problems = append(problems, fmt.Sprintf("admin user %s on %s cannot create subscriptions: PostgreSQL 15 needs a superuser (Amazon RDS: rds_superuser), 16+ needs GRANT pg_create_subscription TO %s", r.user, addr, quoteIdent(r.user)))
		}
		if !r.createDB {
			problems = append(problems, fmt.Sprintf("admin user %s on %s cannot create the copies' databases: ALTER ROLE %s CREATEDB", r.user, addr, quoteIdent(r.user)))
		}
		if !r.createRole {
			problems = append(problems, fmt.Sprintf("admin user %s on %s cannot create the colours' login roles: ALTER ROLE %s CREATEROLE", r.user, addr, quoteIdent(r.user)))
		}
	}

	var workers, workersUsed, procs, procsUsed int
	err = recv.QueryRow(ctx, `SELECT current_setting('max_logical_replication_workers')::int,
		(SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL),
		current_setting('max_worker_processes')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type NOT IN ('client backend', 'walsender', 'walreceiver',
			'autovacuum launcher', 'autovacuum worker', 'background writer', 'checkpointer', 'startup', 'walwriter',
			'archiver', 'logger', 'standalone backend', 'io worker', 'slotsync worker', 'walsummarizer'))`).Scan(&workers, &workersUsed, &procs, &procsUsed)
	if err != nil {
		return nil, nil, fmt.Errorf("worker capacity of %s: %w", addr, err)
	}
	// One apply worker for the subscription and at least one table sync worker while copying.
	const need = 2
	if free := workers - workersUsed; free < need {
		problems = append(problems, fmt.Sprintf("server %s has %d of max_logical_replication_workers=%d free; a copy needs %d (apply and table sync): raise max_logical_replication_workers (restart)", addr, max(free, 0), workers, need))
	}
	if free := procs - procsUsed; free < need {
		problems = append(problems, fmt.Sprintf("server %s has %d of max_worker_processes=%d free; logical replication workers are background workers: raise max_worker_processes (restart)", addr, max(free, 0), procs))
	}
	return problems, nil, nil
}

// userTableFilter selects the app's permanent ordinary tables (c = pg_class, n =
// pg_namespace): user schemas, not members of an extension (an extension creates its own).
const userTableFilter = `c.relkind = 'r' AND c.relpersistence = 'p'
	AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
	AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')`

// checkLiveData finds what logical replication cannot carry: tables without a replica
// identity (their UPDATE and DELETE fail on the live database once published), unlogged
// tables and large objects (not replicated at all).
func checkLiveData(ctx context.Context, live *pgxpool.Pool, name string) (problems, warnings []string, err error) {
	noIdentity, err := queryStrings(ctx, live, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE `+userTableFilter+` AND (c.relreplident = 'n'
			OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
			OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
		ORDER BY 1`)
	if err != nil {
		return nil, nil, fmt.Errorf("replica identities in %s: %w", name, err)
	}
	for _, tbl := range noIdentity {
		problems = append(problems, fmt.Sprintf("table %s in %s has no primary key or replica identity: once published, UPDATE and DELETE on it fail on the live database. Fix one of: "+
			"ALTER TABLE %s ADD PRIMARY KEY (…); or ALTER TABLE %s REPLICA IDENTITY USING INDEX <a unique index on NOT NULL columns>; or ALTER TABLE %s REPLICA IDENTITY FULL (slower updates on the copy)", tbl, name, tbl, tbl, tbl))
	}

	unlogged, err := queryStrings(ctx, live, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u'
		AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema' ORDER BY 1`)
	if err != nil {
		return nil, nil, fmt.Errorf("unlogged tables in %s: %w", name, err)
	}
	for _, tbl := range unlogged {
		problems = append(problems, fmt.Sprintf("table %s in %s is UNLOGGED: its rows are not replicated and would be missing on the copy: ALTER TABLE %s SET LOGGED (or move it out of the database)", tbl, name, tbl))
	}

	var objects int64
	if err := live.QueryRow(ctx, "SELECT count(*) FROM pg_largeobject_metadata").Scan(&objects); err != nil {
		return nil, nil, fmt.Errorf("large objects in %s: %w", name, err)
	}
	if objects > 0 {
		problems = append(problems, fmt.Sprintf("database %s holds %d large object(s): they are not replicated and would be missing on the copy: store them in bytea columns (or outside the database) and remove them with lo_unlink", name, objects))
	}
	return problems, nil, nil
}

// queryStrings returns the first column of every row.
func queryStrings(ctx context.Context, db *pgxpool.Pool, q string, args ...any) ([]string, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
