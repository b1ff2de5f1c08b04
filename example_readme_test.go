package wsroom_test

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/wsroom/wsroom"
)

// userFromSession stands for the application's authentication.
func userFromSession(r *http.Request) (string, error) {
	c, err := r.Cookie("session")
	if err != nil {
		return "", errors.New("not signed in")
	}
	return c.Value, nil
}

// The README's "Use" section (compiled, not run).
func Example_use() {
	ctx := context.Background()
	// README:use
	var hub *wsroom.Hub // OnMessage below refers to it
	hub = wsroom.New(wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return userFromSession(r) },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join("lobby") },
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			hub.Room("lobby").BroadcastExcept(m, c) // everyone in the lobby but the sender
		},
	})

	// From anywhere in the application:
	hub.Room("lobby").Broadcast(wsroom.Text("hello"))
	hub.SendTo(wsroom.Text("you have mail"), "alice", "bob") // every connection of alice and bob
	hub.Broadcast(wsroom.Text("maintenance in 5 minutes"))

	// On the way out (http.Server.Shutdown does not wait for WebSockets):
	hub.Shutdown(ctx) // 503 to new handshakes, flush queues, 1001 to everyone, join every goroutine
	// README:end
}

// The README's "Rooms with history" section (compiled, not run).
func Example_history() {
	// README:history
	hub := wsroom.New(wsroom.Options{
		History: func(room string) wsroom.History {
			if room == "lobby" {
				return wsroom.History{Messages: 200, TTL: 10 * time.Minute} // and up to 1 MiB
			}
			return wsroom.History{} // other rooms keep nothing and cost nothing more
		},
		AuthorizeJoin: func(c *wsroom.Conn, room string) error { return nil }, // let clients join rooms themselves
	})
	// README:end
	_ = hub
}
