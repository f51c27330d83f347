package testutil

import (
	"syscall"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, and fails the test naming what it waited for once
// timeout has passed. The polls start at 1 ms and back off to 20 ms: quick conditions are seen
// quickly, slow ones do not spin.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-time.After(wait)
	}
}

// SignalUntil sends sig to process pid, and again every resend, until cond holds; it fails the
// test naming what it waited for after timeout. For a process that may not act on a signal
// sent too early in its start-up (a master-worker HAProxy asked to reload).
func SignalUntil(t testing.TB, pid int, sig syscall.Signal, resend, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	var sent time.Time
	WaitFor(t, timeout, what, func() bool {
		if time.Since(sent) >= resend {
			if err := syscall.Kill(pid, sig); err != nil {
				t.Fatalf("signal %v to process %d: %v", sig, pid, err)
			}
			sent = time.Now()
		}
		return cond()
	})
}
