package wsroom_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// benchClients connects n clients (user IDs "u0".."u<n-1>") that all join
// room "r", and counts the data frames they receive. extra holds extra
// handshake headers (may be nil).
type benchClients struct {
	conns    []net.Conn
	received atomic.Int64
	wg       sync.WaitGroup
}

func newBenchClients(b *testing.B, s *server, n int, extra http.Header) *benchClients {
	b.Helper()
	bc := &benchClients{}
	for i := range n {
		c := dial(b, s.url+"?user=u"+strconv.Itoa(i), extra)
		bc.conns = append(bc.conns, c.nc)
		c.expectText("ready")
		bc.wg.Add(1)
		go bc.count(c.br)
	}
	b.Cleanup(func() {
		for _, c := range bc.conns {
			c.Close()
		}
		bc.wg.Wait()
	})
	return bc
}

// count reads frames until the connection ends, counting data frames.
func (bc *benchClients) count(br *bufio.Reader) {
	defer bc.wg.Done()
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		op, n := hdr[0]&0x0f, int64(hdr[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint64(hdr[:8]))
		}
		if _, err := br.Discard(int(n)); err != nil {
			return
		}
		if op == 0x1 || op == 0x2 {
			bc.received.Add(1)
		}
	}
}

// waitReceived waits until the clients have received want data frames.
func (bc *benchClients) waitReceived(b *testing.B, want int64) {
	deadline := time.Now().Add(time.Minute)
	for bc.received.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d deliveries", bc.received.Load(), want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func benchHub(b *testing.B) *server {
	return newServer(b, wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			c.Join("r")
			return c.Send(wsroom.Text("ready"))
		},
	})
}

// BenchmarkRoomBroadcast measures fan-out of a 64-byte text message to
// every member of a room over loopback, end to end (until every client has
// read it). At most `window` messages are in flight, like a publisher that
// does not outrun its readers forever.
func BenchmarkRoomBroadcast(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			s := benchHub(b)
			bc := newBenchClients(b, s, subs, nil)
			room := s.hub.Room("r")
			msg := wsroom.Text(string(make([]byte, 64)))
			const window = 256
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i >= window {
					bc.waitReceived(b, int64(i-window)*int64(subs))
				}
				room.Broadcast(msg)
			}
			bc.waitReceived(b, int64(b.N)*int64(subs))
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
			b.ReportMetric(float64(b.N*subs)/b.Elapsed().Seconds(), "deliveries/s")
			if st := s.hub.Stats(); st.SlowConsumerCloses != 0 {
				b.Fatalf("%d slow-consumer closes", st.SlowConsumerCloses)
			}
		})
	}
}

// BenchmarkHubSendTo measures sending to 10 users among 1,000 connections:
// the cost must depend on the 10, not the 1,000.
func BenchmarkHubSendTo(b *testing.B) {
	s := benchHub(b)
	bc := newBenchClients(b, s, 1000, nil)
	users := make([]string, 10)
	for i := range users {
		users[i] = "u" + strconv.Itoa(i*97)
	}
	msg := wsroom.Text(string(make([]byte, 64)))
	const window = 1024
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i >= window {
			bc.waitReceived(b, int64(i-window)*10)
		}
		s.hub.SendTo(msg, users...)
	}
	bc.waitReceived(b, int64(b.N)*10)
}
