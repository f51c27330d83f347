package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// testDB is a fresh database on a throwaway cluster, a migrations directory, and psql.
type testDB struct {
	c   *testutil.Cluster
	db  string
	dsn string
	dir string
}

// newTestDB creates a database of its own for t on the shared cluster c.
func newTestDB(t *testing.T, c *testutil.Cluster) *testDB {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	c.Psql(t, "postgres", "CREATE DATABASE "+name)
	return &testDB{c: c, db: name, dsn: c.DSN(name), dir: t.TempDir()}
}

// TestMigrator runs the migrator's behaviours against one throwaway cluster, each in a
// database of its own: a cluster takes seconds to start on a busy machine.
func TestMigrator(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	tests := []struct {
		name string
		run  func(t *testing.T, c *testutil.Cluster)
	}{
		{"ApplyAndHistory", testMigratorApplyAndHistory},
		{"FailedMigrationRollsBack", testMigratorFailedMigrationRollsBack},
		{"ChecksumMismatch", testMigratorChecksumMismatch},
		{"GapAndUnknownVersion", testMigratorGapAndUnknownVersion},
		{"LockTimeoutRetry", testMigratorLockTimeoutRetry},
		{"AdvisoryLock", testMigratorAdvisoryLock},
		{"ReplicatingHoldsBackContract", testMigratorReplicatingHoldsBackContract},
		{"ReplicatingRefusesBreaking", testMigratorReplicatingRefusesBreaking},
		{"EmptyDir", testMigratorEmptyDir},
		{"GooseSequenceAfterReplication", testMigratorGooseSequenceAfterReplication},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, c) })
	}
}

// open returns a new database/sql pool on the app database.
func (d *testDB) open(t *testing.T) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

func (d *testDB) psql(t *testing.T, sql string) string {
	t.Helper()
	return d.c.Psql(t, d.db, sql)
}

func (d *testDB) write(t *testing.T, name, up string) {
	t.Helper()
	writeFiles(t, d.dir, map[string]string{name: "-- +goose Up\n" + up + "\n"})
}

func (d *testDB) migrator(t *testing.T) *Migrator {
	t.Helper()
	m := New(d.open(t), d.dir)
	m.Actor, m.ReleaseID = "alice", 7
	m.LockTimeout = 5 * time.Second
	return m
}

func versions(applied []AppliedMigration) []int64 {
	var out []int64
	for _, a := range applied {
		out = append(out, a.Version)
	}
	return out
}

func testMigratorApplyAndHistory(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.write(t, "0001_orders.sql", "CREATE TABLE orders (id bigserial PRIMARY KEY, qty int);\nINSERT INTO orders (qty) VALUES (1), (2);")
	d.write(t, "0002_more.sql", "ALTER TABLE orders ADD COLUMN note text;\nUPDATE orders SET note = 'x';")
	d.write(t, "0003_index.sql", "-- +goose NO TRANSACTION\nCREATE INDEX CONCURRENTLY orders_qty ON orders (qty);")
	m := d.migrator(t)
	ctx := context.Background()

	res, err := m.Up(ctx, UpOptions{})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if got := fmt.Sprint(versions(res.Applied)); got != "[1 2 3]" {
		t.Fatalf("applied = %s, want [1 2 3]", got)
	}
	if got := d.psql(t, "SELECT string_agg(note, ',') FROM orders"); got != "x,x" {
		t.Fatalf("notes = %q, want x,x", got)
	}
	if got := d.psql(t, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_qty'::regclass"); got != "t" {
		t.Fatalf("index valid = %q, want t", got)
	}
	if got := d.psql(t, "SELECT string_agg(version_id::text, ',' ORDER BY version_id) FROM goose_db_version WHERE version_id > 0"); got != "1,2,3" {
		t.Fatalf("goose versions = %q, want 1,2,3", got)
	}
	rows := d.psql(t, "SELECT version, name, actor, release_id, length(sha256), duration_ms >= 0, applied_at IS NOT NULL FROM teal_migrations ORDER BY version")
	want := "1|0001_orders.sql|alice|7|64|t|t\n2|0002_more.sql|alice|7|64|t|t\n3|0003_index.sql|alice|7|64|t|t"
	if rows != want {
		t.Fatalf("teal_migrations =\n%s\nwant\n%s", rows, want)
	}

	hist, err := m.History(ctx)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(hist) != 3 || hist[0].Actor != "alice" || hist[0].ReleaseID != 7 || hist[2].Name != "0003_index.sql" || hist[0].AppliedAt.IsZero() {
		t.Fatalf("history = %+v", hist)
	}
	if hist[0].SHA256 != res.Applied[0].SHA256 {
		t.Fatalf("history sha256 = %s, applied %s", hist[0].SHA256, res.Applied[0].SHA256)
	}

	res, err = m.Up(ctx, UpOptions{})
	if err != nil || len(res.Applied) != 0 {
		t.Fatalf("second Up = %+v, %v; want nothing applied", res, err)
	}
	plan, err := m.Plan(ctx, false)
	if err != nil || len(plan.Applied) != 3 || len(plan.Pending) != 0 {
		t.Fatalf("Plan = %+v, %v; want 3 applied, none pending", plan, err)
	}

	// A version goose applied before teal kept history counts as applied, unchecked.
	d.psql(t, "DELETE FROM teal_migrations WHERE version = 1")
	hist, err = m.History(ctx)
	if err != nil || len(hist) != 3 || hist[0].Version != 1 || hist[0].SHA256 != "" {
		t.Fatalf("history without teal's row 1 = %+v, %v", hist, err)
	}
	if _, err := m.Plan(ctx, false); err != nil {
		t.Fatalf("Plan with a goose-only version: %v", err)
	}
}

func testMigratorFailedMigrationRollsBack(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.write(t, "0001_orders.sql", "CREATE TABLE orders (id int PRIMARY KEY);")
	d.write(t, "0002_bad.sql", "ALTER TABLE orders ADD COLUMN a int;\nINSERT INTO missing VALUES (1);")
	m := d.migrator(t)
	res, err := m.Up(context.Background(), UpOptions{})
	if err == nil {
		t.Fatal("Up with a failing migration: no error")
	}
	for _, want := range []string{"0002_bad.sql", "INSERT INTO missing VALUES (1)", "does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %q, want it to contain %q", err, want)
		}
	}
	if res == nil || fmt.Sprint(versions(res.Applied)) != "[1]" {
		t.Fatalf("result = %+v, want version 1 applied", res)
	}
	if got := d.psql(t, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'a'"); got != "0" {
		t.Fatalf("column a exists (%s): migration 2 was not rolled back", got)
	}
	if got := d.psql(t, "SELECT max(version) FROM teal_migrations"); got != "1" {
		t.Fatalf("history max version = %s, want 1", got)
	}
}

func testMigratorChecksumMismatch(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.write(t, "0001_orders.sql", "CREATE TABLE orders (id int PRIMARY KEY);")
	m := d.migrator(t)
	ctx := context.Background()
	res, err := m.Up(ctx, UpOptions{})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	before := res.Applied[0].SHA256
	d.write(t, "0001_orders.sql", "CREATE TABLE orders (id bigint PRIMARY KEY);")
	migs, err := Load(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	after := migs[0].SHA256
	for name, run := range map[string]func() error{
		"Plan": func() error { _, err := m.Plan(ctx, false); return err },
		"Up":   func() error { _, err := m.Up(ctx, UpOptions{}); return err },
	} {
		err := run()
		if err == nil {
			t.Fatalf("%s after editing an applied file: no error", name)
		}
		for _, want := range []string{"0001_orders.sql", before, after, "edited"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("%s error = %q, want it to contain %q", name, err, want)
			}
		}
		if !errors.Is(err, teal.ErrInvalid) {
			t.Fatalf("%s error = %v, want it to wrap teal.ErrInvalid", name, err)
		}
	}
}

func testMigratorGapAndUnknownVersion(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.write(t, "0001_a.sql", "CREATE TABLE a (id int PRIMARY KEY);")
	d.write(t, "0003_c.sql", "CREATE TABLE c (id int PRIMARY KEY);")
	m := d.migrator(t)
	ctx := context.Background()
	if _, err := m.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("Up: %v", err)
	}

	d.write(t, "0002_b.sql", "CREATE TABLE b (id int PRIMARY KEY);")
	_, err := m.Up(ctx, UpOptions{})
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") || !strings.Contains(err.Error(), "gap") {
		t.Fatalf("Up with a gap: error = %v, want one naming 0002_b.sql and the gap", err)
	}
	if got := d.psql(t, "SELECT to_regclass('b') IS NULL"); got != "t" {
		t.Fatal("table b was created despite the gap")
	}

	if err := os.Remove(filepath.Join(d.dir, "0002_b.sql")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(d.dir, "0003_c.sql")); err != nil {
		t.Fatal(err)
	}
	_, err = m.Plan(ctx, false)
	if err == nil || !strings.Contains(err.Error(), "version 3") || !strings.Contains(err.Error(), "0003_c.sql") || !strings.Contains(err.Error(), "not in") {
		t.Fatalf("Plan with an unknown applied version: error = %v", err)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testMigratorLockTimeoutRetry(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.psql(t, "CREATE TABLE orders (id int PRIMARY KEY)")
	d.write(t, "0001_alter.sql", "ALTER TABLE orders ADD COLUMN note text;")
	ctx := context.Background()

	// Another session holds ACCESS EXCLUSIVE on orders for about a second.
	holder, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close(context.Background()) })
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	time.AfterFunc(time.Second, func() { released <- tx.Commit(ctx) })

	var logs syncBuffer
	m := d.migrator(t)
	m.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m.StatementLockTimeout, m.RetryBackoff, m.Retries = 100*time.Millisecond, 100*time.Millisecond, 5
	res, err := m.Up(ctx, UpOptions{})
	if err != nil {
		t.Fatalf("Up while the table is locked: %v\n%s", err, logs.String())
	}
	if err := <-released; err != nil {
		t.Fatalf("release the lock: %v", err)
	}
	if len(res.Applied) != 1 {
		t.Fatalf("applied = %d, want 1", len(res.Applied))
	}
	if n := strings.Count(logs.String(), "retrying"); n < 1 {
		t.Fatalf("retries logged = %d, want at least 1:\n%s", n, logs.String())
	}
	if got := d.psql(t, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'"); got != "1" {
		t.Fatalf("column note exists = %s, want 1", got)
	}

	// With no retries left the error says what happened.
	d.write(t, "0002_alter.sql", "ALTER TABLE orders ADD COLUMN other text;")
	tx, err = holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	m.Retries = 0
	_, err = m.Up(ctx, UpOptions{})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(err.Error(), "lock timeout") || !strings.Contains(err.Error(), "0002_alter.sql") {
		t.Fatalf("Up without retries on a locked table: error = %v", err)
	}
}

func testMigratorAdvisoryLock(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	// The first migration takes a while, so that the second migrator arrives while the first
	// holds the lock.
	d.write(t, "0001_slow.sql", "CREATE TABLE a (id int PRIMARY KEY);\nSELECT pg_sleep(1);")
	d.write(t, "0002_b.sql", "CREATE TABLE b (id int PRIMARY KEY);")
	ctx := context.Background()

	type outcome struct {
		res *Result
		err error
	}
	out := make(chan outcome, 2)
	for range 2 {
		m := d.migrator(t)
		go func() {
			res, err := m.Up(ctx, UpOptions{})
			out <- outcome{res, err}
		}()
	}
	total := 0
	for range 2 {
		o := <-out
		if o.err != nil {
			t.Fatalf("Up: %v", o.err)
		}
		total += len(o.res.Applied)
	}
	if total != 2 {
		t.Fatalf("migrations applied by both migrators = %d, want 2 (each once)", total)
	}
	if got := d.psql(t, "SELECT count(*) FROM goose_db_version WHERE version_id > 0"); got != "2" {
		t.Fatalf("goose version rows = %s, want 2", got)
	}

	// While someone else holds the lock, a migrator gives up after LockTimeout.
	holder, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close(context.Background()) })
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(4097083626)"); err != nil {
		t.Fatal(err)
	}
	d.write(t, "0003_c.sql", "CREATE TABLE c (id int PRIMARY KEY);")
	m := d.migrator(t)
	m.LockTimeout = time.Second
	start := time.Now()
	_, err = m.Up(ctx, UpOptions{})
	if err == nil || !strings.Contains(err.Error(), "migration lock") {
		t.Fatalf("Up while the lock is held: error = %v, want the lock named", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("gave up after %s, want at least LockTimeout (1s)", waited)
	}
	if got := d.psql(t, "SELECT to_regclass('c') IS NULL"); got != "t" {
		t.Fatal("table c was created without the lock")
	}
}

func testMigratorReplicatingHoldsBackContract(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.write(t, "0001_orders.sql", "CREATE TABLE orders (id int PRIMARY KEY, legacy text, qty int);")
	m := d.migrator(t)
	ctx := context.Background()
	if _, err := m.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("Up: %v", err)
	}
	d.write(t, "0002_expand.sql", "ALTER TABLE orders ADD COLUMN note text;\nALTER TABLE orders ALTER COLUMN qty TYPE bigint;")
	d.write(t, "0003_contract.sql", "ALTER TABLE orders DROP COLUMN legacy;")
	d.write(t, "0004_new.sql", "CREATE TABLE kinds (id int PRIMARY KEY);")

	plan, err := m.Plan(ctx, true)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if len(plan.Pending) != 1 || len(plan.HeldBack) != 2 || len(plan.Refused) != 0 {
		t.Fatalf("plan: pending %d, held back %d, refused %d; want 1, 2, 0", len(plan.Pending), len(plan.HeldBack), len(plan.Refused))
	}
	res, err := m.Up(ctx, UpOptions{Replicating: true})
	if err != nil {
		t.Fatalf("Up replicating: %v", err)
	}
	if got, want := fmt.Sprint(versions(res.Applied)), "[2]"; got != want {
		t.Fatalf("applied = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(res.HeldBack), "[3 4]"; got != want {
		t.Fatalf("held back = %s, want %s", got, want)
	}
	if got := d.psql(t, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'legacy'"); got != "1" {
		t.Fatal("column legacy was dropped before the switch")
	}

	// Held-back versions must run lowest first.
	if _, err := m.UpTo(ctx, []int64{4}); err == nil || !strings.Contains(err.Error(), "0003_contract.sql") {
		t.Fatalf("UpTo([4]) with 3 pending: error = %v, want one naming 0003_contract.sql", err)
	}
	res, err = m.UpTo(ctx, res.HeldBack)
	if err != nil {
		t.Fatalf("UpTo: %v", err)
	}
	if got, want := fmt.Sprint(versions(res.Applied)), "[3 4]"; got != want {
		t.Fatalf("UpTo applied = %s, want %s", got, want)
	}
	if got := d.psql(t, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'legacy'"); got != "0" {
		t.Fatal("column legacy still exists after UpTo")
	}
	// Again, after a crash say: already applied, nothing to do.
	res, err = m.UpTo(ctx, []int64{3, 4})
	if err != nil || len(res.Applied) != 0 {
		t.Fatalf("UpTo again = %+v, %v; want nothing applied", res, err)
	}
}

func testMigratorReplicatingRefusesBreaking(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.write(t, "0001_orders.sql", "CREATE TABLE orders (id int PRIMARY KEY);")
	m := d.migrator(t)
	ctx := context.Background()
	if _, err := m.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("Up: %v", err)
	}
	d.write(t, "0002_safe.sql", "ALTER TABLE orders ADD COLUMN note text;")
	d.write(t, "0003_breaking.sql", "ALTER TABLE orders ADD COLUMN status text NOT NULL;")

	plan, err := m.Plan(ctx, true)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if len(plan.Refused) != 1 || plan.Refused[0].Name != "0003_breaking.sql" {
		t.Fatalf("refused = %+v, want 0003_breaking.sql", plan.Refused)
	}
	_, err = m.Up(ctx, UpOptions{Replicating: true})
	if !errors.Is(err, teal.ErrRefused) {
		t.Fatalf("Up replicating with a breaking file: error = %v, want teal.ErrRefused", err)
	}
	for _, want := range []string{"0003_breaking.sql", "ALTER TABLE orders ADD COLUMN status text NOT NULL", "without a default", "add the column with a DEFAULT"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %q, want it to contain %q", err, want)
		}
	}
	if hint := teal.HintOf(err); !strings.Contains(hint, "DEFAULT") {
		t.Fatalf("hint = %q, want the fix", hint)
	}
	if got := d.psql(t, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'"); got != "0" {
		t.Fatal("the safe migration before the breaking one was applied")
	}
	if got := d.psql(t, "SELECT max(version) FROM teal_migrations"); got != "1" {
		t.Fatalf("history max version = %s, want 1", got)
	}

	// Not replicating (the first release, in place), the same file runs.
	res, err := m.Up(ctx, UpOptions{})
	if err != nil || len(res.Applied) != 2 {
		t.Fatalf("Up not replicating = %+v, %v; want 2 applied", res, err)
	}
}

func testMigratorEmptyDir(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	m := New(d.open(t), filepath.Join(d.dir, "none"))
	res, err := m.Up(context.Background(), UpOptions{Replicating: true})
	if err != nil || len(res.Applied) != 0 || len(res.HeldBack) != 0 {
		t.Fatalf("Up with no migrations = %+v, %v", res, err)
	}
	hist, err := m.History(context.Background())
	if err != nil || len(hist) != 0 {
		t.Fatalf("History of a fresh database = %+v, %v", hist, err)
	}
}

// testMigratorGooseSequenceAfterReplication: goose's version rows arrive on a copy by
// replication without their sequence; the next migration must not collide on goose's key.
func testMigratorGooseSequenceAfterReplication(t *testing.T, c *testutil.Cluster) {
	d := newTestDB(t, c)
	d.write(t, "0001_a.sql", "CREATE TABLE a (id int PRIMARY KEY);")
	m := d.migrator(t)
	ctx := context.Background()
	if _, err := m.Up(ctx, UpOptions{}); err != nil {
		t.Fatalf("Up: %v", err)
	}
	// What a copy looks like: the rows are there, the sequence starts over.
	d.psql(t, "ALTER TABLE goose_db_version ALTER COLUMN id RESTART WITH 1")
	d.write(t, "0002_b.sql", "CREATE TABLE b (id int PRIMARY KEY);")
	if _, err := m.Up(ctx, UpOptions{Replicating: true}); err != nil {
		t.Fatalf("Up on a copy: %v", err)
	}
}
