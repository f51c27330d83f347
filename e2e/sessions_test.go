package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// me asks the sample app who the client is logged in as, and which version answered.
func me(t *testing.T, c *http.Client, addr string) (user, version string) {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/me")
	if err != nil {
		t.Fatalf("GET /me: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ User, Version string }
	if resp.StatusCode != http.StatusOK {
		return "", ""
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /me: %v", err)
	}
	return body.User, body.Version
}

// TestSessions_SurviveTheSwitch: with the session store in a real Redis, a user logged in on
// blue is still logged in on green after an instant switch and after weighted steps; teal
// checks the store before the gate and refuses a release when it cannot reach it.
func TestSessions_SurviveTheSwitch(t *testing.T) {
	redisURL := "redis://" + testutil.Redis(t) + "/3"
	for _, strategy := range []string{"switch", "weighted"} {
		t.Run(strategy, func(t *testing.T) {
			extra := fmt.Sprintf(`  strategy: %s
sessions:
  redis: %s
`, strategy, redisURL)
			if strategy == "weighted" {
				extra = strings.Replace(extra, "sessions:", "  steps: [50]\n  step_hold: 10m\nsessions:", 1)
			}
			h := newHarness(t, options{extra: extra})
			env := "REDIS_URL=" + redisURL
			h.push("v1", h.artifact("v1", "v1", env, ""))
			h.push("v2", h.artifact("v2", "v2", env, ""))
			h.release("v1")

			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
			resp, err := c.PostForm("http://"+h.listen+"/login", url.Values{"user": {"alice"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login = %d", resp.StatusCode)
			}
			if u, v := me(t, c, h.listen); u != "alice" || v != "v1" {
				t.Fatalf("on blue: user %q on %s, want alice on v1", u, v)
			}

			ctx := context.Background()
			if _, err := h.client.Deploy(ctx, "v2"); err != nil {
				t.Fatal(err)
			}
			rel := h.waitRelease("v2 at the gate", atGate)
			if !hasStep(rel, "sessions") {
				t.Fatalf("steps %v: want the session store checked before the gate", stepNames(rel))
			}
			if _, err := h.client.Promote(ctx); err != nil {
				t.Fatal(err)
			}
			if strategy == "weighted" {
				waitFor(t, 30*time.Second, "green at 50%", func() bool { return h.status().Traffic.Green == 50 })
				seen := map[string]bool{}
				for range 20 {
					u, v := me(t, c, h.listen)
					if u != "alice" {
						t.Fatalf("at 50%%: user %q on %s, want alice still logged in", u, v)
					}
					seen[v] = true
				}
				if _, err := h.client.PromoteFull(ctx); err != nil {
					t.Fatal(err)
				}
			}
			rel = h.waitRelease("v2 released", ended)
			if *rel.Outcome != teal.OutcomeReleased {
				t.Fatalf("release ended %s: %s", *rel.Outcome, rel.Error)
			}
			for range 5 {
				if u, v := me(t, c, h.listen); u != "alice" || v != "v2" {
					t.Fatalf("after the switch: user %q on %s, want alice still logged in, on v2", u, v)
				}
			}
		})
	}
}

// TestSessions_UnreachableStoreFailsRelease: a session store nobody answers at fails the
// release before the gate, naming the store and not its password.
func TestSessions_UnreachableStoreFailsRelease(t *testing.T) {
	dead := testutil.DeadAddr(t)
	h := newHarness(t, options{extra: "sessions:\n  redis: redis://:s3cret@" + dead + "/0\n"})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	if _, err := h.client.Deploy(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	rel := h.waitRelease("v1 ended", ended)
	if *rel.Outcome != teal.OutcomeFailed || !strings.Contains(rel.Error, "session store") || !strings.Contains(rel.Error, dead) {
		t.Fatalf("release ended %s: %q; want failed, naming the session store at %s", *rel.Outcome, rel.Error, dead)
	}
	if strings.Contains(rel.Error, "s3cret") || strings.Contains(h.serverLog(), "s3cret") {
		t.Fatal("the session store's password shows in the error or the server log")
	}
}

func hasStep(r *teal.Release, name string) bool {
	for _, s := range r.Steps {
		if s.Name == name {
			return true
		}
	}
	return false
}

func stepNames(r *teal.Release) []string {
	var n []string
	for _, s := range r.Steps {
		n = append(n, s.Name)
	}
	return n
}
