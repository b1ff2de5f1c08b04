package wstest

import (
	"testing"
	"time"
)

// Patience is how long WaitFor waits for a condition.
const Patience = 10 * time.Second

// WaitFor polls cond every 2 ms until it returns true, and fails the test
// if it has not after Patience. It is the one way tests wait for the code
// under test: on a condition, with a deadline.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Poll(2*time.Millisecond, Patience, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Poll calls cond every interval until it returns true or within has
// passed, and reports whether it came true. It is WaitFor's loop, for a
// caller that reports its own failure, waits longer, or needs another
// interval (a benchmark's tight wait, a count that must stay still).
// It does not touch a testing.T: any goroutine may call it.
func Poll(interval, within time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	deadline := time.Now().Add(within)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		<-tick.C
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
