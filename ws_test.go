package wsroom_test

import (
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

func TestEchoAndCloseHandshake(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
	})
	c := dial(t, s.url, nil)
	c.sendText("hello")
	c.expectText("hello")
	c.closeHandshake(1000)
	waitFor(t, "connection to be gone", func() bool { return s.hub.Stats().Connections == 0 })
}

// A callback slower than PongTimeout keeps the reader from reading pongs;
// the heartbeat must not take that for a dead peer.
func TestSlowCallbackIsNotADeadPeer(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		PingInterval: 20 * time.Millisecond,
		PongTimeout:  100 * time.Millisecond,
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			time.Sleep(500 * time.Millisecond) // slow application work, not synchronisation
			c.Send(m)
		},
	})
	c := dial(t, s.url, nil)
	c.sendText("slow")
	c.expectText("slow") // readMessage skips the server's pings
}
