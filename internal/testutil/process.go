package testutil

import (
	"bytes"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a server a test started (named, haproxy): its output and its end.
type Process struct {
	// Log collects the process's stdout and stderr, for failure messages.
	Log *LockedBuffer
	// Exited receives the process's exit once it has ended.
	Exited <-chan error
}

// StartProcess starts cmd with its output in Process.Log, and stops it when the test ends
// (SIGTERM, then SIGKILL after 10s). When the test failed, the log is shown, after what
// context adds (a config file, say; nil for nothing).
func StartProcess(t testing.TB, name string, cmd *exec.Cmd, context func() string) *Process {
	t.Helper()
	log := &LockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			if context != nil {
				t.Logf("%s", context())
			}
			t.Logf("%s log:\n%s", name, log.String())
		}
	})
	return &Process{Log: log, Exited: exited}
}

// LockedBuffer collects a process's output, written by exec's copying goroutine and read
// by the test.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
