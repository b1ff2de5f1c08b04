// Package chatapp is the chat room app behind examples/chat: the page,
// the /ws endpoint and the Hub. It is a package of its own so that other
// programs (tests driving it from a browser, the multi-node demo) can serve
// the very same app.
package chatapp

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sync"

	"github.com/wsroom/wsroom"
)

//go:embed index.html
var indexHTML []byte

// New returns the app's routes and the Hub behind /ws. The app sets the
// callbacks (Identify, OnConnect, OnMessage, OnJoin, OnLeave) in opts and
// keeps every other field as given, so a caller can choose limits, a
// logger or a broker; pass wsroom.Options{} for the defaults.
func New(opts wsroom.Options) (http.Handler, *wsroom.Hub) {
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
	hub := wsroom.New(merge(opts, wsroom.Options{
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
	}))

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
		users = append(users, c.UserID())
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

// merge returns base with the app's callbacks from app.
func merge(base, app wsroom.Options) wsroom.Options {
	base.Identify, base.OnConnect, base.OnMessage = app.Identify, app.OnConnect, app.OnMessage
	base.OnJoin, base.OnLeave = app.OnJoin, app.OnLeave
	return base
}
