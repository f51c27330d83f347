package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
)

// share sends n plain requests (no cookies: new clients each time) and returns the percentage
// answered by version v.
func share(t *testing.T, addr, v string, n int) float64 {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var (
		mu  sync.Mutex
		got int
		wg  sync.WaitGroup
	)
	per := n / 4
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					t.Errorf("GET /: %v", err)
					return
				}
				var buf [64]byte
				k, _ := resp.Body.Read(buf[:])
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET / = %d", resp.StatusCode)
					return
				}
				if f := strings.Fields(string(buf[:k])); len(f) >= 2 && f[1] == v {
					mu.Lock()
					got++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return 100 * float64(got) / float64(per*4)
}

// stickyClient is one browser: a cookie jar, and every version it was answered by.
type stickyClient struct {
	client   *http.Client
	versions []string
}

func (s *stickyClient) get(addr string) error {
	resp, err := s.client.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf [64]byte
	k, _ := resp.Body.Read(buf[:])
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET / = %d", resp.StatusCode)
	}
	if f := strings.Fields(string(buf[:k])); len(f) >= 2 {
		s.versions = append(s.versions, f[1])
	}
	return nil
}

// TestWeighted_StepsExactAndSticky: at 10% and 50% the new colour's measured share of 2,000
// new clients' requests is within 3 points of the weight; clients with a cookie never change
// colour while the split lasts; teal promote moves step by step, and the last step is all
// traffic.
func TestWeighted_StepsExactAndSticky(t *testing.T) {
	h := newHarness(t, options{extra: `  strategy: weighted
  steps: [10, 50]
  step_hold: 10m
  analysis: { min_requests: 20 }
`})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	ctx := context.Background()
	if _, err := h.client.Deploy(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	h.waitRelease("v2 at the gate", atGate)
	if _, err := h.client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	atWeight := func(w int) {
		waitFor(t, 30*time.Second, fmt.Sprintf("green at %d%%", w), func() bool {
			st := h.status()
			return st.Traffic.Green == w && st.Traffic.Blue == 100-w
		})
	}

	clients := make([]*stickyClient, 60)
	for i := range clients {
		jar, _ := cookiejar.New(nil)
		clients[i] = &stickyClient{client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	}
	round := func() {
		for _, c := range clients {
			if err := c.get(h.listen); err != nil {
				t.Fatalf("sticky client: %v", err)
			}
		}
	}

	for i, w := range []int{10, 50} {
		atWeight(w)
		for range 3 {
			round()
		}
		got := share(t, h.listen, "v2", 2000)
		t.Logf("at %d%%: v2 answered %.1f%% of 2,000 new clients' requests", w, got)
		if got < float64(w)-3 || got > float64(w)+3 {
			t.Errorf("at %d%% the new colour answered %.1f%% of 2,000 requests, want within 3 points", w, got)
		}
		if i == 0 {
			if _, err := h.client.Promote(ctx); err != nil { // to the next step
				t.Fatal(err)
			}
		}
	}
	first := map[string]int{}
	for i, c := range clients {
		for _, v := range c.versions {
			if v != c.versions[0] {
				t.Fatalf("sticky client %d changed colour mid-release: %v", i, c.versions)
			}
		}
		first[c.versions[0]]++
	}
	if first["v1"] == 0 || first["v2"] == 0 {
		t.Errorf("sticky clients by first version: %v; want both colours among 60 clients", first)
	}
	t.Logf("sticky clients by colour: %v", first)

	if _, err := h.client.Promote(ctx); err != nil { // the last step: all traffic
		t.Fatal(err)
	}
	rel := h.waitRelease("v2 released", ended)
	if *rel.Outcome != teal.OutcomeReleased {
		t.Fatalf("release ended %s: %s", *rel.Outcome, rel.Error)
	}
	round()
	for i, c := range clients {
		if last := c.versions[len(c.versions)-1]; last != "v2" {
			t.Fatalf("client %d answered by %s after the release, want v2 (a cookie pins only during the split)", i, last)
		}
	}
}

// TestWeighted_AnalysisRollsBackAtStep: green's errors at 25% roll the release back at once,
// and no request fails except green's own 500s.
func TestWeighted_AnalysisRollsBackAtStep(t *testing.T) {
	h := newHarness(t, options{extra: `  strategy: weighted
  steps: [25]
  step_hold: 10m
  analysis: { max_error_rate: 5%, min_requests: 20 }
`})
	rel, hits, broke, back := failingGreen(t, h, "green at 25%", func(st *teal.Status) bool { return st.Traffic.Green == 25 })
	if *rel.Outcome != teal.OutcomeRolledBack || !strings.Contains(rel.Error, "analysis failed at 25%: error rate") {
		t.Fatalf("release ended %s: %q; want rolled back by the analysis at 25%%", *rel.Outcome, rel.Error)
	}
	if st := h.status(); st.Traffic.Blue != 100 || st.Live.Color != teal.Blue {
		t.Fatalf("after the rollback: live %s, traffic %+v; want blue at 100%%", st.Live.Color, st.Traffic)
	}
	onlyGreens500s(t, hits, broke, back)
}

// TestWeighted_PauseHoldsTheWeight: teal pause keeps the weight; promote still moves on
// when asked; resume clears the pause.
func TestWeighted_PauseHoldsTheWeight(t *testing.T) {
	h := newHarness(t, options{extra: `  strategy: weighted
  steps: [20, 40]
  step_hold: 300ms
  analysis: { min_requests: 1 }
`})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	l := startLoad(h.listen)
	defer l.Stop()
	ctx := context.Background()
	if _, err := h.client.Deploy(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	h.waitRelease("v2 at the gate", atGate)
	if _, err := h.client.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "green at 20%", func() bool { return h.status().Traffic.Green == 20 })
	if _, err := h.client.Pause(ctx); err != nil {
		t.Fatalf("pause: %v", err)
	}
	st := h.status()
	if st.Paused == nil || st.Paused.Release == "" {
		t.Fatalf("status after pause: %+v, want the release paused", st.Paused)
	}
	// Well past step_hold with enough traffic, the weight stays.
	n := l.Count()
	waitFor(t, 30*time.Second, "200 more answers while paused", func() bool { return l.Count() >= n+200 })
	if st := h.status(); st.Traffic.Green != 20 || st.Release.Outcome != nil {
		t.Fatalf("paused release moved: traffic %+v, outcome %v", st.Traffic, st.Release.Outcome)
	}
	if _, err := h.client.Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	rel := h.waitRelease("v2 released after resume", ended)
	if *rel.Outcome != teal.OutcomeReleased {
		t.Fatalf("release ended %s: %s", *rel.Outcome, rel.Error)
	}
}
