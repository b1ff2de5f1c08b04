package wsroom_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

func TestEchoAndCloseHandshake(t *testing.T) {
	t.Parallel()
	s := newServer(t, wsroom.Options{OnMessage: echo})
	c := wstest.Dial(t, s.url, nil)
	c.SendText(t, "hello")
	c.ExpectText(t, "hello")
	c.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "connection to be gone", func() bool { return s.hub.Stats().Connections == 0 })
}

// OnConnect gets the upgrade request: the classic "room from the URL".
func TestOnConnectSeesRequest(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, wsroom.Options{
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if err := c.Join(r.PathValue("room")); err != nil {
				return err
			}
			return c.Send(wsroom.Text(r.PathValue("room") + "/" + r.URL.Query().Get("topic")))
		},
	}, serverSetup{mount: func(hub *wsroom.Hub) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("GET /rooms/{room}/ws", hub)
		return mux
	}})
	c := wstest.Dial(t, "http://"+s.addr+"/rooms/kitchen/ws?topic=soup", nil)
	c.ExpectText(t, "kitchen/soup")
	if n := s.hub.Room("kitchen").Len(); n != 1 {
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
	clients := make([]*wstest.Conn, members)
	for i := range clients {
		clients[i] = wstest.Dial(t, s.url, nil)
		clients[i].ExpectText(t, "ready")
	}
	for i := range messages {
		if err := s.hub.Room("big").Broadcast(wsroom.Text(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		for i := range messages {
			c.ExpectText(t, strconv.Itoa(i))
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
	s := newServerWith(t, wsroom.Options{}, serverSetup{mount: func(hub *wsroom.Hub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hub.ServeHTTP(shutdownOnHijack{w, hub}, r)
		})
	}})
	c := wstest.Dial(t, s.url, nil)
	if reason := c.ExpectClose(t, 1001); reason != "server shutdown" {
		t.Fatalf("close reason %q, want %q", reason, "server shutdown")
	}
	if st := s.hub.Stats(); st.Connections != 0 || st.Accepted != 0 {
		t.Fatalf("stats %+v: the raced connection must not be registered", st)
	}
}
