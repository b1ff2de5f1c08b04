//go:build linux

package poller_test

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// goroutine is one goroutine of a runtime.Stack dump: its state ("select",
// "chan receive", "sync.WaitGroup.Wait"...) and the functions on its stack,
// innermost first, as the dump names them (runtime internals are hidden).
type goroutine struct {
	state  string
	frames []string
}

// goroutines returns every goroutine of the process.
func goroutines() []goroutine {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for _, block := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		// "goroutine 22 [select]:" or "goroutine 22 [select, 2 minutes]:"
		_, state, ok := strings.Cut(lines[0], " [")
		if !ok {
			continue
		}
		state, _, _ = strings.Cut(strings.TrimSuffix(state, "]:"), ",")
		g := goroutine{state: state}
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "created by ") {
				g.frames = append(g.frames, l)
			}
		}
		out = append(out, g)
	}
	return out
}

// calls reports whether the goroutine's stack has fn (a function name as
// the dump prints it, up to its argument list) directly below inner, or
// anywhere if inner is "".
func (g goroutine) calls(inner, fn string) bool {
	for i, f := range g.frames {
		if strings.HasPrefix(f, fn+"(") && (inner == "" || i > 0 && strings.HasPrefix(g.frames[i-1], inner+"(")) {
			return true
		}
	}
	return false
}

const (
	workerFunc = "github.com/wsroom/wsroom/internal/poller.(*Poller).worker"
	runFunc    = "github.com/wsroom/wsroom/internal/poller.(*Poller).Run"
)

// workersIdle reports whether every worker goroutine of every Poller is
// parked in its own select, waiting for a task (none is running one).
func workersIdle() bool {
	for _, g := range goroutines() {
		if g.calls("", workerFunc) && (g.state != "select" || !strings.HasPrefix(g.frames[0], workerFunc+"(")) {
			return false
		}
	}
	return true
}

// runWaitingForWorkers reports whether a Poller's Run is blocked waiting
// for its workers (it saw Close and is in its deferred WaitGroup.Wait).
func runWaitingForWorkers() bool {
	for _, g := range goroutines() {
		if g.calls("sync.(*WaitGroup).Wait", runFunc) {
			return true
		}
	}
	return false
}

// waitUntil checks cond every millisecond until it holds; the test fails
// if it does not within 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		<-tick.C
	}
}
