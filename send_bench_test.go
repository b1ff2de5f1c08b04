package wsroom_test

import (
	"net/http"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// BenchmarkConnSend measures Conn.Send to one connection over loopback,
// end to end: encoding, the enqueue, the writer and the client's read.
// allocs/op counts the encoded frame (one per send) plus the writer
// goroutine starts (a fraction: the writer sends whole batches).
func BenchmarkConnSend(b *testing.B) {
	conns := make(chan *wsroom.Conn, 1)
	s := newServer(b, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			conns <- c
			return c.Send(wsroom.Text("ready"))
		},
	})
	bc := newBenchClients(b, s, 1, nil)
	c := <-conns
	msg := wsroom.Text(string(make([]byte, 64)))
	const window = 1024
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		bc.pace(b, i, window, nil)
		if err := c.Send(msg); err != nil {
			b.Fatal(err)
		}
	}
	bc.waitReceived(b, int64(b.N))
}

// BenchmarkHandshake measures a connection's whole life over loopback:
// handshake, one echoed message, client close (the server's OnClose is
// not awaited).
func BenchmarkHandshake(b *testing.B) {
	s, _ := userServer(b, wsroom.Options{})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := wstest.Open(s.url+"?user=u", nil)
		if err != nil {
			b.Fatal(err)
		}
		c.SendText(b, "hello")
		c.ExpectText(b, "hello")
		c.Close()
	}
}

// BenchmarkEcho measures a round trip on one connection: the client sends
// a 64-byte text message and reads the echo. On Linux each message wakes
// the connection through the readiness poller.
func BenchmarkEcho(b *testing.B) {
	s, _ := userServer(b, wsroom.Options{})
	c := wstest.Dial(b, s.url+"?user=u", nil)
	msg := string(make([]byte, 64))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.SendText(b, msg)
		c.ExpectText(b, msg)
	}
}
