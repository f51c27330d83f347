package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"teal.dev/teal"
	"teal.dev/teal/internal/load"
)

// Restarts without a refused connection (docs/restarts.md): a second `teal server`, or SIGHUP,
// takes the running server's sockets over under steady load, and no request fails.

// takeover starts a second `teal server` on the same config, which takes over from the
// running one; it returns once the old process exited 0 and the new one answers.
func (h *harness) takeover() {
	h.t.Helper()
	h.mu.Lock()
	old, oldExited := h.server, h.exited
	h.mu.Unlock()
	cmd, exited := h.spawn()
	h.waitHandedOver(old, oldExited, func() {
		select {
		case <-exited:
			h.t.Fatalf("the new teal server exited:\n%s", h.serverLog())
		default:
		}
	})
	h.mu.Lock()
	h.server, h.exited = cmd, exited
	h.mu.Unlock()
	h.waitAPI()
}

// hup sends SIGHUP to the running server, whose binary starts again and takes over; it
// returns once the old process exited 0 and the new one, found by the pid file, answers.
func (h *harness) hup() {
	h.t.Helper()
	h.mu.Lock()
	old, oldExited := h.server, h.exited
	h.mu.Unlock()
	if err := old.Process.Signal(syscall.SIGHUP); err != nil {
		h.t.Fatal(err)
	}
	h.waitHandedOver(old, oldExited, func() {})
	pid := h.pidFile()
	if pid == old.Process.Pid || pid == 0 {
		h.t.Fatalf("pid file names %d after the takeover, want the new server", pid)
	}
	h.mu.Lock()
	h.foreign = pid
	h.mu.Unlock()
	h.waitAPI()
}

// waitHandedOver waits until old exited, failing unless it exited 0 after a handover.
func (h *harness) waitHandedOver(old *exec.Cmd, exited chan struct{}, check func()) {
	h.t.Helper()
	waitFor(h.t, 60*time.Second, "the old server to hand over and exit", func() bool {
		check()
		select {
		case <-exited:
			return true
		default:
			return false
		}
	})
	if code := old.ProcessState.ExitCode(); code != 0 {
		h.t.Fatalf("the old server exited %d:\n%s", code, h.serverLog())
	}
	if !strings.Contains(h.serverLog(), "handed over: exiting") {
		h.t.Fatalf("the old server exited without handing over:\n%s", h.serverLog())
	}
}

// waitAPI waits until the API answers /healthz.
func (h *harness) waitAPI() {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, "server API up", func() bool {
		code, _, err := get(h.admin, "/healthz")
		return err == nil && code == 200
	})
}

// pidFile returns the pid in data_dir/teal.pid.
func (h *harness) pidFile() int {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, ".teal", "teal.pid"))
	if err != nil {
		h.t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		h.t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// stopForeign SIGTERMs the server started at SIGHUP and waits until it is gone.
func (h *harness) stopForeign() {
	h.t.Helper()
	h.mu.Lock()
	pid := h.foreign
	h.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		h.t.Fatalf("SIGTERM %d: %v", pid, err)
	}
	waitFor(h.t, 30*time.Second, "the server started at SIGHUP to stop", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		// Reparented to an init that may not reap: a zombie is gone too.
		i := strings.LastIndexByte(string(b), ')')
		return err == nil && i > 0 && i+2 < len(b) && b[i+2] == 'Z'
	})
	h.mu.Lock()
	h.foreign = 0
	h.mu.Unlock()
}

// underLoad runs trigger while the read load runs through listen, and checks that no
// request failed. It logs the longest request before and during the takeover.
func underLoad(t *testing.T, h *harness, what string, trigger func()) {
	t.Helper()
	l := startLoad(h.listen)
	waitMore(t, l, 4000) // a baseline with some 1 s requests done
	logPath := filepath.Join(h.dir, "server.log")
	logged, _ := os.ReadFile(logPath)
	began := time.Now()
	trigger()
	ended := time.Now()
	waitMore(t, l, 100)
	hits := l.Stop()
	failed := 0
	for _, x := range hits {
		if x.Err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("request %s at %s failed: %v", x.Path, x.Start.Format(time.StampMilli), x.Err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed during the %s", failed, len(hits), what)
	}
	t.Logf("%s: %d requests, 0 failed; took %s (start to the old process's exit)",
		what, len(hits), ended.Sub(began).Round(time.Millisecond))
	all, _ := os.ReadFile(logPath)
	for _, line := range strings.Split(string(all[len(logged):]), "\n") {
		for _, m := range []string{`msg="stopped for the takeover"`, `msg="took over"`, `msg="handed over: exiting"`} {
			if strings.Contains(line, m) {
				t.Logf("  log: %s", line[strings.Index(line, "msg="):])
			}
		}
	}
	for _, path := range []string{"/", "/echo", "/slow?d=1s"} {
		before, during := latencies(hits, path, began, ended)
		t.Logf("  %-10s before: %d requests, p50 %s, max %s | during: %d requests, p50 %s, max %s",
			path, len(before), pct(before, 50), pct(before, 100), len(during), pct(during, 50), pct(during, 100))
	}
}

// latencies returns the durations of the requests to path that started before began, and of
// those that overlapped [began, ended].
func latencies(hits []load.Hit, path string, began, ended time.Time) (before, during []time.Duration) {
	for _, x := range hits {
		if x.Path != path {
			continue
		}
		d := x.End.Sub(x.Start)
		switch {
		case x.End.Before(began):
			before = append(before, d)
		case !x.Start.After(ended):
			during = append(during, d)
		}
	}
	return before, during
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := (len(ds) - 1) * p / 100
	return ds[i].Round(100 * time.Microsecond)
}

// TestServer_HandoffSecondProcess: a second `teal server -c same.yaml` takes over under load.
func TestServer_HandoffSecondProcess(t *testing.T) {
	h := newHarness(t, options{})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")

	underLoad(t, h, "takeover by a second process", h.takeover)
	assertLive(t, h, teal.Blue, "v1")
	// A release after the takeover works, under load too.
	underLoad(t, h, "release of v2 after the takeover", func() { h.release("v2") })
	assertLive(t, h, teal.Green, "v2")
	h.stop()
}

// TestServer_HandoffSIGHUP: SIGHUP makes the server run its binary again, which takes over.
func TestServer_HandoffSIGHUP(t *testing.T) {
	h := newHarness(t, options{})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	oldPID := h.pidFile()

	underLoad(t, h, "takeover at SIGHUP", h.hup)
	if pid := h.pidFile(); pid == oldPID {
		t.Fatalf("pid file still names the old server %d", pid)
	}
	assertLive(t, h, teal.Blue, "v1")
	h.release("v2")
	assertLive(t, h, teal.Green, "v2")
	h.stopForeign()
	if _, err := os.Stat(filepath.Join(h.dir, ".teal", "teal.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket after a clean stop: %v, want removed", err)
	}
}

// TestServer_HandoffAtTheGate: a takeover while a release waits at the gate; the new process
// resumes the release, which is then promoted.
func TestServer_HandoffAtTheGate(t *testing.T) {
	h := newHarness(t, options{})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	deploy(t, h, "v2")
	id := h.waitRelease("v2 at the gate", atGate).ID

	underLoad(t, h, "takeover at the gate", h.takeover)
	rel := h.waitRelease("v2 at the gate after the takeover", atGate)
	if rel.ID != id || rel.Outcome != nil {
		t.Fatalf("after the takeover: release #%d outcome %v, want #%d at the gate", rel.ID, rel.Outcome, id)
	}
	if got := versionAt(t, h.prev); got != "v2" {
		t.Fatalf("preview after the takeover serves %s, want v2", got)
	}
	assertLive(t, h, teal.Blue, "v1")
	// The new process's health monitor starts afresh: the gate opens once it has seen green
	// healthy again (health.healthy_after checks).
	waitFor(t, 10*time.Second, "green healthy in the new process", func() bool {
		for _, e := range h.status().Environments {
			if e.Color == teal.Green {
				return len(e.Health) > 0 && !slices.ContainsFunc(e.Health, func(x teal.InstanceHealth) bool { return !x.Healthy })
			}
		}
		return false
	})
	promoteAndWait(t, h, teal.Green)
}

// TestServer_NoTakeover: --no-takeover refuses to start beside a running server, naming it.
func TestServer_NoTakeover(t *testing.T) {
	h := newHarness(t, options{})
	cmd, exited := h.spawn("--no-takeover")
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("teal server --no-takeover still running after 30s")
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("teal server --no-takeover exited %d, want 3", code)
	}
	want := fmt.Sprintf("already running (pid %d)", h.server.Process.Pid)
	if !strings.Contains(h.serverLog(), want) {
		t.Fatalf("log lacks %q:\n%s", want, h.serverLog())
	}
	if _, err := h.client.Status(context.Background()); err != nil {
		t.Fatalf("the running server after --no-takeover: %v", err)
	}
}

// TestServer_HandoffFailsOldResumes: a new process that fails after the old one stopped its
// state (here: a tokens_file it cannot read) gives up; the old one resumes in place and later
// hands over to a good one. No request fails throughout.
func TestServer_HandoffFailsOldResumes(t *testing.T) {
	h := newHarness(t, options{})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	good, err := os.ReadFile(h.cfg)
	if err != nil {
		t.Fatal(err)
	}

	underLoad(t, h, "failed takeover, resume, then a takeover", func() {
		broken := string(good) + "tokens_file: missing.tokens\n"
		if err := os.WriteFile(h.cfg, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd, exited := h.spawn()
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			t.Fatal("the failing teal server still runs after 60s")
		}
		if code := cmd.ProcessState.ExitCode(); code == 0 {
			t.Fatalf("the failing teal server exited 0:\n%s", h.serverLog())
		}
		waitFor(t, 20*time.Second, "the old server to resume", func() bool {
			return strings.Contains(h.serverLog(), "resumed after a failed takeover")
		})
		if err := os.WriteFile(h.cfg, good, 0o644); err != nil {
			t.Fatal(err)
		}
		h.waitAPI()
		assertLive(t, h, teal.Blue, "v1")
		h.takeover()
	})
	for _, want := range []string{"read tokens_file", `msg="takeover failed: resuming"`} {
		if !strings.Contains(h.serverLog(), want) {
			t.Errorf("server log lacks %q", want)
		}
	}
	h.release("v2")
	assertLive(t, h, teal.Green, "v2")
}

// TestServer_HandoffWithBuiltinDNS: the colours' endpoints are handed over like the other
// listeners (no request through blue's endpoint fails); the built-in DNS server's sockets are
// not: the new process binds them once the old one closed them, and the test measures how long
// queries went unanswered.
func TestServer_HandoffWithBuiltinDNS(t *testing.T) {
	dnsPort := freePorts(t, 1)[0]
	h := newHarness(t, options{extra: fmt.Sprintf(`dns:
  provider: builtin
  zone: example.test.
  record: shop.example.test.
  ttl: 5s
  targets: { blue: 127.0.0.2, green: 127.0.0.3 }
  builtin: { listen: 127.0.0.1:%d }
`, dnsPort)})
	server := "127.0.0.1:" + strconv.Itoa(dnsPort)
	port := h.listen[strings.LastIndex(h.listen, ":")+1:]
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.release("v1")

	// DNS queries during the takeover, each with a short timeout and no retry.
	stop := make(chan struct{})
	type query struct {
		at     time.Time
		answer bool
	}
	queries := make(chan []query, 1)
	go func() {
		var qs []query
		c := &dns.Client{Timeout: 100 * time.Millisecond}
		m := new(dns.Msg)
		m.SetQuestion("shop.example.test.", dns.TypeA)
		for {
			select {
			case <-stop:
				queries <- qs
				return
			default:
			}
			at := time.Now()
			r, _, err := c.Exchange(m, server)
			qs = append(qs, query{at, err == nil && len(r.Answer) == 1})
			if err != nil {
				select { // a refused UDP query fails at once: do not spin
				case <-stop:
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
	}()
	underLoad(t, h, "takeover with the built-in DNS, load through blue's endpoint", func() {
		l := startLoad("127.0.0.2:" + port)
		waitMore(t, l, 200)
		h.takeover()
		waitMore(t, l, 200)
		for _, x := range l.Stop() {
			if x.Err != nil {
				t.Fatalf("a request through blue's endpoint failed: %v", x.Err)
			}
		}
	})
	close(stop)
	qs := <-queries
	var first, last time.Time
	unanswered := 0
	for _, q := range qs {
		if q.answer {
			continue
		}
		unanswered++
		if first.IsZero() {
			first = q.at
		}
		last = q.at
	}
	t.Logf("DNS: %d of %d queries unanswered, between %s and %s (%s)", unanswered, len(qs),
		first.Format(time.StampMilli), last.Format(time.StampMilli), last.Sub(first).Round(time.Millisecond))
	if a, _, _ := lookup(t, server); a != "127.0.0.2" {
		t.Fatalf("after the takeover: A %s, want 127.0.0.2", a)
	}
}
