package membroker_test

import (
	"context"
	"fmt"
	"io"
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
	joinLobby := func(c *wsroom.Conn, r *http.Request) error {
		if err := c.Join("lobby"); err != nil {
			return err
		}
		return c.Send(wsroom.Text("welcome to the lobby"))
	}
	a := wsroom.New(wsroom.Options{Broker: bus.NewBroker(), OnConnect: joinLobby})
	b := wsroom.New(wsroom.Options{Broker: bus.NewBroker(), OnConnect: joinLobby})
	defer a.Shutdown(context.Background())
	defer b.Shutdown(context.Background())
	srvB := httptest.NewServer(b)
	defer srvB.Close()

	conn, br, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srvB.URL, "http"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil { // frames that came with the handshake answer
		r = io.MultiReader(br, conn)
	}
	client := struct {
		io.Reader
		io.Writer
	}{r, conn}
	// The welcome comes once OnConnect has joined node B to the lobby.
	if _, err := wsutil.ReadServerText(client); err != nil {
		panic(err)
	}
	a.Room("lobby").Broadcast(wsroom.Text("hello from node A"))
	msg, err := wsutil.ReadServerText(client)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(msg))
	// Output: hello from node A
}
