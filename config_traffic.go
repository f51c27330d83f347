package teal

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ShadowConfig is verify.shadow: live requests mirrored to the new colour in the verifying
// phase, their answers compared with the live ones.
type ShadowConfig struct {
	// Percent of the live requests (of Methods) mirrored, over 0 and up to 100.
	Percent float64 `yaml:"percent"`
	// Duration is how long mirroring runs before it is judged; = DefaultShadowDuration.
	Duration time.Duration `yaml:"duration"`
	// Compare is status (= DefaultShadowCompare) or body (status and body).
	Compare string `yaml:"compare"`
	// MaxMismatch is the largest share of compared requests that may differ, as a fraction;
	// = DefaultShadowMaxMismatch.
	MaxMismatch float64 `yaml:"max_mismatch"`
	// Methods mirrored; = GET and HEAD. Others would repeat writes on the new colour.
	Methods []string `yaml:"methods"`
}

// Enabled reports whether shadow traffic is configured.
func (s ShadowConfig) Enabled() bool { return s.Percent > 0 }

// SessionsConfig names the shared session store the app uses; teal checks it, nothing more.
type SessionsConfig struct {
	// Redis is the store's URL (redis://, rediss://, unix://); "" for none.
	Redis string `yaml:"redis"`
}

// Defaults of the traffic keys.
const (
	DefaultStepHold          = time.Minute
	DefaultLongDrain         = 5 * time.Minute
	DefaultMaxPause          = 30 * time.Second
	DefaultShadowDuration    = time.Minute
	DefaultShadowCompare     = "status"
	DefaultShadowMaxMismatch = 0.01
)

// trafficSchema adds the keys of weighted releases, long drains, pauses, shadow traffic and the
// session store to the decoder's schema.
func (d *decoder) trafficSchema(c *Config, section func(string) func(*yaml.Node, string)) {
	d.schema[""] = append(d.schema[""], field{"sessions", section("sessions")})
	d.schema["release"] = append(d.schema["release"],
		field{"steps", d.steps(&c.Release.Steps)},
		field{"step_hold", d.duration(&c.Release.StepHold)},
		field{"sticky", d.boolean(&c.Release.Sticky)},
		field{"sticky_existing", d.boolean(&c.Release.StickyExisting)},
		field{"long_drain", d.duration(&c.Release.LongDrain)},
		field{"max_pause", d.duration(&c.Release.MaxPause)},
	)
	d.schema["verify"] = append(d.schema["verify"], field{"shadow", section("verify.shadow")})
	d.schema["verify.shadow"] = []field{
		{"percent", d.percentNumber(&c.Verify.Shadow.Percent)},
		{"duration", d.duration(&c.Verify.Shadow.Duration)},
		{"compare", d.str(&c.Verify.Shadow.Compare)},
		{"max_mismatch", d.percent(&c.Verify.Shadow.MaxMismatch)},
		{"methods", d.list(&c.Verify.Shadow.Methods)},
	}
	d.schema["sessions"] = []field{
		{"redis", func(n *yaml.Node, p string) {
			if s, ok := d.scalar(n, p, "a URL, like redis://127.0.0.1:6379/0", secretValue); ok {
				c.Sessions.Redis = s
			}
		}},
	}
}

// steps decodes release.steps, a list of whole percentages.
func (d *decoder) steps(dst *[]int) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorAt(n, path, scalarText(n), "want a list of percentages of traffic for the new colour, like [10, 25, 50], got "+kindName(n))
			return
		}
		out := make([]int, 0, len(n.Content))
		ok := true
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			s, good := d.scalar(e, p, "a percentage, like 10", plainValue)
			if !good {
				ok = false
				continue
			}
			v, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
			if err != nil {
				d.badValue(e, p, "not a whole percentage (like 10)")
				ok = false
				continue
			}
			out = append(out, v)
		}
		if ok {
			*dst = out
		}
	}
}

// percentNumber decodes a percentage written as a number (10) or with % (10%), as a number
// from 0 to 100.
func (d *decoder) percentNumber(dst *float64) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "a percentage, like 10", plainValue)
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")), 64)
		if err != nil || f != f {
			d.badValue(n, path, "not a percentage (like 10 or 2.5)")
			return
		}
		*dst = f
	}
}

// validateTraffic checks the keys of weighted releases, shadow traffic and the session store.
func (c *Config) validateTraffic(v *validator) {
	r := &c.Release
	weighted := r.Strategy == "weighted"
	switch {
	case weighted && len(r.Steps) == 0:
		v.add("release.steps", "", "required with strategy: weighted: the percentages of traffic for the new colour, like [10, 25, 50] (100 is implied last)")
	case !weighted && r.Steps != nil:
		v.add("release.steps", "", "only used with strategy: weighted; remove it or set release.strategy: weighted")
	}
	for i, s := range r.Steps {
		p := fmt.Sprintf("release.steps[%d]", i)
		switch {
		case s < 1 || s > 99:
			v.add(p, strconv.Itoa(s), "want 1 to 99 (100, all traffic, is the implied last step)")
		case i > 0 && s <= r.Steps[i-1]:
			v.add(p, strconv.Itoa(s), fmt.Sprintf("want more than the step before (%d): steps only move traffic forward", r.Steps[i-1]))
		}
	}
	v.positive("release.step_hold", r.StepHold)
	v.nonNegative("release.long_drain", r.LongDrain)
	v.positive("release.max_pause", r.MaxPause)
	if weighted {
		switch c.Database.Mode {
		case "clone", "snapshot":
			v.add("release.strategy", r.Strategy, fmt.Sprintf("weighted steps send writes to both colours at once, and with database.mode %s each colour has its own database; use strategy: switch, or database.mode: shared", c.Database.Mode))
		}
	}

	s := c.Verify.Shadow
	if s.Percent != 0 || s.Methods != nil {
		if s.Percent <= 0 || s.Percent > 100 {
			v.add("verify.shadow.percent", strconv.FormatFloat(s.Percent, 'g', -1, 64), "want over 0 and up to 100 (percent of live requests mirrored)")
		}
	}
	v.positive("verify.shadow.duration", s.Duration)
	switch s.Compare {
	case "status", "body":
	default:
		v.add("verify.shadow.compare", s.Compare, "want status or body")
	}
	for i, m := range s.Methods {
		if m == "" || strings.ToUpper(m) != m || !validHeaderName(m) {
			v.add(fmt.Sprintf("verify.shadow.methods[%d]", i), m, "want an HTTP method in capitals, like GET")
		}
	}

	if u := c.Sessions.Redis; u != "" {
		pu, err := url.Parse(u)
		if err != nil || !slices.Contains([]string{"redis", "rediss", "unix"}, pu.Scheme) || (pu.Scheme != "unix" && pu.Host == "") {
			v.add("sessions.redis", "", "want a URL like redis://127.0.0.1:6379/0 (rediss:// for TLS, unix:///path/to/redis.sock)")
		}
	}
}

// ShadowMethods returns the methods mirrored: Methods, or GET and HEAD.
func (s ShadowConfig) ShadowMethods() []string {
	if len(s.Methods) > 0 {
		return s.Methods
	}
	return []string{"GET", "HEAD"}
}
