package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
	"teal.dev/teal/internal/testutil"
)

// syncBuffer is a log sink several servers write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// serverConfig writes a teal.yaml with no instances to run yet and loads it.
func serverConfig(t *testing.T) teal.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "teal.yaml")
	yaml := fmt.Sprintf("app: unit\nlisten: %s\npreview: %s\nadmin: %s\nrun:\n  command: [\"/bin/true\"]\nrelease:\n  drain_timeout: 2s\n",
		testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t))
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := teal.LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return cfg
}

func answers(addr, path string) bool {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// TestRunServer_TakeoverInProcess runs two servers of one config in this process: the second
// takes the first one's sockets over, the first drains and returns nil; --no-takeover is
// refused meanwhile; a clean stop removes the control socket and the pid file.
func TestRunServer_TakeoverInProcess(t *testing.T) {
	cfg := serverConfig(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	start := func(noTakeover bool) (context.CancelFunc, <-chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		s := &server{Config: cfg, Logger: logger}
		go func() { done <- runServer(ctx, s, noTakeover) }()
		t.Cleanup(cancel)
		return cancel, done
	}
	wait := func(done <-chan error, what string) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: still running after 30s", what)
			return nil
		}
	}

	_, first := start(false)
	testutil.WaitFor(t, 20*time.Second, "first server up", func() bool { return answers(cfg.Admin, "/healthz") })
	sock := filepath.Join(cfg.DataDir, "teal.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, %v; want mode 600", fi, err)
	}

	_, refused := start(true)
	err := wait(refused, "--no-takeover")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitConflict || !strings.Contains(err.Error(), fmt.Sprintf("already running (pid %d)", os.Getpid())) {
		t.Fatalf("--no-takeover beside a running server = %v, want exit %d naming pid %d", err, exitConflict, os.Getpid())
	}

	// The maintenance page lives in the running router only: a takeover is refused meanwhile.
	tok, err := os.ReadFile(cfg.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	client := api.NewClient("http://"+cfg.Admin, strings.TrimSpace(string(tok)))
	if _, err := client.Maintenance(context.Background(), true); err != nil {
		t.Fatalf("maintenance on: %v", err)
	}
	_, refused = start(false)
	if err := wait(refused, "a takeover during maintenance"); err == nil || !strings.Contains(err.Error(), "maintenance page is on") {
		t.Fatalf("a takeover during maintenance = %v, want refused naming the maintenance page", err)
	}
	if _, err := client.Maintenance(context.Background(), false); err != nil {
		t.Fatalf("maintenance off (the first server still serves): %v", err)
	}

	stop2, second := start(false)
	if err := wait(first, "the first server after the takeover"); err != nil {
		t.Fatalf("the first server returned %v after handing over, want nil", err)
	}
	if !strings.Contains(logs.String(), `msg="handed over: exiting"`) {
		t.Fatalf("no handover logged:\n%s", logs.String())
	}
	for _, a := range []string{cfg.Admin, cfg.Listen, cfg.Preview} {
		if !answers(a, "/healthz") {
			t.Fatalf("%s does not answer after the takeover", a)
		}
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, "teal.pid"))
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("pid file = %q, %v", b, err)
	}

	stop2()
	if err := wait(second, "the second server after SIGTERM"); err != nil {
		t.Fatalf("the second server's stop: %v", err)
	}
	for _, f := range []string{"teal.sock", "teal.pid"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after a clean stop: %v, want removed", f, err)
		}
	}
}
