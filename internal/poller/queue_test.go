//go:build linux

package poller_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wsroom/wsroom/internal/poller"
)

func TestQueueRunsInOrderOnFewGoroutines(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p := start(t) // created with GOMAXPROCS 1: one drainer
	const n = 5000
	var (
		mu      sync.Mutex
		order   []int
		running atomic.Int32
		peak    atomic.Int32
		wg      sync.WaitGroup
	)
	before := runtime.NumGoroutine()
	wg.Add(n)
	for i := range n {
		p.Queue(taskFunc(func() {
			defer wg.Done()
			if r := running.Add(1); r > peak.Load() {
				peak.Store(r)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			running.Add(-1)
		}))
	}
	if after := runtime.NumGoroutine(); after > before+1 {
		t.Fatalf("%d goroutines after queueing %d tasks, %d before", after, n, before)
	}
	wg.Wait()
	if peak.Load() != 1 {
		t.Fatalf("%d queued tasks ran at once, want 1 drainer", peak.Load())
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("task %d ran in place %d", v, i)
		}
	}
}

// requeue is a task that queues itself again until it ran times times.
type requeue struct {
	p     *poller.Poller
	name  byte
	times int
	log   *[]byte
	mu    *sync.Mutex
	done  *sync.WaitGroup
}

func (r *requeue) Run() {
	r.mu.Lock()
	*r.log = append(*r.log, r.name)
	r.mu.Unlock()
	if r.times--; r.times > 0 {
		r.p.Queue(r)
		return
	}
	r.done.Done()
}

func TestQueueRequeueGoesToTheEnd(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p := start(t)
	var (
		log  []byte
		mu   sync.Mutex
		done sync.WaitGroup
	)
	done.Add(3)
	for _, name := range []byte("abc") {
		p.Queue(&requeue{p: p, name: name, times: 3, log: &log, mu: &mu, done: &done})
	}
	done.Wait()
	if string(log) != "abcabcabc" {
		t.Fatalf("ran %q, want abcabcabc", log)
	}
}

func TestRunWaitsForQueuedTasks(t *testing.T) {
	p, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() { returned <- p.Run() }()
	release := make(chan struct{})
	var ran atomic.Int32
	p.Queue(taskFunc(func() { <-release; ran.Add(1) }))
	for range 100 {
		p.Queue(taskFunc(func() { ran.Add(1) }))
	}
	p.Close()
	close(release)
	if err := <-returned; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := ran.Load(); got != 101 {
		t.Fatalf("Run returned after %d of 101 queued tasks", got)
	}
}
