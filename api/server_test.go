package api

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/artifact"

	"teal.dev/teal/internal/testutil"
)

const testToken = "s3cret-token"

// fakeController is a function-field fake: each test sets what it needs; unset methods answer
// an empty success. Subscribe is real enough: publish reaches every subscriber.
type fakeController struct {
	status   func(ctx context.Context) (*teal.Status, error)
	deploy   func(ctx context.Context, req teal.DeployRequest) (*teal.Release, error)
	promote  func(ctx context.Context, actor string) (*teal.Release, error)
	abort    func(ctx context.Context, actor string) (*teal.Release, error)
	rollback func(ctx context.Context, req teal.RollbackRequest) (*teal.Release, error)
	release  func(ctx context.Context, id int64) (*teal.Release, []*teal.Event, error)
	releases func(ctx context.Context, limit int) ([]*teal.Release, error)

	mu   sync.Mutex
	subs map[chan *teal.Event]struct{}
}

var _ Controller = (*fakeController)(nil)

func (f *fakeController) Status(ctx context.Context) (*teal.Status, error) {
	if f.status == nil {
		return &teal.Status{App: "shop"}, nil
	}
	return f.status(ctx)
}

func (f *fakeController) Deploy(ctx context.Context, req teal.DeployRequest) (*teal.Release, error) {
	if f.deploy == nil {
		return &teal.Release{ID: 1, Version: req.Version, Actor: req.Actor}, nil
	}
	return f.deploy(ctx, req)
}

func (f *fakeController) Promote(ctx context.Context, actor string) (*teal.Release, error) {
	if f.promote == nil {
		return &teal.Release{ID: 1, Actor: actor}, nil
	}
	return f.promote(ctx, actor)
}

func (f *fakeController) Abort(ctx context.Context, actor string) (*teal.Release, error) {
	if f.abort == nil {
		return &teal.Release{ID: 1, Actor: actor}, nil
	}
	return f.abort(ctx, actor)
}

func (f *fakeController) Rollback(ctx context.Context, req teal.RollbackRequest) (*teal.Release, error) {
	if f.rollback == nil {
		return &teal.Release{ID: 1, Actor: req.Actor}, nil
	}
	return f.rollback(ctx, req)
}

func (f *fakeController) Release(ctx context.Context, id int64) (*teal.Release, []*teal.Event, error) {
	if f.release == nil {
		return &teal.Release{ID: id}, nil, nil
	}
	return f.release(ctx, id)
}

func (f *fakeController) Releases(ctx context.Context, limit int) ([]*teal.Release, error) {
	if f.releases == nil {
		return nil, nil
	}
	return f.releases(ctx, limit)
}

func (f *fakeController) Subscribe() (<-chan *teal.Event, func()) {
	ch := make(chan *teal.Event, 16)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[chan *teal.Event]struct{})
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, ch)
			f.mu.Unlock()
		})
	}
}

func (f *fakeController) publish(ev *teal.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		ch <- ev
	}
}

func (f *fakeController) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// fakeLogs serves log files from a directory: <color>-<index>.log.
type fakeLogs struct{ dir string }

func (l fakeLogs) LogFile(c teal.Color, index int) (string, error) {
	if index > 9 {
		return "", teal.Errorf(teal.ErrNotFound, "", "no instance %s/%d", c, index)
	}
	return filepath.Join(l.dir, string(c)+"-"+string(rune('0'+index))+".log"), nil
}

type testEnv struct {
	ctl    *fakeController
	srv    *Server
	http   *httptest.Server
	client *Client
	logDir string
}

func newTestEnv(t *testing.T, ctl *fakeController) *testEnv {
	t.Helper()
	store := artifact.NewStore(t.TempDir())
	if err := store.Open(context.Background()); err != nil {
		t.Fatalf("open artifact store: %v", err)
	}
	logDir := t.TempDir()
	srv := NewServer(ctl, store, fakeLogs{logDir}, testToken)
	srv.LogPoll = 10 * time.Millisecond
	srv.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "teal_up 1\n")
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = srv.Close() }) // runs first: ends streams so hs.Close need not wait
	c := NewClient(hs.URL, testToken)
	return &testEnv{ctl: ctl, srv: srv, http: hs, client: c, logDir: logDir}
}

// do sends a raw request and returns the status and body.
func (e *testEnv) do(t *testing.T, method, path, token string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, "the condition", cond)
}

func TestServer_Auth(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"token prefix", "Bearer " + testToken[:4], http.StatusUnauthorized},
		{"basic scheme", "Basic " + testToken, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"right token", "Bearer " + testToken, http.StatusOK},
		{"scheme case-insensitive", "bearer " + testToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.http.URL+"/api/v1/status", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("get status: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want != http.StatusUnauthorized {
				return
			}
			var eb ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
				t.Fatalf("decode error body: %v", err)
			}
			if eb.Error == "" || eb.Hint == "" {
				t.Fatalf("error body = %+v, want an error and a hint", eb)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got == "" {
				t.Fatalf("WWW-Authenticate is empty")
			}
		})
	}
}

func TestServer_EmptyTokenRefusesEverything(t *testing.T) {
	srv := NewServer(&fakeController{}, nil, nil, "")
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	for _, h := range []string{"", "Bearer ", "Bearer x"} {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/v1/status", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("get status: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("Authorization %q: status = %d, want 401", h, resp.StatusCode)
		}
	}
}

func TestServer_UnauthenticatedRoutes(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	tests := []struct {
		name, path, want string
	}{
		{"healthz", "/healthz", `"ok": true`},
		{"metrics", "/metrics", "teal_up 1"},
		{"index", "/", "/api/v1/status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(t, http.MethodGet, tt.path, "", nil)
			if code != http.StatusOK {
				t.Fatalf("status = %d, want 200", code)
			}
			if !strings.Contains(body, tt.want) {
				t.Fatalf("body = %q, want it to contain %q", body, tt.want)
			}
		})
	}
}

func TestServer_ErrorMapping(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		status   int
		sentinel error
		hint     string
	}{
		{"invalid", teal.Errorf(teal.ErrInvalid, "fix it", "bad version"), 400, teal.ErrInvalid, "fix it"},
		{"not found", teal.Errorf(teal.ErrNotFound, "push it first", "no artifact v9"), 404, teal.ErrNotFound, "push it first"},
		{"conflict", teal.Errorf(teal.ErrConflict, "wait for it", "release #3 is in progress"), 409, teal.ErrConflict, "wait for it"},
		{"refused", teal.Errorf(teal.ErrRefused, "", "analysis said no"), 422, teal.ErrRefused, ""},
		{"wrapped conflict", errors.Join(errors.New("context"), teal.ErrConflict), 409, teal.ErrConflict, ""},
		{"other", errors.New("disk on fire"), 500, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, &fakeController{
				deploy: func(context.Context, teal.DeployRequest) (*teal.Release, error) { return nil, tt.err },
			})
			_, err := e.client.Deploy(context.Background(), "v2")
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("Deploy error = %v (%T), want *Error", err, err)
			}
			if ae.Status != tt.status {
				t.Fatalf("status = %d, want %d", ae.Status, tt.status)
			}
			if ae.Hint != tt.hint {
				t.Fatalf("hint = %q, want %q", ae.Hint, tt.hint)
			}
			if ae.Message != tt.err.Error() {
				t.Fatalf("message = %q, want %q", ae.Message, tt.err.Error())
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Fatalf("errors.Is(%v, %v) = false, want true", err, tt.sentinel)
			}
		})
	}
}

func TestServer_Routes(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ctl := &fakeController{
		status: func(context.Context) (*teal.Status, error) {
			return &teal.Status{
				App:     "shop",
				Live:    &teal.ColorStatus{Color: teal.Blue, Version: "v1", State: teal.EnvLive},
				Traffic: teal.All(teal.Blue),
				Environments: []teal.EnvStatus{{
					Environment: teal.Environment{Color: teal.Blue, Version: "v1", State: teal.EnvLive, Since: now,
						Instances: []teal.Instance{{Color: teal.Blue, Index: 0, Addr: "127.0.0.1:1"}, {Color: teal.Blue, Index: 1, Addr: "127.0.0.1:2"}}},
					Health: []teal.InstanceHealth{{Index: 0, Healthy: true}, {Index: 1, LastError: "connection refused"}},
				}},
			}, nil
		},
		releases: func(_ context.Context, limit int) ([]*teal.Release, error) {
			out := make([]*teal.Release, limit)
			for i := range out {
				out[i] = &teal.Release{ID: int64(limit - i)}
			}
			return out, nil
		},
		release: func(_ context.Context, id int64) (*teal.Release, []*teal.Event, error) {
			if id == 404 {
				return nil, nil, teal.Errorf(teal.ErrNotFound, "", "release #404 not found")
			}
			return &teal.Release{ID: id, Version: "v2"}, []*teal.Event{{ID: 1, Kind: teal.EventPhase, Message: "provisioning"}}, nil
		},
		rollback: func(_ context.Context, req teal.RollbackRequest) (*teal.Release, error) {
			if !req.Force {
				return nil, teal.Errorf(teal.ErrRefused, "use --force", "green has 1 of 2 instances healthy")
			}
			return nil, nil // traffic moved back without a release record
		},
	}
	e := newTestEnv(t, ctl)
	tests := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"status", "GET", "/api/v1/status", "", 200, `"app": "shop"`},
		{"deploy", "POST", "/api/v1/releases", `{"version":"v2"}`, 201, `"version": "v2"`},
		{"deploy without version", "POST", "/api/v1/releases", `{}`, 400, "no version"},
		{"deploy bad json", "POST", "/api/v1/releases", `{"version":`, 400, "decode request body"},
		{"deploy unknown field", "POST", "/api/v1/releases", `{"versoin":"v2"}`, 400, "unknown field"},
		{"promote", "POST", "/api/v1/releases/current/promote", "", 200, `"id": 1`},
		{"abort", "POST", "/api/v1/releases/current/abort", "", 200, `"id": 1`},
		{"rollback refused", "POST", "/api/v1/rollback", `{"force":false}`, 422, "use --force"},
		{"rollback forced", "POST", "/api/v1/rollback", `{"force":true}`, 200, "null"},
		{"releases default limit", "GET", "/api/v1/releases", "", 200, `"id": 20`},
		{"releases limit", "GET", "/api/v1/releases?limit=2", "", 200, `"id": 2`},
		{"releases bad limit", "GET", "/api/v1/releases?limit=zero", "", 400, "limit"},
		{"releases limit too high", "GET", "/api/v1/releases?limit=100000", "", 400, "limit"},
		{"release", "GET", "/api/v1/releases/7", "", 200, `"events": [`},
		{"release bad id", "GET", "/api/v1/releases/x", "", 400, "positive integer"},
		{"release not found", "GET", "/api/v1/releases/404", "", 404, "not found"},
		{"instances", "GET", "/api/v1/instances", "", 200, `"last_error": "connection refused"`},
		{"artifacts", "GET", "/api/v1/artifacts", "", 200, "[]"},
		{"unknown route", "GET", "/api/v1/nope", "", 404, `"error": "no route GET /api/v1/nope"`},
		{"wrong method", "DELETE", "/api/v1/status", "", 404, `"error"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			code, got := e.do(t, tt.method, tt.path, testToken, body)
			if code != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", code, tt.status, got)
			}
			if !strings.Contains(got, tt.contains) {
				t.Fatalf("body = %s, want it to contain %q", got, tt.contains)
			}
		})
	}
}

func TestClient_Methods(t *testing.T) {
	var gotLimit int
	var gotForce bool
	ctl := &fakeController{
		releases: func(_ context.Context, limit int) ([]*teal.Release, error) {
			gotLimit = limit
			return []*teal.Release{{ID: 2}, {ID: 1}}, nil
		},
		release: func(_ context.Context, id int64) (*teal.Release, []*teal.Event, error) {
			return &teal.Release{ID: id, Version: "v3"}, []*teal.Event{{ID: 9, Kind: teal.EventStep}}, nil
		},
		rollback: func(_ context.Context, req teal.RollbackRequest) (*teal.Release, error) {
			gotForce = req.Force
			return nil, nil
		},
		status: func(context.Context) (*teal.Status, error) {
			return &teal.Status{App: "shop", Environments: []teal.EnvStatus{{
				Environment: teal.Environment{Color: teal.Green, Version: "v3", Instances: []teal.Instance{{Color: teal.Green, Index: 0}}},
				Health:      []teal.InstanceHealth{{Index: 0, Healthy: true}},
			}}}, nil
		},
	}
	e := newTestEnv(t, ctl)
	ctx := context.Background()

	rels, err := e.client.Releases(ctx, 5)
	if err != nil {
		t.Fatalf("Releases: %v", err)
	}
	if gotLimit != 5 || len(rels) != 2 {
		t.Fatalf("Releases: limit %d, %d releases; want 5, 2", gotLimit, len(rels))
	}
	rel, evs, err := e.client.Release(ctx, 3)
	if err != nil {
		t.Fatalf("Release: %v", err)
	}
	if rel.ID != 3 || rel.Version != "v3" || len(evs) != 1 || evs[0].ID != 9 {
		t.Fatalf("Release = %+v, %d events; want #3 v3 with event 9", rel, len(evs))
	}
	rel, err = e.client.Rollback(ctx, true)
	if err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if rel != nil || !gotForce {
		t.Fatalf("Rollback = %v, force %v; want nil release, force true", rel, gotForce)
	}
	insts, err := e.client.Instances(ctx)
	if err != nil {
		t.Fatalf("Instances: %v", err)
	}
	if len(insts) != 1 || !insts[0].Healthy || insts[0].Version != "v3" || insts[0].Color != teal.Green {
		t.Fatalf("Instances = %+v, want one healthy green v3 instance", insts)
	}
}

func TestServer_Actor(t *testing.T) {
	tests := []struct {
		name, header, want string
	}{
		{"none", "", AdminActor},
		{"cli user", "cli:alice", "cli:alice"},
		{"not cli", "dashboard:bob", AdminActor},
		{"empty cli", "cli:", AdminActor},
		{"invisible chars", "cli:al\u200bice", AdminActor},
		{"spaces", "cli:alice admin", AdminActor},
		{"too long", "cli:" + strings.Repeat("a", 200), AdminActor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			e := newTestEnv(t, &fakeController{
				promote: func(_ context.Context, actor string) (*teal.Release, error) {
					got = actor
					return &teal.Release{ID: 1}, nil
				},
			})
			e.client.Actor = tt.header
			if _, err := e.client.Promote(context.Background()); err != nil {
				t.Fatalf("Promote: %v", err)
			}
			if got != tt.want {
				t.Fatalf("actor = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestServer_EventsDelivered(t *testing.T) {
	ctl := &fakeController{}
	e := newTestEnv(t, ctl)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, errs := e.client.Events(ctx)
	// Events returns once the server subscribed: publishing now cannot be missed.
	if n := ctl.subscribers(); n != 1 {
		t.Fatalf("subscribers = %d, want 1", n)
	}
	sent := []*teal.Event{
		{ID: 1, ReleaseID: 7, Kind: teal.EventPhase, Message: "release #7: verifying", Attrs: map[string]any{"phase": "verifying"}},
		{ID: 2, ReleaseID: 7, Kind: teal.EventStep, Actor: "cli:alice", Message: "launch: done"},
	}
	for _, ev := range sent {
		ctl.publish(ev)
	}
	for i, want := range sent {
		select {
		case got, ok := <-events:
			if !ok {
				t.Fatalf("event stream ended: %v", <-errs)
			}
			if got.ID != want.ID || got.Kind != want.Kind || got.Message != want.Message || got.Actor != want.Actor {
				t.Fatalf("event %d = %+v, want %+v", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d not delivered", i)
		}
	}
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("stream end = %v, want context.Canceled", err)
	}
	waitFor(t, 5*time.Second, func() bool { return ctl.subscribers() == 0 })
}

func TestServer_EventsWireFormat(t *testing.T) {
	ctl := &fakeController{}
	e := newTestEnv(t, ctl)
	e.srv.Heartbeat = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get events: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}
	ctl.publish(&teal.Event{ID: 42, Kind: teal.EventTraffic, Message: "blue 0, green 100"})
	br := bufio.NewReader(resp.Body)
	var lines []string
	sawHeartbeat := false
	for !sawHeartbeat || len(lines) < 3 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == ": heartbeat":
			sawHeartbeat = true
		case line != "" && !strings.HasPrefix(line, ":"):
			lines = append(lines, line)
		}
	}
	if lines[0] != "id: 42" || lines[1] != "event: traffic" || !strings.HasPrefix(lines[2], "data: {") {
		t.Fatalf("event lines = %q, want id, event and data", lines)
	}
	var ev teal.Event
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[2], "data: ")), &ev); err != nil {
		t.Fatalf("decode data: %v", err)
	}
	if ev.Message != "blue 0, green 100" {
		t.Fatalf("data message = %q", ev.Message)
	}
}

func TestServer_CloseEndsEventStreams(t *testing.T) {
	ctl := &fakeController{}
	e := newTestEnv(t, ctl)
	events, errs := e.client.Events(context.Background())
	if err := e.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Fatalf("got an event, want the stream to end")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("stream still open after Close")
	}
	if err := <-errs; err == nil {
		t.Fatalf("stream end error = nil, want why")
	}
}

func TestServer_Logs(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	logPath := filepath.Join(e.logDir, "blue-0.log")
	if err := os.WriteFile(logPath, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatalf("write log: %v", err)
	}
	tests := []struct {
		name   string
		req    LogsRequest
		want   string
		status int
	}{
		{"all", LogsRequest{Color: teal.Blue, Tail: -1}, "one\ntwo\nthree\n", 0},
		{"tail 2", LogsRequest{Color: teal.Blue, Tail: 2}, "two\nthree\n", 0},
		{"tail 0", LogsRequest{Color: teal.Blue, Tail: 0}, "", 0},
		{"tail more than there is", LogsRequest{Color: teal.Blue, Tail: 10}, "one\ntwo\nthree\n", 0},
		{"no output yet", LogsRequest{Color: teal.Green, Tail: -1}, "", 404},
		{"unknown instance", LogsRequest{Color: teal.Blue, Instance: 12, Tail: -1}, "", 404},
		{"bad colour", LogsRequest{Color: "red", Tail: -1}, "", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := e.client.Logs(context.Background(), tt.req, &b)
			if tt.status != 0 {
				var ae *Error
				if !errors.As(err, &ae) || ae.Status != tt.status {
					t.Fatalf("Logs error = %v, want status %d", err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("Logs: %v", err)
			}
			if b.String() != tt.want {
				t.Fatalf("Logs = %q, want %q", b.String(), tt.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe to read while another goroutine writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServer_LogsFollow(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	logPath := filepath.Join(e.logDir, "green-1.log")
	if err := os.WriteFile(logPath, []byte("old 1\nold 2\n"), 0o644); err != nil {
		t.Fatalf("write log: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- e.client.Logs(ctx, LogsRequest{Color: teal.Green, Instance: 1, Follow: true, Tail: 1}, &out)
	}()
	waitFor(t, 5*time.Second, func() bool { return out.String() == "old 2\n" })

	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	if _, err := f.WriteString("new 3\n"); err != nil {
		t.Fatalf("append: %v", err)
	}
	f.Close()
	waitFor(t, 5*time.Second, func() bool { return out.String() == "old 2\nnew 3\n" })

	// An instance restart that starts a new file: the stream moves to it.
	if err := os.Remove(logPath); err != nil {
		t.Fatalf("remove log: %v", err)
	}
	if err := os.WriteFile(logPath, []byte("restarted\n"), 0o644); err != nil {
		t.Fatalf("write new log: %v", err)
	}
	waitFor(t, 5*time.Second, func() bool { return out.String() == "old 2\nnew 3\nrestarted\n" })

	cancel()
	wantCanceled(t, done)
}

func TestClient_PushArtifact(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	ctx := context.Background()
	dir := t.TempDir()

	file := filepath.Join(dir, "shop")
	if err := os.WriteFile(file, []byte("#!/bin/sh\necho shop\n"), 0o755); err != nil {
		t.Fatalf("write file: %v", err)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "migrations"), 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	for name, data := range map[string]string{"run": "#!/bin/sh\n", "migrations/0001_init.sql": "create table t (id int);\n"} {
		if err := os.WriteFile(filepath.Join(tree, name), []byte(data), 0o755); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	wantDirDigest, err := artifact.Digest(tree)
	if err != nil {
		t.Fatalf("digest tree: %v", err)
	}
	wantFileDigest, err := artifact.Digest(file)
	if err != nil {
		t.Fatalf("digest file: %v", err)
	}

	tests := []struct {
		name, version, path, kind, digest string
	}{
		{"file", "v1", file, "file", wantFileDigest},
		{"same file again", "v1", file, "file", wantFileDigest},
		{"directory", "v2", tree, "dir", wantDirDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			art, err := e.client.PushArtifact(ctx, tt.version, tt.path)
			if err != nil {
				t.Fatalf("PushArtifact: %v", err)
			}
			if art.Version != tt.version || art.Kind != tt.kind || art.Digest != tt.digest {
				t.Fatalf("artifact = %s %s %s, want %s %s %s", art.Version, art.Kind, art.Digest, tt.version, tt.kind, tt.digest)
			}
		})
	}

	t.Run("other content under a bound version", func(t *testing.T) {
		_, err := e.client.PushArtifact(ctx, "v1", tree)
		if !errors.Is(err, teal.ErrConflict) {
			t.Fatalf("PushArtifact = %v, want a conflict", err)
		}
	})
	t.Run("missing path", func(t *testing.T) {
		if _, err := e.client.PushArtifact(ctx, "v3", filepath.Join(dir, "nope")); err == nil {
			t.Fatalf("PushArtifact of a missing path succeeded")
		}
	})
	t.Run("list", func(t *testing.T) {
		arts, err := e.client.Artifacts(ctx)
		if err != nil {
			t.Fatalf("Artifacts: %v", err)
		}
		if len(arts) != 2 {
			t.Fatalf("Artifacts = %d, want 2", len(arts))
		}
	})
}

func TestServer_PushArtifactRaw(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	_ = tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: 3, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("hi\n"))
	_ = tw.Close()

	tests := []struct {
		name, query, ctype string
		body               []byte
		status             int
	}{
		{"file", "?version=v1&name=app", "application/octet-stream", []byte("binary"), 201},
		{"same file", "?version=v1&name=app", "application/octet-stream", []byte("binary"), 200},
		{"tar", "?version=v2", TarType, tarball.Bytes(), 201},
		{"no version", "", "application/octet-stream", []byte("x"), 400},
		{"path as name", "?version=v3&name=../../etc/passwd", "application/octet-stream", []byte("x"), 400},
		{"bad version", "?version=../v4", "application/octet-stream", []byte("x"), 400},
		{"not a tar", "?version=v5", TarType, []byte("not a tar at all, not even close to 512 bytes"), 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/api/v1/artifacts"+tt.query, bytes.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", tt.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("post: %v", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, b)
			}
		})
	}
}

func TestServer_PushArtifactTooLarge(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	e.srv.MaxArtifactSize = 16
	code, body := e.do(t, http.MethodPost, "/api/v1/artifacts?version=v1", testToken, strings.NewReader(strings.Repeat("x", 1024)))
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413 (%s)", code, body)
	}
}

func TestServer_NoArtifactsNoLogs(t *testing.T) {
	srv := NewServer(&fakeController{}, nil, nil, testToken)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	c := NewClient(hs.URL, testToken)
	_, err := c.Artifacts(context.Background())
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented {
		t.Fatalf("Artifacts = %v, want 501", err)
	}
	err = c.Logs(context.Background(), LogsRequest{Color: teal.Blue, Tail: -1}, io.Discard)
	if !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented {
		t.Fatalf("Logs = %v, want 501", err)
	}
}

func TestClient_Unreachable(t *testing.T) {
	hs := httptest.NewServer(http.NotFoundHandler())
	url := hs.URL
	hs.Close() // nothing listens there any more
	c := NewClient(url, testToken)
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Status = %v, want ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), url) {
		t.Fatalf("error %q does not name %s", err, url)
	}
	_, errs := c.Events(context.Background())
	if err := <-errs; !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Events = %v, want ErrUnreachable", err)
	}
}

func TestClient_CancelIsNotUnreachable(t *testing.T) {
	block := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(block) })
	c := NewClient(hs.URL, testToken)
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	_, err := c.Status(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("Status = %v, want context.Canceled and not ErrUnreachable", err)
	}

	c.Timeout = 20 * time.Millisecond
	_, err = c.Status(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Status past Timeout = %v, want ErrUnreachable", err)
	}
}

func TestClient_NonJSONError(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway from a proxy", http.StatusBadGateway)
	}))
	t.Cleanup(hs.Close)
	_, err := NewClient(hs.URL, testToken).Status(context.Background())
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusBadGateway || !strings.Contains(ae.Message, "bad gateway from a proxy") {
		t.Fatalf("Status = %v, want a 502 *Error quoting the body", err)
	}
}

// pipeLogs streams an instance's output from a pipe the test writes to, as the Kubernetes
// API streams a pod's log; it records what it was asked.
type pipeLogs struct {
	mu   sync.Mutex
	asks []string
	r    *io.PipeReader
}

func (p *pipeLogs) LogStream(ctx context.Context, c teal.Color, index, tail int, follow bool) (io.ReadCloser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asks = append(p.asks, fmt.Sprintf("%s/%d tail=%d follow=%v", c, index, tail, follow))
	if index > 0 {
		return nil, teal.Errorf(teal.ErrNotFound, "", "%s has 1 pod, no instance %d", c, index)
	}
	context.AfterFunc(ctx, func() { p.r.CloseWithError(ctx.Err()) })
	return p.r, nil
}

// wantCanceled waits for a followed Logs call to return context.Canceled once its context
// was cancelled.
func wantCanceled(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Logs after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Logs did not return after cancel")
	}
}

func TestServer_LogStreams(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	pr, pw := io.Pipe()
	logs := &pipeLogs{r: pr}
	e.srv.LogStreams = logs

	var b bytes.Buffer
	err := e.client.Logs(context.Background(), LogsRequest{Color: teal.Blue, Instance: 3, Tail: 5}, &b)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || !strings.Contains(ae.Error(), "no instance 3") {
		t.Fatalf("Logs(blue/3) error = %v, want 404 naming the instance", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- e.client.Logs(ctx, LogsRequest{Color: teal.Green, Follow: true, Tail: 2}, &out)
	}()
	for _, line := range []string{"one\n", "two\n"} {
		if _, err := io.WriteString(pw, line); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	waitFor(t, 5*time.Second, func() bool { return out.String() == "one\ntwo\n" })
	cancel()
	wantCanceled(t, done)
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if want := []string{"blue/3 tail=5 follow=false", "green/0 tail=2 follow=true"}; !slices.Equal(logs.asks, want) {
		t.Fatalf("streams asked = %q, want %q", logs.asks, want)
	}
}
