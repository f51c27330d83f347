package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
)

// stepNames lists a report's steps in order.
func stepNames(r *teal.SwitchReport) []string {
	var names []string
	for _, s := range r.Steps {
		names = append(names, s.Name)
	}
	return names
}

// canWrite tries an insert as an app role and returns the error.
func canWrite(db *pgxpool.Pool) error {
	_, err := db.Exec(context.Background(), "INSERT INTO items (v) VALUES (-1)")
	return err
}

// TestSnapshot_PrepareSwitchRollback runs mode snapshot end to end on one cluster: the first
// release in place, a preview copy of v2 with every migration, writes on the live side after
// it, a switchover whose route fails (undone), one that succeeds (the writes made after the
// preview are on the new database, the new role writes, the old one cannot), a refused
// CanSwitchBack, a forced switch back, and Retire with no replication to drop.
func TestSnapshot_PrepareSwitchRollback(t *testing.T) {
	t.Parallel()
	c := startCluster(t, nil)
	a := newApp(t, c, c, "snap", func(dc *teal.DatabaseConfig) { dc.Mode = ModeSnapshot })
	ctx := context.Background()

	blue := a.first(t, 50)
	if !blue.Production || blue.Name != "snap" {
		t.Fatalf("first release env = %+v, want the production database in place", *blue)
	}
	if err := a.d.Preflight(ctx, a.target(teal.Green, "v2", blue)); err != nil {
		t.Fatalf("Preflight(snapshot) = %v, want nil", err)
	}

	green := a.prepare(t, teal.Green, "v2", blue)
	if green.Name != "snap_green_v2" || green.Production || green.Role != "snap_green" || len(green.HeldBack) != 0 {
		t.Fatalf("green env = %+v, want snap_green_v2, role snap_green, not production, nothing held back", *green)
	}
	gdb := a.pool(t, green)
	if got := queryInt(t, gdb, "SELECT count(*) FROM items"); got != 50 {
		t.Fatalf("rows in the preview copy = %d, want 50", got)
	}
	// Every migration ran, the contract step (drop column note) included.
	if got := queryInt(t, gdb, "SELECT count(*) FROM teal_migrations WHERE version IN (1, 2, 3)"); got != 3 {
		t.Fatalf("migrations recorded on the copy = %d, want 3", got)
	}
	if got := queryInt(t, gdb, `SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'items' AND column_name IN ('extra', 'note')`); got != 1 {
		t.Fatalf("columns extra/note on the copy = %d, want 1 (extra added, note dropped)", got)
	}
	// The preview copy is closed: readable, not writable.
	greenApp := a.rolePool(t, green)
	if got := queryInt(t, greenApp, "SELECT count(*) FROM items"); got != 50 {
		t.Fatalf("rows read as %s = %d, want 50", green.Role, got)
	}
	if err := canWrite(greenApp); pgCode(err) != "42501" {
		t.Fatalf("insert as %s on the preview = %v, want permission denied", green.Role, err)
	}
	if lag, err := a.d.Ready(ctx, green); err != nil || lag.Bytes != 0 {
		t.Fatalf("Ready(green) = %+v, %v; want zero lag, nil", lag, err)
	}

	// The live side keeps changing after the preview was made.
	blueApp := a.rolePool(t, blue)
	mustExec(t, blueApp, "INSERT INTO items (v, note) SELECT i, 'after' FROM generate_series(1, 10) i")
	if got := queryInt(t, gdb, "SELECT count(*) FROM items"); got != 50 {
		t.Fatalf("rows on the preview after live writes = %d, want 50 (nothing replicates)", got)
	}

	t.Run("route fails: undone", func(t *testing.T) {
		boom := errors.New("router unreachable")
		rep, err := a.d.Switchover(ctx, blue, green, func(context.Context) error { return boom })
		if !errors.Is(err, teal.ErrRefused) || !strings.Contains(err.Error(), stepRoute) {
			t.Fatalf("Switchover with a failing route = %v, want ErrRefused naming %q", err, stepRoute)
		}
		if rep == nil || !slices.Contains(stepNames(rep), stepRoute) {
			t.Fatalf("report = %+v, want the route step timed", rep)
		}
		// A fresh pool: the freeze terminated the old one's connections.
		if err := canWrite(a.rolePool(t, blue)); err != nil {
			t.Fatalf("insert as %s after the undo = %v, want nil (open again)", blue.Role, err)
		}
		if err := canWrite(a.rolePool(t, green)); pgCode(err) != "42501" {
			t.Fatalf("insert as %s after the undo = %v, want permission denied", green.Role, err)
		}
	})
	liveRows := queryInt(t, a.pool(t, blue), "SELECT count(*) FROM items")

	routed := false
	rep, err := a.d.Switchover(ctx, blue, green, func(context.Context) error { routed = true; return nil })
	if err != nil {
		t.Fatalf("Switchover(snapshot) = %v", err)
	}
	if !routed {
		t.Fatal("route was not called")
	}
	want := []string{stepPrepare, stepFreeze, stepDropCopy, stepDump, stepMigrate, stepOpen, stepRoute, stepClose}
	if got := stepNames(rep); !slices.Equal(got, want) {
		t.Fatalf("steps = %v, want %v", got, want)
	}
	if rep.Freeze <= 0 {
		t.Fatalf("Freeze = %v, want the measured downtime", rep.Freeze)
	}
	gdb = a.pool(t, green)
	if got := queryInt(t, gdb, "SELECT count(*) FROM items"); got != liveRows {
		t.Fatalf("rows on green after the switch = %d, want %d (every write made on blue)", got, liveRows)
	}
	if got := queryInt(t, gdb, "SELECT count(*) FROM items WHERE v BETWEEN 1 AND 10 AND id > 50"); got != 10 {
		t.Fatalf("writes made after the preview, on green = %d, want 10", got)
	}
	if got := queryInt(t, gdb, "SELECT count(*) FROM teal_migrations WHERE actor = 'tester' AND release_id = 7"); got < 2 {
		t.Fatalf("migrations at the switch recorded for the release = %d, want ≥ 2", got)
	}
	greenApp = a.rolePool(t, green)
	if err := canWrite(greenApp); err != nil {
		t.Fatalf("insert as %s after the switch = %v, want nil (no duplicate key: sequences came with the dump)", green.Role, err)
	}
	if err := canWrite(a.rolePool(t, blue)); err == nil {
		t.Fatalf("insert as %s after the switch succeeded, want it refused", blue.Role)
	}
	if got := queryInt(t, a.pool(t, blue), "SELECT count(*) FROM items"); got != liveRows {
		t.Fatalf("rows on blue after the switch = %d, want %d (frozen)", got, liveRows)
	}

	err = a.d.CanSwitchBack(ctx, green, blue)
	if !errors.Is(err, teal.ErrRefused) || !strings.Contains(err.Error(), "snapshot mode keeps no reverse replication") {
		t.Fatalf("CanSwitchBack = %v, want ErrRefused: snapshot mode keeps no reverse replication", err)
	}
	var te *teal.Error
	if !errors.As(err, &te) || !strings.Contains(te.Hint, "--force") {
		t.Fatalf("CanSwitchBack error %v: want a hint naming --force", err)
	}

	// A production database is never remade.
	if _, err := a.d.Switchover(ctx, green, blue, func(context.Context) error { return nil }); !errors.Is(err, teal.ErrRefused) {
		t.Fatalf("Switchover(snapshot) onto the production database = %v, want ErrRefused", err)
	}
	if err := canWrite(greenApp); err != nil {
		t.Fatalf("insert as %s after a refused switch = %v, want nil", green.Role, err)
	}

	if _, err := a.d.ForceSwitchover(ctx, green, blue, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("ForceSwitchover back = %v", err)
	}
	if err := canWrite(a.rolePool(t, blue)); err != nil {
		t.Fatalf("insert as %s after the forced switch back = %v, want nil", blue.Role, err)
	}
	if err := canWrite(a.rolePool(t, green)); err == nil {
		t.Fatalf("insert as %s after the forced switch back succeeded, want it refused", green.Role)
	}

	// Nothing replicates: Retire and Teardown have nothing but the copy to drop.
	if err := a.d.Retire(ctx, blue, green); err != nil {
		t.Fatalf("Retire = %v", err)
	}
	if got := c.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'snap_green_v2'"); strings.TrimSpace(got) != "0" {
		t.Fatalf("green's copy after Retire: %s databases, want 0", got)
	}
	if err := a.d.Teardown(ctx, green); err != nil {
		t.Fatalf("Teardown of a dropped copy = %v, want nil", err)
	}
}

// TestSnapshot_Preflight: mode snapshot asks nothing of replication (wal_level replica, a
// table without a primary key are fine), only recent servers and an admin that can read
// everything and create databases and roles.
func TestSnapshot_Preflight(t *testing.T) {
	t.Parallel()
	c := startCluster(t, map[string]string{"wal_level": "replica"})
	c.Psql(t, "postgres", "CREATE DATABASE snappf")
	c.Psql(t, "snappf", "CREATE TABLE secret (a int); CREATE TABLE nokey (b int)")
	c.Psql(t, "postgres", "CREATE ROLE weak LOGIN")
	tests := []struct {
		name string
		user string   // admin user of the DSN; "" is the cluster's superuser
		want []string // substrings of the error; none: preflight passes
	}{
		{name: "superuser, no logical replication", user: ""},
		{name: "admin without privileges", user: "weak",
			want: []string{"3 problem(s)", "cannot read [public.nokey public.secret]", "pg_read_all_data", "CREATEDB", "CREATEROLE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn := c.DSN("snappf")
			if tt.user != "" {
				dsn = strings.Replace(dsn, "://"+c.Superuser+"@", "://"+tt.user+"@", 1)
			}
			d := NewDatabase("snappf", teal.DatabaseConfig{Mode: ModeSnapshot, Production: dsn, NameTemplate: teal.DefaultNameTemplate}, t.TempDir())
			ctx := context.Background()
			if err := d.Open(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			live := &teal.DBEnv{Name: "snappf", Role: d.RoleName(teal.Blue), Server: d.prod.addr, Production: true}
			err := d.Preflight(ctx, teal.DBTarget{Color: teal.Green, Version: "v2", Live: live})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Preflight = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, teal.ErrRefused) {
				t.Fatalf("Preflight = %v, want ErrRefused", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Preflight error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
