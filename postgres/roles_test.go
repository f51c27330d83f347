package postgres

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// newSingle returns a Database whose production database is app on c, created with one
// table, and an admin pool on it.
func newSingle(t *testing.T, c *testutil.Cluster, app string) (*Database, *pgxpool.Pool) {
	t.Helper()
	c.Psql(t, "postgres", "CREATE DATABASE "+app)
	d := NewDatabase(app, teal.DatabaseConfig{Mode: "clone", Production: c.DSN(app), NameTemplate: teal.DefaultNameTemplate}, t.TempDir())
	if err := d.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	db, err := d.Admin(context.Background(), d.prod.addr, app)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "CREATE TABLE items (id bigserial PRIMARY KEY, v int)")
	mustExec(t, db, "INSERT INTO items (v) VALUES (1)")
	return d, db
}

// connectAs opens one connection as role.
func connectAs(ctx context.Context, d *Database, db, role, password string) (*pgx.Conn, error) {
	dsn, err := d.ConnString(d.prod.addr, db, role, password)
	if err != nil {
		return nil, err
	}
	return pgx.Connect(ctx, dsn)
}

func TestDatabase_RoleStates(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	ctx := context.Background()
	d, db := newSingle(t, c, "roles")
	role, pw, err := d.ensureRole(ctx, d.prod.addr, teal.Blue)
	if err != nil {
		t.Fatal(err)
	}
	if role != "roles_blue" {
		t.Fatalf("role = %q, want roles_blue", role)
	}

	tests := []struct {
		name                     string
		apply                    func() error
		login, canRead, canWrite bool
	}{
		{"closed", func() error { return d.closeRole(ctx, db, role) }, true, true, false},
		{"open", func() error { return d.openRole(ctx, db, role) }, true, true, true},
		{"frozen", func() error { return d.freezeRole(ctx, db, role) }, false, false, false},
		{"open again", func() error { return d.openRole(ctx, db, role) }, true, true, true},
		{"closed again", func() error { return d.closeRole(ctx, db, role) }, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.apply(); err != nil {
				t.Fatal(err)
			}
			conn, err := connectAs(ctx, d, "roles", role, pw)
			if (err == nil) != tt.login {
				t.Fatalf("login error = %v, want login %v", err, tt.login)
			}
			if err != nil {
				return
			}
			defer conn.Close(ctx)
			var n int
			err = conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n)
			if (err == nil) != tt.canRead {
				t.Fatalf("SELECT error = %v, want read %v", err, tt.canRead)
			}
			_, err = conn.Exec(ctx, "INSERT INTO items (v) VALUES (2)")
			if (err == nil) != tt.canWrite {
				t.Fatalf("INSERT error = %v, want write %v", err, tt.canWrite)
			}
			if err != nil && pgCode(err) != "42501" {
				t.Fatalf("INSERT error = %v, want insufficient_privilege", err)
			}
		})
	}

	t.Run("tables created later follow the state", func(t *testing.T) {
		if err := d.openRole(ctx, db, role); err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, "CREATE TABLE later (id serial PRIMARY KEY)")
		conn, err := connectAs(ctx, d, "roles", role, pw)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "INSERT INTO later DEFAULT VALUES"); err != nil {
			t.Fatalf("insert into a table created while open: %v", err)
		}
		if err := d.closeRole(ctx, db, role); err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, "CREATE TABLE later2 (id serial PRIMARY KEY)")
		if _, err := conn.Exec(ctx, "SELECT * FROM later2"); err != nil {
			t.Fatalf("read a table created while closed: %v", err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO later2 DEFAULT VALUES"); pgCode(err) != "42501" {
			t.Fatalf("insert into a table created while closed = %v, want insufficient_privilege", err)
		}
	})

	t.Run("freeze ends open sessions and rolls back their writes", func(t *testing.T) {
		if err := d.openRole(ctx, db, role); err != nil {
			t.Fatal(err)
		}
		conn, err := connectAs(ctx, d, "roles", role, pw)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO items (v) VALUES (99)"); err != nil {
			t.Fatal(err)
		}
		if err := d.freezeRole(ctx, db, role); err != nil {
			t.Fatal(err)
		}
		if got := queryInt(t, db, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role); got != 0 {
			t.Fatalf("backends of %s after freeze = %d, want 0", role, got)
		}
		if err := tx.Commit(ctx); err == nil {
			t.Fatal("commit of a frozen session succeeded")
		}
		if got := queryInt(t, db, "SELECT count(*) FROM items WHERE v = 99"); got != 0 {
			t.Fatalf("rows of the terminated transaction = %d, want 0", got)
		}
	})
}

func TestDatabase_EnsureRole(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	ctx := context.Background()
	d, db := newSingle(t, c, "pw")
	// The cluster trusts every login; make TCP logins of other roles prove their password.
	hba := "local all all trust\nhost all " + c.Superuser + " 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(c.Psql(t, "postgres", "SHOW hba_file"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "CREATE ROLE probe LOGIN")
	mustExec(t, db, "SELECT pg_reload_conf()")
	// The postmaster reloads asynchronously: wait until a role without password is refused.
	pollUntil(t, 10*time.Second, "pg_hba.conf reloaded", func() bool {
		conn, err := connectAs(ctx, d, "pw", "probe", "")
		if err == nil {
			conn.Close(ctx)
		}
		return err != nil
	})

	role, pw, err := d.ensureRole(ctx, d.prod.addr, teal.Green)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.openRole(ctx, db, role); err != nil {
		t.Fatal(err)
	}
	// Again: the same password, still usable, and the role is not duplicated.
	role2, pw2, err := d.ensureRole(ctx, d.prod.addr, teal.Green)
	if err != nil {
		t.Fatal(err)
	}
	if role2 != role || pw2 != pw {
		t.Fatalf("second ensureRole = %s/%d chars, want %s and the same password", role2, len(pw2), role)
	}
	var stored string
	if err := db.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") || strings.Contains(stored, pw) {
		t.Fatalf("stored password = %.20s…, want a SCRAM verifier", stored)
	}
	fi, err := os.Stat(filepath.Join(d.secretsDir, role+".password"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("password file mode = %v, want 0600", got)
	}

	tests := []struct {
		name     string
		password string
		ok       bool
	}{
		{"right password", pw, true},
		{"wrong password", pw + "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := connectAs(ctx, d, "pw", role, tt.password)
			if (err == nil) != tt.ok {
				t.Fatalf("login error = %v, want ok %v", err, tt.ok)
			}
			if err == nil {
				conn.Close(ctx)
			}
		})
	}
}

func TestQuoteLiteral_RoundTrip(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	conn, err := pgx.Connect(context.Background(), c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tests := []struct {
		name, s string
	}{
		{"plain", "abc"},
		{"quote", "it's"},
		{"backslash", `a\b\'c`},
		{"dsn", "postgres://u:p'w@h:5432/db?sslmode=disable"},
		{"empty", ""},
		{"unicode", "ünï'cødé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if err := conn.QueryRow(context.Background(), "SELECT "+quoteLiteral(tt.s), pgx.QueryExecModeSimpleProtocol).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.s {
				t.Fatalf("SELECT %s = %q, want %q", quoteLiteral(tt.s), got, tt.s)
			}
		})
	}
}

func TestDatabase_ColorOf(t *testing.T) {
	d := NewDatabase("shop", teal.DatabaseConfig{NameTemplate: teal.DefaultNameTemplate}, t.TempDir())
	tests := []struct {
		name string
		env  *teal.DBEnv
		want teal.Color
		ok   bool
	}{
		{"blue", &teal.DBEnv{Name: "shop", Role: "shop_blue"}, teal.Blue, true},
		{"green", &teal.DBEnv{Name: "shop_green_v2", Role: "shop_green"}, teal.Green, true},
		{"another app's role", &teal.DBEnv{Name: "x", Role: "other_blue"}, "", false},
		{"nil", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.colorOf(tt.env)
			if got != tt.want || (err == nil) != tt.ok {
				t.Fatalf("colorOf = %q, %v; want %q, ok %v", got, err, tt.want, tt.ok)
			}
		})
	}
}
