// Package e2e tests teal as users run it: the real binary as a server process, the built-in
// sample app as real instance processes, and HTTP through the real router.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
	"teal.dev/teal/internal/freeport"
	"teal.dev/teal/internal/load"
	"teal.dev/teal/internal/testutil"
)

// tealBin is the teal binary built once for the whole package.
var tealBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "teal-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tealBin = filepath.Join(dir, "teal")
	build := exec.Command("go", "build", "-o", tealBin, "teal.dev/teal/cmd/teal")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build teal:", err)
		return 1
	}
	defer stopKube()
	return m.Run()
}

// harness is one app's teal server, run as a child process, with its config and artifacts in
// a temporary directory.
type harness struct {
	t      *testing.T
	dir    string
	app    string
	cfg    string
	listen string
	admin  string
	prev   string
	client *api.Client

	mu     sync.Mutex
	server *exec.Cmd
	exited chan struct{}
	// foreign is the pid of a server that is not this test's child (started by the last
	// one at SIGHUP, see handoff_test.go); 0 when server is the server.
	foreign int
}

// options of a harness's teal.yaml.
type options struct {
	healthDeadline time.Duration
	approval       string
	autoAfter      time.Duration
	keepOld        time.Duration
	extra          string // more teal.yaml, appended as is
	runExtra       string // more keys of run:, indented, like "  launch: [./l]\n"
	top            string // more top-level keys, before run:
	// raw replaces everything after app: and admin: (no listen, preview or run: of the
	// local provider); the options above are then unused.
	raw string
}

var appSeq atomic.Int64

func newHarness(t *testing.T, o options) *harness {
	t.Helper()
	if o.healthDeadline == 0 {
		o.healthDeadline = 15 * time.Second
	}
	if o.approval == "" {
		o.approval = "manual"
	}
	if o.keepOld == 0 {
		o.keepOld = 10 * time.Minute
	}
	autoAfter := ""
	if o.approval == "auto" {
		autoAfter = fmt.Sprintf("\n  auto_after: %s", o.autoAfter)
	}
	h := &harness{t: t, dir: t.TempDir(), app: fmt.Sprintf("e2e-%d-%d", os.Getpid(), appSeq.Add(1))}
	ports := freePorts(t, 3)
	h.listen, h.prev, h.admin = addr(ports[0]), addr(ports[1]), addr(ports[2])
	h.cfg = filepath.Join(h.dir, "teal.yaml")
	yaml := fmt.Sprintf(`app: %s
listen: %s
preview: %s
admin: %s
%srun:
  command: ["{artifact}/app"]
  instances: 2
  stop_timeout: 3s
%shealth:
  interval: 100ms
  timeout: 1s
  healthy_after: 2
  unhealthy_after: 2
  deadline: %s
release:
  approval: %s%s
  drain_timeout: 5s
  keep_old: %s
%s`, h.app, h.listen, h.prev, h.admin, o.top, o.runExtra, o.healthDeadline, o.approval, autoAfter, o.keepOld, o.extra)
	if o.raw != "" {
		h.listen, h.prev = "", ""
		yaml = fmt.Sprintf("app: %s\nadmin: %s\n%s", h.app, h.admin, o.raw)
	}
	if err := os.WriteFile(h.cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.cleanup)
	h.start()
	tok, err := os.ReadFile(filepath.Join(h.dir, ".teal", "admin.token"))
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	h.client = api.NewClient("http://"+h.admin, strings.TrimSpace(string(tok)))
	h.client.Actor = "cli:e2e"
	return h
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := freeport.Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// artifact writes a directory artifact that runs the sample app as version v; env and flags
// make it misbehave.
func (h *harness) artifact(name, v, env, flags string) string {
	h.t.Helper()
	dir := filepath.Join(h.dir, "build", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\n%s exec %q sample-app --version %s %s\n", env, tealBin, v, flags)
	if err := os.WriteFile(filepath.Join(dir, "app"), []byte(script), 0o755); err != nil {
		h.t.Fatal(err)
	}
	return dir
}

// push stores an artifact under version v.
func (h *harness) push(v, path string) {
	h.t.Helper()
	if _, err := h.client.PushArtifact(context.Background(), v, path); err != nil {
		h.t.Fatalf("push %s: %v", v, err)
	}
}

// start runs `teal server` and waits until its API answers.
func (h *harness) start() {
	h.t.Helper()
	cmd, exited := h.spawn()
	h.mu.Lock()
	h.server, h.exited = cmd, exited
	h.mu.Unlock()
	waitFor(h.t, 20*time.Second, "server API up", func() bool {
		select {
		case <-exited:
			h.t.Fatalf("teal server exited:\n%s", h.serverLog())
		default:
		}
		resp, err := http.Get("http://" + h.admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// spawn starts `teal server` with args more, its output appended to server.log; exited is
// closed once it has exited.
func (h *harness) spawn(more ...string) (*exec.Cmd, chan struct{}) {
	h.t.Helper()
	logf, err := os.OpenFile(filepath.Join(h.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(tealBin, append([]string{"server", "-c", h.cfg}, more...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	return cmd, exited
}

// stop SIGTERMs the server and waits for it to exit cleanly.
func (h *harness) stop() {
	h.t.Helper()
	h.mu.Lock()
	cmd, exited := h.server, h.exited
	h.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		h.t.Fatalf("teal server did not stop within 30s of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		h.t.Fatalf("teal server exited %d after SIGTERM:\n%s", code, h.serverLog())
	}
}

// kill SIGKILLs the server, as a crash would.
func (h *harness) kill() {
	h.t.Helper()
	h.mu.Lock()
	cmd, exited := h.server, h.exited
	h.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (h *harness) serverLog() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "server.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// cleanup stops the server and every instance process of this app, found by the TEAL_APP
// variable teal injects, so that no test leaves processes behind.
func (h *harness) cleanup() {
	h.mu.Lock()
	cmd, exited, foreign := h.server, h.exited, h.foreign
	h.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	if foreign != 0 {
		_ = syscall.Kill(foreign, syscall.SIGKILL)
	}
	if h.t.Failed() {
		h.t.Logf("server log:\n%s", h.serverLog())
	}
	want := []byte("TEAL_APP=" + h.app + "\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, want) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// status is the server's status; it fails the test when the server cannot answer.
func (h *harness) status() *teal.Status {
	h.t.Helper()
	st, err := h.client.Status(context.Background())
	if err != nil {
		h.t.Fatalf("status: %v", err)
	}
	return st
}

// waitRelease waits until the current release satisfies cond.
func (h *harness) waitRelease(what string, cond func(r *teal.Release) bool) *teal.Release {
	h.t.Helper()
	var rel *teal.Release
	waitFor(h.t, 30*time.Second, what, func() bool {
		st, err := h.client.Status(context.Background())
		if err != nil {
			return false
		}
		rel = st.Release
		return rel != nil && cond(rel)
	})
	return rel
}

func outcomeIs(o teal.Outcome) func(*teal.Release) bool {
	return func(r *teal.Release) bool { return r.Outcome != nil && *r.Outcome == o }
}

func ended(r *teal.Release) bool { return r.Outcome != nil }

func atGate(r *teal.Release) bool { return r.Phase == teal.PhaseAwaitingRelease || r.Outcome != nil }

// release deploys v and promotes it (unless it is the first), waiting until it is released.
func (h *harness) release(v string) *teal.Release {
	h.t.Helper()
	ctx := context.Background()
	if _, err := h.client.Deploy(ctx, v); err != nil {
		h.t.Fatalf("deploy %s: %v", v, err)
	}
	rel := h.waitRelease("release of "+v+" at the gate", atGate)
	if rel.Outcome == nil {
		if _, err := h.client.Promote(ctx); err != nil {
			h.t.Fatalf("promote %s: %v", v, err)
		}
	}
	rel = h.waitRelease("release of "+v+" ended", ended)
	if *rel.Outcome != teal.OutcomeReleased {
		h.t.Fatalf("release of %s ended %s: %s", v, *rel.Outcome, rel.Error)
	}
	return rel
}

// get fetches path from addr and returns the status and body.
func get(addr, path string) (int, string, error) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// versionAt returns the version the sample app at addr reports on /.
func versionAt(t *testing.T, addr string) string {
	t.Helper()
	code, body, err := get(addr, "/")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET http://%s/ = %d %q, %v", addr, code, body, err)
	}
	f := strings.Fields(body)
	if len(f) < 2 {
		t.Fatalf("GET http://%s/ = %q: no version", addr, body)
	}
	return f[1]
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}

// startLoad starts the read load the e2e tests use: plain GETs, two 1 s clients and POSTs.
func startLoad(addr string) *load.Reads {
	return load.StartReads("http://"+addr, load.ReadsOptions{Plain: 4, Slow: 2, Posts: 1})
}

// waitMore waits until the load got n more answers.
func waitMore(t *testing.T, l *load.Reads, n int) {
	t.Helper()
	start := l.Count()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d more answers", n), func() bool { return l.Count() >= start+n })
}
