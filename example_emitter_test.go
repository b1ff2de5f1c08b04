package wsroom_test

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

// A process without a Hub (a cron job, another service) publishes to a
// room through the cluster's broker. Here the broker is in-process; with
// Redis it is a redisbroker.Broker configured like the Hubs'.
func ExampleEmitter() {
	bus := membroker.NewBus()
	hub := wsroom.New(wsroom.Options{
		Broker:    bus.NewBroker(),
		OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join("news") },
	})
	defer hub.Shutdown(context.Background())
	srv := httptest.NewServer(hub)
	defer srv.Close()
	conn, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	emitter := wsroom.NewEmitter(bus.NewBroker(), wsroom.EmitterOptions{})
	defer emitter.Close()
	if err := emitter.RoomBroadcast("news", wsroom.Text("published by a cron job")); err != nil {
		panic(err)
	}
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	// Output: published by a cron job
}
