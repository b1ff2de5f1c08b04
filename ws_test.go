package wsroom_test

import (
	"context"
	"net/http"
	"net/http/httptest"
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

// OnConnect gets the upgrade request: the classic "room from the URL".
func TestOnConnectSeesRequest(t *testing.T) {
	t.Parallel()
	hub := wsroom.New(wsroom.Options{
		Logger: quietLogger(),
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if err := c.Join(r.PathValue("room")); err != nil {
				return err
			}
			return c.Send(wsroom.Text(r.PathValue("room") + "/" + r.URL.Query().Get("topic")))
		},
	})
	mux := http.NewServeMux()
	mux.Handle("GET /rooms/{room}/ws", hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		hub.Shutdown(context.Background())
		srv.Close()
	})
	c := dial(t, srv.URL+"/rooms/kitchen/ws?topic=soup", nil)
	c.expectText("kitchen/soup")
	if n := hub.Room("kitchen").Len(); n != 1 {
		t.Fatalf("kitchen has %d members, want 1", n)
	}
}
