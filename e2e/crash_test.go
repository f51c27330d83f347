package e2e

import (
	"context"
	"testing"
	"time"

	"teal.dev/teal"
)

// TestServer_CrashAtEachPhase SIGKILLs the server during each phase of a release, restarts it,
// and checks that the release resumes (or ends safely) while the live colour kept serving: the
// only failed requests are those that found no router listening, while it was down.
func TestServer_CrashAtEachPhase(t *testing.T) {
	cases := []struct {
		name string
		// reach brings the release of v2 to the phase to crash in.
		reach func(t *testing.T, h *harness)
		// after checks and finishes the release once the server is back.
		after func(t *testing.T, h *harness, id int64)
	}{
		{
			name: "provisioning",
			reach: func(t *testing.T, h *harness) {
				deploy(t, h, "v2-slow")
				h.waitRelease("v2 provisioning its health step", func(r *teal.Release) bool {
					n := len(r.Steps)
					return r.Phase == teal.PhaseProvisioning && n > 0 && r.Steps[n-1].Name == "health"
				})
			},
			after: func(t *testing.T, h *harness, id int64) {
				rel := h.waitRelease("v2 at the gate after the restart", atGate)
				if rel.ID != id || rel.Outcome != nil {
					t.Fatalf("after restart: release #%d outcome %v, want #%d resumed to the gate", rel.ID, rel.Outcome, id)
				}
				promoteAndWait(t, h, teal.Green)
			},
		},
		{
			name: "awaiting-release",
			reach: func(t *testing.T, h *harness) {
				deploy(t, h, "v2")
				h.waitRelease("v2 at the gate", atGate)
			},
			after: func(t *testing.T, h *harness, id int64) {
				rel := h.waitRelease("v2 at the gate after the restart", atGate)
				if rel.ID != id || rel.Outcome != nil {
					t.Fatalf("after restart: release #%d outcome %v, want #%d at the gate", rel.ID, rel.Outcome, id)
				}
				if got := versionAt(t, h.prev); got != "v2" {
					t.Fatalf("preview after restart serves %s, want v2", got)
				}
				promoteAndWait(t, h, teal.Green)
			},
		},
		{
			name: "switching",
			reach: func(t *testing.T, h *harness) {
				deploy(t, h, "v2")
				h.waitRelease("v2 at the gate", atGate)
				if _, err := h.client.Promote(context.Background()); err != nil {
					t.Fatalf("promote: %v", err)
				}
			},
			after: func(t *testing.T, h *harness, id int64) {
				rel := h.waitRelease("v2 ended after the restart", ended)
				if rel.ID != id || *rel.Outcome != teal.OutcomeReleased {
					t.Fatalf("after restart: release #%d ended %s (%s), want #%d released", rel.ID, *rel.Outcome, rel.Error, id)
				}
				assertLive(t, h, teal.Green, "v2")
			},
		},
		{
			name: "released",
			reach: func(t *testing.T, h *harness) {
				h.release("v2")
			},
			after: func(t *testing.T, h *harness, id int64) {
				assertLive(t, h, teal.Green, "v2")
				// Blue was re-adopted warm: rollback is instant.
				waitFor(t, 10*time.Second, "blue healthy again", func() bool {
					for _, e := range h.status().Environments {
						if e.Color == teal.Blue {
							return len(e.Health) > 0 && e.Health[0].Healthy && e.Health[len(e.Health)-1].Healthy
						}
					}
					return false
				})
				if _, err := h.client.Rollback(context.Background(), false); err != nil {
					t.Fatalf("rollback after restart: %v", err)
				}
				assertLive(t, h, teal.Blue, "v1")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, options{})
			h.push("v1", h.artifact("v1", "v1", "", ""))
			h.push("v2", h.artifact("v2", "v2", "", ""))
			h.push("v2-slow", h.artifact("v2-slow", "v2", "", "--start-delay 2s"))
			h.release("v1")

			l := startLoad(h.listen)
			waitMore(t, l, 50)
			tc.reach(t, h)
			id := h.status().Release.ID

			killed := time.Now()
			h.kill()
			h.start()
			up := time.Now()
			waitMore(t, l, 50)
			tc.after(t, h, id)
			waitMore(t, l, 50)
			hits := l.Stop()

			var first, last time.Time
			failed := 0
			for _, x := range hits {
				if x.Err == nil {
					continue
				}
				failed++
				if x.Code != 0 {
					t.Errorf("a request got HTTP %d: %v (only requests finding no router may fail)", x.Code, x.Err)
					continue
				}
				if x.Start.Before(killed.Add(-time.Second)) || x.End.After(up.Add(2*time.Second)) {
					t.Errorf("request failed outside the server's downtime (%s..%s): %v",
						killed.Format(time.StampMilli), up.Format(time.StampMilli), x.Err)
				}
				if !x.Refused {
					continue // cut in flight when the router died
				}
				if first.IsZero() || x.Start.Before(first) {
					first = x.Start
				}
				if x.End.After(last) {
					last = x.End
				}
			}
			window := time.Duration(0)
			if !first.IsZero() {
				window = last.Sub(first)
			}
			t.Logf("crash in %s: server down→API up %s; %d of %d requests failed; connections refused for %s",
				tc.name, up.Sub(killed).Round(time.Millisecond), failed, len(hits), window.Round(time.Millisecond))
		})
	}
}

func deploy(t *testing.T, h *harness, v string) {
	t.Helper()
	if _, err := h.client.Deploy(context.Background(), v); err != nil {
		t.Fatalf("deploy %s: %v", v, err)
	}
}

func promoteAndWait(t *testing.T, h *harness, want teal.Color) {
	t.Helper()
	if _, err := h.client.Promote(context.Background()); err != nil {
		t.Fatalf("promote: %v", err)
	}
	rel := h.waitRelease("released", ended)
	if *rel.Outcome != teal.OutcomeReleased {
		t.Fatalf("release ended %s: %s", *rel.Outcome, rel.Error)
	}
	assertLive(t, h, want, "v2")
}

func assertLive(t *testing.T, h *harness, c teal.Color, v string) {
	t.Helper()
	st := h.status()
	if st.Live == nil || st.Live.Color != c || st.Traffic.Of(c) != 100 {
		t.Fatalf("live %+v traffic %+v, want %s at 100%%", st.Live, st.Traffic, c)
	}
	if got := versionAt(t, h.listen); got != v {
		t.Fatalf("live serves %s, want %s", got, v)
	}
}
