package postgres

import (
	"context"
	"runtime"
	"testing"
	"time"

	"teal.dev/teal"
)

// crashAtRoute runs a switchover from → to whose route step never returns, as if teal died
// there: nothing after it (undo or the removal of the old direction) runs.
func crashAtRoute(t *testing.T, p *pair, from, to *teal.DBEnv) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.d.Switchover(context.Background(), from, to, func(context.Context) error {
			runtime.Goexit() // the process "dies" inside the freeze window
			return nil
		})
	}()
	<-done
}

// TestReconcile_CrashMidSwitchover: teal dies inside the freeze window; at its next start
// Reconcile brings the databases to the steady state of the traffic it had recorded.
func TestReconcile_CrashMidSwitchover(t *testing.T) {
	c := fastCluster(t)
	ctx := context.Background()

	t.Run("switch not recorded: back to blue", func(t *testing.T) {
		p := newPair(t, c, c, "crash1", nil)
		crashAtRoute(t, p, p.blue, p.green)
		// Blue is frozen now; the traffic record still says blue is live.
		if err := p.d.Reconcile(ctx, p.blue, p.green); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		assertUndone(t, p)
	})

	t.Run("switch recorded: green is live", func(t *testing.T) {
		p := newPair(t, c, c, "crash2", nil)
		crashAtRoute(t, p, p.blue, p.green)
		if err := p.d.Reconcile(ctx, p.green, p.blue); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		if err := appExec(p.greenApp, "INSERT INTO items (tok, v) VALUES ('green-live', 1)"); err != nil {
			t.Fatalf("write on green after reconcile: %v", err)
		}
		err := appExec(p.blueApp, "INSERT INTO items (tok, v) VALUES ('blue-idle', 1)")
		if got := pgCode(err); got != "42501" {
			t.Fatalf("write on blue after reconcile: %v (code %q), want 42501 insufficient_privilege", err, got)
		}
		// Green's writes reach blue (the reverse direction runs), and nothing goes the other way.
		pollUntil(t, 30*time.Second, "reverse replication running", func() bool {
			st, err := subscriptionState(ctx, p.blueDB, p.d.SubName(teal.Green, teal.Blue))
			return err == nil && st.exists && st.enabled
		})
		if _, err := fence(ctx, p.greenDB, p.blueDB); err != nil {
			t.Fatalf("reverse replication after reconcile: %v", err)
		}
		if got := queryInt(t, p.blueDB, "SELECT count(*) FROM items WHERE tok = 'green-live'"); got != 1 {
			t.Fatalf("green's write on blue = %d rows, want 1", got)
		}
		fwd := p.d.SubName(teal.Blue, teal.Green)
		if got := queryInt(t, p.greenDB, "SELECT count(*) FROM pg_subscription WHERE subname = $1", fwd); got != 0 {
			t.Errorf("old forward subscription left: %d", got)
		}
		if got := queryInt(t, p.blueDB, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", fwd); got != 0 {
			t.Errorf("old forward slot left: %d", got)
		}
	})
}
