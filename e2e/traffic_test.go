package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"teal.dev/teal"
)

// TestShadow_MismatchFailsVerification: live traffic is mirrored to green, whose / answers
// 500; verification fails naming the path, and live clients saw only 200s.
func TestShadow_MismatchFailsVerification(t *testing.T) {
	h := newHarness(t, options{extra: `  analysis: { min_requests: 20 }
verify:
  shadow: { percent: 50, duration: 2s, max_mismatch: 1% }
`})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "SAMPLE_STATUS_ROOT=500", ""))
	h.release("v1")
	l := startLoad(h.listen)
	if _, err := h.client.Deploy(context.Background(), "v2"); err != nil {
		t.Fatal(err)
	}
	rel := h.waitRelease("release of v2 ended", ended)
	hits := l.Stop()
	if *rel.Outcome != teal.OutcomeFailed || rel.Phase != teal.PhaseVerifying {
		t.Fatalf("release ended %s at %s: %s; want failed at verifying", *rel.Outcome, rel.Phase, rel.Error)
	}
	for _, w := range []string{"shadow traffic", "over verify.shadow.max_mismatch 1%", "GET /: live 200, new 500"} {
		if !strings.Contains(rel.Error, w) {
			t.Errorf("error %q does not say %q", rel.Error, w)
		}
	}
	if len(hits) == 0 {
		t.Fatal("no live requests")
	}
	for _, x := range hits {
		if x.Err != nil {
			t.Fatalf("a live client saw a failure while green was shadowed: %v", x.Err)
		}
		if x.Version == "v2" {
			t.Fatalf("a live request was answered by green (v2) before any switch")
		}
	}
	t.Logf("%d live requests, all 200 from blue; %s", len(hits), rel.Error)
}

// TestLongDrain_WebSocketKeptThenClosed1001: a WebSocket opened on blue keeps exchanging
// messages with blue after the switch to green, and is closed with 1001 when
// release.long_drain expires.
func TestLongDrain_WebSocketKeptThenClosed1001(t *testing.T) {
	h := newHarness(t, options{extra: "  long_drain: 4s\n"})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+h.listen+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	echo := func(msg string) (string, error) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return "", err
		}
		_, b, err := ws.Read(ctx)
		return string(b), err
	}
	if got, err := echo("before"); err != nil || got != "v1: before" {
		t.Fatalf("echo before the switch = %q, %v", got, err)
	}
	h.release("v2")
	switched := time.Now()
	if st := h.status(); st.Live.Color != teal.Green {
		t.Fatalf("live = %s, want green", st.Live.Color)
	}
	for _, e := range h.status().Environments {
		if e.Color == teal.Blue && e.LongLived != 1 {
			t.Fatalf("status: blue has %d long-lived connections, want the WebSocket counted", e.LongLived)
		}
	}
	// Still blue, well after the switch and the drain of ordinary requests.
	for i := range 5 {
		got, err := echo("after")
		if err != nil || got != "v1: after" {
			t.Fatalf("echo %d after the switch = %q, %v; want v1 still answering", i, got, err)
		}
	}
	var closeErr error
	waitFor(t, 20*time.Second, "the WebSocket closed by long_drain", func() bool {
		_, closeErr = echo("ping")
		return closeErr != nil
	})
	closedAfter := time.Since(switched)
	if s := websocket.CloseStatus(closeErr); s != websocket.StatusGoingAway {
		t.Fatalf("WebSocket ended with %v (status %d), want 1001 going away", closeErr, s)
	}
	if closedAfter < 3*time.Second {
		t.Fatalf("closed %s after the switch, before long_drain (4s)", closedAfter)
	}
	t.Logf("closed with 1001 %s after the switch (long_drain 4s)", closedAfter.Round(time.Millisecond))
}
