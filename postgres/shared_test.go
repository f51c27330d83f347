package postgres

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// writeMigrations writes files (name → SQL body of the Up section) into dir/migrations.
func writeMigrations(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	m := filepath.Join(dir, "migrations")
	if err := os.MkdirAll(m, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, up := range files {
		if err := os.WriteFile(filepath.Join(m, name), []byte("-- +goose Up\n"+up+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShared_ExpandContract: in mode shared both colours use the production database; a
// release applies only its safe-before-cutover steps before the switch, the roles move at the
// switch, and the held-back contract step runs when the old colour is retired.
func TestShared_ExpandContract(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	ctx := context.Background()
	c.Psql(t, "postgres", "CREATE DATABASE shop")
	d := NewDatabase("shop", teal.DatabaseConfig{
		Mode: ModeShared, Production: c.DSN("shop"), NameTemplate: teal.DefaultNameTemplate,
		Migrations: "{artifact}/migrations", FreezeTimeout: 10 * time.Second,
	}, t.TempDir())
	if err := d.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	v1, v2 := t.TempDir(), t.TempDir()
	first := map[string]string{"0001_items.sql": "CREATE TABLE items (id bigserial PRIMARY KEY, v int);"}
	writeMigrations(t, v1, first)
	writeMigrations(t, v2, first)
	writeMigrations(t, v2, map[string]string{
		"0002_add_note.sql": "ALTER TABLE items ADD COLUMN note text;",
		"0003_rename_v.sql": "ALTER TABLE items RENAME COLUMN v TO qty;",
	})
	blue, err := d.Prepare(ctx, teal.DBTarget{Color: teal.Blue, Version: "v1", Artifact: v1}, nil)
	if err != nil {
		t.Fatalf("first release: %v", err)
	}
	green, err := d.Prepare(ctx, teal.DBTarget{Color: teal.Green, Version: "v2", Artifact: v2, Live: blue}, nil)
	if err != nil {
		t.Fatalf("shared prepare: %v", err)
	}
	if green.Name != blue.Name || !slices.Equal(green.HeldBack, []int64{3}) {
		t.Fatalf("green = %+v, want the same database with migration 3 held back", green)
	}
	if got := c.Psql(t, "shop", "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'items'"); got != "id,note,v" {
		t.Fatalf("columns before the switch = %s, want id,note,v (the rename held back)", got)
	}

	blueApp := appPool(t, d, blue, teal.Blue)
	greenApp := appPool(t, d, green, teal.Green)
	if err := appExec(greenApp, "INSERT INTO items (v) VALUES (1)"); pgCode(err) != "42501" {
		t.Fatalf("green writes before the switch: %v, want 42501", err)
	}
	if _, err := d.Switchover(ctx, blue, green, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("switchover: %v", err)
	}
	if err := appExec(greenApp, "INSERT INTO items (v, note) VALUES (2, 'green')"); err != nil {
		t.Fatalf("green writes after the switch: %v", err)
	}
	if err := appExec(blueApp, "INSERT INTO items (v) VALUES (3)"); err == nil {
		t.Fatalf("blue still writes after the switch")
	}
	if err := d.CanSwitchBack(ctx, green, blue); err != nil {
		t.Fatalf("rollback on a shared database loses nothing, got %v", err)
	}
	if err := d.Retire(ctx, green, blue); err != nil {
		t.Fatalf("retire: %v", err)
	}
	if got := c.Psql(t, "shop", "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'items'"); got != "id,note,qty" {
		t.Fatalf("columns after retire = %s, want id,note,qty (the contract step applied)", got)
	}
	if len(green.HeldBack) != 0 {
		t.Fatalf("held back after retire = %v, want none", green.HeldBack)
	}
}
