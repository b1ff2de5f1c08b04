package wsroom_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gobwas/ws"
	"github.com/wsroom/wsroom"
)

// A room keeps its last 100 broadcasts; a client speaking wsroom.v1 (the
// JavaScript client in client/ does all of this) sees each broadcast's
// position, and after reconnecting with its last position gets what it
// missed, then a "joined" saying nothing was lost.
func ExampleHistory() {
	hub := wsroom.New(wsroom.Options{
		History: func(room string) wsroom.History {
			return wsroom.History{Messages: 100} // and the default 1 MiB, 5 minutes
		},
		OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join("news") },
	})
	srv := httptest.NewServer(hub)
	defer exampleShutdown(hub, srv)
	var conns []net.Conn
	dialV1 := func(query string) func() string {
		d := ws.Dialer{Protocols: []string{wsroom.ProtocolV1}}
		conn, br, _, err := d.Dial(context.Background(), wsURL(srv.URL, "/"+query))
		if err != nil {
			panic(err)
		}
		c := exampleConn(conn, br)
		conns = append(conns, c)
		return func() string { return strings.TrimSuffix(exampleRead(c), "\n") }
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	read := dialV1("")
	read() // {"t":"hello",…}
	joined := read()
	epoch := joined[strings.Index(joined, `"e":"`)+5 : strings.Index(joined, `","o"`)]
	hub.Room("news").Broadcast(wsroom.Text("first"))
	fmt.Println(strings.Replace(read(), epoch, "EPOCH", 1))

	hub.Room("news").Broadcast(wsroom.Text("second")) // while the client is away, say
	hub.Room("news").Broadcast(wsroom.Text("third"))
	resume := base64.RawURLEncoding.EncodeToString([]byte(`{"r":{"news":["` + epoch + `",1]}}`))
	read = dialV1("?" + wsroom.ResumeParam + "=" + resume)
	read() // hello
	for range 3 {
		fmt.Println(strings.Replace(read(), epoch, "EPOCH", 1))
	}
	// Output:
	// {"r":"news","e":"EPOCH","o":1}
	// first
	// {"r":"news","e":"EPOCH","o":2}
	// second
	// {"r":"news","e":"EPOCH","o":3}
	// third
	// {"t":"joined","r":"news","e":"EPOCH","o":3,"resumed":2}
}
