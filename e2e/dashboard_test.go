package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"image/png"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

// chromiumPath is Debian's Chromium, which scripts/deps.sh installs for make test.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless Chromium of its own (new profile, nothing fetched from the
// internet) and returns a tab's context; it stops with the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is not installed (Debian chromium; scripts/deps.sh test installs it): %v", err)
	}
	var out syncBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&out),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output (tail):\n%s", out.tail(4000))
		}
	})
	// The first action starts the browser; it must not run under a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// syncBuffer collects Chromium's output, written from another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// browserDo runs actions in the tab with a deadline.
func browserDo(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitDOM polls a JavaScript condition in the page until it holds.
func waitDOM(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	})
}

// confirm clicks an action's button once it is enabled, then the dialog's confirmation.
func confirm(t *testing.T, ctx context.Context, button string) {
	t.Helper()
	waitDOM(t, ctx, 30*time.Second, button+" enabled", `!document.querySelector('`+button+`').disabled`)
	browserDo(t, ctx, "click "+button, chromedp.Click(chromedp.CSS(button)))
	waitDOM(t, ctx, 10*time.Second, "the confirmation dialog", `document.querySelector('#confirm').open`)
	browserDo(t, ctx, "confirm "+button, chromedp.Click(chromedp.CSS("#confirm-yes")))
}

// trafficLoad sends a steady trickle of requests to the live address, for the charts.
func trafficLoad(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if resp, err := client.Get("http://" + addr + "/"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
}

// TestDashboard_Browser drives the dashboard in a real Chromium: log in, see blue live, watch a
// release started from the CLI arrive without a reload, click Release, watch the traffic bar
// move to green, click Rollback.
func TestDashboard_Browser(t *testing.T) {
	h := newHarness(t, options{})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	trafficLoad(t, h.listen)
	shots := os.Getenv("TEAL_SCREENSHOT_DIR")

	b := newBrowser(t)
	base := "http://" + h.admin
	browserDo(t, b, "open the dashboard", chromedp.Navigate(base+"/"))
	waitDOM(t, b, 10*time.Second, "the login form", `!!document.querySelector('#login-form')`)
	browserDo(t, b, "type the token", chromedp.SendKeys(chromedp.CSS("#token"), h.client.Token))
	tctx, cancel := context.WithTimeout(b, 30*time.Second)
	resp, err := chromedp.RunResponse(tctx, chromedp.Click(chromedp.CSS("#login-btn")))
	cancel()
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("after login the page answered %d, want 200", resp.Status)
	}
	waitDOM(t, b, 10*time.Second, "blue live with v1",
		`document.querySelector('#live-version')?.textContent === 'v1' && document.querySelector('#live-color').textContent === 'blue'`)
	waitDOM(t, b, 10*time.Second, "the event stream connected", `document.querySelector('#conn').dataset.state === 'live'`)
	eval[int](t, b, `window.__noReload = 1`)

	if shots != "" {
		// For the screenshot: let the charts gather a little history first.
		waitDOM(t, b, 60*time.Second, "a chart of blue's requests",
			`document.querySelector('#color-blue [data-chart="rps"] polyline.line').getAttribute('points').split(' ').length >= 10`)
	}

	// A release started from the CLI, as a separate process, shows up live.
	out, err := exec.Command(tealBin, "deploy", "v2", "--server", base, "--token", h.client.Token).CombinedOutput()
	if err != nil {
		t.Fatalf("teal deploy v2: %v\n%s", err, out)
	}
	waitDOM(t, b, 30*time.Second, "the page showing v2 awaiting release",
		`(() => { const p = document.querySelector('#phase');
		  return p.dataset.phase === 'awaiting-release' && p.dataset.outcome === '' &&
		    document.querySelector('#release-version').textContent === 'v2' &&
		    document.querySelector('#color-green [data-field="version"]').textContent === 'v2'; })()`)
	if got := eval[int](t, b, `document.querySelectorAll('#steps li.step').length`); got < 3 {
		t.Fatalf("the timeline shows %d steps, want the release's steps", got)
	}

	confirm(t, b, "#release-btn")
	waitDOM(t, b, 30*time.Second, "the traffic bar on green",
		`document.querySelector('#traffic-bar').dataset.green === '100' && document.querySelector('#traffic-bar').dataset.blue === '0'`)
	waitDOM(t, b, 30*time.Second, "v2 released and live on green",
		`document.querySelector('#phase').dataset.outcome === 'released' && document.querySelector('#live-version').textContent === 'v2'`)
	if st := h.status(); st.Live == nil || st.Live.Color != teal.Green || st.Traffic.Green != 100 {
		t.Fatalf("after Release the server says live %+v traffic %+v, want green 100", st.Live, st.Traffic)
	}
	waitDOM(t, b, 10*time.Second, "the history with both releases", `document.querySelectorAll('#history tr[data-id]').length === 2`)

	if shots != "" {
		waitDOM(t, b, 60*time.Second, "a chart of green's requests",
			`document.querySelector('#color-green [data-chart="rps"] polyline.line').getAttribute('points').split(' ').length >= 8`)
		waitDOM(t, b, 10*time.Second, "the notice gone", `document.querySelector('#action-ok').hidden`)
	}
	shot := screenshot(t, b)
	if img, err := png.Decode(bytes.NewReader(shot)); err != nil || img.Bounds().Dx() != 1280 || img.Bounds().Dy() < 700 {
		t.Fatalf("screenshot: %v, want a PNG 1280 wide of the whole page", err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "dashboard.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if shots != "" {
		if err := os.WriteFile(filepath.Join(shots, "dashboard.png"), shot, 0o644); err != nil {
			t.Fatalf("write the screenshot to TEAL_SCREENSHOT_DIR: %v", err)
		}
	}

	confirm(t, b, "#rollback-btn")
	waitDOM(t, b, 30*time.Second, "the traffic bar back on blue",
		`document.querySelector('#traffic-bar').dataset.blue === '100' && document.querySelector('#traffic-bar').dataset.green === '0'`)
	waitDOM(t, b, 30*time.Second, "the release rolled back",
		`document.querySelector('#phase').dataset.outcome === 'rolled-back' && document.querySelector('#live-version').textContent === 'v1'`)
	if msg := eval[string](t, b, `document.querySelector('#action-error').hidden ? '' : document.querySelector('#action-error').textContent`); msg != "" {
		t.Fatalf("the page shows an error: %s", msg)
	}

	// Who acted is recorded: the page's clicks as dashboard:admin.
	rel := h.status().Release
	_, evs, err := h.client.Release(context.Background(), rel.ID)
	if err != nil {
		t.Fatalf("release #%d: %v", rel.ID, err)
	}
	if !hasActor(evs, "dashboard:admin", "promoted") || !hasActor(evs, "dashboard:admin", "rolled back") {
		t.Fatalf("release #%d events lack dashboard:admin's promote and rollback:\n%s", rel.ID, eventLines(evs))
	}

	// A refusal is shown with the API's error and hint: the page offers to release v2 again,
	// but by the time it is confirmed the CLI has done so.
	waitDOM(t, b, 30*time.Second, "Release enabled again", `!document.querySelector('#release-btn').disabled`)
	browserDo(t, b, "click Release", chromedp.Click(chromedp.CSS("#release-btn")))
	waitDOM(t, b, 10*time.Second, "the confirmation dialog", `document.querySelector('#confirm').open`)
	if out, err := exec.Command(tealBin, "promote", "--wait", "--server", base, "--token", h.client.Token).CombinedOutput(); err != nil {
		t.Fatalf("teal promote: %v\n%s", err, out)
	}
	h.waitRelease("v2 released again", outcomeIs(teal.OutcomeReleased))
	browserDo(t, b, "confirm Release", chromedp.Click(chromedp.CSS("#confirm-yes")))
	waitDOM(t, b, 10*time.Second, "the refusal shown", `!document.querySelector('#action-error').hidden`)
	msg := eval[string](t, b, `document.querySelector('#action-error .msg').textContent + ' | ' + document.querySelector('#action-error .hint').textContent`)
	if !strings.Contains(msg, "no release is waiting to be promoted") || !strings.Contains(msg, "teal deploy") {
		t.Fatalf("the page shows %q, want the API's 409 error and its hint", msg)
	}
	if got := eval[int](t, b, `window.__noReload || 0`); got != 1 {
		t.Fatalf("window.__noReload = %d: the page reloaded", got)
	}
}

// screenshot captures the whole page at 1280 px wide.
func screenshot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	height := eval[int](t, ctx, `Math.ceil(document.documentElement.scrollHeight)`)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(1280, int64(max(height, 900)))); err != nil {
		t.Fatalf("size the viewport: %v", err)
	}
	shot, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(shot) == 0 {
		t.Fatalf("screenshot is empty")
	}
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("size the viewport back: %v", err)
	}
	return shot
}

func hasActor(evs []*teal.Event, actor, msg string) bool {
	for _, ev := range evs {
		if ev.Actor == actor && strings.Contains(ev.Message, msg) {
			return true
		}
	}
	return false
}

func eventLines(evs []*teal.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s %s %q\n", ev.Kind, ev.Actor, ev.Message)
	}
	return b.String()
}

// session is a dashboard login made over plain HTTP: its cookie jar and the page's CSRF token.
type session struct {
	client *http.Client
	csrf   string
	page   string
}

func loginHTTP(t *testing.T, base, token string) *session {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(base+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(b))
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("log in: %d, want the dashboard with a CSRF token:\n%s", resp.StatusCode, b)
	}
	return &session{client: c, csrf: html.UnescapeString(m[1]), page: string(b)}
}

// post makes a state-changing call with the session's cookie and the given headers.
func (s *session) post(t *testing.T, u string, hdr map[string]string) (int, api.ErrorBody) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	if resp.StatusCode >= 400 {
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			t.Fatalf("POST %s: %d without a JSON error: %v", u, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, eb
}

// TestDashboard_Security checks the API's and the dashboard's refusals against the real server:
// no token, no CSRF token, another origin; and that no token leaks into the log, the status or
// the page.
func TestDashboard_Security(t *testing.T) {
	const ciToken = "ci-0123456789abcdef-token"
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# deploy robots\nci "+ciToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, options{extra: "tokens_file: " + tokens + "\n"})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	ctx := context.Background()
	base := "http://" + h.admin
	admin := h.client.Token

	// The API wants a token.
	code, body, err := get(h.admin, "/api/v1/status")
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("GET /api/v1/status without a token = %d, %v; want 401", code, err)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" {
		t.Fatalf("401 body = %q, want a JSON error", body)
	}

	// A named token acts as api:NAME.
	ci := api.NewClient(base, ciToken)
	if _, err := ci.Deploy(ctx, "v2"); err != nil {
		t.Fatalf("deploy v2 with the ci token: %v", err)
	}
	rel := h.waitRelease("v2 at the gate", atGate)
	if rel.Outcome != nil || rel.Actor != "api:ci" {
		t.Fatalf("release of v2: outcome %v actor %q, want awaiting-release by api:ci", rel.Outcome, rel.Actor)
	}

	s := loginHTTP(t, base, admin)
	promote := base + "/api/v1/releases/current/promote"
	stillAtGate := func(what string) {
		t.Helper()
		r := h.status().Release
		if r.ID != rel.ID || r.Phase != teal.PhaseAwaitingRelease || r.Outcome != nil || r.Promoted != nil {
			t.Fatalf("after %s the release is #%d %s (promoted %v), want #%d still awaiting release", what, r.ID, r.Phase, r.Promoted, rel.ID)
		}
	}
	tests := []struct {
		name string
		hdr  map[string]string
	}{
		{"no CSRF token", nil},
		{"wrong CSRF token", map[string]string{api.CSRFHeader: "x" + s.csrf}},
		{"another origin", map[string]string{api.CSRFHeader: s.csrf, "Origin": "http://evil.example"}},
		{"another referer", map[string]string{api.CSRFHeader: s.csrf, "Referer": "http://evil.example/x"}},
	}
	for _, tt := range tests {
		if code, eb := s.post(t, promote, tt.hdr); code != http.StatusForbidden || eb.Error == "" {
			t.Fatalf("promote with %s = %d %+v, want 403 with a JSON error", tt.name, code, eb)
		}
		stillAtGate(tt.name)
	}
	if code, eb := s.post(t, promote, map[string]string{api.CSRFHeader: s.csrf, "Origin": base}); code != http.StatusOK {
		t.Fatalf("promote with the CSRF token from the page's origin = %d %+v, want 200", code, eb)
	}
	h.waitRelease("v2 released", outcomeIs(teal.OutcomeReleased))

	// The named token logs in to the dashboard too, and acts as dashboard:ci.
	sci := loginHTTP(t, base, ciToken)
	if code, eb := sci.post(t, base+"/api/v1/rollback", map[string]string{api.CSRFHeader: sci.csrf}); code != http.StatusOK {
		t.Fatalf("rollback as ci from the dashboard = %d %+v, want 200", code, eb)
	}
	_, evs, err := h.client.Release(ctx, rel.ID)
	if err != nil {
		t.Fatalf("release #%d: %v", rel.ID, err)
	}
	if !hasActor(evs, "dashboard:admin", "promoted") || !hasActor(evs, "dashboard:ci", "rolled back") {
		t.Fatalf("release #%d events lack dashboard:admin's promote and dashboard:ci's rollback:\n%s", rel.ID, eventLines(evs))
	}

	// No token anywhere it could be read.
	status, err := json.Marshal(h.status())
	if err != nil {
		t.Fatal(err)
	}
	places := map[string]string{
		"the admin page":   s.page,
		"ci's page":        sci.page,
		"the status":       string(status),
		"the login page":   mustGet(t, base+"/"),
		"the script":       mustGet(t, base+"/static/app.js"),
		"the stylesheet":   mustGet(t, base+"/static/app.css"),
		"the server's log": fullLog(t, h),
	}
	for where, text := range places {
		for name, tok := range map[string]string{"admin": admin, "ci": ciToken} {
			if strings.Contains(text, tok) {
				t.Fatalf("%s holds the %s token", where, name)
			}
		}
	}
}

func mustGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", u, resp.StatusCode, err)
	}
	return string(b)
}

func fullLog(t *testing.T, h *harness) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
