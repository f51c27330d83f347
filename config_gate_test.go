package teal

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfig_Gate(t *testing.T) {
	env := map[string]string{"METRICS_TOKEN": "m3trics", "SMOKE_TOKEN": "sm0ke", "HOOK_SECRET": "T0/B1"}
	cfg := mustParseConfig(t, readConfigTestdata(t, "gate.yaml"), env)
	wantSmoke := []SmokeCheck{
		{Name: "home page", Method: "GET", Path: "/", Expect: SmokeExpect{Status: 200, BodyContains: "shop"}},
		{Name: "api health", Method: "GET", Path: "/api/health?deep=1", Headers: map[string]string{"Authorization": "Bearer sm0ke"},
			Expect: SmokeExpect{Status: 200, JSON: []JSONExpect{
				{"$.ok", json.RawMessage("true")}, {"$.count", json.RawMessage("3")}, {"$.name", json.RawMessage(`"shop"`)},
				{"$.missing", json.RawMessage("null")}, {"$.version", json.RawMessage(`"2"`)},
			}}},
		{Method: "POST", Path: "/api/echo", Body: `{"x": 1}`, Expect: SmokeExpect{Status: 201}},
	}
	if !reflect.DeepEqual(cfg.Verify.Smoke, wantSmoke) {
		t.Errorf("verify.smoke =\n%+v\nwant\n%+v", cfg.Verify.Smoke, wantSmoke)
	}
	if got, want := cfg.Verify.Command, []string{"./smoke.sh", "{preview_url}", "{version}"}; !reflect.DeepEqual(got, want) {
		t.Errorf("verify.command = %q, want %q", got, want)
	}
	if cfg.Verify.Timeout != 30*time.Second {
		t.Errorf("verify.timeout = %s, want 30s", cfg.Verify.Timeout)
	}
	wantA := AnalysisConfig{MaxErrorRate: 0.005, MaxP99: 250 * time.Millisecond, MinRequests: 100}
	if cfg.Release.Analysis != wantA || cfg.Release.PostCheck != 2*time.Minute {
		t.Errorf("analysis = %+v, post_check %s; want %+v, 2m", cfg.Release.Analysis, cfg.Release.PostCheck, wantA)
	}
	if got := cfg.Release.Window; !reflect.DeepEqual(got, WindowConfig{Allow: []string{"mon-fri 09:00-17:00", "sat 10:00-12:00"}, Timezone: "UTC"}) {
		t.Errorf("window = %+v", got)
	}
	w, err := cfg.Release.Window.Schedule()
	if err != nil || !w.Allows(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)) || w.Allows(time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("Schedule() = %v, %v: want open Monday 10:00 UTC and closed Sunday", w, err)
	}
	if got, want := cfg.Notify.Webhooks, []string{"https://chat.example/hook/T0/B1", "http://127.0.0.1:9999/teal"}; !reflect.DeepEqual(got, want) {
		t.Errorf("notify.webhooks = %q, want %q", got, want)
	}
	if cfg.MetricsToken != "m3trics" || cfg.TokensFile != "tokens.txt" {
		t.Errorf("metrics_token %q, tokens_file %q", cfg.MetricsToken, cfg.TokensFile)
	}
}

func TestParseConfig_GateErrors(t *testing.T) {
	checkOneConfigError(t, []configErrorCase{
		{"smoke not a list", "verify: {smoke: GET /}", "verify.smoke", "want a list of checks"},
		{"check not a mapping", "verify: {smoke: [GET /]}", "verify.smoke[0]", "want a check"},
		{"request missing", "verify: {smoke: [{name: x}]}", "verify.smoke[0].request", "required"},
		{"bad method", "verify: {smoke: [{request: FETCH /}]}", "verify.smoke[0].request", `"FETCH /": want METHOD /path`},
		{"no path", "verify: {smoke: [{request: GET}]}", "verify.smoke[0].request", "want METHOD /path"},
		{"relative path", "verify: {smoke: [{request: GET api}]}", "verify.smoke[0].request", "starting with /"},
		{"status", "verify: {smoke: [{request: GET /, expect: {status: 700}}]}", "verify.smoke[0].expect.status", "from 100 to 599"},
		{"unknown expect key", "verify: {smoke: [{request: GET /, expect: {body: x}}]}", "verify.smoke[0].expect.body", "unknown key"},
		{"typo in check", "verify: {smoke: [{request: GET /, expcet: {status: 200}}]}", "verify.smoke[0].expcet", "did you mean expect?"},
		{"json path", `verify: {smoke: [{request: GET /, expect: {json: {"ok": true}}}]}`, `verify.smoke[0].expect.json["ok"]`, "not a JSON path"},
		{"json value", `verify: {smoke: [{request: GET /, expect: {json: {"$.a": [1]}}}]}`, `verify.smoke[0].expect.json["$.a"]`, "want a scalar"},
		{"json number", `verify: {smoke: [{request: GET /, expect: {json: {"$.a": 0x1F}}}]}`, `verify.smoke[0].expect.json["$.a"]`, "not a JSON number"},
		{"header name", `verify: {smoke: [{request: GET /, headers: {"a b": c}}]}`, "verify.smoke[0].headers.a b", "not a valid header name"},
		{"empty command", "verify: {command: []}", "verify.command", "empty"},
		{"command placeholder", "verify: {command: [./s, '{preview}']}", "verify.command[1]", "unknown placeholder {preview}; want {preview_url}, {color} or {version}"},
		{"timeout", "verify: {timeout: 0s}", "verify.timeout", "over 0"},
		{"rate without %", "release: {analysis: {max_error_rate: 0.01}}", "release.analysis.max_error_rate", "with %"},
		{"rate over 100", "release: {analysis: {max_error_rate: 120%}}", "release.analysis.max_error_rate", "from 0% to 100%"},
		{"min requests", "release: {analysis: {min_requests: 0}}", "release.analysis.min_requests", "1 or more"},
		{"post_check", "release: {post_check: -1s}", "release.post_check", "0 or more"},
		{"window rule", "release: {window: {allow: [mon-fry 09:00-17:00]}}", "release.window.allow[0]", `unknown day "fry"`},
		{"window empty", "release: {window: {allow: []}}", "release.window.allow", "no promotion could ever happen"},
		{"window zone", "release: {window: {allow: ['* 09:00-17:00'], timezone: Mars/Olympus}}", "release.window.timezone", "unknown time zone"},
		{"webhook", "notify: {webhooks: [chat.example/hook]}", "notify.webhooks[0]", "want an http:// or https:// URL"},
	})
}

func TestParseConfig_WebhookSecretNotShown(t *testing.T) {
	errs := parseConfigErrors(t, "app: shop\nnotify: {webhooks: ['${HOOK}']}\n", map[string]string{"HOOK": "ftp://s3cr3t"})
	if len(errs) != 1 || strings.Contains(errs.Error(), "s3cr3t") {
		t.Fatalf("errors = %v: want one, without the expanded secret", errs)
	}
}
