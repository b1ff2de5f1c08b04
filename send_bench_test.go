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
	bc := newBenchClients(b, s, 1)
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
