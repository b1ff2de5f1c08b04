package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// inProcess is a wsroom Hub on an httptest server with n raw clients
// (the load generator's connections) in room "r".
type inProcess struct {
	hub   *wsroom.Hub
	room  *wsroom.Room
	l     *loader
	first chan *wsroom.Conn // the first connection, for Conn.Send
}

func newInProcess(b *testing.B, n int) *inProcess {
	b.Helper()
	ip := &inProcess{first: make(chan *wsroom.Conn, 1)}
	ip.hub = wsroom.New(wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("u"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			select {
			case ip.first <- c:
			default:
			}
			return c.Join("r")
		},
	})
	ip.room = ip.hub.Room("r")
	srv := httptest.NewServer(ip.hub)
	ip.l = newLoader(strings.TrimPrefix(srv.URL, "http://"), 4, loadOpts{})
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ip.hub.Shutdown(ctx)
		ip.l.close()
		srv.Close()
	})
	if _, err := ip.l.connect(0, n, 8); err != nil {
		b.Fatal(err)
	}
	for ip.room.Len() < n {
		time.Sleep(time.Millisecond)
	}
	return ip
}

// drain waits until the clients have received want messages in total.
func (ip *inProcess) drain(b *testing.B, want int64) {
	if _, err := ip.l.waitRecv(want, 5*time.Second); err != nil {
		b.Fatal(err)
	}
}

func payload() []byte { return make([]byte, payloadSize) }

// BenchmarkSend is Conn.Send of a 64-byte message to one connection:
// encoding the frame and enqueueing it (the writer runs concurrently).
func BenchmarkSend(b *testing.B) {
	ip := newInProcess(b, 1)
	c := <-ip.first
	msg := wsroom.Binary(payload())
	const window = 1024
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i >= window && i%window == 0 {
			ip.drain(b, int64(i-window))
		}
		if err := c.Send(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBroadcastEnqueue is the cost of one Room.Broadcast call to N
// members (encode once, enqueue N references), without waiting for the
// sockets: the timer stops while the clients catch up every 64 calls.
func BenchmarkBroadcastEnqueue(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ip := newInProcess(b, n)
			msg := wsroom.Binary(payload())
			b.ReportAllocs()
			sent := 0
			for b.Loop() {
				if sent%64 == 0 && sent > 0 {
					b.StopTimer()
					ip.drain(b, int64(sent*n))
					b.StartTimer()
				}
				if err := ip.room.Broadcast(msg); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			b.StopTimer()
			ip.drain(b, int64(sent*n))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*n), "ns/recipient")
		})
	}
}

// BenchmarkFanout is Room.Broadcast end to end: until every member has
// read every message, with at most 64 broadcasts in flight.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ip := newInProcess(b, n)
			b.ReportAllocs()
			sent := 0
			for b.Loop() {
				if sent >= 64 {
					ip.drain(b, int64((sent-64)*n))
				}
				if err := ip.room.Broadcast(wsroom.Binary(payload())); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			ip.drain(b, int64(sent*n))
			b.ReportMetric(float64(sent*n)/b.Elapsed().Seconds(), "deliveries/s")
			if st := ip.hub.Stats(); st.SlowConsumerCloses != 0 {
				b.Fatalf("%d slow-consumer closes", st.SlowConsumerCloses)
			}
		})
	}
}

// BenchmarkHubSendTo is Hub.SendTo 10 users (20 connections) among
// 1,000, end to end.
func BenchmarkHubSendTo(b *testing.B) {
	ip := newInProcess(b, 1000)
	users := make([]string, 10)
	for i := range users {
		users[i] = userOf(i * 100) // u0, u50, … u450: 2 connections each
	}
	msg := wsroom.Binary(payload())
	b.ReportAllocs()
	sent := 0
	for b.Loop() {
		if sent >= 128 {
			ip.drain(b, int64((sent-128)*20))
		}
		if err := ip.hub.SendTo(msg, users...); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	ip.drain(b, int64(sent*20))
}
