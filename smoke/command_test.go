package smoke

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal/internal/testutil"
)

// syncBuffer is an Output read by the test while the command writes to it.
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

func sh(script string) []string { return []string{"sh", "-c", script, "sh"} }

// gone reports whether pid has exited: no such process, or a zombie nobody reaped yet (in a
// container the test may run as a child of a PID 1 that does not reap).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// childPID reads the pid a script wrote to file, once it is there.
func childPID(t *testing.T, file string) int {
	t.Helper()
	var pid int
	testutil.WaitFor(t, 10*time.Second, "the script's child pid", func() bool {
		b, err := os.ReadFile(file)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	return pid
}

func TestRunner_CommandPass(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	err := (&Runner{}).Command(context.Background(), CommandRequest{
		Argv: append(sh(`echo "url=$1 color={color} env=$TEAL_PREVIEW_URL unknown={x}"; pwd; echo warn >&2`),
			"{preview_url}/{version}"),
		Vars:    map[string]string{"preview_url": "http://127.0.0.1:8081", "color": "green", "version": "v2"},
		Dir:     dir,
		Env:     []string{"TEAL_PREVIEW_URL=http://127.0.0.1:8081"},
		Timeout: 10 * time.Second,
		Output:  &out,
	})
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	want := "url=http://127.0.0.1:8081/v2 color=green env=http://127.0.0.1:8081 unknown={x}\n" + dir + "\nwarn\n"
	if got := out.String(); got != want {
		t.Fatalf("Output = %q, want %q", got, want)
	}
}

func TestRunner_CommandExitStatus(t *testing.T) {
	err := (&Runner{}).Command(context.Background(), CommandRequest{
		Argv:    sh(`for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3`),
		Timeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatal("Command = nil, want exit status 3")
	}
	msg := err.Error()
	for _, want := range []string{`verify command "sh -c for i in`, ": exit status 3; last output:\n", "\n  line 12\n", "\n  line 30\n  oops"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error = %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "line 11\n") || strings.Count(msg, "\n  ") != tailLines {
		t.Fatalf("error = %q, want only the last %d lines", msg, tailLines)
	}
	var exit interface{ ExitCode() int }
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("error = %v, want it to wrap the exit code 3", err)
	}
}

func TestRunner_CommandStartFails(t *testing.T) {
	err := (&Runner{}).Command(context.Background(), CommandRequest{Argv: []string{"./no-such-check"}, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `verify command "./no-such-check": start:`) {
		t.Fatalf("Command error = %v, want a start failure naming the command", err)
	}
	if err := (&Runner{}).Command(context.Background(), CommandRequest{}); err == nil {
		t.Fatal("Command with no argv = nil, want an error")
	}
}

func TestRunner_CommandTimeoutKillsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	err := (&Runner{}).Command(context.Background(), CommandRequest{
		// "started" is written after the pid, so the output shows the pid file is there.
		Argv:    sh(`sleep 30 & echo $! > ` + pidFile + `; echo started; wait`),
		Timeout: time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), ": timed out after 1s; last output:\n  started") {
		t.Fatalf("Command error = %v, want a timeout after 1s with the output", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Command took %s, want it to return soon after the timeout", d)
	}
	pid := childPID(t, pidFile)
	testutil.WaitFor(t, 10*time.Second, "the script's sleep to be killed", func() bool { return gone(pid) })
}

func TestRunner_CommandExitKillsLeftovers(t *testing.T) {
	// The script passes but leaves a child behind, holding the output pipe open.
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	err := (&Runner{}).Command(context.Background(), CommandRequest{
		Argv:    sh(`sleep 30 & echo $! > ` + pidFile),
		Timeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Command took %s, want it not to wait for the leftover child", d)
	}
	pid := childPID(t, pidFile)
	testutil.WaitFor(t, 10*time.Second, "the leftover sleep to be killed", func() bool { return gone(pid) })
}

func TestRunner_CommandStreamsOutputAndStopsWithContext(t *testing.T) {
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- (&Runner{}).Command(ctx, CommandRequest{Argv: sh(`echo ready; exec sleep 30`), Output: &out})
	}()
	// The line arrives while the command still runs: output is streamed, not collected.
	testutil.WaitFor(t, 10*time.Second, "the first line in Output", func() bool { return out.String() == "ready\n" })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "last output:\n  ready") {
			t.Fatalf("Command error = %v, want context.Canceled with the output", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Command did not return after its context was cancelled")
	}
}
