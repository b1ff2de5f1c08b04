package wsroom_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/wsroom/wsroom"
)

// Who is in a room, and the events of a user's first connection in and
// last one out. Without a broker this is the Hub's own index; with
// Options.Presence and a PresenceBroker (membroker, redisbroker) the same
// calls cover every node.
func ExampleRoom_Presence() {
	joined := make(chan wsroom.PresenceEvent, 4)
	hub := wsroom.New(wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			c.SetInfo([]byte(`{"name":"` + c.UserID() + `"}`)) // shown with the user in Presence
			return c.Join("lobby")
		},
		OnPresence: func(e wsroom.PresenceEvent) { joined <- e },
	})
	srv := httptest.NewServer(hub)
	defer exampleShutdown(hub, srv)

	for _, user := range []string{"alice", "alice", "bob"} { // alice in two tabs
		conn := exampleDial(wsURL(srv.URL, "/?user="+user))
		defer conn.Close()
	}
	for range 2 { // one event per user, not per connection
		e := <-joined
		fmt.Println("joined:", e.UserID)
	}
	users, _ := hub.Room("lobby").Presence(context.Background())
	for _, p := range users {
		fmt.Printf("%s: %d connections, info %s\n", p.UserID, p.Conns, p.Info)
	}
	n, _ := hub.Online(context.Background(), "alice")
	fmt.Println("alice online:", n)
	// Output:
	// joined: alice
	// joined: bob
	// alice: 2 connections, info {"name":"alice"}
	// bob: 1 connections, info {"name":"bob"}
	// alice online: 2
}

// AppendPresence answers what Presence does into a slice the caller
// reuses: a dashboard that asks about a large room every second keeps one
// slice and allocates nothing once it is large enough.
func ExampleRoom_AppendPresence() {
	hub := wsroom.New(wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join("lobby") },
	})
	srv := httptest.NewServer(hub)
	defer exampleShutdown(hub, srv)
	for _, user := range []string{"carol", "alice", "alice"} {
		conn := exampleDial(wsURL(srv.URL, "/?user="+user))
		defer conn.Close()
	}

	var users []wsroom.Presence // kept from query to query
	for range 2 {
		var err error
		users, err = hub.Room("lobby").AppendPresence(context.Background(), users[:0])
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	for _, p := range users { // Infos are shared: read them, do not modify them
		fmt.Printf("%s: %d\n", p.UserID, p.Conns)
	}
	// Output:
	// alice: 2
	// carol: 1
}

// Disconnect closes every connection of a user (on every node, with a
// broker) with a close code and reason the page sees, and says how many.
func ExampleHub_Disconnect() {
	hub := wsroom.New(wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
	})
	srv := httptest.NewServer(hub)
	defer exampleShutdown(hub, srv)
	conn := exampleDial(wsURL(srv.URL, "/?user=mallory"))
	defer conn.Close()

	n, err := hub.Disconnect(context.Background(), "mallory", 4003, "banned")
	fmt.Println(n, err)
	// Output: 1 <nil>
}
