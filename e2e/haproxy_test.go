package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/haproxy"
	"teal.dev/teal/internal/testutil"
)

// TestHAProxy_ReleaseAndRollback: router: haproxy — teal fills a running HAProxy's server slots
// and moves traffic with their weights and states; under steady load through HAProxy's frontend
// a release and a rollback fail no request.
func TestHAProxy_ReleaseAndRollback(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (make test installs it): %v", err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	front := addr(freePorts(t, 1)[0])
	cfg := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend fe
    bind %s
    default_backend shop
backend shop
    balance roundrobin
    option httpchk GET /healthz
    server-template blue 1-2 127.0.0.1:1 disabled check inter 200ms
    server-template green 1-2 127.0.0.1:1 disabled check inter 200ms
`, sock, front)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	hp := exec.Command(bin, "-f", cfgPath, "-db", "-W") // master-worker: SIGUSR2 reloads
	hp.Stdout, hp.Stderr = os.Stderr, os.Stderr
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hp.Process.Signal(syscall.SIGKILL); _ = hp.Wait() })
	waitFor(t, 10*time.Second, "haproxy's admin socket", func() bool { _, err := os.Stat(sock); return err == nil })

	h := newHarness(t, options{top: fmt.Sprintf("router: haproxy\nhaproxy: { socket: %s, backend: shop }\n", sock)})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	waitFor(t, 10*time.Second, "v1 through haproxy", func() bool {
		code, _, err := get(front, "/")
		return err == nil && code == http.StatusOK
	})
	if v := versionAt(t, front); v != "v1" {
		t.Fatalf("haproxy answers %s, want v1", v)
	}
	l := startLoad(front)
	// At the gate the preview is teal's own (docs/haproxy.md): the built-in router, kept in
	// step with HAProxy's slots, serves the idle colour there, and listen the live one.
	if _, err := h.client.Deploy(t.Context(), "v2"); err != nil {
		t.Fatalf("deploy v2: %v", err)
	}
	if rel := h.waitRelease("v2 at the gate", atGate); rel.Outcome != nil {
		t.Fatalf("v2 ended %s before the gate: %s", *rel.Outcome, rel.Error)
	}
	for _, c := range []struct{ where, addr, want string }{
		{"haproxy", front, "v1"}, {"teal's preview", h.prev, "v2"}, {"teal's listen", h.listen, "v1"},
	} {
		if got := versionAt(t, c.addr); got != c.want {
			t.Fatalf("at the gate %s serves %s, want %s", c.where, got, c.want)
		}
	}
	// What the built-in router alone could do is refused, not silently done beside HAProxy.
	if _, err := h.client.Maintenance(t.Context(), true); err == nil || !strings.Contains(err.Error(), "no maintenance mode") {
		t.Fatalf("maintenance on behind haproxy: %v, want it refused (no maintenance mode)", err)
	}
	if _, err := h.client.Promote(t.Context()); err != nil {
		t.Fatalf("promote v2: %v", err)
	}
	if rel := h.waitRelease("v2 released", ended); *rel.Outcome != teal.OutcomeReleased {
		t.Fatalf("v2 ended %s: %s", *rel.Outcome, rel.Error)
	}
	waitMore(t, l, 100)
	if v := versionAt(t, front); v != "v2" {
		t.Fatalf("after the release haproxy answers %s, want v2", v)
	}
	if _, err := h.client.Rollback(t.Context(), false); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	waitMore(t, l, 100)
	hits := l.Stop()
	if v := versionAt(t, front); v != "v1" {
		t.Fatalf("after the rollback haproxy answers %s, want v1", v)
	}
	for _, x := range hits {
		if x.Err != nil {
			t.Fatalf("a request through haproxy failed during the release or the rollback: %v", x.Err)
		}
	}
	st := h.status()
	if st.Live.Color != teal.Blue {
		t.Fatalf("live = %s after the rollback, want blue", st.Live.Color)
	}
	t.Logf("%d requests through haproxy, 0 failed, across a release and a rollback", len(hits))

	// A reload of HAProxy (systemctl reload) goes back to haproxy.cfg, every slot disabled:
	// teal notices the new worker and puts its servers back without being asked.
	api := &haproxy.Client{Socket: sock, Timeout: time.Second}
	old, err := api.ProcessID(t.Context())
	if err != nil {
		t.Fatalf("show info: %v", err)
	}
	// A master that did not act on the signal (still starting) gets it again.
	testutil.SignalUntil(t, hp.Process.Pid, syscall.SIGUSR2, 2*time.Second, 20*time.Second, "a new haproxy worker", func() bool {
		p, err := api.ProcessID(t.Context())
		return err == nil && p != old
	})
	reloaded := time.Now()
	sawDown := false
	waitFor(t, 15*time.Second, "v1 through haproxy again after its reload", func() bool {
		code, body, err := get(front, "/")
		if err != nil || code != http.StatusOK {
			sawDown = true
			return false
		}
		return strings.Contains(body, "v1")
	})
	t.Logf("haproxy reloaded: serving v1 again %s later (503s seen in between: %v)", time.Since(reloaded).Round(time.Millisecond), sawDown)
	waitFor(t, 5*time.Second, "the server log to say it set haproxy's servers again", func() bool {
		return strings.Contains(h.serverLog(), "haproxy was reloaded")
	})
}
