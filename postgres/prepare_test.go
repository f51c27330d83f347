package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// The migrations of the test app's versions. v1 creates the table; v2 adds a column (safe
// while replicating) and drops one (after cutover only: held back).
const (
	mig1 = "-- +goose Up\nCREATE TABLE items (id bigserial PRIMARY KEY, v bigint NOT NULL, note text);\n"
	mig2 = "-- +goose Up\nALTER TABLE items ADD COLUMN extra text;\n"
	mig3 = "-- +goose Up\nALTER TABLE items DROP COLUMN note;\n"
)

// startCluster starts a throwaway cluster for these tests. A subscription's apply worker
// starts table sync workers no more often than wal_retrieve_retry_interval (5s) once workers
// ran out; tests running clones side by side would wait on it.
func startCluster(t *testing.T, settings map[string]string) *testutil.Cluster {
	t.Helper()
	s := map[string]string{"wal_retrieve_retry_interval": "100ms"}
	for k, v := range settings {
		s[k] = v
	}
	return testutil.StartCluster(t, testutil.ClusterOptions{Settings: s})
}

// app is one test app: its Database on one or two clusters and the artifacts of its versions.
type app struct {
	d             *Database
	name          string
	prod, preprod *testutil.Cluster
	artifacts     map[string]string // version → artifact directory
}

// newApp creates database name on prod (the production database) and a Database for it,
// with copies on preprod (which may be prod).
func newApp(t *testing.T, prod, preprod *testutil.Cluster, name string, cfg func(*teal.DatabaseConfig)) *app {
	t.Helper()
	prod.Psql(t, "postgres", "CREATE DATABASE "+name)
	dc := teal.DefaultConfig().Database
	dc.Mode = "clone"
	dc.Production = prod.DSN(name)
	if preprod != prod {
		dc.Preproduction = preprod.DSN("postgres")
	}
	if cfg != nil {
		cfg(&dc)
	}
	d := NewDatabase(name, dc, t.TempDir())
	d.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := d.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	a := &app{d: d, name: name, prod: prod, preprod: preprod, artifacts: map[string]string{}}
	a.artifact(t, "v1", mig1)
	a.artifact(t, "v2", mig1, mig2, mig3)
	return a
}

// artifact writes the migrations of version v (0001_…, 0002_… in order).
func (a *app) artifact(t *testing.T, v string, migs ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "migrations"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, m := range migs {
		path := filepath.Join(dir, "migrations", fmt.Sprintf("%04d_step%d.sql", i+1, i+1))
		if err := os.WriteFile(path, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.artifacts[v] = dir
	return dir
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// prepare runs Prepare for colour c and version v, failing the test on error.
func (a *app) prepare(t *testing.T, c teal.Color, v string, live *teal.DBEnv) *teal.DBEnv {
	t.Helper()
	env, err := a.d.Prepare(context.Background(), a.target(c, v, live), func(msg string, attrs map[string]any) {
		t.Logf("progress: %s %v", msg, attrs)
	})
	if err != nil {
		t.Fatalf("Prepare %s %s: %v", c, v, err)
	}
	return env
}

func (a *app) target(c teal.Color, v string, live *teal.DBEnv) teal.DBTarget {
	return teal.DBTarget{ReleaseID: 7, Actor: "tester", Color: c, Version: v, Artifact: a.artifacts[v], Live: live}
}

// first is the first release: blue, v1, in place, with seed rows.
func (a *app) first(t *testing.T, rows int) *teal.DBEnv {
	t.Helper()
	env := a.prepare(t, teal.Blue, "v1", nil)
	mustExec(t, a.pool(t, env), fmt.Sprintf("INSERT INTO items (v, note) SELECT i, 'seed' FROM generate_series(1, %d) i", rows))
	return env
}

// pool is an admin pool on env's database.
func (a *app) pool(t *testing.T, env *teal.DBEnv) *pgxpool.Pool {
	t.Helper()
	p, err := a.d.Admin(context.Background(), env.Server, env.Name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rolePool connects with env's DATABASE_URL, as its colour's instances do.
func (a *app) rolePool(t *testing.T, env *teal.DBEnv) *pgxpool.Pool {
	t.Helper()
	ie, err := a.d.InstanceEnv(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pgxpool.New(context.Background(), ie["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// slotCount is the number of replication slots of app on c: teal's, and the temporary ones of
// its subscriptions' table sync workers.
func slotCount(t *testing.T, c *testutil.Cluster, a *app) int {
	t.Helper()
	var n int
	q := fmt.Sprintf(`SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'teal\_%s\_%%'
		OR slot_name LIKE 'pg\_%%\_sync\_%%' AND database IN ('%s', '%s')`, a.name, a.name, a.d.DBName(teal.Green, "v2"))
	if _, err := fmt.Sscan(c.Psql(t, "postgres", q), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// churn writes to the live items table until stopped: inserts, and updates of earlier rows.
type churn struct {
	stop   chan struct{}
	done   chan struct{}
	writes atomic.Int64
	mu     sync.Mutex
	err    error
}

func startChurn(t *testing.T, db *pgxpool.Pool) *churn {
	t.Helper()
	c := &churn{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		ctx := context.Background()
		for i := int64(1); ; i++ {
			select {
			case <-c.stop:
				return
			default:
			}
			var err error
			if i%3 == 0 {
				_, err = db.Exec(ctx, "UPDATE items SET v = v + 1000000 WHERE id = $1", i/3)
			} else {
				_, err = db.Exec(ctx, "INSERT INTO items (v) VALUES ($1)", i)
			}
			if err != nil {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				return
			}
			c.writes.Add(1)
		}
	}()
	t.Cleanup(func() { c.halt(t) })
	return c
}

// halt stops the writes and fails the test if one failed.
func (c *churn) halt(t *testing.T) {
	t.Helper()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		t.Fatalf("write on the live database: %v", c.err)
	}
}

// rowsDigest sums the (id, v) rows of items: equal digests, equal rows.
func rowsDigest(t *testing.T, db *pgxpool.Pool) string {
	t.Helper()
	var n, sum int64
	if err := db.QueryRow(context.Background(),
		"SELECT count(*), coalesce(sum(hashtext(id::text || ':' || v::text)::bigint), 0) FROM items").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d rows, sum %d", n, sum)
}

func TestDatabase_PrepareInPlace(t *testing.T) {
	c := startCluster(t, nil)
	a := newApp(t, c, c, "shop", nil)
	ctx := context.Background()

	env := a.prepare(t, teal.Blue, "v1", nil)
	want := teal.DBEnv{Name: "shop", Role: "shop_blue", Server: a.d.prod.addr, Production: true, Version: "v1",
		Migrations: filepath.Join(a.artifacts["v1"], "migrations")}
	if !envEqual(*env, want) {
		t.Fatalf("env = %+v, want %+v", *env, want)
	}
	db := a.pool(t, env)
	if got := queryInt(t, db, "SELECT count(*) FROM teal_migrations WHERE version = 1 AND actor = 'tester' AND release_id = 7"); got != 1 {
		t.Fatalf("migration 1 in history = %d, want 1", got)
	}
	if got := queryInt(t, db, "SELECT count(*) FROM "+FenceTable); got != 0 {
		t.Fatalf("fence rows = %d, want 0 (table exists, empty)", got)
	}

	// The colour's role is open: its instances read and write.
	app := a.rolePool(t, env)
	if _, err := app.Exec(ctx, "INSERT INTO items (v) VALUES (1)"); err != nil {
		t.Fatalf("insert as %s: %v", env.Role, err)
	}
	if got := queryInt(t, app, "SELECT count(*) FROM items"); got != 1 {
		t.Fatalf("rows read as %s = %d, want 1", env.Role, got)
	}
	ie, err := a.d.InstanceEnv(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if u := ie["DATABASE_URL"]; !strings.Contains(u, "shop_blue:") || !strings.Contains(u, "/shop") {
		t.Fatalf("DATABASE_URL %q does not name role and database", u)
	}

	// Again (a restart): nothing changes, nothing fails.
	again := a.prepare(t, teal.Blue, "v1", nil)
	if !envEqual(*again, want) {
		t.Fatalf("env again = %+v, want %+v", *again, want)
	}
	if lag, err := a.d.Ready(ctx, env); err != nil || lag.Bytes != 0 {
		t.Fatalf("Ready(production) = %+v, %v; want zero lag, nil", lag, err)
	}
	if err := a.d.Teardown(ctx, env); !errors.Is(err, teal.ErrRefused) {
		t.Fatalf("Teardown(production) = %v, want ErrRefused", err)
	}
}

func envEqual(a, b teal.DBEnv) bool {
	return a.Name == b.Name && a.Role == b.Role && a.Server == b.Server && a.Production == b.Production &&
		a.Version == b.Version && a.Migrations == b.Migrations && slices.Equal(a.HeldBack, b.HeldBack)
}

func TestDatabase_Clone(t *testing.T) {
	c1 := startCluster(t, nil)
	c2 := startCluster(t, nil)
	tests := []struct {
		name     string
		strategy string
		twoHosts bool
	}{
		{"subscription on one server", StrategySubscription, false},
		{"dump on one server", StrategyDump, false},
		{"subscription on two servers", StrategySubscription, true},
		{"dump on two servers", StrategyDump, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			preprod := c1
			if tt.twoHosts {
				preprod = c2
			}
			a := newApp(t, c1, preprod, fmt.Sprintf("clone%d", i), func(c *teal.DatabaseConfig) {
				c.CloneStrategy = tt.strategy
				c.Verify = VerifyChecksums
			})
			ctx := context.Background()
			blue := a.first(t, 3000)
			liveDB := a.pool(t, blue)

			// Writes keep coming during the clone, the migrations and the verification.
			load := startChurn(t, liveDB)
			pollUntil(t, 10*time.Second, "writes before the clone", func() bool { return load.writes.Load() > 50 })
			green := a.prepare(t, teal.Green, "v2", blue)
			if green.Name != fmt.Sprintf("clone%d_green_v2", i) || green.Production || green.Role != a.name+"_green" || green.Server != a.d.preprod.addr {
				t.Fatalf("green env = %+v, want a copy with role %s_green on %s", green, a.name, a.d.preprod.addr)
			}
			if !slices.Equal(green.HeldBack, []int64{3}) {
				t.Fatalf("held back = %v, want [3]", green.HeldBack)
			}
			copyDB := a.pool(t, green)
			// The safe migration ran on the copy, the contract one did not.
			if got := queryInt(t, copyDB, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name IN ('extra', 'note')"); got != 2 {
				t.Fatalf("columns extra and note on the copy = %d, want 2", got)
			}

			at := load.writes.Load()
			pollUntil(t, 10*time.Second, "writes after the clone", func() bool { return load.writes.Load() > at+50 })
			if _, err := a.d.Ready(ctx, green); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			load.halt(t)
			if _, err := fence(ctx, liveDB, copyDB); err != nil {
				t.Fatal(err)
			}
			if got, want := rowsDigest(t, copyDB), rowsDigest(t, liveDB); got != want {
				t.Fatalf("copy has %s, live has %s", got, want)
			}

			// The copy's role is closed: it reads, it cannot write.
			app := a.rolePool(t, green)
			if got := queryInt(t, app, "SELECT count(*) FROM items WHERE id = 1"); got != 1 {
				t.Fatalf("row 1 read as %s = %d, want 1", green.Role, got)
			}
			if _, err := app.Exec(ctx, "INSERT INTO items (v) VALUES (1)"); err == nil {
				t.Fatalf("insert as %s on the closed copy succeeded", green.Role)
			}

			if i == 0 {
				// Prepare again continues the copy a previous attempt made.
				again := a.prepare(t, teal.Green, "v2", blue)
				if !envEqual(*again, *green) {
					t.Fatalf("Prepare again = %+v, want %+v", *again, *green)
				}
			}

			for range 2 { // idempotent
				if err := a.d.Teardown(ctx, green); err != nil {
					t.Fatalf("Teardown: %v", err)
				}
			}
			for _, c := range []*testutil.Cluster{c1, preprod} {
				if n := slotCount(t, c, a); n != 0 {
					t.Fatalf("slots left after teardown: %d", n)
				}
			}
			if got := preprod.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+green.Name+"'"); got != "0" {
				t.Fatalf("database %s left after teardown", green.Name)
			}
			if got := queryInt(t, liveDB, "SELECT count(*) FROM pg_publication"); got != 0 {
				t.Fatalf("publications left on the live database: %d", got)
			}
		})
	}
}

func TestDatabase_PrepareRestartsAfterCrash(t *testing.T) {
	c := startCluster(t, nil)
	a := newApp(t, c, c, "crash", nil)
	ctx := context.Background()
	blue := a.first(t, 100)
	name := a.d.DBName(teal.Green, "v2")

	// A crashed attempt: the copy's database exists with half a schema and a subscription
	// that an apply error disabled; its slot retains WAL on the live server.
	c.Psql(t, "postgres", "CREATE DATABASE "+name)
	c.Psql(t, name, "CREATE TABLE items (id bigint PRIMARY KEY)")
	sub := a.d.SubName(teal.Blue, teal.Green)
	mustExec(t, a.pool(t, blue), "CREATE PUBLICATION "+a.d.PubName(teal.Blue)+" FOR TABLE items")
	mustExec(t, a.pool(t, blue), "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", sub)
	conn, err := a.d.ConnString(blue.Server, blue.Name, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Psql(t, name, "CREATE SUBSCRIPTION "+sub+" CONNECTION "+quoteLiteral(conn)+" PUBLICATION "+a.d.PubName(teal.Blue)+
		" WITH (create_slot = false, slot_name = '"+sub+"', copy_data = false, enabled = false)")

	green := a.prepare(t, teal.Green, "v2", blue)
	copyDB := a.pool(t, green)
	if got := queryInt(t, copyDB, "SELECT count(*) FROM items"); got != 100 {
		t.Fatalf("rows on the restarted copy = %d, want 100", got)
	}
	if n := slotCount(t, c, a); n != 1 {
		t.Fatalf("slots = %d, want 1", n)
	}

	// Sequences: the copy's move up to the live side's, never back.
	if got := queryInt(t, copyDB, "SELECT last_value FROM items_id_seq"); got != 100 {
		t.Fatalf("copy's items_id_seq = %d, want 100 (the live side's)", got)
	}
	mustExec(t, copyDB, "SELECT setval('items_id_seq', 500)")
	if err := advanceSequences(ctx, a.pool(t, blue), copyDB); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, copyDB, "SELECT last_value FROM items_id_seq"); got != 500 {
		t.Fatalf("copy's items_id_seq = %d, want 500 (not moved back)", got)
	}
	mustExec(t, a.pool(t, blue), "SELECT setval('items_id_seq', 1000)")
	if err := advanceSequences(ctx, a.pool(t, blue), copyDB); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, copyDB, "SELECT last_value FROM items_id_seq"); got != 1000 {
		t.Fatalf("copy's items_id_seq = %d, want 1000", got)
	}
	if err := a.d.Teardown(ctx, green); err != nil {
		t.Fatal(err)
	}
	// A live database is never replaced.
	bad := a.target(teal.Green, "v2", &teal.DBEnv{Name: name, Role: a.d.RoleName(teal.Blue), Server: a.d.preprod.addr})
	if _, err := a.d.Prepare(ctx, bad, nil); !errors.Is(err, teal.ErrRefused) {
		t.Fatalf("Prepare over the live database = %v, want ErrRefused", err)
	}
}
