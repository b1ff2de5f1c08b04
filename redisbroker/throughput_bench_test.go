package redisbroker_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// BenchmarkBrokerThroughput publishes b.N 64-byte messages to one topic
// from broker A and counts them as broker B (another node, subscribed)
// delivers them: room messages/s through one Redis at the broker level.
//
//   - sync: one goroutine, Publish then wait, one at a time (the latency floor);
//   - windowed: one goroutine publishing in a loop with up to 4096 publishes
//     outstanding, their waits called in order (a Hub that does not wait);
//   - senders=64: 64 goroutines, each synchronous.
func BenchmarkBrokerThroughput(b *testing.B) {
	for _, mode := range []struct {
		name    string
		senders int
		window  int
	}{{"sync", 1, 1}, {"windowed", 1, 4096}, {"senders=64", 64, 1}} {
		b.Run(mode.name, func(b *testing.B) { brokerThroughput(b, mode.senders, mode.window) })
	}
}

func brokerThroughput(b *testing.B, senders, window int) {
	addr := redistest.Shared(b)
	rc := newRedisClient(b, addr)
	pub := redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quietLogger()})
	sub := redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quietLogger()})
	var got atomic.Int64
	done := make(chan struct{})
	var want atomic.Int64
	pub.Start(func(string, []byte) {})
	sub.Start(func(string, []byte) {
		if got.Add(1) == want.Load() {
			close(done)
		}
	})
	b.Cleanup(func() { pub.Close(); sub.Close() })
	topic := fmt.Sprintf("room:tput-%d-%d", senders, window)
	sub.Subscribe(topic)
	waitNumSub(b, rc, map[string]int64{topic: 1})
	want.Store(int64(b.N))
	payload := make([]byte, 64)
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			// A ring of outstanding waits, called in publication order.
			ring := make([]func() error, window)
			head, n := 0, 0
			for next.Add(1) <= int64(b.N) {
				if n == window {
					if err := ring[head](); err != nil {
						b.Error(err)
						return
					}
					head, n = (head+1)%window, n-1
				}
				ring[(head+n)%window] = pub.Publish(payload, topic)
				n++
			}
			for ; n > 0; n-- {
				if err := ring[head](); err != nil {
					b.Error(err)
					return
				}
				head = (head + 1) % window
			}
		})
	}
	wg.Wait()
	acked := time.Since(start)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("delivered %d of %d", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/acked.Seconds(), "acks/s")
}
