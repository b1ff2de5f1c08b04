//go:build linux

package main

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/internal/benchenv"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// historyPart compares PublishHistory with Publish on one broker (one
// node, a second broker subscribed to the topic, as another node would
// be), and measures ReadHistory.
func historyPart(r *benchenv.Report, srv *redistest.Server) {
	n := *flagHistN
	r.Line("## Room history on one node: PublishHistory against Publish\n")
	pub := redisbroker.New(redisbroker.Options{Addrs: []string{srv.Addr}, Logger: slog.New(slog.DiscardHandler)})
	sub := redisbroker.New(redisbroker.Options{Addrs: []string{srv.Addr}, Logger: slog.New(slog.DiscardHandler)})
	got := make(chan struct{}, 1)
	sub.StartHistory(func(string, wsroom.Position, []byte) {
		select {
		case got <- struct{}{}:
		default:
		}
	})
	sub.Start(func(string, []byte) {
		select {
		case got <- struct{}{}:
		default:
		}
	})
	pub.Start(func(string, []byte) {})
	defer pub.Close()
	defer sub.Close()
	if err := sub.Subscribe("room:plain", "room:hist"); err != nil {
		log.Fatal(err)
	}
	for _, topic := range []string{"room:plain", "room:hist"} { // until the subscriptions are in place
		waitFor("subscription to "+topic, 10*time.Second, func() bool {
			pub.Publish([]byte("probe"), topic)()
			select {
			case <-got:
				return true
			case <-time.After(20 * time.Millisecond):
				return false
			}
		})
	}
	r.Line("A second broker subscribes to both topics. Windowed: 4096 publishes outstanding, each waited for in order; synchronous: one at a time. Limits: 1000 messages, 1 MiB, 5 minutes.\n")
	r.Line("| payload | sender | Publish | PublishHistory | ratio | redis-server CPU µs/msg, Publish / PublishHistory |")
	r.Line("|---:|---|---:|---:|---:|---:|")
	limits := wsroom.History{Messages: 1000, Bytes: 1 << 20, TTL: 5 * time.Minute}
	for _, size := range []int{64, 1024} {
		payload := []byte(strings.Repeat("x", size))
		plain := func() func() error { return pub.Publish(payload, "room:plain") }
		hist := func() func() error {
			w := pub.PublishHistory("room:hist", payload, limits)
			return func() error { _, err := w(); return err }
		}
		for _, mode := range []struct {
			name   string
			window int
			n      int
		}{{"windowed", 4096, n}, {"synchronous", 1, n / 20}} {
			rp, cp := rate(srv, plain, mode.n, mode.window)
			rh, ch := rate(srv, hist, mode.n, mode.window)
			r.Line("| %d B | %s | %.0fk/s | %.0fk/s | %.2f | %.2f / %.2f |", size, mode.name, rp/1e3, rh/1e3, rp/rh, cp, ch)
		}
	}

	r.Line("\nReadHistory latency (2000 reads each, one at a time; 1000 messages of 1 KiB kept):\n")
	r.Line("| read | p50 | p99 | max |")
	r.Line("|---|---:|---:|---:|")
	ctx := context.Background()
	last, err := pub.PublishHistory("room:hist", []byte(strings.Repeat("y", 1024)), limits)()
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		since wsroom.Position
		most  int
	}{
		{"nothing new (since the last)", last, 1000},
		{"the last 10 (a resume)", wsroom.Position{Epoch: last.Epoch, Offset: last.Offset - 10}, 1000},
		{"the last 100", wsroom.Position{Epoch: last.Epoch, Offset: last.Offset - 100}, 1000},
		{"the newest 100 (since none)", wsroom.Position{}, 100},
	} {
		var lat []int64
		for range 2000 {
			t0 := time.Now()
			rd, err := pub.ReadHistory(ctx, "room:hist", c.since, c.most)
			lat = append(lat, int64(time.Since(t0)))
			if err != nil || rd.Lost != "" {
				log.Fatalf("ReadHistory: %v, lost %q", err, rd.Lost)
			}
		}
		p50, p99, mx := percentiles(lat)
		r.Line("| %s | %.3f ms | %.3f ms | %.3f ms |", c.name, p50, p99, mx)
	}
	r.Line("")
}

// rate sends n messages with send, window outstanding at most (each
// waited for in order), and returns the rate and redis-server's CPU time
// per message (µs).
func rate(srv *redistest.Server, send func() func() error, n, window int) (perSec, cpuPerMsg float64) {
	ring := make([]func() error, window)
	cpu0 := benchenv.ProcCPU(srv.PID())
	t0 := time.Now()
	for i := range n {
		slot := &ring[i%window]
		if *slot != nil {
			if err := (*slot)(); err != nil {
				log.Fatal(err)
			}
		}
		*slot = send()
	}
	for i := n; i < n+window; i++ {
		if w := ring[i%window]; w != nil {
			if err := w(); err != nil {
				log.Fatal(err)
			}
		}
	}
	el := time.Since(t0)
	return float64(n) / el.Seconds(), float64((benchenv.ProcCPU(srv.PID()) - cpu0).Microseconds()) / float64(n)
}
