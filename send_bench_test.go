package wsroom_test

import (
	"net/http"
	"testing"

	"github.com/wsroom/wsroom"
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
		if i >= window {
			bc.waitReceived(b, int64(i-window))
		}
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
	s, _ := pollServer(b, wsroom.Options{})
	addr := s.srv.Listener.Addr().String()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		nc, br := quickHandshake(b, addr, "u", nil)
		echoOnce(b, nc, br, "hello")
		nc.Close()
	}
}

// BenchmarkEcho measures a round trip on one connection: the client sends
// a 64-byte text message and reads the echo. On Linux each message wakes
// the connection through the readiness poller.
func BenchmarkEcho(b *testing.B) {
	s, _ := pollServer(b, wsroom.Options{})
	nc, br := quickHandshake(b, s.srv.Listener.Addr().String(), "u", nil)
	defer nc.Close()
	c := &client{t: b, nc: nc, br: br}
	msg := string(make([]byte, 64))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.sendText(msg)
		c.expectText(msg)
	}
}
