package compare_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// startHub serves a Hub with a broker from newBroker; clients join room
// "bench". It returns the hub and its ws:// URL.
func startHub(tb testing.TB, newBroker func() wsroom.Broker) (*wsroom.Hub, string) {
	tb.Helper()
	hub := wsroom.New(wsroom.Options{
		Logger:    quietLogger(),
		Broker:    newBroker(),
		OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join("bench") },
		// A receiving node may get a burst faster than its client reads.
		SendQueueMessages: 1 << 20, SendQueueBytes: 1 << 30,
	})
	srv := httptest.NewServer(hub)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hub.Shutdown(ctx)
		srv.Close()
	})
	return hub, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// reader is a WebSocket client that reads the hub's frames: binary ones
// are counted (and, when stamped, timed); text ones are probes.
type reader struct {
	nc     net.Conn
	br     *bufio.Reader
	probed atomic.Bool
	n      atomic.Int64
	lat    []time.Duration // read after the reader has stopped
}

func dial(tb testing.TB, url string) *reader {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	tb.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReaderSize(nc, 4096)
	}
	return &reader{nc: nc, br: br}
}

// read reads until want binary messages have arrived or the connection
// fails; stamped messages carry their send time in bytes 0–8.
func (r *reader) read(want int64, stamped bool) {
	var buf [256]byte
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
	for r.n.Load() < want {
		h, err := ws.ReadHeader(r.br)
		if err != nil || h.Length > int64(len(buf)) {
			return
		}
		p := buf[:h.Length]
		if _, err := io.ReadFull(r.br, p); err != nil {
			return
		}
		if h.OpCode == ws.OpText {
			r.probed.Store(true)
			continue
		}
		if stamped {
			r.lat = append(r.lat, time.Duration(time.Now().UnixNano()-int64(binary.BigEndian.Uint64(p))))
		}
		r.n.Add(1)
	}
}

// settle broadcasts probes from hub until r has received one: the
// receiving node's subscription is then in effect.
func settle(tb testing.TB, hub *wsroom.Hub, r *reader) {
	tb.Helper()
	wstest.WaitFor(tb, "the remote node's subscription to take effect", func() bool {
		if r.probed.Load() {
			return true
		}
		hub.Room("bench").Broadcast(wsroom.Text("probe")) // looked for in the next round
		return false
	})
}

// hubRoomRate sends n 64-byte room messages from senders goroutines on
// node A (each Broadcast waits for the broker) to the room's only member,
// on node B, and returns the rate at which they arrive (msgs/s).
func hubRoomRate(tb testing.TB, be backend, senders, n int, reset func()) float64 {
	newBroker := be.start(tb)
	a, _ := startHub(tb, newBroker)
	_, urlB := startHub(tb, newBroker)
	r := dial(tb, urlB)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.read(int64(n), false) })
	settle(tb, a, r)
	payload := make([]byte, 64)
	reset()
	start := time.Now()
	var next, failed atomic.Int64
	var sendWG sync.WaitGroup
	for range senders {
		sendWG.Go(func() {
			for next.Add(1) <= int64(n) {
				if a.Room("bench").Broadcast(wsroom.Binary(payload)) != nil {
					failed.Add(1)
				}
			}
		})
	}
	sendWG.Wait()
	if f := failed.Load(); f > 0 {
		r.nc.Close()
		tb.Fatalf("%d of %d sends failed", f, n)
	}
	wg.Wait()
	if got := r.n.Load(); got != int64(n) {
		tb.Fatalf("received %d of %d", got, n)
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkHubRoom: Hub to Hub through the broker: b.N room messages from
// 1 or 64 concurrent senders on node A to a member on node B; reports
// msgs/s arriving at the member.
func BenchmarkHubRoom(b *testing.B) {
	for _, senders := range []int{1, 64} {
		for _, be := range backends {
			b.Run(fmt.Sprintf("senders=%d/%s", senders, be.name), func(b *testing.B) {
				b.ReportMetric(hubRoomRate(b, be, senders, b.N, b.ResetTimer), "msgs/s")
			})
		}
	}
}

// fanout sends n stamped messages, one every pace, from node A to a room
// with subs members on node A and subs on node B, and returns the
// send-to-receive latencies of A's (local) and B's (remote) members,
// sorted.
func fanout(tb testing.TB, be backend, subs, n int, pace time.Duration, reset func()) (local, remote []time.Duration) {
	newBroker := be.start(tb)
	a, urlA := startHub(tb, newBroker)
	b, urlB := startHub(tb, newBroker)
	var rs [2][]*reader
	for i, url := range []string{urlA, urlB} {
		for range subs {
			rs[i] = append(rs[i], dial(tb, url))
		}
	}
	// OnConnect's joins run before the 101: the dials have returned, so
	// the members are in.
	if na, nb := a.Room("bench").Len(), b.Room("bench").Len(); na != subs || nb != subs {
		tb.Fatalf("bench has %d members on node A and %d on node B, want %d on each", na, nb, subs)
	}
	var wg sync.WaitGroup
	for _, group := range rs {
		for _, r := range group {
			wg.Go(func() { r.read(int64(n), true) })
		}
	}
	settle(tb, a, rs[1][0])
	reset()
	tick := time.NewTicker(pace)
	defer tick.Stop()
	p := make([]byte, 64)
	for range n {
		<-tick.C
		binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
		if err := a.Room("bench").Broadcast(wsroom.Binary(p)); err != nil {
			tb.Fatal(err)
		}
	}
	wg.Wait()
	collect := func(group []*reader) []time.Duration {
		var all []time.Duration
		for _, r := range group {
			all = append(all, r.lat...)
		}
		slices.Sort(all)
		return all
	}
	local, remote = collect(rs[0]), collect(rs[1])
	if len(local) != subs*n || len(remote) != subs*n {
		tb.Fatalf("received %d local and %d remote of %d each", len(local), len(remote), subs*n)
	}
	return local, remote
}

// BenchmarkFanout: cross-node added latency. b.N messages, one every
// WSROOM_BENCH_PACE (default 10ms), to a room with WSROOM_BENCH_SUBS
// (default 100) members on each of two nodes; reports p50/p99 for the
// sending node's members (local) and the other node's (remote), and
// added-p50-µs = remote p50 − local p50.
func BenchmarkFanout(b *testing.B) {
	subs := envInt("WSROOM_BENCH_SUBS", 100)
	pace := 10 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("WSROOM_BENCH_PACE")); err == nil && d > 0 {
		pace = d
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			local, remote := fanout(b, be, subs, b.N, pace, b.ResetTimer)
			b.ReportMetric(micros(local, 50), "local-p50-µs")
			b.ReportMetric(micros(remote, 50), "remote-p50-µs")
			b.ReportMetric(micros(remote, 99), "remote-p99-µs")
			b.ReportMetric(micros(remote, 50)-micros(local, 50), "added-p50-µs")
		})
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
