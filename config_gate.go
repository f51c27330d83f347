package teal

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"teal.dev/teal/jsonpath"
	"teal.dev/teal/window"
)

// VerifyConfig says how the new colour is checked in the verifying phase, against the preview
// endpoint, before the gate opens.
type VerifyConfig struct {
	// Smoke are HTTP checks run in order; all must pass.
	Smoke []SmokeCheck `yaml:"smoke"`
	// Command is an external check, run once after the HTTP checks; exit 0 = pass. Its argv
	// may hold {preview_url}, {color}, {version}. Nil when not set.
	Command []string `yaml:"command"`
	// Timeout bounds the command, and each HTTP check; = DefaultVerifyTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// Shadow mirrors live requests to the new colour; off unless Percent is set.
	Shadow ShadowConfig `yaml:"shadow"`
}

// SmokeCheck is one HTTP check of verify.smoke.
type SmokeCheck struct {
	Name    string            `yaml:"name"`    // = "METHOD PATH"
	Method  string            `yaml:"-"`       // from request: "GET /path"
	Path    string            `yaml:"-"`       // from request; starts with /, may carry a query
	Headers map[string]string `yaml:"headers"` // sent with the request
	Body    string            `yaml:"body"`    // sent with the request
	Expect  SmokeExpect       `yaml:"expect"`
}

// SmokeExpect is what a smoke check's answer must show.
type SmokeExpect struct {
	Status       int    `yaml:"status"`        // = 200
	BodyContains string `yaml:"body_contains"` // = "" (not checked)
	// JSON maps a JSON path ($.ok, $.items[0].id, $["a b"]) to the value found there, as JSON
	// text: true, 3, "ok", null. Every entry must hold.
	JSON []JSONExpect `yaml:"json"`
}

// JSONExpect is one JSON path equality of a smoke check.
type JSONExpect struct {
	Path  string          // like $.ok or $.items[0].id
	Value json.RawMessage // the expected value as JSON text
}

// AnalysisConfig is the judgement of the new colour from the router's own per-colour counts:
// after the switch (release.post_check) and at weighted steps.
type AnalysisConfig struct {
	// MaxErrorRate is the largest share of the new colour's requests that may fail (5xx
	// answers and upstream errors), as a fraction: 0.01 is 1%. = DefaultMaxErrorRate.
	MaxErrorRate float64 `yaml:"max_error_rate"`
	// MaxP99 is the longest 99th-percentile answer time; 0 does not check it. = DefaultMaxP99.
	MaxP99 time.Duration `yaml:"max_p99"`
	// MinRequests is how many requests a judgement needs; fewer is inconclusive, never a
	// pass. = DefaultMinRequests.
	MinRequests int `yaml:"min_requests"`
}

// WindowConfig is release.window: when promotions are allowed.
type WindowConfig struct {
	// Allow lists when promotion is allowed, like "mon-fri 09:00-17:00"; nil = always.
	Allow []string `yaml:"allow"`
	// Timezone names the zone Allow is read in, like Europe/Berlin; = Local (the server's).
	Timezone string `yaml:"timezone"`
}

// NotifyConfig is where phase changes are announced.
type NotifyConfig struct {
	// Webhooks receive a JSON POST (Slack-compatible "text" plus structured fields) on every
	// phase change and outcome.
	Webhooks []string `yaml:"webhooks"`
}

// Defaults of the gate's keys.
const (
	DefaultVerifyTimeout = time.Minute
	DefaultSmokeStatus   = 200
	DefaultMaxErrorRate  = 0.01
	DefaultMaxP99        = 500 * time.Millisecond
	DefaultMinRequests   = 50
)

// gateSchema adds the sections of the release gate to the decoder's schema: verify (with its
// list of smoke checks), release.analysis, release.window and notify.
func (d *decoder) gateSchema(c *Config, section func(string) func(*yaml.Node, string)) {
	// The smoke checks are a list of mappings: the fields of the element being decoded write
	// through cur, which smokeList points at each element in turn.
	var cur *SmokeCheck
	d.schema[""] = append(d.schema[""],
		field{"tokens_file", d.str(&c.TokensFile)},
		field{"metrics_token", d.hidden(&c.MetricsToken)},
		field{"verify", section("verify")},
		field{"notify", section("notify")},
	)
	d.schema["release"] = append(d.schema["release"],
		field{"analysis", section("release.analysis")},
		field{"post_check", d.duration(&c.Release.PostCheck)},
		field{"window", section("release.window")},
	)
	d.schema["verify"] = []field{
		{"smoke", d.smokeList(&c.Verify.Smoke, &cur)},
		{"command", d.list(&c.Verify.Command)},
		{"timeout", d.duration(&c.Verify.Timeout)},
	}
	d.schema["verify.smoke[]"] = []field{
		{"name", func(n *yaml.Node, p string) { d.str(&cur.Name)(n, p) }},
		{"request", func(n *yaml.Node, p string) {
			var s string
			d.str(&s)(n, p)
			cur.Method, cur.Path, _ = strings.Cut(strings.TrimSpace(s), " ")
			cur.Path = strings.TrimSpace(cur.Path)
			if s != "" && cur.Method == "" {
				cur.Method = " " // present but empty: the validator says so
			}
		}},
		{"headers", func(n *yaml.Node, p string) { d.env(&cur.Headers)(n, p) }},
		{"body", func(n *yaml.Node, p string) { d.str(&cur.Body)(n, p) }},
		{"expect", func(n *yaml.Node, p string) { d.mapping(n, p, "verify.smoke[].expect") }},
	}
	d.schema["verify.smoke[].expect"] = []field{
		{"status", func(n *yaml.Node, p string) { d.integer(&cur.Expect.Status)(n, p) }},
		{"body_contains", func(n *yaml.Node, p string) { d.str(&cur.Expect.BodyContains)(n, p) }},
		{"json", func(n *yaml.Node, p string) { d.jsonExpects(&cur.Expect.JSON)(n, p) }},
	}
	d.schema["release.analysis"] = []field{
		{"max_error_rate", d.percent(&c.Release.Analysis.MaxErrorRate)},
		{"max_p99", d.duration(&c.Release.Analysis.MaxP99)},
		{"min_requests", d.integer(&c.Release.Analysis.MinRequests)},
	}
	d.schema["release.window"] = []field{
		{"allow", d.list(&c.Release.Window.Allow)},
		{"timezone", d.str(&c.Release.Window.Timezone)},
	}
	d.schema["notify"] = []field{
		{"webhooks", d.secretList(&c.Notify.Webhooks)},
	}
}

// smokeList decodes verify.smoke, a list of checks, each decoded through *cur.
func (d *decoder) smokeList(dst *[]SmokeCheck, cur **SmokeCheck) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorAt(n, path, scalarText(n), "want a list of checks, like [{name: home, request: GET /, expect: {status: 200}}], got "+kindName(n))
			return
		}
		out := make([]SmokeCheck, len(n.Content))
		for i, e := range n.Content {
			out[i].Expect.Status = DefaultSmokeStatus
			*cur = &out[i]
			p := fmt.Sprintf("%s[%d]", path, i)
			if e = resolve(e); e.Kind != yaml.MappingNode {
				d.errorAt(e, p, scalarText(e), "want a check: a mapping with name, request and expect, got "+kindName(e))
				continue
			}
			d.keys[p] = keyInfo{line: e.Line}
			d.mapping(e, p, "verify.smoke[]")
		}
		*cur = nil
		*dst = out
	}
}

// jsonExpects decodes expect.json: a mapping of JSON path to the scalar expected there. The
// YAML type of the value is its JSON type: true is a boolean, 3 a number, "3" a string.
func (d *decoder) jsonExpects(dst *[]JSONExpect) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorAt(n, path, scalarText(n), `want a mapping of JSON path to value, like { "$.ok": true }, got `+kindName(n))
			return
		}
		first := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := resolve(n.Content[i]), resolve(n.Content[i+1])
			key, ok := d.key(kn, path, first)
			if !ok {
				continue
			}
			p := fmt.Sprintf("%s[%q]", path, key)
			d.keys[p] = keyInfo{line: kn.Line}
			if _, err := jsonpath.Parse(key); err != nil {
				d.keyError(kn, p, fmt.Sprintf("not a JSON path: %v", err))
				continue
			}
			var raw json.RawMessage
			switch {
			case vn.Kind != yaml.ScalarNode:
				d.errorAt(vn, p, "", "want a scalar (true, 3, \"text\" or null), got "+kindName(vn))
				continue
			case vn.Tag == "!!null":
				raw = json.RawMessage("null")
			default:
				s, ok := d.scalar(vn, p, "a scalar", plainValue)
				if !ok {
					continue
				}
				switch vn.Tag {
				case "!!bool":
					raw = json.RawMessage(strings.ToLower(s))
				case "!!int", "!!float":
					if !json.Valid([]byte(s)) {
						d.badValue(vn, p, "not a JSON number (like 3 or 2.5); quote it to compare a string")
						continue
					}
					raw = json.RawMessage(s)
				default:
					raw, _ = json.Marshal(s)
				}
			}
			*dst = append(*dst, JSONExpect{Path: key, Value: raw})
		}
	}
}

// percent decodes a percentage like 1% or 0.5% into a fraction.
func (d *decoder) percent(dst *float64) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "a percentage, like 1%", plainValue)
		if !ok {
			return
		}
		num, found := strings.CutSuffix(strings.TrimSpace(s), "%")
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		switch {
		case !found:
			d.badValue(n, path, "want a percentage with %, like 1% or 0.5%")
		case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
			d.badValue(n, path, "not a percentage (like 1% or 0.5%)")
		case f < 0 || f > 100:
			d.badValue(n, path, "want a percentage from 0% to 100%")
		default:
			*dst = f / 100
		}
	}
}

// secretList decodes a list of strings that may hold secrets (webhook URLs): errors show them
// as written, never expanded.
func (d *decoder) secretList(dst *[]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorAt(n, path, scalarText(n), `want a list, like ["https://chat.example/hook"], got `+kindName(n))
			return
		}
		out := make([]string, 0, len(n.Content))
		ok := true
		for i, e := range n.Content {
			s, good := d.scalar(e, fmt.Sprintf("%s[%d]", path, i), "a string", secretValue)
			ok = ok && good
			out = append(out, s)
		}
		if ok {
			*dst = out
		}
	}
}

// smokeMethods are the request methods a smoke check may use.
var smokeMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// validateGate checks verify, release.analysis, release.post_check, release.window and notify.
func (c *Config) validateGate(v *validator) {
	for i, sc := range c.Verify.Smoke {
		p := fmt.Sprintf("verify.smoke[%d]", i)
		req := strings.TrimSpace(sc.Method + " " + sc.Path)
		switch {
		case sc.Method == "" && sc.Path == "":
			v.add(p+".request", "", "required: the request to send, like GET /api/health")
		case !slices.Contains(smokeMethods, sc.Method):
			v.add(p+".request", req, fmt.Sprintf("want METHOD /path, like GET /; methods: %s", strings.Join(smokeMethods, ", ")))
		case !strings.HasPrefix(sc.Path, "/") || strings.ContainsAny(sc.Path, " \t"):
			v.add(p+".request", req, "want METHOD /path with the path starting with /, like GET /api/health")
		}
		if sc.Expect.Status < 100 || sc.Expect.Status > 599 {
			v.add(p+".expect.status", strconv.Itoa(sc.Expect.Status), "want an HTTP status from 100 to 599, like 200")
		}
		for name := range sc.Headers {
			if !validHeaderName(name) {
				v.add(p+".headers."+name, "", "not a valid header name (letters, digits and !#$%&'*+-.^_`|~)")
			}
		}
	}
	if c.Verify.Command != nil {
		if len(c.Verify.Command) == 0 || c.Verify.Command[0] == "" {
			v.add("verify.command", "", `empty; want a command and its arguments, like ["./smoke.sh", "{preview_url}"]`)
		}
		for i, a := range c.Verify.Command {
			checkPlaceholders(v, fmt.Sprintf("verify.command[%d]", i), a, a, "preview_url", "color", "version")
		}
	}
	v.positive("verify.timeout", c.Verify.Timeout)

	a := c.Release.Analysis
	v.nonNegative("release.analysis.max_p99", a.MaxP99)
	if a.MinRequests < 1 {
		v.add("release.analysis.min_requests", strconv.Itoa(a.MinRequests), "want 1 or more: with no requests nothing can be judged")
	}
	v.nonNegative("release.post_check", c.Release.PostCheck)

	w := c.Release.Window
	if w.Timezone != "" {
		if _, err := time.LoadLocation(w.Timezone); err != nil {
			v.add("release.window.timezone", w.Timezone, "unknown time zone; want an IANA name like Europe/Berlin or UTC")
		}
	}
	if w.Allow != nil && len(w.Allow) == 0 {
		v.add("release.window.allow", "", `empty: no promotion could ever happen; want rules like ["mon-fri 09:00-17:00"], or leave window out`)
	}
	for i, r := range w.Allow {
		if err := window.ParseRule(r); err != nil {
			v.add(fmt.Sprintf("release.window.allow[%d]", i), "", err.Error())
		}
	}

	for i, h := range c.Notify.Webhooks {
		u, err := url.Parse(h)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(fmt.Sprintf("notify.webhooks[%d]", i), "", "want an http:// or https:// URL, like https://chat.example/hook")
		}
	}
}

// Schedule returns the release window as configured; a nil Window allows any time.
func (w WindowConfig) Schedule() (*window.Window, error) {
	if len(w.Allow) == 0 {
		return nil, nil
	}
	loc := time.Local
	if w.Timezone != "" {
		l, err := time.LoadLocation(w.Timezone)
		if err != nil {
			return nil, fmt.Errorf("release.window.timezone %q: %w", w.Timezone, err)
		}
		loc = l
	}
	return window.Parse(w.Allow, loc)
}

// validHeaderName reports whether s is an HTTP header field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 127 || !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}
