package wsroom_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// benchClients connects n clients (user IDs "u0".."u<n-1>") that all join
// room "r", and counts the data frames they receive. extra holds extra
// handshake headers (may be nil).
type benchClients struct {
	received atomic.Int64   // by all clients
	each     []atomic.Int64 // by each client
}

func newBenchClients(b *testing.B, s *server, n int, extra http.Header) *benchClients {
	b.Helper()
	bc := &benchClients{each: make([]atomic.Int64, n)}
	conns := make([]*wstest.Conn, n)
	for i := range conns {
		conns[i] = wstest.Dial(b, s.url+"?user=u"+strconv.Itoa(i), extra)
		conns[i].ExpectText(b, "ready")
		conns[i].SetReadDeadline(time.Now().Add(time.Hour)) // until cleanup closes it
	}
	wstest.Go(b, conns, bc.count)
	return bc
}

// count reads frames, allocating nothing, until the connection ends,
// counting data frames.
func (bc *benchClients) count(i int, c *wstest.Conn) error {
	for {
		f, err := c.Skip()
		if err != nil {
			return nil // the end: closed by cleanup
		}
		if f.Op == wstest.OpText || f.Op == wstest.OpBinary {
			bc.received.Add(1)
			bc.each[i].Add(1)
		}
	}
}

// pace waits, before send i of a loop whose sends reach the clients in who
// (all of them if nil), until each of them has read the sends up to
// window before i; it looks every window/4 sends, so that no client is
// ever more than 1.25 × window sends behind. (A count of all the clients'
// frames would let one client fall behind by window × the clients a send
// reaches, past its queue's bound, while the others keep up.)
func (bc *benchClients) pace(b *testing.B, i, window int, who []int) {
	step := max(window/4, 1)
	if i < window || i%step != 0 {
		return
	}
	want := int64(i - window)
	behind := func(j int) bool { return bc.each[j].Load() < want }
	caught := func() bool {
		if who == nil {
			for j := range bc.each {
				if behind(j) {
					return false
				}
			}
			return true
		}
		for _, j := range who {
			if behind(j) {
				return false
			}
		}
		return true
	}
	if !wstest.Poll(50*time.Microsecond, time.Minute, caught) {
		b.Fatalf("before send %d: a client has not read send %d in a minute", i, want)
	}
}

// waitReceived waits until the clients have received want data frames.
func (bc *benchClients) waitReceived(b *testing.B, want int64) {
	if !wstest.Poll(50*time.Microsecond, time.Minute, func() bool { return bc.received.Load() >= want }) {
		b.Fatalf("received %d of %d deliveries", bc.received.Load(), want)
	}
}

func benchHub(b *testing.B) *server { return benchHubWith(b, wsroom.Options{}) }

// benchHubWith is benchHub with opts' other fields (Identify and
// OnConnect are benchHub's).
func benchHubWith(b *testing.B, opts wsroom.Options) *server {
	opts.Identify = func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil }
	opts.OnConnect = func(c *wsroom.Conn, _ *http.Request) error {
		c.Join("r")
		return c.Send(wsroom.Text("ready"))
	}
	return newServer(b, opts)
}

// benchBroadcast runs b.N 64-byte broadcasts to room "r" of s, whose subs
// clients all joined it, end to end (until every client has read every
// one), with at most 256 in flight, and reports ns/delivery.
func benchBroadcast(b *testing.B, s *server, subs int) {
	bc := newBenchClients(b, s, subs, nil)
	room := s.hub.Room("r")
	msg := wsroom.Text(string(make([]byte, 64)))
	const window = 256
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		bc.pace(b, i, window, nil)
		if err := room.Broadcast(msg); err != nil {
			b.Fatal(err)
		}
	}
	bc.waitReceived(b, int64(b.N)*int64(subs))
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
}

// BenchmarkRoomBroadcast measures fan-out of a 64-byte text message to
// every member of a room over loopback, end to end (until every client has
// read it). At most `window` messages are in flight, like a publisher that
// does not outrun its readers forever.
func BenchmarkRoomBroadcast(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			s := benchHub(b)
			benchBroadcast(b, s, subs)
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
	who := make([]int, len(users)) // their clients
	for i := range users {
		who[i] = i * 97
		users[i] = "u" + strconv.Itoa(who[i])
	}
	msg := wsroom.Text(string(make([]byte, 64)))
	const window = 1024
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		bc.pace(b, i, window, who)
		s.hub.SendTo(msg, users...)
	}
	bc.waitReceived(b, int64(b.N)*10)
}
