package wsroom_test

import (
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

func TestEchoAndCloseHandshake(t *testing.T) {
	s := newServer(t, wsroom.Options{
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
	})
	c := dial(t, s.url, nil)
	c.sendText("hello")
	c.expectText("hello")
	c.closeHandshake(1000)
	waitFor(t, "connection to be gone", func() bool { return s.hub.Stats().Connections == 0 })
	_ = time.Second
}
