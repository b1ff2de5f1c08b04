package wsroom_test

import (
	"bufio"
	"context"
	"net"
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

// The same holds for a slow OnConnect, which also runs on the reader.
func TestSlowOnConnectIsNotADeadPeer(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{
		PingInterval: 20 * time.Millisecond,
		PongTimeout:  100 * time.Millisecond,
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			time.Sleep(500 * time.Millisecond) // slow application work, not synchronisation
			return c.Send(wsroom.Text("welcome"))
		},
	})
	c := dial(t, s.url, nil)
	c.expectText("welcome")
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

// shutdownOnHijack runs Shutdown at the moment the hub hijacks the
// connection, i.e. after the handshake checks and before the connection
// is registered.
type shutdownOnHijack struct {
	http.ResponseWriter
	hub *wsroom.Hub
}

func (w shutdownOnHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hub.Shutdown(context.Background())
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// A handshake that loses the race with Shutdown is told the same thing as
// every other connection: 1001 "server shutdown".
func TestShutdownDuringUpgrade(t *testing.T) {
	t.Parallel()
	hub := wsroom.New(wsroom.Options{Logger: quietLogger()})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.ServeHTTP(shutdownOnHijack{w, hub}, r)
	}))
	t.Cleanup(srv.Close)
	c := dial(t, srv.URL, nil)
	if reason := c.expectClose(1001); reason != "server shutdown" {
		t.Fatalf("close reason %q, want %q", reason, "server shutdown")
	}
	if st := hub.Stats(); st.Connections != 0 || st.Accepted != 0 {
		t.Fatalf("stats %+v: the raced connection must not be registered", st)
	}
}
