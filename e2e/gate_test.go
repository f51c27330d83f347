package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
	"teal.dev/teal/internal/load"
)

// smokeConfig checks the home page and runs a command that sees the preview URL.
const smokeConfig = `verify:
  smoke:
    - name: home page
      request: GET /
      expect: { status: 200, body_contains: "shop" }
    - name: version
      request: GET /version
      expect: { json: { "$.color": "%s" } }
  command: ["sh", "-c", "echo smoke command saw $TEAL_PREVIEW_URL for {version}"]
  timeout: 10s
`

// TestGate_SmokeFailureFailsAtVerifying: a version whose / answers 500 fails in the verifying
// phase, with the check, what was expected and what came back; green is torn down and live
// traffic never notices.
func TestGate_SmokeFailureFailsAtVerifying(t *testing.T) {
	h := newHarness(t, options{extra: strings.Replace(smokeConfig, "%s", "blue", 1)})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	rel1 := h.release("v1") // the first release passes the same checks on blue
	_, events, err := h.client.Release(context.Background(), rel1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out := eventAttr(events, "output"); !strings.Contains(out, `smoke "home page" GET / → 200`) || !strings.Contains(out, "smoke command saw http://"+h.prev+" for v1") {
		t.Fatalf("release #%d's smoke output = %q: want each check and the command's output", rel1.ID, out)
	}

	h.push("v2", h.artifact("v2", "v2", "SAMPLE_STATUS_ROOT=500", ""))
	l := startLoad(h.listen)
	if _, err := h.client.Deploy(context.Background(), "v2"); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	rel := h.waitRelease("release of v2 ended", ended)
	hits := l.Stop()
	if *rel.Outcome != teal.OutcomeFailed || rel.Phase != teal.PhaseVerifying {
		t.Fatalf("release ended %s at %s (%s), want failed at verifying", *rel.Outcome, rel.Phase, rel.Error)
	}
	for _, w := range []string{`smoke check "home page" (GET /)`, "want status 200, got 500", "shop v2"} {
		if !strings.Contains(rel.Error, w) {
			t.Errorf("error %q does not say %q", rel.Error, w)
		}
	}
	st := h.status()
	if st.Live == nil || st.Live.Version != "v1" || st.Traffic.Blue != 100 {
		t.Fatalf("live after the failed smoke test: %+v %+v, want blue v1 at 100%%", st.Live, st.Traffic)
	}
	for _, e := range st.Environments {
		if e.Color == teal.Green && (len(e.Instances) != 0 || e.State != teal.EnvTerminated) {
			t.Fatalf("green after the failed smoke test: %s with %d instances, want torn down", e.State, len(e.Instances))
		}
	}
	for _, x := range hits {
		if x.Err != nil {
			t.Fatalf("a live request failed during the failed release: %v", x.Err)
		}
	}
	if len(hits) == 0 {
		t.Fatal("no live requests were made")
	}
}

func eventAttr(events []*teal.Event, key string) string {
	var b strings.Builder
	for _, e := range events {
		if s, ok := e.Attrs[key].(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

// TestGate_PostCheckRollsBack: after the switch, green's error rate rises; the post-switch
// analysis rolls back to blue by itself, says why, and the rollback fails no request.
func TestGate_PostCheckRollsBack(t *testing.T) {
	h := newHarness(t, options{extra: `  post_check: 20s
  analysis: { max_error_rate: 5%, min_requests: 30, max_p99: 5s }
`})
	rel, hits, broke, back := failingGreen(t, h, "traffic on green, post-check running", func(st *teal.Status) bool {
		return st.Live != nil && st.Live.Color == teal.Green && st.Release != nil && st.Release.Outcome == nil
	})
	if *rel.Outcome != teal.OutcomeRolledBack || !strings.Contains(rel.Error, "post_check analysis failed: error rate") ||
		!strings.Contains(rel.Error, "release.analysis.max_error_rate 5%") {
		t.Fatalf("release ended %s: %q; want rolled-back by the post_check analysis, saying why", *rel.Outcome, rel.Error)
	}
	st := h.status()
	if st.Live == nil || st.Live.Color != teal.Blue || st.Traffic.Blue != 100 {
		t.Fatalf("after the automatic rollback: live %+v, traffic %+v; want blue at 100%%", st.Live, st.Traffic)
	}
	for _, e := range st.Environments {
		if e.Color == teal.Green && len(e.Instances) == 0 {
			t.Errorf("green was torn down by the rollback; it should stay warm for teal promote")
		}
	}
	onlyGreens500s(t, hits, broke, back)
}

// failingGreen releases v1, deploys v2 (whose / answers 500 once a file exists) under steady
// load, promotes it, waits until the status satisfies during, makes green fail, and waits until
// the release ends. It returns the release, the load's answers, when green broke and when the
// release ended.
func failingGreen(t *testing.T, h *harness, what string, during func(*teal.Status) bool) (*teal.Release, []load.Hit, time.Time, time.Time) {
	t.Helper()
	flag := filepath.Join(h.dir, "green-fails")
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "SAMPLE_FAIL_FILE="+flag, ""))
	h.release("v1")
	l := startLoad(h.listen)
	ctx := context.Background()
	if _, err := h.client.Deploy(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	h.waitRelease("v2 at the gate", atGate)
	if _, err := h.client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, what, func() bool { return during(h.status()) })
	waitMore(t, l, 50) // green serves well for a while
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	broke := time.Now()
	rel := h.waitRelease("v2 rolled back", ended)
	back := time.Now()
	waitMore(t, l, 50)
	return rel, l.Stop(), broke, back
}

// onlyGreens500s checks that the only failed requests are green's own 500s after it broke,
// and that requests started after the rollback were answered by v1.
func onlyGreens500s(t *testing.T, hits []load.Hit, broke, back time.Time) {
	t.Helper()
	var green500, after int
	for _, x := range hits {
		switch {
		case x.Code == http.StatusInternalServerError && x.Start.After(broke.Add(-time.Second)):
			green500++ // green's own errors: what the analysis saw
		case x.Err != nil:
			t.Errorf("a request failed other than by green's own 500s: %v (started %s after green broke)", x.Err, x.Start.Sub(broke))
		case x.Start.After(back) && x.Version != "" && x.Version != "v1":
			t.Errorf("%s started after the rollback was answered by %s", x.Path, x.Version)
		case x.Start.After(back):
			after++
		}
	}
	if green500 == 0 || after == 0 {
		t.Fatalf("%d answers were green's 500s and %d came after the rollback: the test saw nothing", green500, after)
	}
	t.Logf("%d requests; green answered %d with 500; rolled back %s after it broke", len(hits), green500, back.Sub(broke).Round(time.Millisecond))
}

// TestGate_PromoteRefusedOutsideWindow: a release window that is closed now refuses the
// promotion with 422 and says when it opens; rollback stays possible.
func TestGate_PromoteRefusedOutsideWindow(t *testing.T) {
	// A window of one minute, starting in two hours, in UTC: closed now.
	open := time.Now().UTC().Add(2 * time.Hour)
	rule := strings.ToLower(open.Format("Mon")) + " " + open.Format("15:04") + "-" + open.Add(time.Minute).Format("15:04")
	h := newHarness(t, options{extra: "  window: { allow: [\"" + rule + "\"], timezone: UTC }\n"})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.release("v1") // the first release has no gate
	h.push("v2", h.artifact("v2", "v2", "", ""))
	ctx := context.Background()
	if _, err := h.client.Deploy(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	h.waitRelease("v2 at the gate", atGate)
	_, err := h.client.Promote(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !strings.Contains(ae.Message, "outside release.window "+rule) ||
		!strings.Contains(ae.Message, "it opens at") {
		t.Fatalf("promote outside the window = %v, want 422 naming the window and when it opens", err)
	}
	if st := h.status(); st.Release.Phase != teal.PhaseAwaitingRelease || st.Live.Color != teal.Blue {
		t.Fatalf("after the refusal: phase %s, live %s; want still at the gate on blue", st.Release.Phase, st.Live.Color)
	}
	if _, err := h.client.Abort(ctx); err != nil {
		t.Fatalf("abort: %v", err)
	}
}

// TestNotify_WebhookGetsEveryPhase: notify.webhooks receives a Slack-compatible JSON POST for
// each phase of a release, in order.
func TestNotify_WebhookGetsEveryPhase(t *testing.T) {
	var (
		mu   sync.Mutex
		msgs []map[string]any
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	h := newHarness(t, options{extra: "notify:\n  webhooks: [\"" + hook.URL + "/hook/s3cret\"]\n"})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.release("v1")
	var texts []string
	waitFor(t, 20*time.Second, "the released message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		texts = texts[:0]
		for _, m := range msgs {
			if s, _ := m["text"].(string); s != "" {
				texts = append(texts, s)
			}
		}
		return len(texts) > 0 && strings.Contains(texts[len(texts)-1], "released")
	})
	joined := strings.Join(texts, "\n")
	for _, want := range []string{"provisioning", "verifying", "switching", "released"} {
		if !strings.Contains(joined, want) {
			t.Errorf("webhook messages %q: none says %s", joined, want)
		}
	}
	if !strings.Contains(texts[0], "["+h.app+"]") {
		t.Errorf("first message %q does not name the app", texts[0])
	}
	if strings.Contains(h.serverLog(), "s3cret") {
		t.Error("the webhook URL's secret path shows in the server log")
	}
}
