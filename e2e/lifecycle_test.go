package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
)

// TestRelease_AutoApproval: with approval auto, the gate opens by itself after auto_after and
// the decision is recorded with the actor "auto".
func TestRelease_AutoApproval(t *testing.T) {
	h := newHarness(t, options{approval: "auto", autoAfter: 300 * time.Millisecond})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	deploy(t, h, "v2")
	rel := h.waitRelease("v2 released without a promote", ended)
	if *rel.Outcome != teal.OutcomeReleased {
		t.Fatalf("outcome %s (%s), want released", *rel.Outcome, rel.Error)
	}
	_, events, err := h.client.Release(context.Background(), rel.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(e *teal.Event) bool {
		return e.Actor == teal.ActorAuto && strings.Contains(e.Message, "gate opened")
	}) {
		t.Fatalf("no event records the gate opened by %q: %v", teal.ActorAuto, events)
	}
	assertLive(t, h, teal.Green, "v2")
}

// TestRelease_KeepOld: the old colour stays warm for keep_old, then is stopped; rollback is
// refused afterwards with what to do instead.
func TestRelease_KeepOld(t *testing.T) {
	h := newHarness(t, options{keepOld: 1 * time.Second})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	h.release("v2")
	waitFor(t, 15*time.Second, "blue terminated after keep_old", func() bool {
		for _, e := range h.status().Environments {
			if e.Color == teal.Blue {
				return e.State == teal.EnvTerminated && len(e.Instances) == 0
			}
		}
		return false
	})
	_, err := h.client.Rollback(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "nothing to roll back") {
		t.Fatalf("rollback after keep_old: %v, want refused", err)
	}
	if code := runCLI(t, h, "rollback"); code != 3 {
		t.Fatalf("teal rollback exited %d, want 3", code)
	}
	assertLive(t, h, teal.Green, "v2")
}

// TestServer_GracefulRestartKeepsInstances: SIGTERM stops the server but not the instances; the
// next server adopts the same processes instead of starting new ones.
func TestServer_GracefulRestartKeepsInstances(t *testing.T) {
	h := newHarness(t, options{})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.release("v1")
	pids := func() []int {
		var out []int
		for _, e := range h.status().Environments {
			for _, in := range e.Instances {
				out = append(out, in.PID)
			}
		}
		slices.Sort(out)
		return out
	}
	before := pids()
	if len(before) != 2 {
		t.Fatalf("instances before restart: %v, want 2", before)
	}
	var addrs []string
	for _, e := range h.status().Environments {
		for _, in := range e.Instances {
			addrs = append(addrs, in.Addr)
		}
	}
	h.stop()
	for _, a := range addrs {
		if got := versionAt(t, a); got != "v1" {
			t.Fatalf("instance %s while the server is stopped serves %q, want v1", a, got)
		}
	}
	h.start()
	if after := pids(); !slices.Equal(after, before) {
		t.Fatalf("instance PIDs after restart %v, want the same processes %v", after, before)
	}
	waitFor(t, 10*time.Second, "live serving after restart", func() bool {
		code, _, err := get(h.listen, "/")
		return err == nil && code == 200
	})
	if got := versionAt(t, h.listen); got != "v1" {
		t.Fatalf("live serves %s after restart, want v1", got)
	}
}
