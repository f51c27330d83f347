package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
)

// Clone strategies (database.clone_strategy).
const (
	StrategyAuto         = "auto"         // dump above DumpThreshold, else subscription
	StrategySubscription = "subscription" // the subscription copies the data (copy_data)
	StrategyDump         = "dump"         // exported-snapshot parallel pg_dump/pg_restore
)

// DumpThreshold is the live database size above which clone_strategy auto picks dump: a
// parallel dump and restore, with indexes built after the data, beats the subscription's
// table-by-table COPY into indexed tables on large databases.
const DumpThreshold = 1 << 30

// progressEvery is how often a long clone reports progress.
const progressEvery = 2 * time.Second

// cloneStrategy resolves database.clone_strategy for a live database of size bytes.
func cloneStrategy(strategy string, size int64) (string, error) {
	switch strategy {
	case "", StrategyAuto:
		if size > DumpThreshold {
			return StrategyDump, nil
		}
		return StrategySubscription, nil
	case StrategySubscription, StrategyDump:
		return strategy, nil
	}
	return "", fmt.Errorf("database.clone_strategy %q: want auto, subscription or dump", strategy)
}

// clone creates database name on the preproduction server as a copy of t.Live kept in sync by
// subscription SubName(from, t.Color). Whatever a previous attempt left is dropped first.
//
// Order matters: the publication exists before the slot (a slot decodes with the catalog
// as of its position, and a publication created later is unknown to it), and the slot
// exists before the data is copied (every change after the copy's snapshot is kept for the
// subscription). When both databases are on one server, the slot is created by teal, not by
// CREATE SUBSCRIPTION, which would wait for its own transaction and hang.
func (d *Database) clone(ctx context.Context, t teal.DBTarget, from teal.Color, name string, live *pgxpool.Pool, progress teal.DBProgress) error {
	sub, pub := d.SubName(from, t.Color), d.PubName(from)
	liveSrv, err := d.serverOf(t.Live.Server)
	if err != nil {
		return err
	}
	if err := d.dropCopy(ctx, d.preprod.addr, name); err != nil {
		return fmt.Errorf("drop the previous attempt: %w", err)
	}
	if err := d.dropSlotOn(ctx, liveSrv, sub); err != nil {
		return fmt.Errorf("drop the previous attempt: %w", err)
	}

	var size int64
	if err := live.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&size); err != nil {
		return fmt.Errorf("size of %s: %w", t.Live.Name, err)
	}
	strategy, err := cloneStrategy(d.cfg.CloneStrategy, size)
	if err != nil {
		return err
	}
	d.log().Info("cloning", "app", d.app, "color", t.Color, "from", t.Live.Name, "to", name, "strategy", strategy, "bytes", size)
	progress("cloning "+t.Live.Name+" into "+name, map[string]any{"strategy": strategy, "bytes_total": size})

	// The fence table exists since the first release; creating it if missing keeps a
	// database teal did not prepare itself clonable.
	if err := ensureFenceTable(ctx, live); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "teal-clone-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	schema := filepath.Join(tmp, "schema.dump")
	if err := d.runTool(ctx, "pg_dump", liveSrv, t.Live.Name, "--schema-only", "--format=custom", "--file="+schema,
		"--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions", "--no-tablespaces"); err != nil {
		return fmt.Errorf("dump schema: %w", err)
	}
	if err := d.createDatabase(ctx, live, name); err != nil {
		return err
	}
	restore := []string{"--no-owner", "--no-privileges", "--no-tablespaces", "--exit-on-error", "--single-transaction", "--section=pre-data"}
	if strategy == StrategySubscription {
		// The subscription applies changes while it copies: it needs the primary keys (post-data)
		// to find the rows it updates.
		restore = append(restore, "--section=post-data")
	}
	if err := d.runTool(ctx, "pg_restore", d.preprod, name, append(restore, schema)...); err != nil {
		return fmt.Errorf("restore schema: %w", err)
	}
	cp, err := d.Admin(ctx, d.preprod.addr, name)
	if err != nil {
		return err
	}
	if err := ensureFenceTable(ctx, cp); err != nil {
		return err
	}
	if err := createPublication(ctx, live, pub); err != nil {
		return err
	}

	switch strategy {
	case StrategySubscription:
		if _, err := live.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", sub); err != nil {
			return fmt.Errorf("create slot %s: %w", sub, err)
		}
		return d.createSubscription(ctx, cp, t.Live, sub, pub, true)
	default:
		if err := d.dumpData(ctx, liveSrv, t.Live.Name, name, sub, tmp, size, progress); err != nil {
			return err
		}
		if err := d.runTool(ctx, "pg_restore", d.preprod, name, "--no-owner", "--no-privileges", "--no-tablespaces",
			"--exit-on-error", "--single-transaction", "--section=post-data", schema); err != nil {
			return fmt.Errorf("restore indexes and constraints: %w", err)
		}
		return d.createSubscription(ctx, cp, t.Live, sub, pub, false)
	}
}

// dumpData creates the slot through a replication connection that exports its snapshot,
// dumps the data as of exactly that snapshot in parallel, and restores it into the copy: the
// slot then holds every change committed after the dump's data. The replication connection
// stays open until the dump is done: the snapshot lives only as long as it.
func (d *Database) dumpData(ctx context.Context, liveSrv server, liveDB, name, slot, tmp string, size int64, progress teal.DBProgress) error {
	cc := liveSrv.cfg.Copy()
	cc.Database = liveDB
	pc := cc.Config.Copy()
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	pc.RuntimeParams["replication"] = "database"
	rc, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("replication connection to %s: %w", liveDB, err)
	}
	defer rc.Close(context.WithoutCancel(ctx))
	res, err := rc.Exec(ctx, "CREATE_REPLICATION_SLOT "+quoteIdent(slot)+" LOGICAL pgoutput (SNAPSHOT 'export')").ReadAll()
	if err != nil {
		return fmt.Errorf("create slot %s: %w", slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 3 {
		return fmt.Errorf("create slot %s: unexpected answer", slot)
	}
	snapshot := string(res[0].Rows[0][2])

	data := filepath.Join(tmp, "data")
	stop := tick(progressEvery, func() {
		progress("dumping data", map[string]any{"bytes": dirSize(data), "bytes_total": size})
	})
	err = d.runTool(ctx, "pg_dump", liveSrv, liveDB, "--data-only", "--format=directory", "--jobs=2", "--snapshot="+snapshot,
		"--file="+data, "--no-publications", "--no-subscriptions")
	stop()
	if err != nil {
		return fmt.Errorf("dump data: %w", err)
	}
	if err := rc.Close(ctx); err != nil {
		return fmt.Errorf("close replication connection: %w", err)
	}

	cp, err := d.Admin(ctx, d.preprod.addr, name)
	if err != nil {
		return err
	}
	stop = tick(progressEvery, func() {
		var n int64
		if cp.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n) == nil {
			progress("restoring data", map[string]any{"bytes": n, "bytes_total": size})
		}
	})
	err = d.runTool(ctx, "pg_restore", d.preprod, name, "--data-only", "--jobs=2", "--no-owner", "--no-privileges",
		"--exit-on-error", data)
	stop()
	if err != nil {
		return fmt.Errorf("restore data: %w", err)
	}
	return nil
}

// createDatabase creates the copy with the live database's encoding and collation, from
// template0 so nothing but the restored schema is in it.
func (d *Database) createDatabase(ctx context.Context, live *pgxpool.Pool, name string) error {
	var enc, collate, ctype string
	if err := live.QueryRow(ctx, `SELECT pg_encoding_to_char(encoding), datcollate, datctype
		FROM pg_database WHERE datname = current_database()`).Scan(&enc, &collate, &ctype); err != nil {
		return fmt.Errorf("create database %s: live database's encoding: %w", name, err)
	}
	admin, err := d.maintenance(ctx, d.preprod)
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	q := fmt.Sprintf("CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s",
		quoteIdent(name), quoteLiteral(enc), quoteLiteral(collate), quoteLiteral(ctype))
	if _, err := admin.Exec(ctx, q); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// createPublication (re)creates publication pub for every table of the live database,
// teal_fence included. FOR TABLE, not FOR ALL TABLES: that needs a superuser.
func createPublication(ctx context.Context, live *pgxpool.Pool, pub string) error {
	tables, err := queryStrings(ctx, live, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+userTableFilter+` ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("create publication %s: list tables: %w", pub, err)
	}
	if _, err := live.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(pub)); err != nil {
		return fmt.Errorf("create publication %s: %w", pub, err)
	}
	if _, err := live.Exec(ctx, "CREATE PUBLICATION "+quoteIdent(pub)+" FOR TABLE "+strings.Join(tables, ", ")); err != nil {
		return fmt.Errorf("create publication %s: %w", pub, err)
	}
	return nil
}

// createSubscription creates subscription sub on the copy, from publication pub of the live
// database, on the slot of the same name that already exists. disable_on_error makes an apply
// error stop it visibly (subenabled = false) instead of retrying in a loop.
func (d *Database) createSubscription(ctx context.Context, cp *pgxpool.Pool, live *teal.DBEnv, sub, pub string, copyData bool) error {
	conninfo, err := d.ConnString(live.Server, live.Name, "", "")
	if err != nil {
		return fmt.Errorf("create subscription %s: %w", sub, err)
	}
	q := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (create_slot = false, slot_name = %s, copy_data = %t, disable_on_error = true, enabled = true)",
		quoteIdent(sub), quoteLiteral(conninfo), quoteIdent(pub), quoteLiteral(sub), copyData)
	if _, err := cp.Exec(ctx, q); err != nil {
		// The statement holds the admin's password: the error is the server's, never the SQL.
		return fmt.Errorf("create subscription %s: %w", sub, err)
	}
	return nil
}

// waitSynced waits until every table of subscription sub on the copy is ready (initial copy
// done and caught up), reporting progress every progressEvery.
func (d *Database) waitSynced(ctx context.Context, live, cp *pgxpool.Pool, sub string, progress teal.DBProgress) error {
	var total, base int64
	if err := live.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&total); err != nil {
		return fmt.Errorf("wait for the copy: %w", err)
	}
	if err := cp.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&base); err != nil {
		return fmt.Errorf("wait for the copy: %w", err)
	}
	start, last := time.Now(), time.Now()
	for {
		st, err := subscriptionDetail(ctx, cp, sub)
		if err != nil {
			return fmt.Errorf("wait for the copy: %w", err)
		}
		if !st.exists {
			return fmt.Errorf("wait for the copy: subscription %s is missing", sub)
		}
		if err := st.failure(sub); err != nil {
			return fmt.Errorf("wait for the copy: %w", err)
		}
		if st.tables > 0 && st.ready == st.tables {
			progress("copy in sync", map[string]any{"tables_synced": st.ready, "tables": st.tables,
				"took": time.Since(start).Round(time.Millisecond).String()})
			return nil
		}
		if time.Since(last) >= progressEvery {
			last = time.Now()
			var size int64
			if err := cp.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&size); err != nil {
				return fmt.Errorf("wait for the copy: %w", err)
			}
			done, elapsed := max(size-base, 0), time.Since(start)
			attrs := map[string]any{"tables_synced": st.ready, "tables": st.tables, "bytes": done, "bytes_total": total}
			if done > 0 && total > done {
				attrs["eta"] = (time.Duration(float64(elapsed) * float64(total-done) / float64(done))).Round(time.Second).String()
			}
			progress(fmt.Sprintf("copying: %d of %d tables synced", st.ready, st.tables), attrs)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("wait for the copy: %d of %d tables synced: %w", st.ready, st.tables, err)
		}
	}
}

// subDetail is a subscription's state as its database sees it.
type subDetail struct {
	exists        bool
	enabled       bool
	slot          string
	applyErrors   int64
	syncErrors    int64
	tables, ready int
	notReady      []string // tables not in state r, with their state
}

// subscriptionStatus reads subscription sub of db's database. Cheap: catalog and statistics
// views, no remote call.
func subscriptionDetail(ctx context.Context, db *pgxpool.Pool, sub string) (subDetail, error) {
	var st subDetail
	var oid uint32
	err := db.QueryRow(ctx, `SELECT s.oid, s.subenabled, coalesce(s.subslotname, ''),
			coalesce(st.apply_error_count, 0), coalesce(st.sync_error_count, 0)
		FROM pg_subscription s LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, sub).
		Scan(&oid, &st.enabled, &st.slot, &st.applyErrors, &st.syncErrors)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("subscription %s: %w", sub, err)
	}
	st.exists = true
	rows, err := db.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname), r.srsubstate
		FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE r.srsubid = $1 ORDER BY 1`, oid)
	if err != nil {
		return st, fmt.Errorf("subscription %s: tables: %w", sub, err)
	}
	defer rows.Close()
	for rows.Next() {
		var tbl, state string
		if err := rows.Scan(&tbl, &state); err != nil {
			return st, fmt.Errorf("subscription %s: tables: %w", sub, err)
		}
		st.tables++
		if state == "r" {
			st.ready++
		} else {
			st.notReady = append(st.notReady, tbl+" ("+relState(state)+")")
		}
	}
	return st, rows.Err()
}

// relState names a pg_subscription_rel.srsubstate.
func relState(s string) string {
	switch s {
	case "i":
		return "initializing"
	case "d":
		return "copying"
	case "f":
		return "copied"
	case "s":
		return "synchronized"
	case "r":
		return "ready"
	}
	return s
}

// failure is the error of a stopped subscription, nil while it runs.
func (st subDetail) failure(sub string) error {
	if st.enabled && st.applyErrors == 0 && st.syncErrors == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "subscription %s ", sub)
	if !st.enabled {
		b.WriteString("was disabled by an error")
	} else {
		b.WriteString("has had errors")
	}
	fmt.Fprintf(&b, " (apply errors: %d, table sync errors: %d)", st.applyErrors, st.syncErrors)
	if st.syncErrors > 0 && len(st.notReady) > 0 {
		fmt.Fprintf(&b, "; tables not synced: %s", strings.Join(st.notReady, ", "))
	}
	return fmt.Errorf("%w: %s", ErrReplication, b.String())
}

// subscriptionEnabled reports whether subscription sub exists and is enabled in database db on
// srv (a previous attempt's copy that can be continued).
func (d *Database) subscriptionEnabled(ctx context.Context, srv server, db, sub string) (bool, error) {
	admin, err := d.maintenance(ctx, srv)
	if err != nil {
		return false, err
	}
	var enabled bool
	err = admin.QueryRow(ctx, `SELECT s.subenabled FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
		WHERE d.datname = $1 AND s.subname = $2`, db, sub).Scan(&enabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("subscription %s: %w", sub, err)
	}
	return enabled, nil
}

// maintenance returns an admin pool on srv's own database (the DSN's, else postgres), for
// server-wide work: CREATE DATABASE, catalogs of slots and subscriptions.
func (d *Database) maintenance(ctx context.Context, srv server) (*pgxpool.Pool, error) {
	db := srv.cfg.Database
	if db == "" {
		db = "postgres"
	}
	return d.Admin(ctx, srv.addr, db)
}

// tick calls f every interval from a goroutine until the returned stop is called; stop
// returns once f is no longer running.
func tick(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// dirSize is the size of the files under dir (0 when it does not exist yet).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// runTool runs PostgreSQL client program name (pg_dump, pg_restore) against database db on
// srv as the admin. The password goes in PGPASSWORD, never on the command line, where every
// user of the machine could read it.
func (d *Database) runTool(ctx context.Context, name string, srv server, db string, args ...string) error {
	bin, err := pgTool(name)
	if err != nil {
		return err
	}
	args = append(args, "--dbname="+libpqQuote("dbname", db))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), d.toolEnv(srv)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		return fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	d.log().Debug("ran "+name, "database", db, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// libpqQuote is a libpq key='value' pair.
func libpqQuote(key, value string) string {
	return key + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'"
}

var sslParam = regexp.MustCompile(`(?:^|[?&\s])(sslmode|sslrootcert|sslcert|sslkey)=([^&\s]+)`)

// toolEnv is the libpq environment of srv's admin connection.
func (d *Database) toolEnv(srv server) []string {
	c := srv.cfg
	env := []string{
		"PGHOST=" + c.Host,
		"PGPORT=" + strconv.Itoa(int(c.Port)),
		"PGUSER=" + c.User,
		"PGCONNECT_TIMEOUT=10",
		"PGAPPNAME=teal",
	}
	if c.Password != "" {
		env = append(env, "PGPASSWORD="+c.Password)
	}
	// The parsed config keeps TLS as a tls.Config; libpq wants the DSN's own ssl settings.
	dsn := d.cfg.Production
	if srv.addr != d.prod.addr {
		dsn = d.cfg.Preproduction
	}
	mode := "disable"
	if c.TLSConfig != nil {
		mode = "prefer"
	}
	for _, m := range sslParam.FindAllStringSubmatch(dsn, -1) {
		if m[1] == "sslmode" {
			mode = m[2]
			continue
		}
		env = append(env, "PG"+strings.ToUpper(m[1])+"="+m[2])
	}
	return append(env, "PGSSLMODE="+mode)
}

// pgTool finds PostgreSQL client program name: the newest of /usr/lib/postgresql/*/bin and
// the PATH (pg_dump must be at least as new as the server it dumps).
func pgTool(name string) (string, error) {
	type cand struct {
		path  string
		major int
	}
	var cands []cand
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
			cands = append(cands, cand{p, n})
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		// Debian's /usr/bin/pg_dump is a wrapper that runs one of the binaries above: asking
		// it its version costs a process for nothing.
		real, _ := filepath.EvalSymlinks(p)
		wrapped := strings.HasPrefix(real, "/usr/lib/postgresql/") || filepath.Base(real) == "pg_wrapper"
		if !wrapped || len(cands) == 0 {
			cands = append(cands, cand{p, toolMajor(p)})
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("%s not found on the PATH or in /usr/lib/postgresql/*/bin: install the PostgreSQL client (apt-get install postgresql-client)", name)
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].major > cands[j].major })
	return cands[0].path, nil
}

var toolVersion = regexp.MustCompile(`\) (\d+)`)

// toolMajor is the major version a client program reports ("pg_dump (PostgreSQL) 15.4").
func toolMajor(path string) int {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return 0
	}
	m := toolVersion.FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
