// Package compare_test measures natsbroker beside redisbroker on identical
// workloads, in one run, with membroker (in process, no network) as the
// anchor. It is its own module so that natsbroker does not depend on
// redisbroker. Run on a quiet machine:
//
//	go test -run '^$' -bench . -benchtime 20000x     # broker and hub throughput, hop latency
//	go test -run '^$' -bench Fanout -benchtime 200x  # cross-node added latency
//
// Each benchmark starts its own nats-server and redis-server on free
// loopback ports (natstest), and kills them at the end. Sub-benchmarks are
// named workload/backend, so one -bench pattern runs every backend on the
// same workload back to back. TestWorkloads runs each workload at a tiny
// size, so that they keep working.
package compare_test

import (
	"encoding/binary"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
	"github.com/wsroom/wsroom/natsbroker"
	"github.com/wsroom/wsroom/natsbroker/internal/natstest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// backend makes brokers (nodes) on one server it starts for tb.
type backend struct {
	name  string
	start func(tb testing.TB) (newBroker func() wsroom.Broker)
}

var backends = []backend{
	{"mem", func(testing.TB) func() wsroom.Broker {
		bus := membroker.NewBus()
		return func() wsroom.Broker { return bus.NewBroker() }
	}},
	{"nats", func(tb testing.TB) func() wsroom.Broker {
		url := natstest.Start(tb).URL
		return func() wsroom.Broker {
			return natsbroker.New(natsbroker.Options{URL: url, Logger: quietLogger()})
		}
	}},
	{"redis", func(tb testing.TB) func() wsroom.Broker {
		addr := redistest.Start(tb).Addr
		return func() wsroom.Broker {
			return redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quietLogger()})
		}
	}},
}

// payloadLen is a 64-byte message in the Hub's node message (27 bytes of header).
const payloadLen = 64 + 19

// counter is a started subscriber broker that counts deliveries of
// non-probe messages and records, for stamped ones, the latency.
type counter struct {
	n       atomic.Int64
	want    int64
	done    chan struct{} // closed when n reaches want
	probeMu sync.Mutex
	probed  bool
	lat     []time.Duration // only with stamps; read after done
	stamped bool
	each    chan struct{} // with stamps: one send per delivery
}

func (c *counter) deliver(_ string, p []byte) {
	if len(p) > 0 && p[0] == 'p' {
		c.probeMu.Lock()
		c.probed = true
		c.probeMu.Unlock()
		return
	}
	if c.stamped {
		c.lat = append(c.lat, time.Duration(time.Now().UnixNano()-int64(binary.BigEndian.Uint64(p[1:]))))
		defer func() { c.each <- struct{}{} }()
	}
	if c.n.Add(1) == c.want {
		close(c.done)
	}
}

// pair starts a publishing and a subscribing broker on a fresh server;
// the subscriber is subscribed to room:bench (and settled) and expects
// want messages.
func pair(tb testing.TB, be backend, want int, stamped bool) (pub wsroom.Broker, c *counter) {
	tb.Helper()
	newBroker := be.start(tb)
	c = &counter{want: int64(want), done: make(chan struct{}), stamped: stamped, each: make(chan struct{}, 1)}
	sub, pub := newBroker(), newBroker()
	sub.Start(c.deliver)
	pub.Start(func(string, []byte) {})
	tb.Cleanup(func() { sub.Close(); pub.Close() })
	if err := sub.Subscribe("room:bench"); err != nil {
		tb.Fatal(err)
	}
	wstest.WaitFor(tb, "the "+be.name+" subscription to take effect", func() bool {
		c.probeMu.Lock()
		ok := c.probed
		c.probeMu.Unlock()
		if !ok {
			pub.Publish([]byte("probe"), "room:bench")() // looked for in the next round
		}
		return ok
	})
	return pub, c
}

// waitDone waits for every expected delivery.
func (c *counter) waitDone(tb testing.TB) {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		tb.Fatalf("delivered %d of %d", c.n.Load(), c.want)
	}
}

// Publishing modes: how the sender waits for the outcome.
const (
	modeSync     = "sync"       // one goroutine; each wait right after its publish
	modeWindow   = "window4096" // one goroutine; up to 4096 waits outstanding, called in order
	modeSenders  = "senders64"  // 64 goroutines, each sync
	windowSize   = 4096
	sendersCount = 64
)

// publishRate publishes n messages from one broker to another in mode and
// returns the rate at which they were delivered (msgs/s).
func publishRate(tb testing.TB, be backend, mode string, n int, reset func()) float64 {
	pub, c := pair(tb, be, n, false)
	payload := make([]byte, payloadLen)
	var failed atomic.Int64
	reset()
	start := time.Now()
	switch mode {
	case modeSync:
		for range n {
			if pub.Publish(payload, "room:bench")() != nil {
				failed.Add(1)
			}
		}
	case modeWindow:
		waits := make([]func() error, 0, windowSize)
		for range n {
			if len(waits) == windowSize {
				if waits[0]() != nil {
					failed.Add(1)
				}
				waits = waits[1:]
			}
			waits = append(waits, pub.Publish(payload, "room:bench"))
		}
		for _, w := range waits {
			if w() != nil {
				failed.Add(1)
			}
		}
	case modeSenders:
		var next atomic.Int64
		var wg sync.WaitGroup
		for range sendersCount {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if pub.Publish(payload, "room:bench")() != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	if f := failed.Load(); f > 0 {
		tb.Fatalf("%s %s: %d of %d publishes failed", be.name, mode, f, n)
	}
	c.waitDone(tb)
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkPublish: broker to broker, no WebSockets: b.N messages of
// payloadLen bytes from one node to a subscriber on another, in each
// publishing mode; reports delivered msgs/s.
func BenchmarkPublish(b *testing.B) {
	for _, mode := range []string{modeSync, modeWindow, modeSenders} {
		for _, be := range backends {
			b.Run(mode+"/"+be.name, func(b *testing.B) {
				b.ReportMetric(publishRate(b, be, mode, b.N, b.ResetTimer), "msgs/s")
			})
		}
	}
}

// hop publishes n stamped messages one at a time (each waits for its
// delivery) and returns the publish-to-deliver latencies, sorted.
func hop(tb testing.TB, be backend, n int, reset func()) []time.Duration {
	pub, c := pair(tb, be, n, true)
	p := make([]byte, payloadLen)
	reset()
	for range n {
		binary.BigEndian.PutUint64(p[1:], uint64(time.Now().UnixNano()))
		if err := pub.Publish(p, "room:bench")(); err != nil {
			tb.Fatal(err)
		}
		select { // this one's delivery, before the next
		case <-c.each:
		case <-time.After(10 * time.Second):
			tb.Fatalf("message %d not delivered within 10 s", c.n.Load())
		}
	}
	c.waitDone(tb)
	return slices.Sorted(slices.Values(c.lat))
}

// BenchmarkHop: the broker hop alone, one message in flight; reports
// p50/p99 publish-to-deliver latency.
func BenchmarkHop(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			lat := hop(b, be, b.N, b.ResetTimer)
			b.ReportMetric(micros(lat, 50), "p50-µs")
			b.ReportMetric(micros(lat, 99), "p99-µs")
		})
	}
}

// micros returns the q-th percentile of sorted latencies, in µs.
func micros(sorted []time.Duration, q int) float64 {
	return float64(sorted[len(sorted)*q/100]) / float64(time.Microsecond)
}

// TestWorkloads runs every workload of this file and hub_test.go at a
// tiny size on every backend.
func TestWorkloads(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			for _, mode := range []string{modeSync, modeWindow, modeSenders} {
				if r := publishRate(t, be, mode, 300, func() {}); r <= 0 {
					t.Errorf("%s: rate %v", mode, r)
				}
			}
			if lat := hop(t, be, 20, func() {}); len(lat) != 20 {
				t.Errorf("hop: %d latencies", len(lat))
			}
			for _, senders := range []int{1, 64} {
				if r := hubRoomRate(t, be, senders, 300, func() {}); r <= 0 {
					t.Errorf("hub room, %d senders: rate %v", senders, r)
				}
			}
			local, remote := fanout(t, be, 5, 10, time.Millisecond, func() {})
			if len(local) != 50 || len(remote) != 50 {
				t.Errorf("fanout: %d local and %d remote latencies, want 50 each", len(local), len(remote))
			}
		})
	}
}
