package wsroom_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
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

// A fan-out split across cores still delivers every message to every
// member exactly once and in order.
func TestParallelFanoutKeepsOrder(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("the parallel fan-out path needs GOMAXPROCS >= 2")
	}
	t.Parallel()
	s := newServer(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			c.Join("big")
			return c.Send(wsroom.Text("ready"))
		},
	})
	wsroom.SetParallelFanout(s.hub, 8)
	const members, messages = 40, 200
	clients := make([]*client, members)
	for i := range clients {
		clients[i] = dial(t, s.url, nil)
		clients[i].expectText("ready")
	}
	for i := range messages {
		if err := s.hub.Room("big").Broadcast(wsroom.Text(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		for i := range messages {
			c.expectText(strconv.Itoa(i))
		}
	}
}
