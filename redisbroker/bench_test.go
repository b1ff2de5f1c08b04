package redisbroker_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// Measurements, not tests: run them on a quiet machine with
//
//	go test -run '^$' -bench . -benchtime 200x ./
//
// WSROOM_BENCH_SUBS sets the subscribers per node (default 4000; each
// costs two file descriptors in this process). WSROOM_BENCH_PACE sets the
// interval between fan-out messages (default 50ms, for latency); 0 sends
// them back to back (for deliveries/s; the latencies then include queueing).

func benchSubs() int {
	if n, err := strconv.Atoi(os.Getenv("WSROOM_BENCH_SUBS")); err == nil && n > 0 {
		return n
	}
	return 4000
}

// latencyClients are subscribers that record, for every message, the
// time from the send (stamped in the payload) to its arrival.
type latencyClients struct {
	wg       sync.WaitGroup
	received atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
}

// attach dials n subscribers to url and starts their readers, which stop
// after want messages (or on error).
func (lc *latencyClients) attach(b *testing.B, url string, n, want int) {
	conns := wstest.DialAll(b, n, func(i int) string { return fmt.Sprintf("%s?user=u%d&room=bench", url, i) })
	for _, c := range conns {
		lc.wg.Go(func() {
			// A cheap reader, so that the clients sharing the machine cost
			// the server little: NextMessage allocates nothing, and every
			// message is one 64-byte binary frame.
			local := make([]time.Duration, 0, want)
			c.SetReadDeadline(time.Now().Add(5 * time.Minute))
			for range want {
				op, p, err := c.NextMessage()
				if err != nil || op != wstest.OpBinary || len(p) != 64 {
					break
				}
				local = append(local, time.Duration(time.Now().UnixNano()-int64(binary.BigEndian.Uint64(p))))
				lc.received.Add(1)
			}
			lc.mu.Lock()
			lc.lat = append(lc.lat, local...)
			lc.mu.Unlock()
		})
	}
}

func (lc *latencyClients) report(b *testing.B, name string) {
	lc.wg.Wait()
	slices.Sort(lc.lat)
	if len(lc.lat) == 0 {
		b.Fatalf("%s: nothing received", name)
	}
	b.ReportMetric(float64(lc.lat[len(lc.lat)/2].Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(lc.lat[len(lc.lat)*99/100].Microseconds()), name+"-p99-µs")
}

// stamped returns a 64-byte binary message carrying the current time.
func stamped() wsroom.Message {
	p := make([]byte, 64)
	binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
	return wsroom.Binary(p)
}

// BenchmarkRoomFanout sends b.N 64-byte messages, one every pace, to one
// room from node A, and reports publish-to-receive latency percentiles
// for subscribers on node A (local) and node B (remote, through Redis),
// and the deliveries per second over the run. "single-node" is the same
// room with all its subscribers on one hub without a broker.
func BenchmarkRoomFanout(b *testing.B) {
	subs := benchSubs()
	pace := 50 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("WSROOM_BENCH_PACE")); err == nil {
		pace = d
	}
	b.Run("single-node", func(b *testing.B) {
		a := newNode(b, "", nil)
		var local latencyClients
		local.attach(b, a.url, subs, b.N)
		wantMembers(b, a, "bench", subs)
		runFanout(b, a, pace, subs, &local)
		local.report(b, "local")
	})
	b.Run("two-nodes", func(b *testing.B) {
		addr := redistest.Shared(b)
		rc := newRedisClient(b, addr)
		a, n2 := newNode(b, addr, nil), newNode(b, addr, nil)
		var local, remote latencyClients
		local.attach(b, a.url, subs, b.N)
		remote.attach(b, n2.url, subs, b.N)
		wantMembers(b, a, "bench", subs)
		wantMembers(b, n2, "bench", subs)
		waitNumSub(b, rc, map[string]int64{"room:bench": 2})
		runFanout(b, a, pace, 2*subs, &local, &remote)
		local.report(b, "local")
		remote.report(b, "remote")
	})
}

func runFanout(b *testing.B, a *node, pace time.Duration, recipients int, groups ...*latencyClients) {
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	var tick <-chan time.Time
	if pace > 0 {
		t := time.NewTicker(pace)
		defer t.Stop()
		tick = t.C
	}
	for range b.N {
		if tick != nil {
			<-tick
		}
		if err := a.hub.Room("bench").Broadcast(stamped()); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(recipients * b.N)
	var got int64
	if !wstest.Poll(time.Millisecond, time.Minute, func() bool {
		got = 0
		for _, g := range groups {
			got += g.received.Load()
		}
		return got == want
	}) {
		b.Fatalf("received %d of %d deliveries", got, want)
	}
	b.ReportMetric(float64(want)/time.Since(start).Seconds(), "deliveries/s")
}

// BenchmarkRoomMessagesThroughRedis publishes b.N 64-byte room messages
// from 1 or 64 concurrent senders on node A to a room whose only member is
// on node B, and reports the room messages per second that reach it. Each
// send waits for Redis's acknowledgment, so one sender is bound by the
// round trip; concurrent sends share pipelines.
func BenchmarkRoomMessagesThroughRedis(b *testing.B) {
	for _, senders := range []int{1, 64} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) { roomThroughput(b, senders) })
	}
}

func roomThroughput(b *testing.B, senders int) {
	addr := redistest.Shared(b)
	rc := newRedisClient(b, addr)
	a, n2 := newNode(b, addr, nil), newNode(b, addr, func(o *wsroom.Options) { o.SendQueueMessages = 1 << 20; o.SendQueueBytes = 1 << 30 })
	c := wstest.Dial(b, n2.url+"?user=sink&room=tput", nil)
	c.Timeout = 30 * time.Second
	waitNumSub(b, rc, map[string]int64{"room:tput": 1})
	var got atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for range b.N {
			if _, _, err := c.NextMessage(); err != nil {
				return
			}
			got.Add(1)
		}
	})
	payload := make([]byte, 64)
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var sendWG sync.WaitGroup
	for range senders {
		sendWG.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := a.hub.Room("tput").Broadcast(wsroom.Binary(payload)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	sendWG.Wait()
	wg.Wait()
	if int(got.Load()) != b.N {
		b.Fatalf("received %d of %d", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkBrokerHop measures the Redis hop alone, without WebSockets:
// broker A publishes a timestamp, broker B's delivery callback reads it.
// One message in flight at a time; reports p50/p99 publish-to-deliver.
func BenchmarkBrokerHop(b *testing.B) {
	addr := redistest.Shared(b)
	rc := newRedisClient(b, addr)
	pub := redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quietLogger()})
	sub := redisbroker.New(redisbroker.Options{Addrs: []string{addr}, Logger: quietLogger()})
	got := make(chan time.Duration, 1)
	pub.Start(func(string, []byte) {})
	sub.Start(func(_ string, p []byte) {
		got <- time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(p)))
	})
	defer pub.Close()
	defer sub.Close()
	sub.Subscribe("room:hop")
	waitNumSub(b, rc, map[string]int64{"room:hop": 1})
	lat := make([]time.Duration, 0, b.N)
	p := make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
		if err := pub.Publish(p, "room:hop")(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, <-got)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
