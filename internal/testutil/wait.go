package testutil

import (
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
