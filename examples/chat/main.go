// Command chat is a small chat room app built on wsroom: pick a name and a
// room, talk to everyone in the room, see who is there, and send direct
// messages.
//
//	go run ./examples/chat                  # then open http://localhost:8080/
//	go run ./examples/chat -addr 127.0.0.1:9000
//
// The page (index.html, embedded) uses the browser's own WebSocket API and
// connects to /ws?name=…&room=…. The wire protocol is wsroom.Relay's JSON
// envelopes plus one server message:
//
//	page → server  {"room":"lobby","data":{"text":"hi"},"id":"7"}       to the room
//	page → server  {"to":["bob"],"data":{"text":"hi","dm":true},"id":"8"} to bob only
//	server → page  {"from":"alice","room":"lobby","data":{…}}            relayed (no "room" for a DM)
//	server → page  {"error":"forbidden: no shared room with a recipient","id":"8"}
//	server → page  {"presence":{"room":"lobby","users":["alice","bob"]}} on every join/leave
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/wsroom/wsroom"
)

//go:embed index.html
var indexHTML []byte

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		log.Fatal(err)
	}
}

// newServer returns the app's routes and the Hub behind /ws.
func newServer() (http.Handler, *wsroom.Hub) {
	// presenceMu orders presence updates: each one is a full snapshot, so
	// taking the snapshot and queueing it under one lock means the last
	// update every member receives is the current member list.
	var presenceMu sync.Mutex
	sendPresence := func(room *wsroom.Room, _ *wsroom.Conn) {
		presenceMu.Lock()
		defer presenceMu.Unlock()
		// Room.Broadcast queues the message for every connection in the room
		// without ever blocking on a slow peer. It fails only after
		// Hub.Shutdown, when there is no one left to tell.
		room.Broadcast(presence(room))
	}

	// wsroom.New takes Options; every field is optional. The zero value
	// already gives a same-origin check, ping/pong heartbeats, a 64 KiB
	// message limit and bounded send queues.
	hub := wsroom.New(wsroom.Options{
		// Identify runs before the upgrade and returns the user ID. An error
		// refuses the handshake; wsroom.Reject picks the HTTP status and the
		// one-line body. (This demo trusts the name it is given; a real app
		// would read the user from a session cookie or token here.)
		Identify: func(r *http.Request) (string, error) {
			name, _, err := parseJoin(r)
			if err != nil {
				return "", wsroom.Reject(http.StatusBadRequest, err.Error())
			}
			return name, nil
		},
		// OnConnect runs once the socket is open, before any message is
		// read, with the upgrade request: the room comes from its URL
		// (already validated by Identify). Conn.Join triggers OnJoin.
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			return c.Join(r.URL.Query().Get("room"))
		},
		// Relay handles every inbound message: it parses the envelope,
		// checks the default policy (room messages only from members, direct
		// messages only to users sharing a room with the sender), stamps
		// "from" with the sender's user ID and delivers it, or answers the
		// sender with {"error":…}.
		OnMessage: wsroom.Relay(wsroom.RelayOptions{}),
		// OnJoin and OnLeave run after each membership change, including
		// the implicit leave when a connection closes.
		OnJoin:  sendPresence,
		OnLeave: sendPresence,
	})

	// A non-WebSocket GET of the same URL explains why a handshake would be
	// refused: browsers hide a failed handshake's HTTP answer from the page
	// (it only sees close code 1006), so the page asks here instead.
	explain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := parseJoin(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this is the chat's WebSocket endpoint", http.StatusUpgradeRequired)
	})
	// Hub.Middleware upgrades WebSocket handshakes and passes every other
	// request on to explain. (Mounting hub itself would answer those 426.)
	ws := hub.Middleware(explain)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(indexHTML)
	})
	mux.Handle("GET /ws", ws)
	return mux, hub
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// parseJoin reads ?name=…&room=… and validates both; the error is a
// one-line reason fit to show the user.
func parseJoin(r *http.Request) (name, room string, err error) {
	q := r.URL.Query()
	name, room = q.Get("name"), q.Get("room")
	for _, f := range []struct{ what, v string }{{"name", name}, {"room", room}} {
		switch {
		case f.v == "":
			return "", "", fmt.Errorf("missing %s", f.what)
		case !validName.MatchString(f.v):
			return "", "", fmt.Errorf("invalid %s: use 1-32 letters, digits, '_', '-' or '.'", f.what)
		}
	}
	return name, room, nil
}

// presence builds {"presence":{"room":…,"users":[…]}} listing each user in
// the room once, sorted. Room.Members iterates over a snapshot of the
// room's connections; a user with two tabs open has two.
func presence(room *wsroom.Room) wsroom.Message {
	users := []string{}
	for c := range room.Members() {
		users = append(users, c.ID())
	}
	slices.Sort(users)
	var msg struct {
		Presence struct {
			Room  string   `json:"room"`
			Users []string `json:"users"`
		} `json:"presence"`
	}
	msg.Presence.Room = room.Name()
	msg.Presence.Users = slices.Compact(users)
	b, _ := json.Marshal(msg)
	return wsroom.Message{Type: wsroom.TextMessage, Data: b}
}

// run serves until SIGINT or SIGTERM, then shuts down gracefully.
func run(addr string) error {
	handler, hub := newServer()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("wsroom chat: open %s\n", browseURL(ln.Addr()))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stop() // a second Ctrl-C kills the process at once
	log.Print("wsroom chat: shutting down")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// http.Server.Shutdown stops accepting and waits for plain HTTP
	// requests, but it does not track hijacked connections: Hub.Shutdown
	// refuses new handshakes, closes every WebSocket with 1001 "server
	// shutdown" after flushing what is queued, and waits for the hub's
	// goroutines. After the deadline it drops whatever is left.
	if err := errors.Join(srv.Shutdown(ctx), hub.Shutdown(ctx)); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// browseURL turns the listening address into a URL a browser can open:
// ":8080" and "0.0.0.0:8080" listen everywhere, so point at localhost.
func browseURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
