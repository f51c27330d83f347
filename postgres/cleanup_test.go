package postgres

import (
	"context"
	"strings"
	"testing"

	"teal.dev/teal"
)

func TestDatabase_Retire(t *testing.T) {
	c := startCluster(t, nil)
	ctx := context.Background()
	noVerify := func(c *teal.DatabaseConfig) { c.Verify = VerifyNone }

	t.Run("old copy dropped", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, c, c, "ret1", noVerify)
		blue := a.first(t, 10)
		green := a.prepare(t, teal.Green, "v2", blue)
		for range 2 { // idempotent
			if err := a.d.Retire(ctx, blue, green); err != nil {
				t.Fatalf("Retire: %v", err)
			}
		}
		if got := c.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+green.Name+"'"); got != "0" {
			t.Fatalf("old copy %s still exists", green.Name)
		}
		if n := slotCount(t, c, a); n != 0 {
			t.Fatalf("slots left: %d", n)
		}
		if got := queryInt(t, a.pool(t, blue), "SELECT count(*) FROM pg_publication"); got != 0 {
			t.Fatalf("publications left on the live database: %d", got)
		}
	})

	t.Run("held-back migrations run and production is kept", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, c, c, "ret2", noVerify)
		blue := a.first(t, 10)
		green := a.prepare(t, teal.Green, "v2", blue)
		// The blue instances had a session open; retiring ends it.
		bluePool := a.rolePool(t, blue)
		if got := queryInt(t, bluePool, "SELECT count(*) FROM items"); got != 10 {
			t.Fatalf("rows read as blue = %d, want 10", got)
		}
		for range 2 { // idempotent
			if err := a.d.Retire(ctx, green, blue); err != nil {
				t.Fatalf("Retire: %v", err)
			}
		}
		if len(green.HeldBack) != 0 {
			t.Fatalf("HeldBack after Retire = %v, want none", green.HeldBack)
		}
		cp := a.pool(t, green)
		if got := queryInt(t, cp, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'"); got != 0 {
			t.Fatal("held-back migration 3 (drop column note) did not run on the live copy")
		}
		if got := queryInt(t, cp, "SELECT count(*) FROM teal_migrations WHERE version = 3"); got != 1 {
			t.Fatalf("migration 3 in history = %d, want 1", got)
		}
		if got := queryInt(t, a.pool(t, blue), "SELECT count(*) FROM items"); got != 10 {
			t.Fatalf("rows kept in the production database = %d, want 10", got)
		}
		if _, err := bluePool.Exec(ctx, "SELECT count(*) FROM items"); err == nil {
			t.Fatal("the retired colour's role can still read the production database")
		}
		if n := slotCount(t, c, a); n != 0 {
			t.Fatalf("slots left: %d", n)
		}
	})
}

func TestDatabase_Leftovers(t *testing.T) {
	c := startCluster(t, nil)
	ctx := context.Background()
	a := newApp(t, c, c, "stray", func(c *teal.DatabaseConfig) { c.Verify = VerifyNone })
	blue := a.first(t, 10)
	green := a.prepare(t, teal.Green, "v2", blue)
	leftovers := func(known ...*teal.DBEnv) []string {
		t.Helper()
		left, err := a.d.Leftovers(ctx, known)
		if err != nil {
			t.Fatal(err)
		}
		return left
	}

	if left := leftovers(blue, green); len(left) != 0 {
		t.Fatalf("Leftovers(blue, green) = %q, want none", left)
	}
	// Without green known, its replication is left over.
	left := leftovers(blue)
	want := []string{
		"leftover publication teal_stray_blue in database stray",
		"leftover replication slot teal_stray_blue_green on " + a.d.prod.addr + " (database stray, in use by process",
		"leftover subscription teal_stray_blue_green in database stray_green_v2",
	}
	if len(left) != len(want) {
		t.Fatalf("Leftovers(blue) = %q, want %d", left, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(left[i], w) {
			t.Fatalf("Leftovers(blue)[%d] = %q, want it to start with %q", i, left[i], w)
		}
	}

	// A stray slot of the app's is reported with the WAL it retains; another app's is not.
	c.Psql(t, "stray", "SELECT pg_create_logical_replication_slot('teal_stray_green_blue', 'pgoutput')")
	c.Psql(t, "stray", "SELECT pg_create_logical_replication_slot('teal_strayx_blue_green', 'pgoutput')")
	left = leftovers(blue, green)
	if len(left) != 1 || !strings.Contains(left[0], "teal_stray_green_blue") || !strings.Contains(left[0], "inactive, retaining") ||
		!strings.Contains(left[0], "SELECT pg_drop_replication_slot('teal_stray_green_blue');") {
		t.Fatalf("Leftovers = %q, want the stray slot with how to drop it", left)
	}

	if err := a.d.Teardown(ctx, green); err != nil {
		t.Fatal(err)
	}
	c.Psql(t, "stray", "SELECT pg_drop_replication_slot('teal_stray_green_blue'); SELECT pg_drop_replication_slot('teal_strayx_blue_green')")
	if left := leftovers(blue); len(left) != 0 {
		t.Fatalf("Leftovers after teardown = %q, want none", left)
	}
}
