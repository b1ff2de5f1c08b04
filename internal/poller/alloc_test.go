//go:build linux && !race

package poller_test

import "testing"

// Not under the race detector: its sync.Pool drops items on purpose.

func TestRearmAllocatesNothing(t *testing.T) {
	p := start(t)
	sv, _ := pair(t)
	rc := rawConn(t, sv)
	id, err := p.Add(rc, make(chanHandler, 1))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { p.Rearm(rc, id) }); n != 0 {
		t.Fatalf("Rearm: %v allocations, want 0", n)
	}
}
