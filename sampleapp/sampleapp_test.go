package sampleapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"teal.dev/teal/internal/testutil"
)

// TestMain lets a test re-execute this binary as the sample app (TestRun_Crash).
func TestMain(m *testing.M) {
	if os.Getenv("SAMPLEAPP_TEST_RUN") == "1" {
		if err := Run(context.Background(), "127.0.0.1:0", "vtest"); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(runTests(m))
}

// runTests runs the tests with a throwaway Redis for the session tests.
func runTests(m *testing.M) int {
	addr, stop, err := testutil.StartRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	redisAddr = addr
	return m.Run()
}

func TestApp_Routes(t *testing.T) {
	tests := []struct {
		name       string
		app        App
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string // substring
	}{
		{"root", App{Version: "v1", Color: "blue", Instance: "0"}, "GET", "/", "", 200, "shop v1 (color blue, instance 0)"},
		{"root status knob", App{Version: "v1", RootStatus: 500}, "GET", "/", "", 500, "shop v1"},
		{"health", App{Version: "v1"}, "GET", "/healthz", "", 200, "ok"},
		{"health knob", App{Version: "v1", FailHealth: true}, "GET", "/healthz", "", 500, "unhealthy"},
		{"slow default", App{Version: "v2"}, "GET", "/slow", "", 200, "shop v2"},
		{"slow short", App{Version: "v2"}, "GET", "/slow?d=10ms", "", 200, "shop v2"},
		{"slow too long", App{Version: "v2"}, "GET", "/slow?d=31s", "", 400, "not between"},
		{"slow bad", App{Version: "v2"}, "GET", "/slow?d=x", "", 400, "parameter d"},
		{"echo", App{Version: "v1"}, "POST", "/echo", "hello there", 200, "hello there"},
		{"echo needs post", App{Version: "v1"}, "GET", "/echo", "", 405, "method not allowed"},
		{"unknown", App{Version: "v1"}, "GET", "/nope", "", 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&tt.app)
			t.Cleanup(srv.Close)
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("body = %q, want it to contain %q", body, tt.wantBody)
			}
		})
	}
}

func TestApp_Version(t *testing.T) {
	srv := httptest.NewServer(&App{Version: "v7", Color: "green", Instance: "1"})
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Version, Color, Instance string
		PID                      int
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Version != "v7" || got.Color != "green" || got.Instance != "1" || got.PID != os.Getpid() {
		t.Fatalf("version = %+v, want v7 green 1 pid %d", got, os.Getpid())
	}
}

func TestNew_Environment(t *testing.T) {
	t.Setenv("TEAL_COLOR", "green")
	t.Setenv("TEAL_INSTANCE", "3")
	t.Setenv("SAMPLE_FAIL_HEALTH", "1")
	t.Setenv("SAMPLE_STATUS_ROOT", "503")
	t.Setenv("SAMPLE_FAIL_FILE", "/tmp/x")
	got := *New("v9")
	want := App{Version: "v9", Color: "green", Instance: "3", FailHealth: true, RootStatus: 503, FailFile: "/tmp/x"}
	if got != want {
		t.Fatalf("New = %+v, want %+v", got, want)
	}
}

func TestApp_FailFile(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	srv := httptest.NewServer(&App{Version: "v1", FailFile: flag})
	t.Cleanup(srv.Close)
	status := func() int {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusOK {
		t.Fatalf("GET / without the file = %d, want 200", got)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != http.StatusInternalServerError {
		t.Fatalf("GET / with the file = %d, want 500", got)
	}
}

func TestApp_SlowHonoursClient(t *testing.T) {
	srv := httptest.NewServer(&App{Version: "v1"})
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow?d=30s", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// httptest's Close waits for handlers: it returns quickly only if /slow honoured the
	// request context.
	srv.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("slow handler kept running %s after the client left", d)
	}
}

func TestApp_WebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(&App{Version: "v3"})
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, msg := range []string{"hello", "again"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := "v3: " + msg; string(got) != want {
			t.Fatalf("reply = %q, want %q", got, want)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestRun_GracefulShutdown(t *testing.T) {
	addr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, addr, "v5") }()

	waitFor(t, 5*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// An in-flight request whose handler is known to be running: with "Expect:
	// 100-continue" the server answers 100 only once /echo reads the body, and the body is
	// sent only after the shutdown has started.
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	running := make(chan struct{})
	pr, pw := io.Pipe()
	go func() {
		trace := &httptrace.ClientTrace{Got100Continue: func() { close(running) }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			"POST", "http://"+addr+"/echo", pr)
		if err != nil {
			done <- result{err: err}
			return
		}
		req.Header.Set("Expect", "100-continue")
		req.ContentLength = int64(len("in flight"))
		client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
		resp, err := client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{string(b), err}
	}()
	<-running
	cancel()
	if _, err := io.WriteString(pw, "in flight"); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.body != "in flight" {
		t.Fatalf("request during shutdown = %q, %v; want %q", r.body, r.err, "in flight")
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestRun_ListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	err = Run(context.Background(), ln.Addr().String(), "v1")
	if err == nil || !strings.Contains(err.Error(), "sampleapp listen") {
		t.Fatalf("Run on a busy port = %v, want a listen error", err)
	}
}

func TestRun_Crash(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SAMPLEAPP_TEST_RUN=1", "SAMPLE_CRASH=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != CrashExitCode {
		t.Fatalf("crash run = %v, want exit status %d", err, CrashExitCode)
	}
	if !strings.Contains(stderr.String(), "SAMPLE_CRASH=1") {
		t.Fatalf("stderr = %q, want the crash message", stderr.String())
	}
}

func FuzzParseDelay(f *testing.F) {
	for _, s := range []string{"", "1s", "30s", "31s", "-1s", "1h", "x", "1.5ms"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDelay(s)
		if err == nil && (d < 0 || d > MaxSlow) {
			t.Fatalf("ParseDelay(%q) = %s, outside [0, %s]", s, d, MaxSlow)
		}
	})
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, "the condition", cond)
}
