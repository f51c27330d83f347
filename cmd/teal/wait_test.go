package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
)

func TestWaiter_TerminalProgress(t *testing.T) {
	var out bytes.Buffer
	w := &waiter{out: &out, tty: true}
	rel := &teal.Release{ID: 7, Phase: teal.PhaseProvisioning, Steps: []teal.Step{testStep("launch", teal.StepRunning, 0, "")}}

	w.progress(rel, time.Now())
	if got := out.String(); !strings.HasPrefix(got, "\r\033[K") || !strings.Contains(got, "… launch") || strings.Contains(got, "\n") {
		t.Fatalf("running step = %q, want a live line without a newline", got)
	}

	out.Reset()
	rel.Steps[0] = testStep("launch", teal.StepDone, 1500*time.Millisecond, "")
	rel.Steps = append(rel.Steps, testStep("health", teal.StepRunning, 0, ""))
	w.progress(rel, time.Now())
	got := out.String()
	if !strings.Contains(got, "\r\033[K✓ launch  1.5s\n") {
		t.Fatalf("finished step = %q, want the live line erased and a permanent line", got)
	}
	if !strings.HasSuffix(strings.SplitAfter(got, "\n")[1], "… health  2.0s") {
		t.Fatalf("after the permanent line = %q, want the next live line", got)
	}

	out.Reset()
	w.endLive()
	if out.String() != "\r\033[K" {
		t.Fatalf("endLive wrote %q, want the erase sequence", out.String())
	}
}

func TestWaiter_PlainProgressPrintsEachChangeOnce(t *testing.T) {
	var out bytes.Buffer
	w := &waiter{out: &out}
	rel := &teal.Release{ID: 7, Steps: []teal.Step{testStep("launch", teal.StepRunning, 0, "")}}
	w.progress(rel, time.Now())
	w.progress(rel, time.Now())
	rel.Steps[0] = testStep("launch", teal.StepDone, time.Second, "")
	w.progress(rel, time.Now())
	w.progress(rel, time.Now())
	if got, want := out.String(), "… launch\n✓ launch  1.0s\n"; got != want {
		t.Fatalf("progress = %q, want %q", got, want)
	}
}

func TestReached(t *testing.T) {
	rel := func(p teal.Phase, o teal.Outcome) *teal.Release {
		r := &teal.Release{ID: 1, Version: "v2", Color: teal.Green, From: teal.Blue, Phase: p}
		if o != "" {
			r.Outcome = &o
		}
		return r
	}
	blueLive := &teal.Status{Live: &teal.ColorStatus{Color: teal.Blue}, Traffic: teal.All(teal.Blue)}
	greenLive := &teal.Status{Live: &teal.ColorStatus{Color: teal.Green}, Traffic: teal.All(teal.Green)}
	tests := []struct {
		name     string
		goal     goal
		rel      *teal.Release
		st       *teal.Status
		done, ok bool
	}{
		{"deploy running", goalDeploy, rel(teal.PhaseVerifying, ""), nil, false, false},
		{"deploy at gate", goalDeploy, rel(teal.PhaseAwaitingRelease, ""), nil, true, true},
		{"deploy released", goalDeploy, rel(teal.PhaseReleased, teal.OutcomeReleased), nil, true, true},
		{"deploy failed", goalDeploy, rel(teal.PhaseProvisioning, teal.OutcomeFailed), nil, true, false},
		{"deploy aborted", goalDeploy, rel(teal.PhaseAwaitingRelease, teal.OutcomeAborted), nil, true, false},
		{"promote at gate", goalPromote, rel(teal.PhaseAwaitingRelease, ""), nil, false, false},
		{"promote switching", goalPromote, rel(teal.PhaseSwitching, ""), nil, false, false},
		{"promote released", goalPromote, rel(teal.PhaseReleased, teal.OutcomeReleased), nil, true, true},
		{"promote rolled back", goalPromote, rel(teal.PhaseSwitching, teal.OutcomeRolledBack), nil, true, false},
		{"rollback outcome", goalRollback, rel(teal.PhaseReleased, teal.OutcomeRolledBack), greenLive, true, true},
		{"rollback traffic back", goalRollback, rel(teal.PhaseReleased, teal.OutcomeReleased), blueLive, true, true},
		{"rollback not yet", goalRollback, rel(teal.PhaseReleased, teal.OutcomeReleased), greenLive, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, err := reached(tt.goal, tt.rel, tt.st, tt.rel.From)
			if done != tt.done || (err == nil) != tt.ok && tt.done {
				t.Fatalf("reached = %v, %v; want done %v, ok %v", done, err, tt.done, tt.ok)
			}
			if err != nil && exitCode(&runError{err}) != exitFailed {
				t.Fatalf("exit code of %v = %d, want %d", err, exitCode(&runError{err}), exitFailed)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe to read while run writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRun_StatusWatch(t *testing.T) {
	st, rel := statusFixture()
	rel.Phase = teal.PhaseVerifying
	ctl := &fakeController{status: st, rel: rel}
	e := newCLIEnv(t, ctl)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, append(e.args, "status", "--watch"), &out, &errOut) }()

	waitFor(t, 5*time.Second, func() bool { return strings.Contains(out.String(), "verifying") })
	ctl.update(func(r *teal.Release) { r.Phase = teal.PhaseAwaitingRelease })
	// An event makes it show the change at once, well before the periodic refresh.
	waitFor(t, statusRefresh/2, func() bool { return strings.Contains(out.String(), "awaiting-release") })
	if n := strings.Count(out.String(), "\n--- "); n != 1 {
		t.Fatalf("printed %d refreshes after the first, want 1 (only on change):\n%s", n, out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit = %d, want 0 (stderr %s)", code, errOut.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("status --watch did not end when interrupted")
	}
}
