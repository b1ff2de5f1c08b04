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
	"time"

	"github.com/wsroom/wsroom"
)

//go:embed index.html
var indexHTML []byte

// History is what each chat room keeps, so that a page that reconnects
// gets the messages it missed: the last 200, for 10 minutes.
var History = wsroom.History{Messages: 200, TTL: 10 * time.Minute}

// New returns the app's routes and the Hub behind /ws. The app sets the
// callbacks (Identify, OnConnect, OnMessage, OnJoin, OnLeave) in opts, and
// History unless opts has one; it keeps every other field as given, so a
// caller can choose limits, a logger or a broker; pass wsroom.Options{}
// for the defaults.
func New(opts wsroom.Options) (http.Handler, *wsroom.Hub) {
	// presenceMu orders presence updates: each one is a full snapshot, so
	// taking the snapshot and queueing it under one lock means the last
	// update every member receives is the current member list. members
	// holds the list each room was last told, to say who came and went.
	var presenceMu sync.Mutex
	members := map[string][]string{}
	sendPresence := func(room *wsroom.Room, c *wsroom.Conn) {
		presenceMu.Lock()
		defer presenceMu.Unlock()
		users := roomUsers(room)
		before := members[room.Name()]
		joined, left := diff(before, users), diff(users, before)
		if len(users) == 0 {
			delete(members, room.Name())
		} else {
			members[room.Name()] = users
		}
		if len(joined) == 0 && len(left) == 0 {
			// Another tab of a user already there, or one of several
			// leaving: the room's list is unchanged, but a new
			// connection needs it.
			if slices.Contains(c.Rooms(), room.Name()) {
				c.Send(presence(room.Name(), users, nil, nil))
			}
			return
		}
		// Room.SendTo queues the message for the members' connections
		// without ever blocking on a slow peer; it fails only after
		// Hub.Shutdown, when there is no one left to tell. Unlike
		// Room.Broadcast it stays out of the room's history: presence is
		// a snapshot, and the next one replaces it (a page that reconnects
		// gets a fresh one when it joins). It also keeps the history's
		// 200 messages for the conversation.
		room.SendTo(presence(room.Name(), users, joined, left), users...)
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
		// The history of each room: a page that reconnects within it gets
		// what it missed (the JavaScript client resumes by itself).
		History: func(string) wsroom.History { return History },
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
	// The JavaScript client (client/wsroom.js), which the page imports.
	mux.Handle("GET /wsroom.js", wsroom.ClientScript())
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

// roomUsers lists each user in the room once, sorted. Room.Members
// iterates over a snapshot of the room's connections; a user with two tabs
// open has two.
func roomUsers(room *wsroom.Room) []string {
	users := []string{}
	for c := range room.Members() {
		users = append(users, c.UserID())
	}
	slices.Sort(users)
	return slices.Compact(users)
}

// diff returns the users of b who are not in a (both sorted).
func diff(a, b []string) []string {
	var out []string
	for _, u := range b {
		if _, found := slices.BinarySearch(a, u); !found {
			out = append(out, u)
		}
	}
	return out
}

// presence builds {"presence":{"room":…,"users":[…],"joined":[…],"left":[…]}}:
// the room's users, and who came and went since the last update (omitted
// when empty).
func presence(room string, users, joined, left []string) wsroom.Message {
	var msg struct {
		Presence struct {
			Room   string   `json:"room"`
			Users  []string `json:"users"`
			Joined []string `json:"joined,omitempty"`
			Left   []string `json:"left,omitempty"`
		} `json:"presence"`
	}
	msg.Presence.Room, msg.Presence.Users = room, users
	msg.Presence.Joined, msg.Presence.Left = joined, left
	b, _ := json.Marshal(msg)
	return wsroom.Message{Type: wsroom.TextMessage, Data: b}
}

// merge returns base with the app's callbacks from app.
func merge(base, app wsroom.Options) wsroom.Options {
	base.Identify, base.OnConnect, base.OnMessage = app.Identify, app.OnConnect, app.OnMessage
	base.OnJoin, base.OnLeave = app.OnJoin, app.OnLeave
	if base.History == nil {
		base.History = app.History
	}
	return base
}
