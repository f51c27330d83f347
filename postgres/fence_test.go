package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

func TestFence(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	ctx := context.Background()
	p := newPair(t, c, c, "fence", nil)

	t.Run("round trip", func(t *testing.T) {
		// A write just before the fence is on the receiver once the fence is.
		mustExec(t, p.blueDB, "INSERT INTO items (tok, v) VALUES ('before-fence', 1)")
		rtt, err := fence(ctx, p.blueDB, p.greenDB)
		if err != nil {
			t.Fatal(err)
		}
		if rtt <= 0 || rtt > 10*time.Second {
			t.Errorf("round trip = %v", rtt)
		}
		if got := queryInt(t, p.greenDB, "SELECT count(*) FROM items WHERE tok = 'before-fence'"); got != 1 {
			t.Fatalf("write before the fence on the receiver = %d rows, want 1", got)
		}
		t.Logf("fence round trip %v", rtt)
	})

	t.Run("replication stopped", func(t *testing.T) {
		mustExec(t, p.greenDB, "ALTER SUBSCRIPTION "+p.d.SubName(teal.Blue, teal.Green)+" DISABLE")
		t.Cleanup(func() { mustExec(t, p.greenDB, "ALTER SUBSCRIPTION "+p.d.SubName(teal.Blue, teal.Green)+" ENABLE") })
		fctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := fence(fctx, p.blueDB, p.greenDB)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not replicated") {
			t.Fatalf("fence = %v, want deadline exceeded, not replicated", err)
		}
	})

	t.Run("table exists already", func(t *testing.T) {
		if err := ensureFenceTable(ctx, p.blueDB); err != nil {
			t.Fatalf("ensureFenceTable twice: %v", err)
		}
	})
}

func TestSyncSequences(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	ctx := context.Background()
	d, from := newSingle(t, c, "seqfrom")
	c.Psql(t, "postgres", "CREATE DATABASE seqto")
	to, err := d.Admin(ctx, d.prod.addr, "seqto")
	if err != nil {
		t.Fatal(err)
	}
	schema := `CREATE SCHEMA app;
		CREATE SEQUENCE app.counter START 10;
		CREATE SEQUENCE fresh;`
	mustExec(t, from, schema)
	mustExec(t, to, "CREATE TABLE items (id bigserial PRIMARY KEY, v int);"+schema)
	// items_id_seq: five values used (one by newSingle); app.counter set but not called;
	// fresh never used.
	mustExec(t, from, "INSERT INTO items (v) SELECT 1 FROM generate_series(1, 4)")
	mustExec(t, from, "SELECT setval('app.counter', 42, false)")

	n, err := syncSequences(ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("synced %d sequences, want 3", n)
	}
	tests := []struct {
		seq  string
		want int64
	}{
		{"items_id_seq", 6},
		{"app.counter", 42},
		{"fresh", 1},
	}
	for _, tt := range tests {
		t.Run(tt.seq, func(t *testing.T) {
			if got := queryInt(t, to, "SELECT nextval($1::regclass)", tt.seq); got != tt.want {
				t.Fatalf("nextval(%s) on the target = %d, want %d", tt.seq, got, tt.want)
			}
		})
	}

	t.Run("never backwards", func(t *testing.T) {
		// The target drew further values of its own (a copy's migration history rows):
		// syncing must not hand them out again.
		mustExec(t, to, "SELECT setval('app.counter', 500)")
		if _, err := syncSequences(ctx, from, to); err != nil {
			t.Fatal(err)
		}
		if got := queryInt(t, to, "SELECT nextval('app.counter')"); got != 501 {
			t.Fatalf("nextval(app.counter) after a sync from behind = %d, want 501", got)
		}
	})

	t.Run("missing on the target", func(t *testing.T) {
		mustExec(t, from, "CREATE SEQUENCE app.only_here; CREATE SEQUENCE also_here")
		_, err := syncSequences(ctx, from, to)
		if err == nil || !strings.Contains(err.Error(), "app.only_here, public.also_here") {
			t.Fatalf("syncSequences = %v, want an error naming app.only_here and public.also_here", err)
		}
	})
}
