package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

const (
	adminToken = "admin-token-0123456789abcdef"
	bobToken   = "bob-token-0123456789abcdef"
)

// fakeController is a function-field fake of what the API and the dashboard read; unset
// methods answer an empty success.
type fakeController struct {
	status   func() (*teal.Status, error)
	releases func() ([]*teal.Release, error)
	promoted []string
}

var _ api.Controller = (*fakeController)(nil)

func (f *fakeController) Status(context.Context) (*teal.Status, error) {
	if f.status == nil {
		return &teal.Status{App: "shop"}, nil
	}
	return f.status()
}

func (f *fakeController) Releases(context.Context, int) ([]*teal.Release, error) {
	if f.releases == nil {
		return nil, nil
	}
	return f.releases()
}

func (f *fakeController) Deploy(_ context.Context, req teal.DeployRequest) (*teal.Release, error) {
	return &teal.Release{ID: 1, Version: req.Version}, nil
}

func (f *fakeController) Promote(_ context.Context, actor string) (*teal.Release, error) {
	f.promoted = append(f.promoted, actor)
	return &teal.Release{ID: 1}, nil
}

func (f *fakeController) Abort(context.Context, string) (*teal.Release, error) {
	return &teal.Release{ID: 1}, nil
}

func (f *fakeController) Rollback(context.Context, teal.RollbackRequest) (*teal.Release, error) {
	return &teal.Release{ID: 1}, nil
}

func (f *fakeController) Release(_ context.Context, id int64) (*teal.Release, []*teal.Event, error) {
	return &teal.Release{ID: id}, nil, nil
}

func (f *fakeController) Subscribe() (<-chan *teal.Event, func()) {
	return make(chan *teal.Event), func() {}
}

// env is the API server with the dashboard mounted, as cmd/teal wires them, on loopback.
type env struct {
	ctl  *fakeController
	dash *Handler
	url  string
}

func newEnv(t *testing.T, ctl *fakeController) *env {
	t.Helper()
	srv := api.NewServer(ctl, nil, nil, adminToken)
	srv.Tokens = map[string]string{"bob": bobToken}
	dash := New(ctl, srv)
	srv.Dashboard = dash
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = srv.Close() })
	return &env{ctl: ctl, dash: dash, url: hs.URL}
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	code int
	hdr  http.Header
	body string
}

func do(t *testing.T, c *http.Client, method, u string, hdr http.Header, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

var formHeader = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

func (e *env) login(t *testing.T, c *http.Client, token string) answer {
	t.Helper()
	return do(t, c, "POST", e.url+"/login", formHeader, url.Values{"token": {token}}.Encode())
}

// csrfOf reads the CSRF token out of the dashboard page.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page")
	}
	return html.UnescapeString(m[1])
}

func TestHandler_SecurityHeaders(t *testing.T) {
	e := newEnv(t, &fakeController{})
	for _, p := range []string{"/", "/static/app.js", "/nope"} {
		a := do(t, browser(t), "GET", e.url+p, nil, "")
		for k, want := range map[string]string{
			"Content-Security-Policy": contentSecurityPolicy,
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
		} {
			if got := a.hdr.Get(k); got != want {
				t.Fatalf("GET %s: %s = %q, want %q", p, k, got, want)
			}
		}
	}
	if !strings.Contains(contentSecurityPolicy, "default-src 'self'") || strings.Contains(contentSecurityPolicy, "unsafe-inline") {
		t.Fatalf("CSP %q: want default-src 'self' and no unsafe-inline", contentSecurityPolicy)
	}
}

func TestHandler_Login(t *testing.T) {
	e := newEnv(t, &fakeController{})
	c := browser(t)

	a := do(t, c, "GET", e.url+"/", nil, "")
	if a.code != 200 || !strings.Contains(a.body, `id="login-form"`) || strings.Contains(a.body, `id="live-version"`) {
		t.Fatalf("GET / logged out = %d, want the login page:\n%s", a.code, a.body)
	}

	a = e.login(t, c, "not-the-token")
	if a.code != http.StatusUnauthorized || !strings.Contains(a.body, `id="login-error"`) {
		t.Fatalf("wrong token = %d, want 401 with the login page's error:\n%s", a.code, a.body)
	}
	if a.hdr.Get("Set-Cookie") != "" {
		t.Fatalf("a wrong token set a cookie: %s", a.hdr.Get("Set-Cookie"))
	}

	a = e.login(t, c, adminToken)
	if a.code != http.StatusSeeOther || a.hdr.Get("Location") != "/" {
		t.Fatalf("right token = %d to %q, want 303 to /", a.code, a.hdr.Get("Location"))
	}
	sc := a.hdr.Get("Set-Cookie")
	for _, want := range []string{api.SessionCookie + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Fatalf("Set-Cookie = %q, want %q in it", sc, want)
		}
	}
	a = do(t, c, "GET", e.url+"/", nil, "")
	if a.code != 200 || !strings.Contains(a.body, `id="live-version"`) {
		t.Fatalf("GET / logged in = %d, want the dashboard:\n%s", a.code, a.body)
	}
	if strings.Contains(a.body, adminToken) {
		t.Fatalf("the dashboard page holds the admin token")
	}

	// The page's CSRF token lets the session act through the API.
	csrf := csrfOf(t, a.body)
	a = do(t, c, "POST", e.url+"/api/v1/releases/current/promote", http.Header{api.CSRFHeader: {csrf}}, "")
	if a.code != 200 || len(e.ctl.promoted) != 1 || e.ctl.promoted[0] != "dashboard:admin" {
		t.Fatalf("promote from the page = %d, actors %q; want 200 as dashboard:admin", a.code, e.ctl.promoted)
	}
}

func TestHandler_LoginNamedToken(t *testing.T) {
	e := newEnv(t, &fakeController{})
	c := browser(t)
	if a := e.login(t, c, bobToken); a.code != http.StatusSeeOther {
		t.Fatalf("login as bob = %d, want 303", a.code)
	}
	a := do(t, c, "GET", e.url+"/", nil, "")
	if !strings.Contains(a.body, `<b id="user">bob</b>`) || strings.Contains(a.body, bobToken) {
		t.Fatalf("the page should name bob and not hold his token:\n%s", a.body)
	}
	csrf := csrfOf(t, a.body)
	do(t, c, "POST", e.url+"/api/v1/releases/current/promote", http.Header{api.CSRFHeader: {csrf}}, "")
	if len(e.ctl.promoted) != 1 || e.ctl.promoted[0] != "dashboard:bob" {
		t.Fatalf("actors = %q, want dashboard:bob", e.ctl.promoted)
	}
}

func TestHandler_LoginFromAnotherOrigin(t *testing.T) {
	e := newEnv(t, &fakeController{})
	c := browser(t)
	hdr := http.Header{"Content-Type": formHeader["Content-Type"], "Origin": {"http://evil.example"}}
	a := do(t, c, "POST", e.url+"/login", hdr, url.Values{"token": {adminToken}}.Encode())
	if a.code != http.StatusForbidden || a.hdr.Get("Set-Cookie") != "" {
		t.Fatalf("cross-origin login = %d, Set-Cookie %q; want 403 and no cookie", a.code, a.hdr.Get("Set-Cookie"))
	}
}

func TestHandler_LoginRateLimit(t *testing.T) {
	e := newEnv(t, &fakeController{})
	e.dash.MaxLoginFailures = 3
	c := browser(t)
	for i := range 3 {
		if a := e.login(t, c, "wrong"); a.code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d, want 401", i+1, a.code)
		}
	}
	a := e.login(t, c, adminToken)
	if a.code != http.StatusTooManyRequests || a.hdr.Get("Retry-After") == "" || a.hdr.Get("Set-Cookie") != "" {
		t.Fatalf("login after 3 failures = %d (Retry-After %q), want 429 without a cookie", a.code, a.hdr.Get("Retry-After"))
	}
	if !strings.Contains(a.body, "Too many failed logins") {
		t.Fatalf("429 page does not say why:\n%s", a.body)
	}

	// Once the window has passed, the client may try again.
	e.dash.mu.Lock()
	for _, f := range e.dash.failures {
		f.since = f.since.Add(-e.dash.window())
	}
	e.dash.mu.Unlock()
	if a := e.login(t, c, adminToken); a.code != http.StatusSeeOther {
		t.Fatalf("login after the window = %d, want 303", a.code)
	}
}

func TestHandler_Logout(t *testing.T) {
	e := newEnv(t, &fakeController{})
	c := browser(t)
	e.login(t, c, adminToken)
	page := do(t, c, "GET", e.url+"/", nil, "").body
	csrf := csrfOf(t, page)

	if a := do(t, c, "POST", e.url+"/logout", formHeader, ""); a.code != http.StatusForbidden {
		t.Fatalf("logout without CSRF = %d, want 403", a.code)
	}
	if a := do(t, c, "GET", e.url+"/", nil, ""); !strings.Contains(a.body, `id="live-version"`) {
		t.Fatalf("still logged in after a refused logout? got the login page")
	}
	a := do(t, c, "POST", e.url+"/logout", formHeader, url.Values{"csrf": {csrf}}.Encode())
	if a.code != http.StatusSeeOther {
		t.Fatalf("logout = %d, want 303", a.code)
	}
	if a := do(t, c, "GET", e.url+"/", nil, ""); !strings.Contains(a.body, `id="login-form"`) {
		t.Fatalf("after logout GET / is not the login page")
	}
}

func TestHandler_Static(t *testing.T) {
	e := newEnv(t, &fakeController{})
	c := browser(t)
	js := e.dash.assets["app.js"]
	tests := []struct {
		path, ctype, cache string
		code               int
	}{
		{"/static/app.js?v=" + js.hash, "text/javascript", "immutable", 200},
		{"/static/app.js", "text/javascript", "no-cache", 200},
		{"/static/app.css", "text/css", "no-cache", 200},
		{"/static/icon.svg", "image/svg+xml", "no-cache", 200},
		{"/static/nope.js", "", "", 404},
		{"/static/..%2fdashboard.go", "", "", 404},
	}
	for _, tt := range tests {
		a := do(t, c, "GET", e.url+tt.path, nil, "")
		if a.code != tt.code {
			t.Fatalf("GET %s = %d, want %d", tt.path, a.code, tt.code)
		}
		if tt.code != 200 {
			continue
		}
		if !strings.HasPrefix(a.hdr.Get("Content-Type"), tt.ctype) || !strings.Contains(a.hdr.Get("Cache-Control"), tt.cache) {
			t.Fatalf("GET %s: Content-Type %q, Cache-Control %q; want %s, %s", tt.path, a.hdr.Get("Content-Type"), a.hdr.Get("Cache-Control"), tt.ctype, tt.cache)
		}
	}
	// The page links the assets by content hash, so a new binary's script is never stale.
	e.login(t, c, adminToken)
	if page := do(t, c, "GET", e.url+"/", nil, "").body; !strings.Contains(page, "/static/app.js?v="+js.hash) {
		t.Fatalf("the page does not link app.js?v=%s", js.hash)
	}
}

// Scripts in the page: only the external one and the JSON block (the CSP forbids inline ones).
func TestHandler_NoInlineScript(t *testing.T) {
	e := newEnv(t, &fakeController{})
	c := browser(t)
	e.login(t, c, adminToken)
	page := do(t, c, "GET", e.url+"/", nil, "").body
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(m, ` src="/static/`) && !strings.Contains(m, `type="application/json"`) {
			t.Fatalf("inline script tag %s", m)
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+=`).MatchString(page) || strings.Contains(page, ` style="`) {
		t.Fatalf("the page has inline handlers or styles, which the CSP blocks")
	}
}

func ptr[T any](v T) *T { return &v }

func TestHandler_Render(t *testing.T) {
	t0 := time.Now().Add(-time.Minute).UTC()
	released, rolledBack := teal.OutcomeReleased, teal.OutcomeRolledBack
	blueEnv := teal.EnvStatus{
		Environment: teal.Environment{Color: teal.Blue, Version: "v1", Digest: "sha256:0123456789abcdef0123", State: teal.EnvLive, Since: t0,
			Instances: []teal.Instance{{Color: teal.Blue, Index: 0, Addr: "127.0.0.1:4001"}, {Color: teal.Blue, Index: 1, Addr: "127.0.0.1:4002"}}},
		Health:   []teal.InstanceHealth{{Index: 0, Healthy: true}, {Index: 1, LastError: "connection refused"}},
		Requests: 1234, Errors: 5, OpenConnections: 3,
	}
	greenEnv := teal.EnvStatus{Environment: teal.Environment{Color: teal.Green, Version: "v2", State: teal.EnvReady, Since: t0}}
	steps := []teal.Step{
		{Name: "launch", State: teal.StepDone, Started: t0, Finished: ptr(t0.Add(2 * time.Second))},
		{Name: "health", State: teal.StepDone, Started: t0.Add(2 * time.Second), Finished: ptr(t0.Add(3 * time.Second))},
		{Name: "gate", State: teal.StepRunning, Started: t0.Add(3 * time.Second)},
	}
	tests := []struct {
		name string
		st   *teal.Status
		want []string // substrings of the page
		not  []string
	}{
		{
			name: "nothing released yet",
			st:   &teal.Status{App: "shop"},
			want: []string{`<span id="live-version" class="mono">—</span>`, `no releases yet`, `id="release-btn" data-action="promote" type="button" disabled`,
				`id="rollback-btn" data-action="rollback" type="button" disabled`, `id="abort-btn" data-action="abort" type="button" disabled`,
				`data-blue="0" data-green="0"`},
		},
		{
			name: "awaiting release",
			st: &teal.Status{App: "shop", Live: &teal.ColorStatus{Color: teal.Blue, Version: "v1", State: teal.EnvLive},
				Traffic: teal.All(teal.Blue), Environments: []teal.EnvStatus{blueEnv, greenEnv},
				Release: &teal.Release{ID: 2, Version: "v2", Color: teal.Green, From: teal.Blue, Phase: teal.PhaseAwaitingRelease, Actor: "cli:alice", Created: t0, Steps: steps}},
			want: []string{`<span id="live-version" class="mono">v1</span>`, `data-phase="awaiting-release" data-outcome="">awaiting-release</span>`,
				`id="release-btn" data-action="promote" type="button">`, `id="abort-btn" data-action="abort" type="button">`,
				`id="rollback-btn" data-action="rollback" type="button" disabled`,
				`data-blue="100" data-green="0"`, `sha256:0123456789ab<`, `data-health="healthy"`, `data-health="unhealthy" title="connection refused"`,
				`<span class="mono addr">127.0.0.1:4002</span>`, `<span data-field="requests">1234</span>`, `<span class="name mono">launch</span>`,
				`<span class="name mono">launch</span><svg class="sbar" viewBox="0 0 100 6" preserveAspectRatio="none"><rect x="0.0" y="0" width="3.3" height="6"/></svg><span class="dur mono">2.0s</span>`,
				`<span class="name mono">health</span><svg class="sbar" viewBox="0 0 100 6" preserveAspectRatio="none"><rect x="3.3" y="0" width="1.7" height="6"/></svg>`, `started by cli:alice`},
		},
		{
			name: "released",
			st: &teal.Status{App: "shop", Live: &teal.ColorStatus{Color: teal.Green, Version: "v2", State: teal.EnvLive},
				Traffic: teal.All(teal.Green), Environments: []teal.EnvStatus{blueEnv, greenEnv},
				Release: &teal.Release{ID: 2, Version: "v2", Color: teal.Green, From: teal.Blue, Phase: teal.PhaseReleased, Outcome: &released, Created: t0, Finished: ptr(t0.Add(90 * time.Second))}},
			want: []string{`data-outcome="released">released</span>`, `id="rollback-btn" data-action="rollback" type="button">`,
				`id="release-btn" data-action="promote" type="button" disabled`, `data-blue="0" data-green="100"`, `1m 30s`},
		},
		{
			name: "rolled back",
			st: &teal.Status{App: "shop", Live: &teal.ColorStatus{Color: teal.Blue, Version: "v1", State: teal.EnvLive},
				Traffic: teal.All(teal.Blue), Environments: []teal.EnvStatus{blueEnv, greenEnv},
				Release: &teal.Release{ID: 2, Version: "v2", Color: teal.Green, From: teal.Blue, Phase: teal.PhaseReleased, Outcome: &rolledBack, Error: "rolled back by dashboard:admin", Created: t0}},
			want: []string{`data-outcome="rolled-back">rolled-back</span>`, `id="release-btn" data-action="promote" type="button">`,
				`id="rollback-btn" data-action="rollback" type="button" disabled`, `rolled back by dashboard:admin`},
		},
		{
			name: "first release cannot be rolled back",
			st: &teal.Status{App: "shop", Live: &teal.ColorStatus{Color: teal.Blue, Version: "v1", State: teal.EnvLive},
				Traffic: teal.All(teal.Blue), Environments: []teal.EnvStatus{blueEnv},
				Release: &teal.Release{ID: 1, Version: "v1", Color: teal.Blue, Phase: teal.PhaseReleased, Outcome: &released, Created: t0}},
			want: []string{`id="rollback-btn" data-action="rollback" type="button" disabled`},
		},
		{
			name: "markup in data is escaped",
			st: &teal.Status{App: "<b>shop</b>", Release: &teal.Release{ID: 3, Version: `v3"><script>alert(1)</script>`, Color: teal.Green,
				Phase: teal.PhaseProvisioning, Actor: "cli:</script><script>x()</script>", Created: t0}},
			want: []string{`&lt;b&gt;shop&lt;/b&gt;`, `v3&#34;&gt;&lt;script&gt;`, `\u003c/script\u003e`},
			not:  []string{`<script>alert(1)`, `</script><script>x()`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.st
			e := newEnv(t, &fakeController{
				status: func() (*teal.Status, error) { return st, nil },
				releases: func() ([]*teal.Release, error) {
					if st.Release == nil {
						return nil, nil
					}
					return []*teal.Release{st.Release}, nil
				},
			})
			c := browser(t)
			e.login(t, c, adminToken)
			a := do(t, c, "GET", e.url+"/", nil, "")
			if a.code != 200 {
				t.Fatalf("GET / = %d:\n%s", a.code, a.body)
			}
			for _, w := range tt.want {
				if !strings.Contains(a.body, w) {
					t.Fatalf("the page lacks %q:\n%s", w, a.body)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(a.body, n) {
					t.Fatalf("the page holds %q unescaped", n)
				}
			}
			// The JSON block parses and carries the status for the script.
			m := regexp.MustCompile(`(?s)<script type="application/json" id="boot">(.*?)</script>`).FindStringSubmatch(a.body)
			if m == nil {
				t.Fatalf("no boot JSON in the page")
			}
			var b struct {
				CSRF   string       `json:"csrf"`
				Status *teal.Status `json:"status"`
			}
			if err := json.Unmarshal([]byte(m[1]), &b); err != nil {
				t.Fatalf("boot JSON: %v\n%s", err, m[1])
			}
			if b.CSRF == "" || b.Status == nil || b.Status.App != st.App {
				t.Fatalf("boot = %+v, want the CSRF token and the status of %q", b, st.App)
			}
		})
	}
}

func TestHandler_StatusError(t *testing.T) {
	e := newEnv(t, &fakeController{status: func() (*teal.Status, error) { return nil, errors.New("store is locked") }})
	c := browser(t)
	e.login(t, c, adminToken)
	a := do(t, c, "GET", e.url+"/", nil, "")
	if a.code != 200 || !strings.Contains(a.body, `id="status-error"`) || !strings.Contains(a.body, "store is locked") {
		t.Fatalf("GET / with a failing status = %d, want the page with the error:\n%s", a.code, a.body)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0ms"},
		{0, "0ms"},
		{340 * time.Millisecond, "340ms"},
		{4200 * time.Millisecond, "4.2s"},
		{59*time.Second + 940*time.Millisecond, "59.9s"},
		{3*time.Minute + 4*time.Second, "3m 04s"},
		{2*time.Hour + 5*time.Minute + 7*time.Second, "2h 05m"},
	}
	for _, tt := range tests {
		if got := duration(tt.d); got != tt.want {
			t.Fatalf("duration(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Now()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "just now"},
		{42 * time.Second, "42s ago"},
		{5 * time.Minute, "5m ago"},
		{3 * time.Hour, "3h ago"},
		{72 * time.Hour, "3d ago"},
	}
	for _, tt := range tests {
		if got := ago(now, now.Add(-tt.d)); got != tt.want {
			t.Fatalf("ago(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestShortDigest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"sha256:0123456789abcdef", "sha256:0123456789ab"},
		{"sha256:0123", "sha256:0123"},
		{"0123456789abcdef", "0123456789ab"},
	}
	for _, tt := range tests {
		if got := shortDigest(tt.in); got != tt.want {
			t.Fatalf("shortDigest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
