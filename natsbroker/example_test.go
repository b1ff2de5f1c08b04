package natsbroker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/natsbroker"
)

// Two Hubs, as two nodes of one application, share a NATS server: a
// broadcast on node A reaches the room's members on node B.
func Example() {
	natsURL := exampleURL // e.g. "nats://127.0.0.1:4222"
	brokerB := natsbroker.New(natsbroker.Options{URL: natsURL})
	joined := make(chan struct{}, 1)
	a := wsroom.New(wsroom.Options{Broker: natsbroker.New(natsbroker.Options{URL: natsURL})})
	b := wsroom.New(wsroom.Options{
		Broker:    brokerB,
		OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join("lobby") },
		OnJoin:    func(*wsroom.Room, *wsroom.Conn) { joined <- struct{}{} },
	})
	defer a.Shutdown(context.Background()) // each Hub closes its broker
	defer b.Shutdown(context.Background())
	srvB := httptest.NewServer(b)
	defer srvB.Close()

	conn, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srvB.URL, "http"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	// Once the member has joined, Sync waits until node B's subscription
	// to the room is in effect on the NATS server.
	<-joined
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := brokerB.Sync(ctx); err != nil {
		panic(err)
	}

	if err := a.Room("lobby").Broadcast(wsroom.Text("hello from node A")); err != nil {
		panic(err) // wraps wsroom.ErrNotPublished if NATS did not confirm it
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	// Output: hello from node A
}

// Subject names the NATS subject of a room, to watch its traffic with
// other NATS tools (nats sub 'wsroom.room.>').
func ExampleSubject() {
	s, _ := natsbroker.Subject(natsbroker.DefaultPrefix, "room:lobby")
	fmt.Println(s)
	// Output: wsroom.room.bG9iYnk
}
