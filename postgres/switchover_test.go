package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// pair is blue's production database and green's copy, with forward replication blue →
// green set up the way Prepare does it, in plain SQL so that these tests stand alone.
type pair struct {
	d                 *Database
	blue, green       *teal.DBEnv
	blueDB, greenDB   *pgxpool.Pool // admin
	blueApp, greenApp *pgxpool.Pool // the colours' own roles
}

// pairSchema is the app's schema on both sides; tok makes a retried insert idempotent.
const pairSchema = `CREATE TABLE items (id bigserial PRIMARY KEY, tok text NOT NULL UNIQUE, v bigint NOT NULL)`

// newPair creates app's databases (blue on c1, green on c2, which may be the same cluster),
// the roles (blue open, green closed), and replication blue → green with its initial copy done.
func newPair(t *testing.T, c1, c2 *testutil.Cluster, app string, cfg func(*teal.DatabaseConfig)) *pair {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", c1.Log())
		}
	})
	c1.Psql(t, "postgres", "CREATE DATABASE "+app)
	dc := teal.DatabaseConfig{
		Mode:          "clone",
		Production:    c1.DSN(app),
		Preproduction: c2.DSN("postgres"),
		NameTemplate:  teal.DefaultNameTemplate,
		FreezeTimeout: 10 * time.Second,
		ReverseSync:   true,
	}
	if cfg != nil {
		cfg(&dc)
	}
	d := NewDatabase(app, dc, t.TempDir())
	if err := d.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	greenName := d.DBName(teal.Green, "v2")
	c2.Psql(t, "postgres", "CREATE DATABASE "+greenName)

	p := &pair{
		d:     d,
		blue:  &teal.DBEnv{Name: app, Role: d.RoleName(teal.Blue), Server: d.prod.addr, Production: true, Version: "v1"},
		green: &teal.DBEnv{Name: greenName, Role: d.RoleName(teal.Green), Server: d.preprod.addr, Version: "v2"},
	}
	var err error
	if p.blueDB, err = d.Admin(ctx, p.blue.Server, p.blue.Name); err != nil {
		t.Fatal(err)
	}
	if p.greenDB, err = d.Admin(ctx, p.green.Server, p.green.Name); err != nil {
		t.Fatal(err)
	}
	for _, db := range []*pgxpool.Pool{p.blueDB, p.greenDB} {
		mustExec(t, db, pairSchema)
		if err := ensureFenceTable(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	// Rows that exist before replication starts: the initial copy brings them.
	mustExec(t, p.blueDB, `INSERT INTO items (tok, v) SELECT 'seed-' || i, i FROM generate_series(1, 100) i`)

	p.blueApp = appPool(t, d, p.blue, teal.Blue)
	p.greenApp = appPool(t, d, p.green, teal.Green)
	if err := d.openRole(ctx, p.blueDB, p.blue.Role); err != nil {
		t.Fatal(err)
	}
	if err := d.closeRole(ctx, p.greenDB, p.green.Role); err != nil {
		t.Fatal(err)
	}

	sub := d.SubName(teal.Blue, teal.Green)
	mustExec(t, p.blueDB, "CREATE PUBLICATION "+d.PubName(teal.Blue)+" FOR TABLE items, "+FenceTable)
	mustExec(t, p.blueDB, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", sub)
	conn, err := d.ConnString(p.blue.Server, p.blue.Name, "", "")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.greenDB, "CREATE SUBSCRIPTION "+sub+" CONNECTION "+quoteLiteral(conn)+" PUBLICATION "+d.PubName(teal.Blue)+
		" WITH (create_slot = false, slot_name = "+quoteLiteral(sub)+", copy_data = true, disable_on_error = true)")
	pollUntil(t, 30*time.Second, "initial copy "+sub, func() bool {
		return queryInt(t, p.greenDB, `SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
			WHERE s.subname = $1 AND r.srsubstate <> 'r'`, sub) == 0
	})
	if got := queryInt(t, p.greenDB, "SELECT count(*) FROM items"); got != 100 {
		t.Fatalf("rows copied to green = %d, want 100", got)
	}
	return p
}

// fastCluster starts a cluster whose subscriptions' workers start promptly. PostgreSQL 15's
// launcher starts any subscription's worker at most once per wal_retrieve_retry_interval (5 s
// by default): a reverse subscription made by a switchover would take that long to start, and
// a test switching back at once would wait for it. TestSwitchover_ZeroLostWrites keeps the
// default.
func fastCluster(t *testing.T) *testutil.Cluster {
	t.Helper()
	return testutil.StartCluster(t, testutil.ClusterOptions{Settings: map[string]string{"wal_retrieve_retry_interval": "100ms"}})
}

// appPool connects as colour c's own role, the way its instances do.
func appPool(t *testing.T, d *Database, env *teal.DBEnv, c teal.Color) *pgxpool.Pool {
	t.Helper()
	role, pw, err := d.ensureRole(context.Background(), env.Server, c)
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := d.ConnString(env.Server, env.Name, role, pw)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// appExec runs sql through an app's pool, once more if the pooled connection had been
// terminated by a freeze (as an app's pool would).
func appExec(db *pgxpool.Pool, sql string) error {
	_, err := db.Exec(context.Background(), sql)
	if pgCode(err) == "57P01" {
		_, err = db.Exec(context.Background(), sql)
	}
	return err
}

func mustExec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t *testing.T, db *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// pollUntil polls cond until it holds, failing the test after timeout.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// load is the app: writers inserting and updating rows through whichever colour's pool
// traffic is routed to, retrying every write that is not acknowledged, recording every
// acknowledged one.
type load struct {
	target atomic.Pointer[pgxpool.Pool]
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	acked map[string]ackedRow // by tok
	err   error               // a writer's fatal error

	writes atomic.Int64 // acknowledged
	dupes  atomic.Int64 // duplicate key errors (a sequence not synced)
	errs   sync.Map     // SQLSTATE (or "conn") → *atomic.Int64, retried errors
}

type ackedRow struct {
	id, v int64
}

// loadRate is the acknowledged writes per second all writers aim for together: about what
// the issue measured the switchover under (~780/s), with room to spare on a 2-core machine
// where the subscriber's single apply worker must keep up.
const loadRate = 1000

func startLoad(t *testing.T, pool *pgxpool.Pool, writers int) *load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	l := &load{cancel: cancel, acked: map[string]ackedRow{}}
	l.target.Store(pool)
	stop := make(chan struct{})
	for w := range writers {
		l.wg.Add(1)
		go l.writer(ctx, stop, w, writers)
	}
	var once sync.Once
	l.cancel = func() {
		once.Do(func() {
			close(stop)
			l.wg.Wait()
			cancel()
		})
	}
	t.Cleanup(l.cancel)
	return l
}

// stop stops the writers after their current write is acknowledged, and fails the test if a
// writer could not get one acknowledged.
func (l *load) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	if l.err != nil {
		t.Fatal(l.err)
	}
}

// waitWrites waits until n more writes are acknowledged.
func (l *load) waitWrites(t *testing.T, n int64) {
	t.Helper()
	want := l.writes.Load() + n
	pollUntil(t, 20*time.Second, fmt.Sprintf("%d acknowledged writes", n), func() bool { return l.writes.Load() >= want })
}

func (l *load) writer(ctx context.Context, stop <-chan struct{}, w, writers int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), 1))
	var own []string
	pace := time.NewTicker(time.Second * time.Duration(writers) / loadRate)
	defer pace.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-pace.C:
		}
		var tok string
		var row ackedRow
		if len(own) == 0 || rng.IntN(2) == 0 {
			tok = fmt.Sprintf("w%d-%d", w, n)
			row.v = 1
		} else {
			tok = own[rng.IntN(len(own))]
			l.mu.Lock()
			row = l.acked[tok]
			l.mu.Unlock()
			row.v++
		}
		// Retry until acknowledged: the write is idempotent (tok for inserts, an absolute
		// value for updates), so a retry after an ambiguous failure is safe.
		for {
			err := l.write(ctx, tok, &row)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				l.mu.Lock()
				l.err = fmt.Errorf("writer %d: write %s never acknowledged: %w", w, tok, err)
				l.mu.Unlock()
				return
			}
			code := pgCode(err)
			if code == "23505" {
				l.dupes.Add(1)
			}
			if code == "" {
				code = "conn"
			}
			c, _ := l.errs.LoadOrStore(code, new(atomic.Int64))
			c.(*atomic.Int64).Add(1)
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		l.mu.Lock()
		if _, ok := l.acked[tok]; !ok {
			own = append(own, tok)
		}
		l.acked[tok] = row
		l.mu.Unlock()
		l.writes.Add(1)
	}
}

func (l *load) write(ctx context.Context, tok string, row *ackedRow) error {
	db := l.target.Load()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if row.id == 0 {
		err := db.QueryRow(wctx, `INSERT INTO items (tok, v) VALUES ($1, $2) ON CONFLICT (tok) DO NOTHING RETURNING id`, tok, row.v).Scan(&row.id)
		if errors.Is(err, pgx.ErrNoRows) {
			// An earlier attempt did commit: its acknowledgement was lost.
			err = db.QueryRow(wctx, `SELECT id FROM items WHERE tok = $1`, tok).Scan(&row.id)
		}
		return err
	}
	tag, err := db.Exec(wctx, `UPDATE items SET v = $2 WHERE id = $1`, row.id, row.v)
	if err == nil && tag.RowsAffected() != 1 {
		return fmt.Errorf("update %s (id %d): %d rows, want 1", tok, row.id, tag.RowsAffected())
	}
	return err
}

func (l *load) errorSummary() string {
	var parts []string
	l.errs.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// verify checks that every acknowledged write is on db exactly once with its last
// acknowledged value.
func (l *load) verify(t *testing.T, db *pgxpool.Pool, side string) {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT tok, id, v FROM items WHERE tok NOT LIKE 'seed-%'")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]ackedRow{}
	for rows.Next() {
		var tok string
		var r ackedRow
		if err := rows.Scan(&tok, &r.id, &r.v); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[tok]; dup {
			t.Errorf("%s: write %s present twice", side, tok)
		}
		got[tok] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	for tok, want := range l.acked {
		if g, ok := got[tok]; !ok || g != want {
			if lost < 10 {
				t.Errorf("%s: write %s = %+v (present %v), want %+v", side, tok, g, ok, want)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%s: %d of %d acknowledged writes lost or stale", side, lost, len(l.acked))
	}
}

// switchTo returns a route func that moves the writers to pool.
func (l *load) switchTo(pool *pgxpool.Pool) func(context.Context) error {
	return func(context.Context) error {
		l.target.Store(pool)
		return nil
	}
}

// runSwitches switches blue → green → blue … n times under load, checking after each one that
// the new side takes writes, and at the end that no acknowledged write was lost on the final
// live side (nor on the other, kept in sync by reverse replication). It returns the freezes.
func runSwitches(t *testing.T, p *pair, n int) []time.Duration {
	t.Helper()
	ctx := context.Background()
	l := startLoad(t, p.blueApp, 8)
	l.waitWrites(t, 200)

	envs := [2]*teal.DBEnv{p.blue, p.green}
	apps := [2]*pgxpool.Pool{p.blueApp, p.greenApp}
	var freezes []time.Duration
	for i := range n {
		from, to := i%2, (i+1)%2
		rep, err := p.d.Switchover(ctx, envs[from], envs[to], l.switchTo(apps[to]))
		if err != nil {
			t.Fatalf("switchover %d (%s → %s): %v (%s)", i, envs[from].Name, envs[to].Name, err, teal.HintOf(err))
		}
		freezes = append(freezes, rep.Freeze)
		if testing.Verbose() {
			var steps []string
			for _, s := range rep.Steps {
				steps = append(steps, fmt.Sprintf("%s %v", s.Name, s.Duration.Round(10*time.Microsecond)))
			}
			t.Logf("switchover %d: freeze %v: %s", i, rep.Freeze, strings.Join(steps, ", "))
		}
		if l.target.Load() != apps[to] {
			t.Fatalf("switchover %d: route was not called", i)
		}
		l.waitWrites(t, 100)
	}
	l.stop(t)
	t.Logf("%d writes acknowledged, %d rows, retried errors: %s", l.writes.Load(), len(l.acked), l.errorSummary())
	if got := l.dupes.Load(); got != 0 {
		t.Errorf("duplicate key errors = %d, want 0 (sequences not synced?)", got)
	}
	live, other := p.blueDB, p.greenDB
	if n%2 == 1 {
		live, other = p.greenDB, p.blueDB
	}
	l.verify(t, live, "live side")
	// The side switched away from has everything too, through reverse replication.
	if _, err := fence(ctx, live, other); err != nil {
		t.Fatal(err)
	}
	l.verify(t, other, "old side")
	return freezes
}

func TestSwitchover_ZeroLostWrites(t *testing.T) {
	tests := []struct {
		name        string
		twoClusters bool
	}{
		{"one cluster", false},
		{"two clusters", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c1 := testutil.StartCluster(t, testutil.ClusterOptions{})
			c2 := c1
			if tt.twoClusters {
				c2 = testutil.StartCluster(t, testutil.ClusterOptions{})
			}
			p := newPair(t, c1, c2, "shop", nil)
			// A switchover, then a rollback with the colours swapped.
			freezes := runSwitches(t, p, 2)
			t.Logf("freeze: switchover %v, rollback %v", freezes[0], freezes[1])
			// Nothing of the old directions is left: after the rollback, only blue → green
			// (made by it as the reverse) exists, with its slot on blue's server.
			if got := queryInt(t, p.blueDB, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'teal_%'"); got != 1 {
				t.Errorf("slots on blue's server = %d, want 1", got)
			}
			if got := queryInt(t, p.greenDB, "SELECT count(*) FROM pg_subscription WHERE subname = $1", p.d.SubName(teal.Blue, teal.Green)); got != 1 {
				t.Errorf("subscription blue → green after the rollback: %d, want 1", got)
			}
			if got := queryInt(t, p.blueDB, "SELECT count(*) FROM pg_subscription WHERE subname = $1", p.d.SubName(teal.Green, teal.Blue)); got != 0 {
				t.Errorf("subscription green → blue after the rollback: %d, want 0 (dropped)", got)
			}
		})
	}
}

// TestSwitchover_FreezeWindow measures the freeze window over 20 switchovers under load.
func TestSwitchover_FreezeWindow(t *testing.T) {
	c := fastCluster(t)
	p := newPair(t, c, c, "shop", nil)
	freezes := runSwitches(t, p, 20)
	slices.Sort(freezes)
	p50 := freezes[len(freezes)/2]
	p99 := freezes[(len(freezes)*99+99)/100-1]
	t.Logf("freeze window over %d switchovers under load: p50 %v, p99 %v, max %v", len(freezes), p50, p99, freezes[len(freezes)-1])
	if p99 > 10*time.Second {
		t.Fatalf("freeze p99 = %v, want under freeze_timeout", p99)
	}
}

// assertUndone checks that a failed switchover left everything as before: blue writable by
// its role, green closed, forward replication enabled and working, nothing of the reverse.
func assertUndone(t *testing.T, p *pair) {
	t.Helper()
	ctx := context.Background()
	d := p.d
	if err := appExec(p.blueApp, "INSERT INTO items (tok, v) VALUES ('after-undo', 1)"); err != nil {
		t.Fatalf("write on blue after undo: %v", err)
	}
	err := appExec(p.greenApp, "INSERT INTO items (tok, v) VALUES ('green-after-undo', 1)")
	if got := pgCode(err); got != "42501" {
		t.Fatalf("write on green after undo: %v (code %q), want 42501 insufficient_privilege", err, got)
	}
	st, err := subscriptionState(ctx, p.greenDB, d.SubName(teal.Blue, teal.Green))
	if err != nil {
		t.Fatal(err)
	}
	if !st.exists || !st.enabled {
		t.Fatalf("forward subscription after undo: %+v, want enabled", st)
	}
	if _, err := fence(ctx, p.blueDB, p.greenDB); err != nil {
		t.Fatalf("forward replication after undo: %v", err)
	}
	if got := queryInt(t, p.greenDB, "SELECT count(*) FROM items WHERE tok = 'after-undo'"); got != 1 {
		t.Fatalf("blue's write on green = %d rows, want 1", got)
	}
	rev := d.SubName(teal.Green, teal.Blue)
	checks := []struct {
		what string
		db   *pgxpool.Pool
		sql  string
	}{
		{"reverse subscription", p.blueDB, "SELECT count(*) FROM pg_subscription WHERE subname = '" + rev + "'"},
		{"reverse slot", p.greenDB, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + rev + "'"},
		{"reverse publication", p.greenDB, "SELECT count(*) FROM pg_publication WHERE pubname = '" + d.PubName(teal.Green) + "'"},
	}
	for _, c := range checks {
		if got := queryInt(t, c.db, c.sql); got != 0 {
			t.Errorf("%s left after undo: %d", c.what, got)
		}
	}
}

func TestSwitchover_Undo(t *testing.T) {
	c := fastCluster(t)
	ctx := context.Background()

	t.Run("freeze timeout", func(t *testing.T) {
		p := newPair(t, c, c, "late", func(cfg *teal.DatabaseConfig) { cfg.FreezeTimeout = 300 * time.Millisecond })
		// Applying the fence row of the switchover (not those of the catch-up before the
		// freeze) on green waits for an advisory lock the test holds: it never arrives.
		// (A lock held by an open transaction would not do: creating the reverse slot waits
		// for every running transaction.)
		mustExec(t, p.greenDB, `CREATE FUNCTION fence_hook() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF NEW.note LIKE 'switchover%' THEN
					PERFORM pg_advisory_xact_lock(42);
				END IF;
				RETURN NEW;
			END $$`)
		mustExec(t, p.greenDB, "CREATE TRIGGER fence_hook BEFORE INSERT ON "+FenceTable+" FOR EACH ROW EXECUTE FUNCTION fence_hook()")
		mustExec(t, p.greenDB, "ALTER TABLE "+FenceTable+" ENABLE ALWAYS TRIGGER fence_hook")
		holder, err := p.greenDB.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Release()
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(42)"); err != nil {
			t.Fatal(err)
		}
		routed := false
		rep, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { routed = true; return nil })
		if !errors.Is(err, teal.ErrRefused) {
			t.Fatalf("Switchover = %v, want ErrRefused", err)
		}
		for _, want := range []string{"fence:", "freeze_timeout 300ms", "blue serves as before"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if routed {
			t.Error("route was called")
		}
		if rep == nil || rep.Freeze != 0 {
			t.Errorf("report = %+v, want Freeze 0 (never opened)", rep)
		}
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock(42)"); err != nil {
			t.Fatal(err)
		}
		assertUndone(t, p)
	})

	t.Run("route error", func(t *testing.T) {
		p := newPair(t, c, c, "noroute", nil)
		l := startLoad(t, p.blueApp, 4)
		l.waitWrites(t, 50)
		_, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { return errors.New("router unreachable") })
		if !errors.Is(err, teal.ErrRefused) || !strings.Contains(err.Error(), "route") || !strings.Contains(err.Error(), "router unreachable") {
			t.Fatalf("Switchover = %v, want ErrRefused naming the route step and its error", err)
		}
		// The writers were never moved: they carry on on blue.
		l.waitWrites(t, 50)
		l.stop(t)
		assertUndone(t, p)
		if _, err := fence(ctx, p.blueDB, p.greenDB); err != nil {
			t.Fatal(err)
		}
		l.verify(t, p.blueDB, "blue")
		l.verify(t, p.greenDB, "green")
	})

	t.Run("forward replication stopped", func(t *testing.T) {
		p := newPair(t, c, c, "stopped", nil)
		mustExec(t, p.greenDB, "ALTER SUBSCRIPTION "+p.d.SubName(teal.Blue, teal.Green)+" DISABLE")
		start := time.Now()
		rep, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { return nil })
		if !errors.Is(err, teal.ErrRefused) || !strings.Contains(err.Error(), "prepare") || !strings.Contains(err.Error(), "disabled") {
			t.Fatalf("Switchover = %v, want ErrRefused in prepare saying the subscription is disabled", err)
		}
		if len(rep.Steps) != 1 || rep.Steps[0].Name != stepPrepare {
			t.Errorf("steps = %+v, want only prepare (nothing frozen)", rep.Steps)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("refusal took %v", took)
		}
		if _, err := p.blueApp.Exec(ctx, "INSERT INTO items (tok, v) VALUES ('still-open', 1)"); err != nil {
			t.Fatalf("write on blue: %v", err)
		}
	})
}

func TestSwitchover_ReverseColumnLists(t *testing.T) {
	c := fastCluster(t)
	ctx := context.Background()
	p := newPair(t, c, c, "cols", nil)
	// The new version's migrations: a column and a table blue does not have.
	mustExec(t, p.greenDB, "ALTER TABLE items ADD COLUMN extra text")
	mustExec(t, p.greenDB, "CREATE TABLE only_green (id int PRIMARY KEY)")

	rep, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rep.Steps {
		names = append(names, s.Name)
	}
	want := []string{stepPrepare, stepFreeze, stepFence, stepVerify, stepSequences, stepDisable, stepReverse, stepOpen, stepRoute, stepDrop}
	if !slices.Equal(names, want) {
		t.Errorf("steps = %v, want %v", names, want)
	}
	if rep.Freeze <= 0 {
		t.Errorf("Freeze = %v, want > 0", rep.Freeze)
	}

	rows, err := p.greenDB.Query(ctx, "SELECT tablename, attnames FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1", p.d.PubName(teal.Green))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for rows.Next() {
		var tbl string
		var cols []string
		if err := rows.Scan(&tbl, &cols); err != nil {
			t.Fatal(err)
		}
		got[tbl] = cols
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if cols := got["items"]; !slices.Equal(cols, []string{"id", "tok", "v"}) {
		t.Errorf("items published with %v, want [id tok v] (not extra)", cols)
	}
	if _, ok := got["only_green"]; ok {
		t.Error("only_green is published, want left out")
	}
	if _, ok := got[FenceTable]; !ok {
		t.Errorf("%s is not published: %v", FenceTable, got)
	}

	// Writes on green, extra column included, arrive on blue without it.
	if _, err := p.greenApp.Exec(ctx, "INSERT INTO items (tok, v, extra) VALUES ('new', 7, 'x')"); err != nil {
		t.Fatal(err)
	}
	if _, err := fence(ctx, p.greenDB, p.blueDB); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, p.blueDB, "SELECT v FROM items WHERE tok = 'new'"); got != 7 {
		t.Fatalf("green's write on blue: v = %d, want 7", got)
	}
	if err := p.d.CanSwitchBack(ctx, p.green, p.blue); err != nil {
		t.Fatalf("CanSwitchBack = %v, want nil", err)
	}
}

func TestDatabase_CanSwitchBack(t *testing.T) {
	c := fastCluster(t)
	ctx := context.Background()

	t.Run("reverse sync off", func(t *testing.T) {
		p := newPair(t, c, c, "nosync", func(cfg *teal.DatabaseConfig) { cfg.ReverseSync = false })
		if _, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if got := queryInt(t, p.blueDB, "SELECT count(*) FROM pg_subscription"); got != 0 {
			t.Errorf("subscriptions with reverse_sync off = %d, want 0", got)
		}
		err := p.d.CanSwitchBack(ctx, p.green, p.blue)
		if !errors.Is(err, teal.ErrRefused) || !strings.Contains(err.Error(), "reverse sync is off") ||
			!strings.Contains(err.Error(), "every write made on green since the switch at ") {
			t.Fatalf("CanSwitchBack = %v, want refused saying what would be lost", err)
		}
		if got := teal.HintOf(err); !strings.Contains(got, "--force") {
			t.Errorf("hint = %q, want --force", got)
		}

		// --force: writes move back anyway; what green wrote stays on green only.
		if _, err := p.greenApp.Exec(ctx, "INSERT INTO items (tok, v) VALUES ('green-only', 1)"); err != nil {
			t.Fatal(err)
		}
		greenMax := queryInt(t, p.greenDB, "SELECT max(id) FROM items")
		rep, err := p.d.ForceSwitchover(ctx, p.green, p.blue, func(context.Context) error { return nil })
		if err != nil {
			t.Fatalf("ForceSwitchover = %v", err)
		}
		if rep.Freeze <= 0 {
			t.Errorf("Freeze = %v, want > 0", rep.Freeze)
		}
		var id int64
		if err := p.blueApp.QueryRow(ctx, "INSERT INTO items (tok, v) VALUES ('blue-again', 1) RETURNING id").Scan(&id); err != nil {
			t.Fatalf("write on blue after the forced switch: %v", err)
		}
		if id <= greenMax {
			t.Errorf("new id on blue = %d, want above green's %d (sequences copied)", id, greenMax)
		}
		if err := appExec(p.greenApp, "INSERT INTO items (tok, v) VALUES ('green-late', 1)"); pgCode(err) != "42501" {
			t.Errorf("write on green after the forced switch = %v, want insufficient_privilege", err)
		}
		if got := queryInt(t, p.blueDB, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'teal_nosync_%'"); got != 0 {
			t.Errorf("slots left = %d, want 0", got)
		}
	})

	t.Run("reverse replication stopped", func(t *testing.T) {
		p := newPair(t, c, c, "broken", nil)
		if _, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := p.d.CanSwitchBack(ctx, p.green, p.blue); err != nil {
			t.Fatalf("CanSwitchBack = %v, want nil while reverse replication runs", err)
		}
		mustExec(t, p.blueDB, "ALTER SUBSCRIPTION "+p.d.SubName(teal.Green, teal.Blue)+" DISABLE")
		err := p.d.CanSwitchBack(ctx, p.green, p.blue)
		if !errors.Is(err, teal.ErrRefused) || !strings.Contains(err.Error(), "disabled") {
			t.Fatalf("CanSwitchBack = %v, want refused: disabled", err)
		}
	})
}

// TestSwitchover_VerifiesLastRange: with database.verify checksums the freeze window compares
// the last key range of each table; a copy whose newest rows differ is not switched to.
func TestSwitchover_VerifiesLastRange(t *testing.T) {
	c := fastCluster(t)
	ctx := context.Background()
	checksums := func(cfg *teal.DatabaseConfig) { cfg.Verify = VerifyChecksums }

	t.Run("in sync", func(t *testing.T) {
		p := newPair(t, c, c, "hotok", checksums)
		rep, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { return nil })
		if err != nil {
			t.Fatalf("switchover: %v", err)
		}
		if !slices.ContainsFunc(rep.Steps, func(s teal.TimedStep) bool { return s.Name == stepVerify }) {
			t.Fatalf("steps %v: want %q", rep.Steps, stepVerify)
		}
	})
	t.Run("newest rows differ", func(t *testing.T) {
		p := newPair(t, c, c, "hotbad", checksums)
		// A row changed on the copy behind replication's back (as its admin).
		mustExec(t, p.greenDB, "UPDATE items SET v = v + 1000 WHERE id = (SELECT max(id) FROM items)")
		_, err := p.d.Switchover(ctx, p.blue, p.green, func(context.Context) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "verify last ranges") {
			t.Fatalf("switchover onto a differing copy: %v, want refused by the last-range check", err)
		}
		assertUndone(t, p)
	})
}
