package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"teal.dev/teal"
	"teal.dev/teal/internal/load"
	"teal.dev/teal/internal/testutil"
	"teal.dev/teal/sampleapp"
)

// TestDatabase_ZeroLostWrites releases a version with a migration while writes (inserts and
// updates) flow through the router without pause: clone, sync, migration, switchover, a rollback
// and a promotion again. Every acknowledged write must be on the database that is live at the
// end, exactly once, with its last acknowledged value; no write may fail.
func TestDatabase_ZeroLostWrites(t *testing.T) {
	cases := []struct {
		name    string
		servers int
	}{
		{"production and preproduction on one server", 1},
		{"production and preproduction on two servers", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prod := testutil.StartCluster(t, testutil.ClusterOptions{})
			pre := prod
			if tc.servers == 2 {
				pre = testutil.StartCluster(t, testutil.ClusterOptions{})
			}
			prod.Psql(t, "postgres", "CREATE DATABASE shop")
			db := fmt.Sprintf(`database:
  mode: clone
  production: %s
  preproduction: %s
  verify: rowcounts
  freeze_timeout: 10s
`, prod.DSN("shop"), pre.DSN("postgres"))
			h := newHarness(t, options{extra: db})
			for _, v := range []string{"v1", "v2"} {
				dir := h.artifact(v, v, "", "")
				if err := sampleapp.WriteMigrations(dir, v); err != nil {
					t.Fatal(err)
				}
				h.push(v, dir)
			}
			h.release("v1")

			w := load.StartWrites("http://"+h.listen, 4)
			waitWrites(t, w)
			deploy(t, h, "v2")
			rel := h.waitRelease("v2 at the gate", atGate)
			if rel.Outcome != nil {
				t.Fatalf("v2 ended %s: %s", *rel.Outcome, rel.Error)
			}
			waitWrites(t, w)
			promoteAndWait(t, h, teal.Green)
			waitWrites(t, w)

			if _, err := h.client.Rollback(context.Background(), false); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			assertLive(t, h, teal.Blue, "v1")
			waitWrites(t, w)

			if _, err := h.client.Promote(context.Background()); err != nil {
				t.Fatalf("promote again: %v", err)
			}
			h.waitRelease("v2 released again", outcomeIs(teal.OutcomeReleased))
			assertLive(t, h, teal.Green, "v2")
			waitWrites(t, w)
			acked, failed := w.Stop()
			if len(failed) > 0 {
				t.Fatalf("%d writes failed, first: %s", len(failed), failed[0])
			}

			// Everything acknowledged is on green's database, exactly once, as last written.
			var live *teal.DBEnv
			for _, e := range h.status().Environments {
				if e.Color == teal.Green {
					live = e.Database
				}
			}
			if live == nil {
				t.Fatal("green has no database recorded")
			}
			cluster := prod
			if tc.servers == 2 {
				cluster = pre
			}
			conn, err := pgx.Connect(context.Background(), cluster.DSN(live.Name))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			rows, err := conn.Query(context.Background(), "SELECT id, note FROM orders")
			if err != nil {
				t.Fatal(err)
			}
			present := map[int64]string{}
			for rows.Next() {
				var id int64
				var note *string
				if err := rows.Scan(&id, &note); err != nil {
					t.Fatal(err)
				}
				if note != nil {
					present[id] = *note
				} else {
					present[id] = ""
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if lost := load.Missing(acked, present); len(lost) > 0 {
				for _, id := range lost[:min(5, len(lost))] {
					t.Errorf("order %d: acknowledged %q, on the live database %q", id, acked[id], present[id])
				}
				t.Fatalf("%d of %d acknowledged writes lost or stale", len(lost), len(acked))
			}
			t.Logf("%d orders acknowledged (inserts and updates), all on the live database after 3 switchovers", len(acked))
		})
	}
}

func waitWrites(t *testing.T, w *load.Writes) {
	t.Helper()
	if err := w.WaitMore(context.Background(), 50, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}
