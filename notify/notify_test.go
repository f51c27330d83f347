package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// recorder is a webhook: it answers each request with status(attempt) (1-based, counting
// every request) and keeps the bodies it accepted with 2xx.
type recorder struct {
	t        *testing.T
	srv      *httptest.Server
	attempts atomic.Int64
	status   func(attempt int64, w http.ResponseWriter) int

	mu       sync.Mutex
	accepted []Message
	raw      [][]byte
	headers  []http.Header
}

func newRecorder(t *testing.T, status func(attempt int64, w http.ResponseWriter) int) *recorder {
	t.Helper()
	r := &recorder{t: t, status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	n := r.attempts.Add(1)
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("read body: %v", err)
		return
	}
	code := http.StatusOK
	if r.status != nil {
		code = r.status(n, w)
	}
	if code >= 200 && code < 300 {
		var m Message
		if err := json.Unmarshal(body, &m); err != nil {
			r.t.Errorf("body %s: %v", body, err)
		}
		r.mu.Lock()
		r.accepted = append(r.accepted, m)
		r.raw = append(r.raw, body)
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
	}
	w.WriteHeader(code)
}

func (r *recorder) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted)
}

func (r *recorder) releaseIDs() []int64 {
	var ids []int64
	for _, m := range r.messages() {
		ids = append(ids, m.ReleaseID)
	}
	return ids
}

// running is a Notifier's Run in its own goroutine.
type running struct {
	cancel context.CancelFunc
	errc   chan error
	once   sync.Once
	err    error
	ok     bool
}

// start runs n on events until the test ends (or stop is called).
func start(t *testing.T, n *Notifier, events <-chan *teal.Event) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- n.Run(ctx, events) }()
	t.Cleanup(func() {
		cancel()
		if _, ok := r.wait(10 * time.Second); !ok {
			t.Errorf("Run did not return within 10s of its context ending")
		}
	})
	return r
}

// wait returns Run's error once it has returned, or ok false after timeout.
func (r *running) wait(timeout time.Duration) (error, bool) {
	r.once.Do(func() {
		select {
		case r.err = <-r.errc:
			r.ok = true
		case <-time.After(timeout):
		}
	})
	return r.err, r.ok
}

// phaseEvent is release id entering provisioning.
func phaseEvent(id int) *teal.Event {
	return &teal.Event{
		ReleaseID: int64(id),
		Time:      time.Date(2025, 3, 1, 12, 0, id%60, 0, time.UTC),
		Kind:      teal.EventPhase,
		Actor:     teal.ActorSystem,
		Message:   fmt.Sprintf("release #%d: provisioning", id),
		Attrs:     map[string]any{"phase": "provisioning"},
	}
}

func fastNotifier(webhooks ...string) *Notifier {
	n := NewNotifier("shop", webhooks)
	n.Backoff = 5 * time.Millisecond
	return n
}

// lockedBuffer is a log sink written by delivery goroutines and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWants(t *testing.T) {
	for _, tc := range []struct {
		kind string
		want bool
	}{
		{teal.EventPhase, true},
		{teal.EventTraffic, true},
		{teal.EventError, true},
		{teal.EventStep, false},
		{teal.EventHealth, false},
		{teal.EventAction, false},
		{"", false},
	} {
		if got := Wants(&teal.Event{Kind: tc.kind}); got != tc.want {
			t.Errorf("Wants(%q) = %v, want %v", tc.kind, got, tc.want)
		}
	}
	if Wants(nil) {
		t.Errorf("Wants(nil) = true, want false")
	}
}

func TestNewMessage(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		app  string
		e    teal.Event
		want Message
	}{
		{
			name: "phase with version",
			app:  "shop",
			e: teal.Event{ReleaseID: 7, Time: at, Kind: teal.EventPhase, Actor: "teal", Message: "release #7: awaiting-release",
				Attrs: map[string]any{"phase": "awaiting-release", "version": "v2", "color": "green"}},
			want: Message{Text: "[shop] release #7 of v2: awaiting-release", App: "shop", Kind: "phase", ReleaseID: 7,
				Version: "v2", Phase: "awaiting-release", Color: "green", Actor: "teal", Message: "release #7: awaiting-release", Time: at,
				Attrs: map[string]any{"phase": "awaiting-release", "version": "v2", "color": "green"}},
		},
		{
			name: "phase typed, without version",
			app:  "shop",
			e: teal.Event{ReleaseID: 3, Time: at, Kind: teal.EventPhase, Message: "release #3: switching",
				Attrs: map[string]any{"phase": teal.PhaseSwitching}},
			want: Message{Text: "[shop] release #3: switching", App: "shop", Kind: "phase", ReleaseID: 3, Phase: "switching",
				Message: "release #3: switching", Time: at, Attrs: map[string]any{"phase": teal.PhaseSwitching}},
		},
		{
			name: "outcome",
			app:  "shop",
			e: teal.Event{ReleaseID: 7, Time: at, Kind: teal.EventPhase, Message: "release #7 of v2 failed: smoke test: status 500",
				Attrs: map[string]any{"outcome": "failed"}},
			want: Message{Text: "[shop] release #7 of v2 failed: smoke test: status 500", App: "shop", Kind: "phase", ReleaseID: 7,
				Outcome: "failed", Message: "release #7 of v2 failed: smoke test: status 500", Time: at, Attrs: map[string]any{"outcome": "failed"}},
		},
		{
			name: "traffic",
			app:  "shop",
			e: teal.Event{ReleaseID: 7, Time: at, Kind: teal.EventTraffic, Actor: "alice", Message: "promote: traffic moved to green",
				Attrs: map[string]any{"blue": 0, "green": 100}},
			want: Message{Text: "[shop] promote: traffic moved to green (blue 0%, green 100%)", App: "shop", Kind: "traffic", ReleaseID: 7,
				Actor: "alice", Message: "promote: traffic moved to green", Time: at, Attrs: map[string]any{"blue": 0, "green": 100}},
		},
		{
			name: "error escaped for slack, no app",
			e:    teal.Event{Time: at, Kind: teal.EventError, Message: "re-adopt blue: <nil> & gone"},
			want: Message{Text: "error: re-adopt blue: &lt;nil&gt; &amp; gone", Kind: "error", Message: "re-adopt blue: <nil> & gone", Time: at},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NewMessage(tc.app, &tc.e)
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tc.want)
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Fatalf("NewMessage = %s, want %s", gotJSON, wantJSON)
			}
		})
	}
}

func TestNewMessage_CopiesAttrs(t *testing.T) {
	e := phaseEvent(1)
	m := NewMessage("shop", e)
	m.Attrs["phase"] = "changed"
	if got := e.Attrs["phase"]; got != "provisioning" {
		t.Fatalf("event attr phase = %v after the message's was changed, want provisioning", got)
	}
}

func TestNotifier_Body(t *testing.T) {
	t.Parallel()
	hook := newRecorder(t, nil)
	n := fastNotifier(hook.srv.URL + "/services/T0/B0")
	events := make(chan *teal.Event, 8)
	r := start(t, n, events)

	events <- &teal.Event{Kind: teal.EventStep, ReleaseID: 7, Message: "step: not announced"}
	events <- &teal.Event{ReleaseID: 7, Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Kind: teal.EventTraffic, Actor: "alice",
		Message: "promote: traffic moved to green", Attrs: map[string]any{"blue": 0, "green": 100}}
	close(events)
	if err, ok := r.wait(10 * time.Second); !ok || err != nil {
		t.Fatalf("Run after close = %v (returned %v), want nil (true)", err, ok)
	}

	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.raw) != 1 {
		t.Fatalf("bodies = %d, want 1 (the step event is not announced)", len(hook.raw))
	}
	want := `{"text":"[shop] promote: traffic moved to green (blue 0%, green 100%)","app":"shop","kind":"traffic","release_id":7,` +
		`"actor":"alice","message":"promote: traffic moved to green","time":"2025-03-01T12:00:00Z","attrs":{"blue":0,"green":100}}`
	if got := string(hook.raw[0]); got != want {
		t.Fatalf("body = %s, want %s", got, want)
	}
	if got := hook.headers[0].Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", got)
	}
	if got := hook.headers[0].Get("User-Agent"); got != "teal" {
		t.Fatalf("User-Agent = %q, want teal", got)
	}
	if sent, failed, dropped := n.Stats(); sent != 1 || failed != 0 || dropped != 0 {
		t.Fatalf("Stats = %d, %d, %d, want 1, 0, 0", sent, failed, dropped)
	}
}

func TestNotifier_UnencodableAttrs(t *testing.T) {
	t.Parallel()
	hook := newRecorder(t, nil)
	n := fastNotifier(hook.srv.URL)
	events := make(chan *teal.Event, 1)
	start(t, n, events)
	e := phaseEvent(4)
	e.Attrs["ratio"] = math.NaN()
	events <- e
	testutil.WaitFor(t, 5*time.Second, "the message", func() bool { return len(hook.messages()) == 1 })
	m := hook.messages()[0]
	if m.Text != "[shop] release #4: provisioning" || m.Attrs != nil {
		t.Fatalf("message = %q with attrs %v, want the text without attrs", m.Text, m.Attrs)
	}
}

func TestNotifier_RetriesServerErrors(t *testing.T) {
	t.Parallel()
	hook := newRecorder(t, func(attempt int64, _ http.ResponseWriter) int {
		if attempt <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	n := fastNotifier(hook.srv.URL)
	n.Backoff = 10 * time.Millisecond
	events := make(chan *teal.Event, 1)
	start(t, n, events)
	events <- phaseEvent(1)
	testutil.WaitFor(t, 5*time.Second, "a sent message", func() bool { s, _, _ := n.Stats(); return s == 1 })
	if got := hook.attempts.Load(); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}
	if got := len(hook.messages()); got != 1 {
		t.Fatalf("accepted = %d, want 1", got)
	}
}

func TestNotifier_TooManyRequests(t *testing.T) {
	t.Parallel()
	hook := newRecorder(t, func(attempt int64, w http.ResponseWriter) int {
		if attempt == 1 {
			w.Header().Set("Retry-After", "0")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	n := fastNotifier(hook.srv.URL)
	// Were Retry-After ignored, the retry would wait an hour and the test time out.
	n.Backoff = time.Hour
	events := make(chan *teal.Event, 1)
	start(t, n, events)
	events <- phaseEvent(1)
	testutil.WaitFor(t, 5*time.Second, "a sent message", func() bool { s, _, _ := n.Stats(); return s == 1 })
	if got := hook.attempts.Load(); got != 2 {
		t.Fatalf("attempts = %d, want 2", got)
	}
}

func TestNotifier_GivesUp(t *testing.T) {
	t.Parallel()
	hook := newRecorder(t, func(int64, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	n := fastNotifier(hook.srv.URL)
	n.MaxAttempts = 3
	events := make(chan *teal.Event, 1)
	start(t, n, events)
	events <- phaseEvent(1)
	testutil.WaitFor(t, 5*time.Second, "a failed message", func() bool { _, f, _ := n.Stats(); return f == 1 })
	if got := hook.attempts.Load(); got != 3 {
		t.Fatalf("attempts = %d, want 3 (MaxAttempts)", got)
	}
	if sent, _, dropped := n.Stats(); sent != 0 || dropped != 0 {
		t.Fatalf("sent, dropped = %d, %d, want 0, 0", sent, dropped)
	}
}

func TestNotifier_ClientErrorNotRetried(t *testing.T) {
	t.Parallel()
	hook := newRecorder(t, func(attempt int64, w http.ResponseWriter) int {
		if attempt == 1 {
			return http.StatusNotFound
		}
		return http.StatusOK
	})
	var logs lockedBuffer
	n := fastNotifier(hook.srv.URL)
	n.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	events := make(chan *teal.Event, 2)
	start(t, n, events)
	events <- phaseEvent(1)
	events <- phaseEvent(2)
	testutil.WaitFor(t, 5*time.Second, "one failed and one sent", func() bool { s, f, _ := n.Stats(); return s == 1 && f == 1 })
	if got := hook.attempts.Load(); got != 2 {
		t.Fatalf("attempts = %d, want 2 (the 404 is not retried)", got)
	}
	if got := hook.releaseIDs(); !slices.Equal(got, []int64{2}) {
		t.Fatalf("accepted releases = %v, want [2]", got)
	}
	if !strings.Contains(logs.String(), "status 404") {
		t.Fatalf("log does not mention the 404:\n%s", logs.String())
	}
}

func TestNotifier_HangingWebhookDoesNotBlock(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var hits atomic.Int64
	hook := newRecorder(t, func(attempt int64, _ http.ResponseWriter) int {
		hits.Add(1)
		<-release
		return http.StatusOK
	})
	n := fastNotifier(hook.srv.URL)
	n.Client = &http.Client{} // no timeout: the webhook hangs until released
	n.QueueSize = 10
	events := make(chan *teal.Event, 4)
	start(t, n, events)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before Run is stopped and the server closed

	const total = 1000
	began := time.Now()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for i := 1; i <= total; i++ {
		select {
		case events <- phaseEvent(i):
		case <-deadline.C:
			t.Fatalf("Run stopped draining the channel after %d of %d events", i-1, total)
		}
	}
	t.Logf("%d events sent in %s with the webhook hanging", total, time.Since(began))
	// One message is in flight, QueueSize wait, the rest were dropped oldest first.
	wantDropped := int64(total - 1 - n.QueueSize)
	testutil.WaitFor(t, 5*time.Second, "the drops", func() bool {
		_, _, d := n.Stats()
		return d == wantDropped && hits.Load() == 1
	})

	unblock()
	testutil.WaitFor(t, 5*time.Second, "the queued messages", func() bool { s, _, _ := n.Stats(); return s == int64(1+n.QueueSize) })
	got := hook.releaseIDs()
	var want []int64
	for i := total - n.QueueSize + 1; i <= total; i++ {
		want = append(want, int64(i))
	}
	if !slices.Equal(got[1:], want) {
		t.Fatalf("delivered after the hang = %v, want the newest %v", got[1:], want)
	}
}

func TestNotifier_OrderKept(t *testing.T) {
	t.Parallel()
	// Every fifth request fails: a retried message must still go before the next one.
	hook := newRecorder(t, func(attempt int64, _ http.ResponseWriter) int {
		if attempt%5 == 0 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	n := fastNotifier(hook.srv.URL)
	n.Backoff = time.Millisecond
	events := make(chan *teal.Event, 100)
	start(t, n, events)
	var want []int64
	for i := 1; i <= 100; i++ {
		events <- phaseEvent(i)
		want = append(want, int64(i))
	}
	testutil.WaitFor(t, 10*time.Second, "100 sent", func() bool { s, _, _ := n.Stats(); return s == 100 })
	if got := hook.releaseIDs(); !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	if got := hook.attempts.Load(); got <= 100 {
		t.Fatalf("attempts = %d, want over 100 (some were retried)", got)
	}
}

func TestNotifier_TwoWebhooks(t *testing.T) {
	t.Parallel()
	a, b := newRecorder(t, nil), newRecorder(t, nil)
	n := fastNotifier(a.srv.URL, b.srv.URL)
	events := make(chan *teal.Event, 3)
	start(t, n, events)
	for i := 1; i <= 3; i++ {
		events <- phaseEvent(i)
	}
	testutil.WaitFor(t, 5*time.Second, "6 sent", func() bool { s, _, _ := n.Stats(); return s == 6 })
	for name, h := range map[string]*recorder{"first": a, "second": b} {
		if got := h.releaseIDs(); !slices.Equal(got, []int64{1, 2, 3}) {
			t.Fatalf("%s webhook got %v, want [1 2 3]", name, got)
		}
	}
}

func TestNotifier_CloseFlushes(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	hook := newRecorder(t, func(int64, http.ResponseWriter) int { <-gate; return http.StatusOK })
	n := fastNotifier(hook.srv.URL)
	events := make(chan *teal.Event, 5)
	r := start(t, n, events)
	for i := 1; i <= 5; i++ {
		events <- phaseEvent(i)
	}
	close(events)
	testutil.WaitFor(t, 5*time.Second, "the first request", func() bool { return hook.attempts.Load() == 1 })
	select {
	case err := <-r.errc:
		t.Fatalf("Run returned %v with 5 messages unsent", err)
	default:
	}
	close(gate)
	if err, ok := r.wait(10 * time.Second); !ok || err != nil {
		t.Fatalf("Run = %v (returned %v), want nil (true)", err, ok)
	}
	if sent, failed, dropped := n.Stats(); sent != 5 || failed != 0 || dropped != 0 {
		t.Fatalf("Stats = %d, %d, %d, want 5, 0, 0", sent, failed, dropped)
	}
}

func TestNotifier_ShutdownGrace(t *testing.T) {
	t.Parallel()
	hung := make(chan struct{})
	var attempts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		select {
		case <-r.Context().Done():
		case <-hung:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hung) })
	n := fastNotifier(srv.URL)
	n.Client = &http.Client{}
	events := make(chan *teal.Event, 3)
	r := start(t, n, events)
	for i := 1; i <= 3; i++ {
		events <- phaseEvent(i)
	}
	testutil.WaitFor(t, 5*time.Second, "the first request", func() bool { return attempts.Load() == 1 })
	began := time.Now()
	r.cancel()
	if err, ok := r.wait(10 * time.Second); !ok || err != nil {
		t.Fatalf("Run = %v (returned %v), want nil (true)", err, ok)
	}
	took := time.Since(began)
	if took < shutdownGrace || took > shutdownGrace+2*time.Second {
		t.Fatalf("Run returned %s after its context ended, want the %s grace", took, shutdownGrace)
	}
	if sent, failed, dropped := n.Stats(); sent != 0 || failed != 0 || dropped != 3 {
		t.Fatalf("Stats = %d, %d, %d, want 0, 0, 3", sent, failed, dropped)
	}
}

func TestNotifier_SecretNotLogged(t *testing.T) {
	t.Parallel()
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no_service", http.StatusNotFound)
	}))
	t.Cleanup(refused.Close)
	down := newRecorder(t, func(int64, http.ResponseWriter) int { return http.StatusInternalServerError })
	redirects := newRecorder(t, func(_ int64, w http.ResponseWriter) int {
		w.Header().Set("Location", "/moved/SECRET-LOCATION")
		return http.StatusFound
	})
	hooks := []string{
		refused.URL + "/services/T0/B0/SECRET-A",
		down.srv.URL + "/hook/SECRET-B?token=SECRET-C",
		"http://" + testutil.DeadAddr(t) + "/hook/SECRET-D",
		redirects.srv.URL + "/hook/SECRET-E",
	}
	var logs lockedBuffer
	n := fastNotifier(hooks...)
	n.MaxAttempts = 2
	n.Client = nil // the default client, which must not follow the redirect
	n.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	events := make(chan *teal.Event, 1)
	start(t, n, events)
	events <- phaseEvent(1)
	testutil.WaitFor(t, 10*time.Second, "4 failed", func() bool { _, f, _ := n.Stats(); return f == 4 })

	out := logs.String()
	if strings.Contains(out, "SECRET") {
		t.Fatalf("log shows a webhook's secret:\n%s", out)
	}
	for _, want := range []string{refused.URL, down.srv.URL, redirects.srv.URL, "no_service", "status 302", "connection refused"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log does not mention %q:\n%s", want, out)
		}
	}
	if got := redirects.attempts.Load(); got != 1 {
		t.Fatalf("redirecting webhook attempts = %d, want 1", got)
	}
}

func TestNotifier_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Notifier)
		want string
	}{
		{"scheme", func(n *Notifier) { n.Webhooks = []string{"https://ok.example/x", "ftp://chat.example/SECRET"} }, `notify.webhooks[1]: scheme "ftp": want http or https`},
		{"not a URL", func(n *Notifier) { n.Webhooks = []string{"http://[::1/SECRET"} }, "notify.webhooks[0]: not a URL"},
		{"no host", func(n *Notifier) { n.Webhooks = []string{"https:///SECRET"} }, "notify.webhooks[0]: no host"},
		{"relative", func(n *Notifier) { n.Webhooks = []string{"chat.example/SECRET"} }, `notify.webhooks[0]: scheme "": want http or https`},
		{"attempts", func(n *Notifier) { n.MaxAttempts = 0 }, "MaxAttempts 0: want 1 or more"},
		{"backoff", func(n *Notifier) { n.Backoff = -time.Second }, "Backoff -1s: want 0 or more"},
		{"queue", func(n *Notifier) { n.QueueSize = 0 }, "QueueSize 0: want 1 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNotifier("shop", []string{"https://chat.example/hook"})
			tc.edit(n)
			events := make(chan *teal.Event)
			err := n.Run(context.Background(), events)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("Run error %q shows the URL's secret", err)
			}
		})
	}
}

func TestNotifier_NoWebhooks(t *testing.T) {
	n := NewNotifier("shop", nil)
	events := make(chan *teal.Event, 2)
	events <- phaseEvent(1)
	close(events)
	if err := n.Run(context.Background(), events); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"3", 3 * time.Second, true},
		{" 59 ", 59 * time.Second, true},
		{"60", time.Minute, true},
		{"3600", time.Minute, true},
		{"99999999999999999999999", time.Minute, true},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second, true},
		{"Sat, 01 Mar 2025 13:00:00 GMT", time.Minute, true},
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v, want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "abc", "99999999999999999999999", " 7"} {
		f.Add(s)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if !ok {
			return
		}
		if d < 0 || d > maxDelay {
			t.Fatalf("parseRetryAfter(%q) = %s, want 0..%s", s, d, maxDelay)
		}
		if secs, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && secs >= 0 && secs < 60 && d != time.Duration(secs)*time.Second {
			t.Fatalf("parseRetryAfter(%q) = %s, want %ds", s, d, secs)
		}
	})
}
