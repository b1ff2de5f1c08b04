package membroker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/membroker"
)

// Two Hubs on one Bus behave as two nodes: a broadcast on one reaches the
// room's members on the other.
func Example() {
	bus := membroker.NewBus()
	joinLobby := func(c *wsroom.Conn, r *http.Request) error { return c.Join("lobby") }
	a := wsroom.New(wsroom.Options{Broker: bus.NewBroker(), OnConnect: joinLobby})
	b := wsroom.New(wsroom.Options{Broker: bus.NewBroker(), OnConnect: joinLobby})
	defer a.Shutdown(context.Background())
	defer b.Shutdown(context.Background())
	srvB := httptest.NewServer(b)
	defer srvB.Close()

	conn, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srvB.URL, "http"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	// The client is in the lobby as soon as its handshake completes (and
	// node B subscribed to the room when its first member joined).
	a.Room("lobby").Broadcast(wsroom.Text("hello from node A"))
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	// Output: hello from node A
}
