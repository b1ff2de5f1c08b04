package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/examples/chat/chatapp"
	"github.com/wsroom/wsroom/internal/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer serves chatapp.New on a real socket. Cleanup shuts the hub
// down and closes the server; it runs after the clients' cleanups.
func startServer(t *testing.T) (*httptest.Server, *wsroom.Hub) {
	t.Helper()
	handler, hub := chatapp.New(wsroom.Options{})
	return wstest.Serve(t, handler, hub.Shutdown), hub
}

// client is a test WebSocket client speaking the page's protocol.
type client struct {
	*wstest.Conn
	t    *testing.T
	name string
}

// received is anything the server sends the page.
type received struct {
	From string `json:"from"`
	Room string `json:"room"`
	Data struct {
		Text string `json:"text"`
		DM   bool   `json:"dm"`
	} `json:"data"`
	Error    string `json:"error"`
	ID       string `json:"id"`
	Presence *struct {
		Room   string   `json:"room"`
		Users  []string `json:"users"`
		Joined []string `json:"joined"`
		Left   []string `json:"left"`
	} `json:"presence"`
}

// joinURL is the page's /ws URL; scheme is "ws" or "http".
func joinURL(srv *httptest.Server, scheme, name, room string) string {
	q := url.Values{"name": {name}, "room": {room}}
	return scheme + strings.TrimPrefix(srv.URL, "http") + "/ws?" + q.Encode()
}

func dial(t *testing.T, srv *httptest.Server, name, room string) *client {
	t.Helper()
	return &client{Conn: wstest.Dial(t, joinURL(srv, "ws", name, room), nil), t: t, name: name}
}

func (c *client) send(envelope string) {
	c.t.Helper()
	c.SendText(c.t, envelope)
}

// next returns the next message the server sent c.
func (c *client) next() received {
	c.t.Helper()
	b := c.NextText(c.t)
	var m received
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		c.t.Fatalf("%s: bad JSON %q: %v", c.name, b, err)
	}
	return m
}

func (c *client) expectPresence(room string, users ...string) {
	c.t.Helper()
	m := c.next()
	if m.Presence == nil || m.Presence.Room != room || !slices.Equal(m.Presence.Users, users) {
		c.t.Fatalf("%s: got %+v, want presence of %s: %v", c.name, m, room, users)
	}
}

// expectChange reads a presence update that names who joined and left.
func (c *client) expectChange(room string, users, joined, left []string) {
	c.t.Helper()
	m := c.next()
	if p := m.Presence; p == nil || p.Room != room || !slices.Equal(p.Users, users) ||
		!slices.Equal(p.Joined, joined) || !slices.Equal(p.Left, left) {
		c.t.Fatalf("%s: got %+v, want presence of %s: %v (joined %v, left %v)", c.name, m.Presence, room, users, joined, left)
	}
}

func (c *client) expectError(id, contains string) {
	c.t.Helper()
	m := c.next()
	if m.ID != id || !strings.Contains(m.Error, contains) {
		c.t.Fatalf("%s: got %+v, want error %q with id %q", c.name, m, contains, id)
	}
}

// probe proves that nothing is waiting for c: it provokes an error reply,
// which must be the next message c reads (a connection's messages arrive
// in order).
func (c *client) probe() {
	c.t.Helper()
	c.send(`{"room":"no-such-room","data":null,"id":"probe"}`)
	c.expectError("probe", "not a member")
}

func TestChat(t *testing.T) {
	srv, hub := startServer(t)

	// Presence: each join sends the sorted member list to the whole room.
	// alice's own update is read before bob dials, so every message below
	// is deterministic.
	alice := dial(t, srv, "alice", "lobby")
	alice.expectPresence("lobby", "alice")
	bob := dial(t, srv, "bob", "lobby")
	bob.expectPresence("lobby", "alice", "bob")
	alice.expectPresence("lobby", "alice", "bob")
	carol := dial(t, srv, "carol", "other")
	carol.expectPresence("other", "carol")

	// A room message reaches the others in the room, stamped with the
	// sender's name, and not the sender or anyone outside the room.
	alice.send(`{"room":"lobby","data":{"text":"hi all"},"id":"1"}`)
	if m := bob.next(); m.From != "alice" || m.Room != "lobby" || m.Data.Text != "hi all" || m.Data.DM {
		t.Fatalf("bob: got %+v, want alice's room message", m)
	}
	carol.probe()

	// A direct message reaches the named user only, without a room.
	alice.send(`{"to":["bob"],"data":{"text":"psst","dm":true},"id":"2"}`)
	if m := bob.next(); m.From != "alice" || m.Room != "" || m.Data.Text != "psst" || !m.Data.DM {
		t.Fatalf("bob: got %+v, want alice's direct message", m)
	}
	carol.probe()

	// Users who share no room cannot message each other. This error is
	// also the first message alice has read since her presence update:
	// she got no copy of her own messages.
	alice.send(`{"to":["carol"],"data":{"text":"hello?","dm":true},"id":"3"}`)
	alice.expectError("3", "no shared room")
	carol.probe()

	// Someone claiming another name cannot impersonate: "from" is the
	// connection's user ID, whatever the client writes.
	bob.send(`{"room":"lobby","data":{"text":"it's me"},"from":"carol"}`)
	bob.expectError("", "unknown field")

	// A connection that drops (no close frame) leaves its room.
	bob.Close()
	alice.expectPresence("lobby", "alice")

	// Shutdown closes the remaining connections with 1001.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- hub.Shutdown(ctx)
	}()
	for _, c := range []*client{alice, carol} {
		_, _, err := c.ReadMessage()
		var closed *wstest.CloseError
		if !errors.As(err, &closed) || closed.Code != 1001 {
			t.Errorf("%s: got %v, want close 1001", c.name, err)
			continue
		}
		c.MustWrite(t, wstest.CloseFrame(1001, "")) // the answer Shutdown waits for
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestRejectedHandshake(t *testing.T) {
	srv, _ := startServer(t)
	for _, tc := range []struct{ name, room, reason string }{
		{"", "lobby", "missing name"},
		{"bob smith", "lobby", "invalid name"},
		{"<script>", "lobby", "invalid name"},
		{strings.Repeat("a", 33), "lobby", "invalid name"},
		{"bob", "", "missing room"},
		{"bob", "../etc", "invalid room"},
	} {
		resp := wstest.Handshake(t, wstest.Request(joinURL(srv, "http", tc.name, tc.room), nil)).Resp
		if resp.StatusCode == http.StatusSwitchingProtocols {
			t.Errorf("name %q room %q: handshake accepted", tc.name, tc.room)
			continue
		}
		if body := wstest.Body(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.reason) {
			t.Errorf("name %q room %q: got %d %q, want 400 %q", tc.name, tc.room, resp.StatusCode, body, tc.reason)
		}

		// A plain GET of the same URL explains the refusal to the page.
		u := joinURL(srv, "http", tc.name, tc.room)
		res, err := srv.Client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		if b := wstest.Body(t, res); res.StatusCode != http.StatusBadRequest || !strings.Contains(b, tc.reason) {
			t.Errorf("GET %s: got %d %q, want 400 %q", u, res.StatusCode, b, tc.reason)
		}
	}
}

func TestPage(t *testing.T) {
	srv, _ := startServer(t)
	res, err := srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("GET /: reading the page: %v", err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(b), "import { WsroomClient } from '/wsroom.js'") {
		t.Fatal("GET /: the page does not use wsroom's JavaScript client")
	}
	res, err = srv.Client().Get(srv.URL + "/wsroom.js")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(string(js), "export class WsroomClient") {
		t.Fatalf("GET /wsroom.js: %d %s, %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(js))
	}
	for _, sink := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write"} {
		if strings.Contains(string(b), sink) {
			t.Errorf("GET /: the page uses %s; render with textContent", sink)
		}
	}

	res, err = srv.Client().Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nope: %d, want 404", res.StatusCode)
	}
}

func TestBrowseURL(t *testing.T) {
	for addr, want := range map[string]string{
		"[::]:8080":      "http://localhost:8080/",
		"0.0.0.0:8080":   "http://localhost:8080/",
		"127.0.0.1:9000": "http://127.0.0.1:9000/",
		"[::1]:9000":     "http://[::1]:9000/",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := chatapp.BrowseURL(a); got != want {
			t.Errorf("BrowseURL(%s) = %s, want %s", addr, got, want)
		}
	}
}

// TestPresenceChanges: the update names who came and went, goes to the
// whole room only when the room's set of users changes, and to the new
// connection alone when its user is already there (a second tab).
func TestPresenceChanges(t *testing.T) {
	srv, _ := startServer(t)
	alice := dial(t, srv, "alice", "lobby")
	alice.expectChange("lobby", []string{"alice"}, []string{"alice"}, nil)
	bob := dial(t, srv, "bob", "lobby")
	bob.expectChange("lobby", []string{"alice", "bob"}, []string{"bob"}, nil)
	alice.expectChange("lobby", []string{"alice", "bob"}, []string{"bob"}, nil)

	// bob's second tab gets the list; alice and bob's first tab get nothing.
	bob2 := dial(t, srv, "bob", "lobby")
	bob2.expectChange("lobby", []string{"alice", "bob"}, nil, nil)
	alice.probe()
	bob.probe()

	// One of bob's tabs closing changes nothing; the last one does.
	bob2.Close()
	bob.Close()
	alice.expectChange("lobby", []string{"alice"}, nil, []string{"bob"})
}

// TestRoomHistory: the chat's rooms keep a history, so a wsroom.v1 client
// (the page's) is told the room's position when it joins.
func TestRoomHistory(t *testing.T) {
	srv, _ := startServer(t)
	alice := dial(t, srv, "alice", "lobby")
	alice.expectPresence("lobby", "alice")
	alice.send(`{"room":"lobby","data":{"text":"one"}}`)
	alice.send(`{"room":"lobby","data":{"text":"two"}}`)
	alice.probe() // both were relayed before the probe's answer

	bob := wstest.Dial(t, joinURL(srv, "ws", "bob", "lobby"), http.Header{"Sec-WebSocket-Protocol": {wsroom.ProtocolV1}})
	var headers []string
	for len(headers) < 2 { // hello, then joined
		headers = append(headers, strings.SplitN(bob.NextText(t), "\n", 2)[0])
	}
	var joined struct {
		T string `json:"t"`
		R string `json:"r"`
		E string `json:"e"`
		O uint64 `json:"o"`
	}
	if err := json.Unmarshal([]byte(headers[1]), &joined); err != nil || joined.T != "joined" || joined.R != "lobby" || joined.E == "" || joined.O != 2 {
		t.Fatalf("got %s, want joined lobby at offset 2 of an epoch", headers[1])
	}
}
