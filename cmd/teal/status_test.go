package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
)

// statusFixture is blue live with v1, green ready with v2 waiting at the gate.
func statusFixture() (teal.Status, *teal.Release) {
	now := time.Now().UTC()
	st := teal.Status{
		App:     "shop",
		Live:    &teal.ColorStatus{Color: teal.Blue, Version: "v1", State: teal.EnvLive},
		Idle:    &teal.ColorStatus{Color: teal.Green, Version: "v2", State: teal.EnvReady},
		Traffic: teal.All(teal.Blue),
		Environments: []teal.EnvStatus{
			{
				Environment: teal.Environment{Color: teal.Blue, Version: "v1", State: teal.EnvLive, Since: now,
					Instances: []teal.Instance{{Color: teal.Blue, Index: 0, Addr: "127.0.0.1:4001"}}},
				Health: []teal.InstanceHealth{{Index: 0, Addr: "127.0.0.1:4001", Healthy: true}},
			},
			{
				Environment: teal.Environment{Color: teal.Green, Version: "v2", State: teal.EnvReady, Since: now,
					Instances: []teal.Instance{{Color: teal.Green, Index: 0, Addr: "127.0.0.1:4003"}}},
				Health: []teal.InstanceHealth{{Index: 0, Addr: "127.0.0.1:4003", LastError: "connection refused"}},
			},
		},
	}
	rel := &teal.Release{ID: 7, Version: "v2", Color: teal.Green, From: teal.Blue, Phase: teal.PhaseAwaitingRelease,
		Actor: "cli:alice", Created: now,
		Steps: []teal.Step{
			testStep("launch", teal.StepDone, 2100*time.Millisecond, ""),
			testStep("health", teal.StepDone, 400*time.Millisecond, ""),
			testStep("gate", teal.StepRunning, 0, ""),
		}}
	return st, rel
}

func TestRun_StatusJSON(t *testing.T) {
	st, rel := statusFixture()
	e := newCLIEnv(t, &fakeController{status: st, rel: rel})
	code, out, errOut := e.run(t, "status", "--json")
	if code != exitOK {
		t.Fatalf("exit = %d, want 0 (stderr %s)", code, errOut)
	}
	// The keys spec/cli.md promises scripts.
	var got struct {
		App  string `json:"app"`
		Live struct {
			Color   string `json:"color"`
			Version string `json:"version"`
		} `json:"live"`
		Idle struct {
			Color, Version, State string
		} `json:"idle"`
		Traffic map[string]int `json:"traffic"`
		Release struct {
			ID      int64           `json:"id"`
			Version string          `json:"version"`
			Phase   string          `json:"phase"`
			Outcome json.RawMessage `json:"outcome"`
			Steps   []struct {
				Name, State, Started string
			} `json:"steps"`
		} `json:"release"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if got.App != "shop" || got.Live.Color != "blue" || got.Live.Version != "v1" {
		t.Fatalf("app/live = %s %+v, want shop blue v1", got.App, got.Live)
	}
	if got.Idle.Color != "green" || got.Idle.Version != "v2" || got.Idle.State != "ready" {
		t.Fatalf("idle = %+v, want green v2 ready", got.Idle)
	}
	if got.Traffic["blue"] != 100 || got.Traffic["green"] != 0 {
		t.Fatalf("traffic = %v, want blue 100 green 0", got.Traffic)
	}
	if got.Release.ID != 7 || got.Release.Phase != "awaiting-release" || string(got.Release.Outcome) != "null" {
		t.Fatalf("release = %+v, want #7 awaiting-release, outcome null", got.Release)
	}
	if len(got.Release.Steps) != 3 || got.Release.Steps[0].Name != "launch" || got.Release.Steps[0].State != "done" || got.Release.Steps[0].Started == "" {
		t.Fatalf("steps = %+v, want launch done first", got.Release.Steps)
	}
}

func TestRun_StatusHuman(t *testing.T) {
	st, rel := statusFixture()
	e := newCLIEnv(t, &fakeController{status: st, rel: rel})
	code, out, errOut := e.run(t, "status")
	if code != exitOK {
		t.Fatalf("exit = %d, want 0 (stderr %s)", code, errOut)
	}
	for _, want := range []string{
		"app      shop",
		"live     blue",
		"v1",
		"idle     green",
		"ready",
		"traffic  blue 100%  green 0%",
		"release  #7 v2 → green  awaiting-release  by cli:alice",
		"✓ launch  2.1s",
		"✓ health  0.4s",
		"… gate",
		"blue   0  v1  127.0.0.1:4001  healthy",
		"green  0  v2  127.0.0.1:4003  unhealthy: connection refused",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("status output lacks %q:\n%s", want, out)
		}
	}
}

func TestRun_StatusNothingYet(t *testing.T) {
	e := newCLIEnv(t, &fakeController{status: teal.Status{App: "shop", Idle: &teal.ColorStatus{Color: teal.Blue, State: teal.EnvEmpty}}})
	code, out, _ := e.run(t, "status")
	if code != exitOK || !strings.Contains(out, "nothing yet") || !strings.Contains(out, "release  none yet") {
		t.Fatalf("exit %d, output:\n%s\nwant 0 and nothing live", code, out)
	}
}

func TestStepLine(t *testing.T) {
	tests := []struct {
		name string
		step teal.Step
		want string
	}{
		{"done", testStep("launch", teal.StepDone, 2100*time.Millisecond, ""), "✓ launch  2.1s"},
		{"failed", testStep("health", teal.StepFailed, 400*time.Millisecond, "blue/0: connection refused"), "✗ health  0.4s: blue/0: connection refused"},
		{"skipped", testStep("database", teal.StepSkipped, 0, ""), "- database  skipped"},
		{"long", testStep("switch", teal.StepDone, 90*time.Second, ""), "✓ switch  1m30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepLine(tt.step, time.Now()); got != tt.want {
				t.Fatalf("stepLine = %q, want %q", got, tt.want)
			}
		})
	}
}
