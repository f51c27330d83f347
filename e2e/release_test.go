package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"teal.dev/teal"
)

// TestRelease_ZeroFailedRequests is the whole story under steady load — plain requests, 1 s
// requests, POSTs and an open WebSocket: release v1, release v2 with a look at the preview,
// promote, roll back, promote again. No request may fail, and after each switch no new request
// may reach the old colour.
func TestRelease_ZeroFailedRequests(t *testing.T) {
	h := newHarness(t, options{})
	ctx := context.Background()
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))

	rel := h.release("v1")
	if rel.Color != teal.Blue || rel.Phase != teal.PhaseReleased {
		t.Fatalf("first release: colour %s phase %s, want blue released", rel.Color, rel.Phase)
	}
	if got := versionAt(t, h.listen); got != "v1" {
		t.Fatalf("live version = %s, want v1", got)
	}

	ws, _, err := websocket.Dial(ctx, "ws://"+h.listen+"/ws", nil)
	if err != nil {
		t.Fatalf("open WebSocket: %v", err)
	}
	defer ws.CloseNow()
	echo := func(msg string) string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := ws.Write(wctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("WebSocket write: %v", err)
		}
		_, b, err := ws.Read(wctx)
		if err != nil {
			t.Fatalf("WebSocket read: %v", err)
		}
		return string(b)
	}
	if got := echo("hello"); !strings.HasPrefix(got, "v1") {
		t.Fatalf("WebSocket echo = %q, want from v1", got)
	}

	l := startLoad(h.listen)
	waitMore(t, l, 100)

	if _, err := h.client.Deploy(ctx, "v2"); err != nil {
		t.Fatalf("deploy v2: %v", err)
	}
	rel = h.waitRelease("v2 at the gate", atGate)
	if rel.Outcome != nil || rel.Color != teal.Green {
		t.Fatalf("v2: outcome %v colour %s, want awaiting-release on green", rel.Outcome, rel.Color)
	}
	if got := versionAt(t, h.prev); got != "v2" {
		t.Fatalf("preview before promotion serves %s, want v2", got)
	}
	if got := versionAt(t, h.listen); got != "v1" {
		t.Fatalf("live before promotion serves %s, want v1", got)
	}
	waitMore(t, l, 100)

	// Promote, and note when the release is seen released: every request started after that
	// must be answered by v2.
	if _, err := h.client.Promote(ctx); err != nil {
		t.Fatalf("promote: %v", err)
	}
	released := h.waitRelease("v2 released", outcomeIs(teal.OutcomeReleased))
	// The router's table was swapped within the "switch" step.
	var swapFrom, swapTo time.Time
	for _, st := range released.Steps {
		if st.Name == "switch" && st.Finished != nil {
			swapFrom, swapTo = st.Started, *st.Finished
		}
	}
	if swapTo.IsZero() {
		t.Fatalf("the release records no finished switch step: %+v", released.Steps)
	}
	switched := time.Now()
	waitMore(t, l, 200)
	if got := echo("still there?"); !strings.HasPrefix(got, "v1") {
		t.Fatalf("WebSocket opened on blue answers %q after the switch, want v1 still", got)
	}

	// Requests that start before the rollback is asked for must reach v2; those that start
	// after it returned must reach v1.
	rollingBack := time.Now()
	if _, err := h.client.Rollback(ctx, false); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	rolledBack := time.Now()
	waitMore(t, l, 200)
	st := h.status()
	if st.Live == nil || st.Live.Color != teal.Blue || st.Traffic.Blue != 100 {
		t.Fatalf("after rollback: live %+v traffic %+v, want blue 100", st.Live, st.Traffic)
	}
	if st.Release == nil || st.Release.Outcome == nil || *st.Release.Outcome != teal.OutcomeRolledBack {
		t.Fatalf("after rollback the release is %+v, want rolled-back", st.Release)
	}
	if _, err := h.client.Rollback(ctx, false); err == nil || !strings.Contains(err.Error(), "already rolled back") {
		t.Fatalf("second rollback: %v, want refused as already rolled back", err)
	}

	promotingAgain := time.Now()
	if _, err := h.client.Promote(ctx); err != nil {
		t.Fatalf("promote again: %v", err)
	}
	h.waitRelease("v2 released again", outcomeIs(teal.OutcomeReleased))
	again := time.Now()
	waitMore(t, l, 200)
	if got := echo("and now?"); !strings.HasPrefix(got, "v1") {
		t.Fatalf("WebSocket answers %q after three switches, want v1 still", got)
	}
	hits := l.Stop()

	var failed []string
	var after, afterRollback, afterAgain int
	for _, x := range hits {
		if x.Err != nil {
			failed = append(failed, x.Err.Error())
			continue
		}
		if x.Version == "" {
			continue
		}
		switch {
		case x.Start.After(again):
			after++
			if x.Version != "v2" {
				t.Errorf("%s started %s after the second promotion was answered by %s", x.Path, x.Start.Sub(again), x.Version)
			}
		case x.Start.After(rolledBack) && x.End.Before(promotingAgain):
			afterRollback++
			if x.Version != "v1" {
				t.Errorf("%s started after the rollback was answered by %s", x.Path, x.Version)
			}
		case x.Start.After(switched) && x.End.Before(rollingBack):
			after++
			if x.Version != "v2" {
				t.Errorf("%s started %s after the switch was answered by %s", x.Path, x.Start.Sub(switched), x.Version)
			}
		}
	}
	afterAgain = after
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed, first: %s", len(failed), len(hits), failed[0])
	}
	if afterAgain == 0 || afterRollback == 0 {
		t.Fatalf("no requests measured after the switches (v2: %d, after rollback: %d)", afterAgain, afterRollback)
	}
	slow, spanning := 0, 0
	for _, x := range hits {
		if strings.HasPrefix(x.Path, "/slow") {
			slow++
			if x.Start.Before(swapFrom) && x.End.After(swapTo) {
				spanning++
				if x.Version != "v1" {
					t.Errorf("a 1 s request started on blue before the switch was answered by %s", x.Version)
				}
			}
		}
	}
	if spanning == 0 {
		t.Errorf("no 1 s request was in flight across the switch: the test proved less than it claims")
	}
	t.Logf("%d requests (%d of them 1 s long), 0 failed, across 3 switches", len(hits), slow)
	_ = ws.Close(websocket.StatusNormalClosure, "done")
}

// TestRelease_ProvisioningFailures: versions that cannot be released fail with a clear message
// and leave the live colour serving.
func TestRelease_ProvisioningFailures(t *testing.T) {
	h := newHarness(t, options{healthDeadline: 3 * time.Second})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.release("v1")

	notExec := filepath.Join(h.dir, "build", "plain-file")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho never\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notExecDir := filepath.Join(h.dir, "build", "not-exec")
	if err := os.MkdirAll(notExecDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notExecDir, "app"), []byte("#!/bin/sh\necho never\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, version, path string
		want                []string // in the release's error
	}{
		{"never healthy", "v2-sick", h.artifact("sick", "v2", "SAMPLE_FAIL_HEALTH=1", ""),
			[]string{"not healthy", "GET /healthz: 500"}},
		{"crashes at start", "v2-crash", h.artifact("crash", "v2", "SAMPLE_CRASH=1", ""),
			[]string{"not healthy", "SAMPLE_CRASH"}},
		{"not executable", "v2-noexec", notExecDir,
			[]string{"permission denied"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.push(tc.version, tc.path)
			l := startLoad(h.listen)
			if _, err := h.client.Deploy(context.Background(), tc.version); err != nil {
				t.Fatalf("deploy: %v", err)
			}
			rel := h.waitRelease("release ended", ended)
			hits := l.Stop()
			if *rel.Outcome != teal.OutcomeFailed {
				t.Fatalf("outcome = %s, want failed", *rel.Outcome)
			}
			for _, w := range tc.want {
				if !strings.Contains(rel.Error, w) {
					t.Errorf("error %q does not mention %q", rel.Error, w)
				}
			}
			st := h.status()
			if st.Live == nil || st.Live.Color != teal.Blue || st.Live.Version != "v1" || st.Traffic.Blue != 100 {
				t.Fatalf("live after a failed release: %+v %+v, want blue v1 at 100%%", st.Live, st.Traffic)
			}
			for _, e := range st.Environments {
				if e.Color == teal.Green && (len(e.Instances) != 0 || e.State != teal.EnvTerminated) {
					t.Fatalf("green after a failed release: state %s, %d instances; want torn down", e.State, len(e.Instances))
				}
			}
			for _, x := range hits {
				if x.Err != nil {
					t.Fatalf("live request failed during the failed release: %v", x.Err)
				}
			}
			if got := versionAt(t, h.listen); got != "v1" {
				t.Fatalf("live serves %s, want v1", got)
			}
		})
	}
}

// TestDeploy_OneAtATime: a second deploy while one is in progress is a conflict that names it.
func TestDeploy_OneAtATime(t *testing.T) {
	h := newHarness(t, options{})
	ctx := context.Background()
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	if _, err := h.client.Deploy(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	_, err := h.client.Deploy(ctx, "v2")
	if err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("second deploy: %v, want a conflict naming the release in progress", err)
	}
	code := runCLI(t, h, "deploy", "v2")
	if code != 3 {
		t.Fatalf("teal deploy during a release exited %d, want 3", code)
	}
	if _, err := h.client.Abort(ctx); err != nil {
		t.Fatalf("abort: %v", err)
	}
	rel := h.waitRelease("aborted", ended)
	if *rel.Outcome != teal.OutcomeAborted {
		t.Fatalf("outcome %s, want aborted", *rel.Outcome)
	}
	if got := versionAt(t, h.listen); got != "v1" {
		t.Fatalf("live serves %s after abort, want v1", got)
	}
	if code, _, err := get(h.prev, "/"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("preview after abort = %d, %v; want 503 (nothing idle)", code, err)
	}
}

// runCLI runs the teal binary as a client of h's server and returns its exit code.
func runCLI(t *testing.T, h *harness, args ...string) int {
	t.Helper()
	out, err := cliCmd(h, args...).CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(interface{ ExitCode() int })
		if !ok {
			t.Fatalf("teal %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	t.Logf("teal %s → %d\n%s", strings.Join(args, " "), code, out)
	return code
}

func cliCmd(h *harness, args ...string) *exec.Cmd {
	return exec.Command(tealBin, append([]string{"-c", h.cfg}, args...)...)
}
