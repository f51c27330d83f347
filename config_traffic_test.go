package teal

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfig_Traffic(t *testing.T) {
	cfg := mustParseConfig(t, `app: shop
preview: 127.0.0.1:8081
release:
  strategy: weighted
  steps: [10, 25, 50]
  step_hold: 30s
  sticky: false
  sticky_existing: true
  long_drain: 1h
  max_pause: 5s
verify:
  shadow: { percent: 10, duration: 2m, compare: body, max_mismatch: 0.5%, methods: [GET] }
sessions:
  redis: ${REDIS_URL}
`, map[string]string{"REDIS_URL": "redis://:pw@127.0.0.1:6379/2"})
	r := cfg.Release
	if r.Strategy != "weighted" || !reflect.DeepEqual(r.Steps, []int{10, 25, 50}) || r.StepHold != 30*time.Second ||
		r.Sticky || !r.StickyExisting || r.LongDrain != time.Hour || r.MaxPause != 5*time.Second {
		t.Errorf("release = %+v", r)
	}
	want := ShadowConfig{Percent: 10, Duration: 2 * time.Minute, Compare: "body", MaxMismatch: 0.005, Methods: []string{"GET"}}
	if !reflect.DeepEqual(cfg.Verify.Shadow, want) {
		t.Errorf("verify.shadow = %+v, want %+v", cfg.Verify.Shadow, want)
	}
	if cfg.Sessions.Redis != "redis://:pw@127.0.0.1:6379/2" {
		t.Errorf("sessions.redis = %q", cfg.Sessions.Redis)
	}
	d := DefaultConfig()
	if got := d.Verify.Shadow.ShadowMethods(); !d.Release.Sticky || d.Verify.Shadow.Enabled() || !reflect.DeepEqual(got, []string{"GET", "HEAD"}) {
		t.Errorf("defaults: sticky %v, shadow enabled %v, methods %v", d.Release.Sticky, d.Verify.Shadow.Enabled(), got)
	}
}

func TestParseConfig_TrafficErrors(t *testing.T) {
	checkOneConfigError(t, []configErrorCase{
		{"weighted without steps", "release: {strategy: weighted}", "release.steps", "required with strategy: weighted"},
		{"steps without weighted", "release: {steps: [10]}", "release.steps", "only used with strategy: weighted"},
		{"step 100", "release: {strategy: weighted, steps: [10, 100]}", "release.steps[1]", "want 1 to 99"},
		{"step backwards", "release: {strategy: weighted, steps: [50, 25]}", "release.steps[1]", "want more than the step before (50)"},
		{"step not a number", "release: {strategy: weighted, steps: [ten]}", "release.steps[0]", "not a whole percentage"},
		{"steps not a list", "release: {strategy: weighted, steps: 10}", "release.steps", "want a list of percentages"},
		{"step_hold", "release: {step_hold: 0s}", "release.step_hold", "over 0"},
		{"weighted with clone", "release: {strategy: weighted, steps: [10]}\ndatabase: {mode: clone, production: 'postgres://u@h/db'}", "release.strategy", "with database.mode clone each colour has its own database"},
		{"strategy", "release: {strategy: canary}", "release.strategy", "want switch or weighted"},
		{"shadow percent", "verify: {shadow: {percent: -5}}", "verify.shadow.percent", "want over 0 and up to 100"},
		{"shadow percent high", "verify: {shadow: {percent: 150}}", "verify.shadow.percent", "up to 100"},
		{"shadow compare", "verify: {shadow: {percent: 5, compare: headers}}", "verify.shadow.compare", "want status or body"},
		{"shadow method", "verify: {shadow: {percent: 5, methods: [get]}}", "verify.shadow.methods[0]", "in capitals"},
		{"redis url", "sessions: {redis: 'localhost:6379'}", "sessions.redis", "want a URL like redis://"},
		{"long_drain", "release: {long_drain: -1s}", "release.long_drain", "0 or more"},
	})
	// The session store's password never shows.
	errs := parseConfigErrors(t, "app: shop\nsessions: {redis: '${R}'}\n", map[string]string{"R": "http://:s3cr3t@h"})
	if len(errs) != 1 || strings.Contains(errs.Error(), "s3cr3t") {
		t.Fatalf("errors = %v: want one, without the password", errs)
	}
}
