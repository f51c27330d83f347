package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"teal.dev/teal"
	"teal.dev/teal/artifact"
	"teal.dev/teal/internal/testutil"
	"teal.dev/teal/migrate"
	"teal.dev/teal/sampleapp"
	"teal.dev/teal/sqlite"
)

// runDBCLI runs the teal command like run does, with `teal db` in the tree whether or not
// root.go lists it yet.
func runDBCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	root := newRootCmd(g)
	if c, _, err := root.Find([]string{"db"}); err != nil || c == root {
		db := newDBCmd(g)
		markRunErrors(db)
		root.AddCommand(db)
	}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		hint := "see teal --help"
		if cmd != nil {
			hint = "see " + cmd.CommandPath() + " --help"
		}
		printError(&errb, err, hint)
	}
	return exitCode(err), out.String(), errb.String()
}

// dbPlanFixture is an app directory: a teal.yaml whose database.production is a real
// cluster's database, with the sample app's v1 migrations applied to it.
type dbPlanFixture struct {
	c       *testutil.Cluster
	dir     string // the config's directory
	config  string // path of teal.yaml
	dataDir string
}

func newDBPlanFixture(t *testing.T, c *testutil.Cluster, name, extra string) *dbPlanFixture {
	t.Helper()
	c.Psql(t, "postgres", "CREATE DATABASE "+name)
	f := &dbPlanFixture{c: c, dir: t.TempDir()}
	f.dataDir = filepath.Join(f.dir, ".teal")
	f.config = filepath.Join(f.dir, "teal.yaml")
	cfg := fmt.Sprintf("app: shop\ndatabase:\n  mode: clone\n  production: %s\n%s", c.DSN(name), extra)
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// migrations writes version's sample migrations plus extra files (name → SQL Up section)
// into a new directory and returns it.
func writeMigrationsDir(t *testing.T, version string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := sampleapp.WriteMigrations(dir, version); err != nil {
		t.Fatal(err)
	}
	for name, sql := range extra {
		if err := os.WriteFile(filepath.Join(dir, "migrations", name), []byte("-- +goose Up\n"+sql+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "migrations")
}

func mustConnConfig(t *testing.T, dsn string) *pgx.ConnConfig {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// saveLive records in the fixture's state store that colour c is live with database db.
func (f *dbPlanFixture) saveLive(t *testing.T, c teal.Color, db *teal.DBEnv) {
	t.Helper()
	store := sqlite.NewStore(filepath.Join(f.dataDir, "teal.db"))
	ctx := context.Background()
	if err := store.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sys := &teal.System{Live: c, Traffic: teal.All(c)}
	env := sys.Env(c)
	env.State, env.Version, env.Database = teal.EnvLive, db.Version, db
	if err := store.SaveSystem(ctx, sys); err != nil {
		t.Fatal(err)
	}
}

func TestRun_DBPlan(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))

	t.Run("first release plans production in place", func(t *testing.T) {
		f := newDBPlanFixture(t, c, "first", "")
		dir := writeMigrationsDir(t, "v2", nil)
		code, out, errOut := runDBCLI(t, "-c", f.config, "db", "plan", "--dir", dir)
		if code != exitOK {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
		for _, want := range []string{"Database: first on " + server + ", database.production", "Migrations: " + dir, "0001_create_orders.sql", "0002_add_orders_total.sql"} {
			if !strings.Contains(out, want) {
				t.Fatalf("output does not contain %q:\n%s", want, out)
			}
		}
		if _, err := os.Stat(f.dataDir); !os.IsNotExist(err) {
			t.Fatalf("data_dir was created by a plan (stat: %v)", err)
		}
	})

	t.Run("live copy, replicating", func(t *testing.T) {
		f := newDBPlanFixture(t, c, "prod", "")
		// Blue's copy is at v1: migration 0001 applied, with its history.
		c.Psql(t, "postgres", "CREATE DATABASE shop_blue_v1")
		blue := stdlib.OpenDB(*mustConnConfig(t, c.DSN("shop_blue_v1")))
		t.Cleanup(func() { blue.Close() })
		if _, err := migrate.New(blue, writeMigrationsDir(t, "v1", nil)).Up(context.Background(), migrate.UpOptions{}); err != nil {
			t.Fatal(err)
		}
		f.saveLive(t, teal.Blue, &teal.DBEnv{Name: "shop_blue_v1", Server: server, Role: "shop_blue", Version: "v1"})
		dir := writeMigrationsDir(t, "v2", map[string]string{
			"0003_rename_note.sql":    "ALTER TABLE orders RENAME COLUMN note TO memo;",
			"0004_version_number.sql": "ALTER TABLE orders ALTER COLUMN version TYPE integer USING 0;",
		})
		code, out, errOut := runDBCLI(t, "-c", f.config, "db", "plan", "--dir", dir, "--sql")
		if code != exitOK {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
		for _, want := range []string{
			"Database: shop_blue_v1 on " + server + ", the live colour blue's (v1)",
			"0001_create_orders.sql", // applied
			"0002_add_orders_total.sql",
			"0003_rename_note.sql",
			"0004_version_number.sql",
			"RENAME COLUMN note TO memo", // --sql
		} {
			if !strings.Contains(out, want) {
				t.Fatalf("output does not contain %q:\n%s", want, out)
			}
		}

		code, out, errOut = runDBCLI(t, "-c", f.config, "--json", "db", "plan", "--dir", dir)
		if code != exitOK {
			t.Fatalf("--json: exit %d, stderr %s", code, errOut)
		}
		var got dbPlanJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("--json output %q: %v", out, err)
		}
		if got.Database != "shop_blue_v1" || got.Live != teal.Blue || !got.Replicating || got.Plan == nil {
			t.Fatalf("--json = %+v, want blue's copy, replicating, and a plan", got)
		}
		var files []string
		for _, m := range got.Plan.Applied {
			files = append(files, "applied "+m.Name)
		}
		for _, list := range []struct {
			what string
			migs []migrate.Migration
		}{{"pending", got.Plan.Pending}, {"held back", got.Plan.HeldBack}, {"refused", got.Plan.Refused}} {
			for _, m := range list.migs {
				files = append(files, list.what+" "+m.Name)
			}
		}
		want := "applied 0001_create_orders.sql, pending 0002_add_orders_total.sql, held back 0003_rename_note.sql, refused 0004_version_number.sql"
		if got := strings.Join(files, ", "); got != want {
			t.Fatalf("--json plan = %s\nwant %s", got, want)
		}
	})

	t.Run("version from the artifact store", func(t *testing.T) {
		f := newDBPlanFixture(t, c, "byversion", "")
		store := artifact.NewStore(filepath.Join(f.dataDir, "artifacts"))
		if err := store.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"v1", "v2"} {
			build := t.TempDir()
			if err := os.WriteFile(filepath.Join(build, "app"), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := sampleapp.WriteMigrations(build, v); err != nil {
				t.Fatal(err)
			}
			if _, _, err := store.Push(context.Background(), v, build); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name string
			args []string
			want string
			not  string
		}{
			{"named version", []string{"--version", "v1"}, "(version v1)", "0002_add_orders_total.sql"},
			{"newest by default", nil, "(version v2)", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, out, errOut := runDBCLI(t, append([]string{"-c", f.config, "db", "plan"}, tt.args...)...)
				if code != exitOK {
					t.Fatalf("exit %d, stderr %s", code, errOut)
				}
				if !strings.Contains(out, tt.want) || !strings.Contains(out, "0001_create_orders.sql") {
					t.Fatalf("output does not contain %q and 0001:\n%s", tt.want, out)
				}
				if tt.not != "" && strings.Contains(out, tt.not) {
					t.Fatalf("output contains %q:\n%s", tt.not, out)
				}
			})
		}
	})

	t.Run("plain migrations path", func(t *testing.T) {
		f := newDBPlanFixture(t, c, "plain", "  migrations: db/migrations\n")
		if err := sampleapp.WriteMigrations(filepath.Join(f.dir, "db"), "v1"); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runDBCLI(t, "-c", f.config, "db", "plan")
		if code != exitOK || !strings.Contains(out, filepath.Join(f.dir, "db", "migrations")) || !strings.Contains(out, "0001_create_orders.sql") {
			t.Fatalf("exit %d, stdout %s, stderr %s; want the plan of db/migrations", code, out, errOut)
		}
	})

	t.Run("errors", func(t *testing.T) {
		f := newDBPlanFixture(t, c, "errs", "")
		dir := writeMigrationsDir(t, "v1", nil)
		noDB := filepath.Join(t.TempDir(), "nodb.yaml")
		if err := os.WriteFile(noDB, []byte("app: shop\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		badCfg := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(badCfg, []byte("app: shop\ndatabase: {mode: clone}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// A port nothing listens on: the database cannot be reached.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closedPort := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		unreachable := filepath.Join(t.TempDir(), "unreachable.yaml")
		if err := os.WriteFile(unreachable, []byte(fmt.Sprintf("app: shop\ndatabase:\n  mode: clone\n  production: postgres://teal:hunter2@127.0.0.1:%d/shop?sslmode=disable&connect_timeout=5\n", closedPort)), 0o644); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			args []string
			code int
			want string // in stderr
		}{
			{"config error", []string{"-c", badCfg, "db", "plan", "--dir", dir}, exitUsage, "database.production: required"},
			{"no database configured", []string{"-c", noDB, "db", "plan", "--dir", dir}, exitUsage, "database.production is not set"},
			{"database unreachable", []string{"-c", unreachable, "db", "plan", "--dir", dir}, exitFailed, "connect to database shop"},
			{"no such directory", []string{"-c", f.config, "db", "plan", "--dir", filepath.Join(dir, "nope")}, exitUsage, "not a directory"},
			{"no artifact pushed", []string{"-c", f.config, "db", "plan"}, exitUsage, "no artifact has been pushed"},
			{"both --version and --dir", []string{"-c", f.config, "db", "plan", "--dir", dir, "--version", "v1"}, exitUsage, "none of the others can be"},
			{"arguments", []string{"-c", f.config, "db", "plan", "v1"}, exitUsage, "unknown command"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, _, errOut := runDBCLI(t, tt.args...)
				if code != tt.code || !strings.Contains(errOut, tt.want) {
					t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tt.code, tt.want)
				}
				if strings.Contains(errOut, "hunter2") {
					t.Fatalf("stderr shows the password: %s", errOut)
				}
			})
		}
	})

	t.Run("version not pushed", func(t *testing.T) {
		f := newDBPlanFixture(t, c, "nopush", "")
		store := artifact.NewStore(filepath.Join(f.dataDir, "artifacts"))
		if err := store.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runDBCLI(t, "-c", f.config, "db", "plan", "--version", "v9")
		if code != exitUsage || !strings.Contains(errOut, "version v9: no such artifact") {
			t.Fatalf("exit %d, stderr %q; want %d and no such artifact", code, errOut, exitUsage)
		}
	})

	t.Run("live database on an unknown server", func(t *testing.T) {
		f := newDBPlanFixture(t, c, "moved", "")
		f.saveLive(t, teal.Green, &teal.DBEnv{Name: "shop_green_v4", Server: "10.9.9.9:5432", Version: "v4"})
		code, _, errOut := runDBCLI(t, "-c", f.config, "db", "plan", "--dir", writeMigrationsDir(t, "v1", nil))
		if code != exitUsage || !strings.Contains(errOut, "neither database.production's server nor database.preproduction's") {
			t.Fatalf("exit %d, stderr %q; want %d and the servers named", code, errOut, exitUsage)
		}
	})
}
