package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
	"teal.dev/teal/artifact"
)

const cliTestToken = "test-token"

// fakeController is a small stateful controller behind a real api.Server: one release at a
// time, which a test moves along with update (each update is published as an event).
type fakeController struct {
	mu      sync.Mutex
	status  teal.Status
	rel     *teal.Release
	subs    map[chan *teal.Event]struct{}
	eventID int64

	deployErr error
	// onDeploy runs in its own goroutine after Deploy answered, to play the release.
	onDeploy func(f *fakeController)
	promote  func(f *fakeController) (*teal.Release, error)
	rollback func(f *fakeController, req teal.RollbackRequest) (*teal.Release, error)
	actors   []string
}

var _ api.Controller = (*fakeController)(nil)

func (f *fakeController) Status(context.Context) (*teal.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	if f.rel != nil {
		st.Release = copyRelease(f.rel)
	}
	return &st, nil
}

func (f *fakeController) Deploy(_ context.Context, req teal.DeployRequest) (*teal.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actors = append(f.actors, req.Actor)
	if f.deployErr != nil {
		return nil, f.deployErr
	}
	var id int64 = 7
	if f.rel != nil {
		id = f.rel.ID + 1
	}
	f.rel = &teal.Release{ID: id, Version: req.Version, Color: teal.Green, From: teal.Blue, Phase: teal.PhaseProvisioning,
		Actor: req.Actor, Created: time.Now().UTC(), Steps: []teal.Step{}}
	if f.onDeploy != nil {
		go f.onDeploy(f)
	}
	return copyRelease(f.rel), nil
}

func (f *fakeController) Promote(_ context.Context, actor string) (*teal.Release, error) {
	f.mu.Lock()
	f.actors = append(f.actors, actor)
	f.mu.Unlock()
	if f.promote == nil {
		return nil, teal.Errorf(teal.ErrConflict, "start one with teal deploy VERSION", "no release is waiting to be promoted")
	}
	return f.promote(f)
}

func (f *fakeController) Abort(_ context.Context, actor string) (*teal.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rel == nil || f.rel.Outcome != nil {
		return nil, teal.Errorf(teal.ErrConflict, "", "no release is in progress")
	}
	o := teal.OutcomeAborted
	f.rel.Outcome = &o
	return copyRelease(f.rel), nil
}

func (f *fakeController) Rollback(_ context.Context, req teal.RollbackRequest) (*teal.Release, error) {
	if f.rollback == nil {
		return nil, teal.Errorf(teal.ErrConflict, "", "nothing is live: nothing to roll back")
	}
	return f.rollback(f, req)
}

func (f *fakeController) Release(_ context.Context, id int64) (*teal.Release, []*teal.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rel == nil || f.rel.ID != id {
		return nil, nil, teal.Errorf(teal.ErrNotFound, "", "release #%d not found", id)
	}
	return copyRelease(f.rel), nil, nil
}

func (f *fakeController) Releases(_ context.Context, limit int) ([]*teal.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rel == nil {
		return nil, nil
	}
	return []*teal.Release{copyRelease(f.rel)}, nil
}

func (f *fakeController) Subscribe() (<-chan *teal.Event, func()) {
	ch := make(chan *teal.Event, 64)
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

// update changes the current release and publishes an event about it.
func (f *fakeController) update(change func(r *teal.Release)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f.rel)
	f.eventID++
	ev := &teal.Event{ID: f.eventID, ReleaseID: f.rel.ID, Time: time.Now().UTC(), Kind: teal.EventPhase, Message: string(f.rel.Phase)}
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func copyRelease(r *teal.Release) *teal.Release {
	out := *r
	out.Steps = append([]teal.Step(nil), r.Steps...)
	return &out
}

// step returns a step that ran from 2s ago for d.
func testStep(name string, state teal.StepState, d time.Duration, errMsg string) teal.Step {
	start := time.Now().Add(-2 * time.Second).UTC()
	s := teal.Step{Name: name, State: state, Started: start, Error: errMsg}
	if state != teal.StepRunning {
		end := start.Add(d)
		s.Finished = &end
	}
	return s
}

// dirLogs serves instance output from <dir>/<color>-<index>.log.
type dirLogs struct{ dir string }

func (l dirLogs) LogFile(c teal.Color, index int) (string, error) {
	return filepath.Join(l.dir, fmt.Sprintf("%s-%d.log", c, index)), nil
}

// cliEnv is a real API server, with a real artifact store, in front of a fake controller,
// and the flags to reach it.
type cliEnv struct {
	ctl    *fakeController
	srv    *api.Server
	http   *httptest.Server
	args   []string
	logDir string
}

func newCLIEnv(t *testing.T, ctl *fakeController) *cliEnv {
	t.Helper()
	t.Setenv("TEAL_SERVER", "")
	t.Setenv("TEAL_TOKEN", "")
	store := artifact.NewStore(t.TempDir())
	if err := store.Open(context.Background()); err != nil {
		t.Fatalf("open artifact store: %v", err)
	}
	logDir := t.TempDir()
	srv := api.NewServer(ctl, store, dirLogs{logDir}, cliTestToken)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(func() { _ = srv.Close() }) // runs first: ends the event streams
	return &cliEnv{ctl: ctl, srv: srv, http: hs, logDir: logDir, args: []string{"--server", hs.URL, "--token", cliTestToken}}
}

// run runs the teal command with the env's server flags first.
func (e *cliEnv) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLI(t, append(append([]string{}, e.args...), args...)...)
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAdminURL(t *testing.T) {
	tests := []struct {
		name, admin, want string
	}{
		{"loopback", "127.0.0.1:7070", "http://127.0.0.1:7070"},
		{"no host", ":7070", "http://127.0.0.1:7070"},
		{"wildcard v4", "0.0.0.0:7070", "http://127.0.0.1:7070"},
		{"wildcard v6", "[::]:7070", "http://[::1]:7070"},
		{"name", "admin.internal:7070", "http://admin.internal:7070"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := adminURL(tt.admin); got != tt.want {
				t.Fatalf("adminURL(%q) = %q, want %q", tt.admin, got, tt.want)
			}
		})
	}
}

// TestRun_ServerFromConfig finds the server and the token through teal.yaml alone.
func TestRun_ServerFromConfig(t *testing.T) {
	e := newCLIEnv(t, &fakeController{status: teal.Status{App: "shop"}})
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "secret", "admin.token")
	if err := os.MkdirAll(filepath.Dir(tokenFile), 0o700); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := os.WriteFile(tokenFile, []byte(cliTestToken+"\n"), 0o600); err != nil {
		t.Fatalf("write token: %v", err)
	}
	cfg := filepath.Join(dir, "teal.yaml")
	admin := strings.TrimPrefix(e.http.URL, "http://")
	yaml := fmt.Sprintf("app: shop\nadmin: %s\nadmin_token_file: secret/admin.token\n", admin)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}

	code, out, errOut := runCLI(t, "-c", cfg, "status", "--json")
	if code != exitOK {
		t.Fatalf("exit = %d, want 0 (stderr %s)", code, errOut)
	}
	if !strings.Contains(out, `"app": "shop"`) {
		t.Fatalf("stdout = %s, want the status", out)
	}

	t.Run("environment wins over the config", func(t *testing.T) {
		t.Setenv("TEAL_TOKEN", "wrong")
		code, _, errOut := runCLI(t, "-c", cfg, "status")
		if code != exitUnreachable {
			t.Fatalf("exit = %d, want %d (stderr %s)", code, exitUnreachable, errOut)
		}
	})
	t.Run("missing token file", func(t *testing.T) {
		if err := os.Remove(tokenFile); err != nil {
			t.Fatalf("remove token: %v", err)
		}
		code, _, errOut := runCLI(t, "-c", cfg, "status")
		if code != exitUnreachable || !strings.Contains(errOut, "hint: teal server creates it") {
			t.Fatalf("exit = %d, stderr %q; want %d with a hint", code, errOut, exitUnreachable)
		}
	})
	t.Run("no config and no server", func(t *testing.T) {
		code, _, errOut := runCLI(t, "-c", filepath.Join(dir, "nope.yaml"), "status")
		if code != exitUsage || !strings.HasPrefix(errOut, "teal: ") {
			t.Fatalf("exit = %d, stderr %q; want %d", code, errOut, exitUsage)
		}
	})
}

func TestRun_Unreachable(t *testing.T) {
	hs := httptest.NewServer(nil)
	url := hs.URL
	hs.Close()
	t.Setenv("TEAL_SERVER", "")
	t.Setenv("TEAL_TOKEN", "")
	for _, args := range [][]string{{"status"}, {"deploy", "v2", "--wait"}, {"history"}} {
		t.Run(args[0], func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"--server", url, "--token", "x"}, args...)...)
			if code != exitUnreachable {
				t.Fatalf("exit = %d, want %d (stderr %s)", code, exitUnreachable, errOut)
			}
			if !strings.HasPrefix(errOut, "teal: cannot reach the teal server") || !strings.Contains(errOut, "\nhint: ") {
				t.Fatalf("stderr = %q, want the error and a hint", errOut)
			}
		})
	}
}

func TestRun_Unauthorised(t *testing.T) {
	e := newCLIEnv(t, &fakeController{})
	code, _, errOut := runCLI(t, "--server", e.http.URL, "--token", "wrong", "status")
	if code != exitUnreachable {
		t.Fatalf("exit = %d, want %d (stderr %s)", code, exitUnreachable, errOut)
	}
	if !strings.Contains(errOut, "unauthorised") || !strings.Contains(errOut, "hint: ") {
		t.Fatalf("stderr = %q, want unauthorised with a hint", errOut)
	}
}
