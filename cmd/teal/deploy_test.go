package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"

	"teal.dev/teal/internal/testutil"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, "the condition", cond)
}

// playToGate moves a release through launch and health to the gate, one event per change.
func playToGate(f *fakeController) {
	f.update(func(r *teal.Release) {
		r.Steps = append(r.Steps, testStep("launch", teal.StepRunning, 0, ""))
	})
	f.update(func(r *teal.Release) {
		r.Steps[0] = testStep("launch", teal.StepDone, 1200*time.Millisecond, "")
		r.Steps = append(r.Steps, testStep("health", teal.StepRunning, 0, ""))
	})
	f.update(func(r *teal.Release) {
		r.Steps[1] = testStep("health", teal.StepDone, 300*time.Millisecond, "")
		r.Phase = teal.PhaseAwaitingRelease
		r.Steps = append(r.Steps, testStep("gate", teal.StepRunning, 0, ""))
	})
}

func end(r *teal.Release, o teal.Outcome, msg string) {
	r.Outcome = &o
	r.Error = msg
	now := time.Now().UTC()
	r.Finished = &now
}

func TestRun_DeployWait(t *testing.T) {
	tests := []struct {
		name     string
		onDeploy func(f *fakeController)
		args     []string
		code     int
		stdout   []string
		stderr   []string
	}{
		{
			name:     "reaches the gate",
			onDeploy: playToGate,
			code:     exitOK,
			stdout:   []string{"release #7: v2 → green", "✓ launch  1.2s", "✓ health  0.3s", "awaits release on green"},
		},
		{
			name: "first release is released",
			onDeploy: func(f *fakeController) {
				f.update(func(r *teal.Release) {
					r.Steps = append(r.Steps, testStep("launch", teal.StepDone, time.Second, ""))
					r.Phase = teal.PhaseReleased
					end(r, teal.OutcomeReleased, "")
				})
			},
			code:   exitOK,
			stdout: []string{"✓ launch  1.0s", "v2 is released on green"},
		},
		{
			name: "fails",
			onDeploy: func(f *fakeController) {
				f.update(func(r *teal.Release) {
					r.Steps = append(r.Steps, testStep("launch", teal.StepDone, time.Second, ""),
						testStep("health", teal.StepFailed, 400*time.Millisecond, "green/0: connection refused"))
					end(r, teal.OutcomeFailed, "health: green/0: connection refused")
				})
			},
			code:   exitFailed,
			stdout: []string{"✗ health  0.4s: green/0: connection refused"},
			stderr: []string{"teal: release #7 of v2 failed: health: green/0: connection refused", "hint: "},
		},
		{
			name:   "times out",
			args:   []string{"--timeout", "300ms"},
			code:   exitTimeout,
			stderr: []string{"timed out after 300ms waiting for release #7 (provisioning); the release goes on", "hint: follow it with teal status --watch"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctl := &fakeController{status: teal.Status{App: "shop"}, onDeploy: tt.onDeploy}
			e := newCLIEnv(t, ctl)
			code, out, errOut := e.run(t, append([]string{"deploy", "v2", "--wait"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(out, want) {
					t.Fatalf("stdout lacks %q:\n%s", want, out)
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(errOut, want) {
					t.Fatalf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if strings.Contains(out, "\033[") {
				t.Fatalf("stdout is not a terminal but got escape codes:\n%q", out)
			}
		})
	}
}

// TestRun_DeployWaitPollsWhenEventsBreak ends the event stream before the release moves: the
// wait must notice by polling.
func TestRun_DeployWaitPollsWhenEventsBreak(t *testing.T) {
	var e *cliEnv
	ctl := &fakeController{status: teal.Status{App: "shop"}}
	ctl.onDeploy = func(f *fakeController) {
		_ = e.srv.Close() // ends every event stream
		waitFor(t, 5*time.Second, func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return len(f.subs) == 0
		})
		playToGate(f)
	}
	e = newCLIEnv(t, ctl)
	start := time.Now()
	code, out, errOut := e.run(t, "deploy", "v2", "--wait", "--timeout", "20s")
	if code != exitOK {
		t.Fatalf("exit = %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "awaits release") {
		t.Fatalf("stdout lacks the gate:\n%s", out)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("took %s: polling should notice within about %s", d, waitPoll)
	}
}

func TestRun_Deploy(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"started", nil, nil, exitOK, "release #7: v2 → green\n", ""},
		{"json", nil, []string{"--json"}, exitOK, `"phase": "provisioning"`, ""},
		{"in progress", teal.Errorf(teal.ErrConflict, "wait for it, or end it with teal promote or teal abort", "release #6 of v1 is in progress (verifying)"),
			nil, exitConflict, "", "teal: release #6 of v1 is in progress (verifying)\nhint: wait for it, or end it with teal promote or teal abort\n"},
		{"unknown version", teal.Errorf(teal.ErrNotFound, "push it first", "artifact version v2 not found"),
			nil, exitUsage, "", "hint: push it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctl := &fakeController{deployErr: tt.err}
			e := newCLIEnv(t, ctl)
			code, out, errOut := e.run(t, append([]string{"deploy", "v2"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit = %d, want %d (stderr %s)", code, tt.code, errOut)
			}
			if !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("stdout %q, stderr %q; want %q and %q", out, errOut, tt.stdout, tt.stderr)
			}
			if len(ctl.actors) != 1 || !strings.HasPrefix(ctl.actors[0], "cli:") {
				t.Fatalf("actors = %q, want one cli: actor", ctl.actors)
			}
		})
	}
}

func TestRun_DeployWithArtifact(t *testing.T) {
	ctl := &fakeController{}
	e := newCLIEnv(t, ctl)
	bin := filepath.Join(t.TempDir(), "shop")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatalf("write artifact: %v", err)
	}
	code, out, errOut := e.run(t, "deploy", "v2", "--artifact", bin)
	if code != exitOK {
		t.Fatalf("exit = %d, want 0 (stderr %s)", code, errOut)
	}
	if !strings.Contains(out, "pushed v2  sha256:") || !strings.Contains(out, "release #7") {
		t.Fatalf("stdout = %q, want the push and the release", out)
	}

	code, out, errOut = e.run(t, "artifact", "list")
	if code != exitOK || !strings.Contains(out, "v2") || !strings.Contains(out, "sha256:") {
		t.Fatalf("artifact list: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = e.run(t, "artifact", "push", bin, "--version", "v2", "--json")
	if code != exitOK || !strings.Contains(out, `"digest": "sha256:`) {
		t.Fatalf("artifact push again: exit %d, stdout %q; want 0 and the same digest", code, out)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatalf("write tree: %v", err)
	}
	code, _, errOut = e.run(t, "artifact", "push", dir, "--version", "v2")
	if code != exitConflict {
		t.Fatalf("other content under v2: exit %d, want %d (stderr %s)", code, exitConflict, errOut)
	}
}

func TestRun_PromoteWait(t *testing.T) {
	_, rel := statusFixture()
	ctl := &fakeController{rel: rel}
	ctl.promote = func(f *fakeController) (*teal.Release, error) {
		f.mu.Lock()
		now := time.Now().UTC()
		f.rel.Promoted = &now
		out := copyRelease(f.rel)
		f.mu.Unlock()
		go f.update(func(r *teal.Release) {
			r.Steps[2] = testStep("gate", teal.StepDone, time.Second, "")
			r.Steps = append(r.Steps, testStep("switch", teal.StepDone, 3*time.Millisecond, ""))
			r.Phase = teal.PhaseReleased
			end(r, teal.OutcomeReleased, "")
		})
		return out, nil
	}
	e := newCLIEnv(t, ctl)
	code, out, errOut := e.run(t, "promote", "--wait")
	if code != exitOK {
		t.Fatalf("exit = %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"release #7: v2 promoted", "✓ gate  1.0s", "✓ switch  0.0s", "v2 is released on green"} {
		if !strings.Contains(out, want) {
			t.Fatalf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "launch") {
		t.Fatalf("stdout repeats steps that ended before the promotion:\n%s", out)
	}
}

func TestRun_PromoteNothing(t *testing.T) {
	e := newCLIEnv(t, &fakeController{})
	code, _, errOut := e.run(t, "promote")
	if code != exitConflict || !strings.Contains(errOut, "teal: no release is waiting to be promoted\nhint: start one") {
		t.Fatalf("exit %d, stderr %q; want %d with a hint", code, errOut, exitConflict)
	}
}

func TestRun_RollbackWait(t *testing.T) {
	st, rel := statusFixture()
	st.Live, st.Idle = st.Idle, st.Live
	ctl := &fakeController{status: st, rel: rel}
	ctl.rollback = func(f *fakeController, req teal.RollbackRequest) (*teal.Release, error) {
		if !req.Force {
			return nil, teal.Errorf(teal.ErrRefused, "use --force", "blue has 0 of 1 instances healthy")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		end(f.rel, teal.OutcomeRolledBack, "rolled back by cli:alice")
		f.status.Live, f.status.Idle = f.status.Idle, f.status.Live
		return copyRelease(f.rel), nil
	}
	e := newCLIEnv(t, ctl)
	code, _, errOut := e.run(t, "rollback", "--wait")
	if code != exitFailed || !strings.Contains(errOut, "hint: use --force") {
		t.Fatalf("refused rollback: exit %d, stderr %q; want %d and the hint", code, errOut, exitFailed)
	}
	code, out, errOut := e.run(t, "rollback", "--wait", "--force")
	if code != exitOK {
		t.Fatalf("exit = %d, want 0 (stderr %s)", code, errOut)
	}
	if !strings.Contains(out, "release #7 of v2 rolled back: traffic is on blue (v1) again") {
		t.Fatalf("stdout = %q", out)
	}
}

func TestRun_Abort(t *testing.T) {
	_, rel := statusFixture()
	e := newCLIEnv(t, &fakeController{rel: rel})
	code, out, errOut := e.run(t, "abort")
	if code != exitOK || !strings.Contains(out, "release #7 of v2 aborted") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and aborted", code, out, errOut)
	}
	code, _, errOut = e.run(t, "abort")
	if code != exitConflict || !strings.Contains(errOut, "no release is in progress") {
		t.Fatalf("second abort: exit %d, stderr %q; want %d", code, errOut, exitConflict)
	}
}

func TestRun_History(t *testing.T) {
	_, rel := statusFixture()
	e := newCLIEnv(t, &fakeController{rel: rel})
	code, out, _ := e.run(t, "history", "-n", "5")
	if code != exitOK || !strings.Contains(out, "ID") || !strings.Contains(out, "awaiting-release") || !strings.Contains(out, "cli:alice") {
		t.Fatalf("exit %d, stdout:\n%s", code, out)
	}
	code, out, _ = e.run(t, "history", "--json")
	if code != exitOK || !strings.HasPrefix(out, "[") || !strings.Contains(out, `"id": 7`) {
		t.Fatalf("--json: exit %d, stdout:\n%s", code, out)
	}

	e = newCLIEnv(t, &fakeController{})
	code, out, _ = e.run(t, "history")
	if code != exitOK || out != "no releases yet\n" {
		t.Fatalf("empty: exit %d, stdout %q", code, out)
	}
}

func TestRun_Logs(t *testing.T) {
	st, rel := statusFixture()
	e := newCLIEnv(t, &fakeController{status: st, rel: rel})
	for name, data := range map[string]string{"blue-0.log": "blue says hi\nand bye\n", "green-0.log": "green here\n"} {
		if err := os.WriteFile(filepath.Join(e.logDir, name), []byte(data), 0o644); err != nil {
			t.Fatalf("write log: %v", err)
		}
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"live colour by default", nil, exitOK, "blue says hi\nand bye\n"},
		{"tail", []string{"--tail", "1"}, exitOK, "and bye\n"},
		{"other colour", []string{"--color", "green"}, exitOK, "green here\n"},
		{"no output yet", []string{"--color", "green", "--instance", "3"}, exitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := e.run(t, append([]string{"logs"}, tt.args...)...)
			if code != tt.code || out != tt.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
}
