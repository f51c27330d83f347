package e2e

import (
	"context"
	"fmt"
	"strings"
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
		mode    string
	}{
		{"production and preproduction on one server", 1, "clone"},
		{"production and preproduction on two servers", 2, "clone"},
		{"one database shared by both colours", 1, "shared"},
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
  mode: %s
  production: %s
  preproduction: %s
  verify: rowcounts
  freeze_timeout: 10s
`, tc.mode, prod.DSN("shop"), pre.DSN("postgres"))
			h := newHarness(t, options{extra: db})
			w := releaseV1WithWriters(t, h)
			deploy(t, h, "v2")
			rel := h.waitRelease("v2 at the gate", atGate)
			if rel.Outcome != nil {
				t.Fatalf("v2 ended %s: %s", *rel.Outcome, rel.Error)
			}
			waitWrites(t, w)
			if tc.mode == "clone" {
				for _, e := range h.status().Environments {
					if e.Color == teal.Green && e.DBLag == nil {
						t.Errorf("green's replication lag is not in status at the gate")
					}
				}
			}
			promoteAndWait(t, h, teal.Green)
			if st := h.status(); st.LastDBSwitch == nil || st.LastDBSwitch.Freeze <= 0 {
				t.Errorf("status after the switch has no freeze window: %+v", st.LastDBSwitch)
			} else {
				t.Logf("freeze window %s", st.LastDBSwitch.Freeze)
			}
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
			if lost := w.Missing(present); len(lost) > 0 {
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

// TestDatabase_CrashDuringSwitchover SIGKILLs the server right after the promotion, while the
// database switchover runs, and restarts it: the databases are reconciled with the traffic it
// had recorded, the release resumes, and no acknowledged write is lost. Writes may fail only
// while nothing listens (the router is in the server).
func TestDatabase_CrashDuringSwitchover(t *testing.T) {
	prod := testutil.StartCluster(t, testutil.ClusterOptions{})
	prod.Psql(t, "postgres", "CREATE DATABASE shop")
	h := newHarness(t, options{extra: fmt.Sprintf(`database:
  mode: clone
  production: %s
  verify: none
  freeze_timeout: 10s
`, prod.DSN("shop"))})
	w := releaseV1WithWriters(t, h)
	deploy(t, h, "v2")
	if rel := h.waitRelease("v2 at the gate", atGate); rel.Outcome != nil {
		t.Fatalf("v2 ended %s: %s", *rel.Outcome, rel.Error)
	}
	if _, err := h.client.Promote(context.Background()); err != nil {
		t.Fatalf("promote: %v", err)
	}
	h.kill()
	h.start()
	rel := h.waitRelease("v2 ended after the restart", ended)
	if *rel.Outcome != teal.OutcomeReleased {
		t.Fatalf("v2 ended %s after the restart: %s", *rel.Outcome, rel.Error)
	}
	assertLive(t, h, teal.Green, "v2")
	acked0, _ := w.Counts()
	waitFor(t, 60*time.Second, "writes after the restart", func() bool {
		acked, _ := w.Counts()
		return acked >= acked0+50
	})
	acked, failed := w.Stop()
	for _, f := range failed {
		// "POST /orders: 0 …": no answer at all, the router was down.
		if !strings.Contains(f, ": 0 ") {
			t.Errorf("a write failed with an answer, not because the server was down: %s", f)
		}
	}
	var live *teal.DBEnv
	for _, e := range h.status().Environments {
		if e.Color == teal.Green {
			live = e.Database
		}
	}
	present := orders(t, prod, live.Name)
	if lost := w.Missing(present); len(lost) > 0 {
		for _, id := range lost[:min(5, len(lost))] {
			note, ok := present[id]
			t.Errorf("order %d: acknowledged %q, on the live database %q (present %v)", id, acked[id], note, ok)
		}
		t.Fatalf("%d of %d acknowledged writes lost or stale after the crash", len(lost), len(acked))
	}
	t.Logf("%d orders acknowledged, all present; %d writes failed while the server was down", len(acked), len(failed))
}

// orders reads every order (id → note) from database db on cluster c.
func orders(t *testing.T, c *testutil.Cluster, db string) map[int64]string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), c.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), "SELECT id, coalesce(note, '') FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var note string
		if err := rows.Scan(&id, &note); err != nil {
			t.Fatal(err)
		}
		out[id] = note
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDatabase_SnapshotDowntime: in mode snapshot the data is copied at the switch behind a
// maintenance page. Writes during it are answered 503 (the downtime this mode accepts, measured
// and reported); every write acknowledged before or after is on the new live database.
func TestDatabase_SnapshotDowntime(t *testing.T) {
	prod := testutil.StartCluster(t, testutil.ClusterOptions{})
	prod.Psql(t, "postgres", "CREATE DATABASE shop")
	h := newHarness(t, options{extra: fmt.Sprintf(`database:
  mode: snapshot
  production: %s
`, prod.DSN("shop"))})
	w := releaseV1WithWriters(t, h)
	rel := h.release("v2")
	assertLive(t, h, teal.Green, "v2")
	acked0, _ := w.Counts()
	waitFor(t, 60*time.Second, "writes after the switch", func() bool {
		acked, _ := w.Counts()
		return acked >= acked0+50
	})
	acked, failed := w.Stop()
	for _, f := range failed {
		if !strings.Contains(f, ": 503 ") {
			t.Errorf("a write failed other than by the maintenance page: %s", f)
		}
	}
	_, events, err := h.client.Release(context.Background(), rel.ID)
	if err != nil {
		t.Fatal(err)
	}
	var downtime string
	for _, e := range events {
		if strings.HasPrefix(e.Message, "maintenance page shown for") {
			downtime = e.Message
		}
	}
	if downtime == "" {
		t.Errorf("no event reports the downtime")
	}
	var live *teal.DBEnv
	for _, e := range h.status().Environments {
		if e.Color == teal.Green {
			live = e.Database
		}
	}
	if lost := w.Missing(orders(t, prod, live.Name)); len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged writes lost in snapshot mode", len(lost), len(acked))
	}
	t.Logf("%d orders acknowledged, all present; %d writes answered by the maintenance page; %s", len(acked), len(failed), downtime)
}

// releaseV1WithWriters pushes the sample app's v1 and v2 with their migrations, releases v1,
// and starts 4 clients writing orders through the router.
func releaseV1WithWriters(t *testing.T, h *harness) *load.Writes {
	t.Helper()
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
	return w
}
