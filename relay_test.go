package wsroom_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
)

// relayServer starts a hub whose OnMessage is Relay(ro). Clients are
// addressed by name; their query sets the user ID and rooms (see stash).
type relayServer struct {
	t       *testing.T
	s       *server
	clients map[string]*wstest.Conn
	names   []string // in dial order
	marker  int
}

func newRelayServer(t *testing.T, ro wsroom.RelayOptions, queries ...string) *relayServer {
	t.Helper()
	st := newStash()
	rs := &relayServer{t: t, clients: map[string]*wstest.Conn{}}
	rs.s = newServer(t, wsroom.Options{
		Identify:     st.identify,
		OnConnect:    st.onConnect,
		OnMessage:    wsroom.Relay(ro),
		PingInterval: -1,
	})
	for _, q := range queries {
		name := strings.TrimPrefix(strings.Split(q, "&")[0], "n=")
		rs.clients[name] = wstest.Dial(t, rs.s.url+"?"+q, nil)
		rs.names = append(rs.names, name)
	}
	for _, n := range rs.names {
		st.conn(t, n) // OnConnect has joined its rooms
	}
	return rs
}

// send sends a text message from the named client.
func (rs *relayServer) send(from, msg string) {
	rs.t.Helper()
	rs.clients[from].SendText(rs.t, msg)
}

// expect checks that every client's next messages are exactly got[name]
// (compared as JSON values), then a marker broadcast to everyone, so a
// client absent from got received nothing. The caller must first make
// sure the relay has handled what was sent (a reply read, or sync), so
// that the marker is queued after anything relayed.
func (rs *relayServer) expect(what string, got map[string][]string) {
	rs.t.Helper()
	rs.marker++
	m := "marker " + strconv.Itoa(rs.marker)
	if err := rs.s.hub.Broadcast(wsroom.Text(m)); err != nil {
		rs.t.Fatalf("%s: Broadcast marker: %v", what, err)
	}
	for _, n := range rs.names {
		for _, want := range got[n] {
			msg := rs.clients[n].NextText(rs.t)
			if !sameJSON(msg, want) {
				rs.t.Fatalf("%s: %s got %s, want %s", what, n, msg, want)
			}
		}
		if msg := rs.clients[n].NextText(rs.t); msg != m {
			rs.t.Fatalf("%s: %s got %s, want only the marker %q", what, n, msg, m)
		}
	}
}

// sync makes sure the relay has finished handling everything from has
// sent so far: Relay runs on the connection's reader, one message at a
// time, so once the reply to a malformed envelope arrives, every earlier
// message has been relayed. The reply is consumed.
func (rs *relayServer) sync(from string) {
	rs.t.Helper()
	rs.send(from, `{"sync":1}`)
	msg := rs.clients[from].NextText(rs.t)
	var reply struct{ Error string }
	if json.Unmarshal([]byte(msg), &reply) != nil || !strings.Contains(reply.Error, "sync") {
		rs.t.Fatalf("sync: got %s, want an unknown-field error", msg)
	}
}

// sameJSON reports whether a and b hold equal JSON values.
func sameJSON(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// relayError checks that msg is {"error":…} with a reason containing
// want, with the id echoed (or no "id" when id is "") and nothing else.
func relayError(t *testing.T, msg, want, id string) {
	t.Helper()
	var reply map[string]any
	if err := json.Unmarshal([]byte(msg), &reply); err != nil {
		t.Fatalf("error reply %s: %v", msg, err)
	}
	reason, _ := reply["error"].(string)
	if !strings.Contains(reason, want) {
		t.Errorf("error reply %s: want a reason containing %q", msg, want)
	}
	gotID, hasID := reply["id"]
	switch {
	case id == "" && hasID:
		t.Errorf("error reply %s: unexpected id", msg)
	case id != "" && gotID != id:
		t.Errorf("error reply %s: want id %q echoed", msg, id)
	}
	for k := range reply {
		if k != "error" && k != "id" {
			t.Errorf("error reply %s: unexpected field %q", msg, k)
		}
	}
}

// TestRelayToUsers: an envelope to users reaches every connection of
// those users, from the authenticated sender, and nobody else.
func TestRelayToUsers(t *testing.T) {
	rs := newRelayServer(t, wsroom.RelayOptions{},
		"n=a1&u=alice&room=lobby",
		"n=b1&u=bob&room=lobby",
		"n=b2&u=bob&room=kitchen",
		"n=b3&u=bob", // in no room: reached all the same
		"n=c1&u=carol&room=lobby",
	)
	rs.send("a1", `{"to":["bob"],"data":{"x":1}}`)
	rs.sync("a1")
	want := `{"from":"alice","data":{"x":1}}`
	rs.expect("to bob", map[string][]string{"b1": {want}, "b2": {want}, "b3": {want}})
	// The exact bytes, too: from first, no recipient list.
	rs.send("a1", `{"to":["bob","bob"], "data": {"x" : [1, "two"]}, "id":"m1"}`)
	rs.sync("a1")
	for _, n := range []string{"b1", "b2", "b3"} {
		if msg := rs.clients[n].NextText(t); msg != `{"from":"alice","data":{"x":[1,"two"]}}` {
			t.Errorf("%s got %s", n, msg)
		}
	}
	rs.expect("to bob, bob", nil)

	// The default policy looks at the sending connection's rooms: b1
	// shares lobby with alice and carol, b2 (in kitchen only) shares none.
	rs.send("b1", `{"to":["alice","carol"],"data":"hi"}`)
	rs.sync("b1")
	rs.expect("from bob", map[string][]string{
		"a1": {`{"from":"bob","data":"hi"}`},
		"c1": {`{"from":"bob","data":"hi"}`},
	})
	rs.send("b2", `{"to":["alice"],"data":"hi","id":"x"}`)
	relayError(t, rs.clients["b2"].NextText(t), "forbidden: no shared room", "x")
	rs.expect("from bob's other connection", nil)
}

// TestRelayNoImpersonation: a client cannot choose "from".
func TestRelayNoImpersonation(t *testing.T) {
	rs := newRelayServer(t, wsroom.RelayOptions{},
		"n=a1&u=alice&room=lobby",
		"n=b1&u=bob&room=lobby",
	)
	for i, tc := range []struct{ env, relayed string }{
		{`{"from":"mallory","to":["bob"],"data":1}`, `{"from":"alice","data":1}`},
		{`{"to":["bob"],"data":1,"from":"mallory"}`, `{"from":"alice","data":1}`},
		{`{"to":["bob"],"room":"lobby","from":"mallory","data":1}`, `{"from":"alice","room":"lobby","data":1}`},
		{`{"to":["bob"],"data":1,"From":"mallory"}`, `{"from":"alice","data":1}`},
	} {
		rs.send("a1", tc.env)
		rs.send("a1", `{"sync":1}`)
		what := fmt.Sprintf("impersonation %d", i)
		first := rs.clients["a1"].NextText(t)
		if strings.Contains(first, "sync") {
			// Accepted: bob still sees alice as the sender.
			rs.expect(what+" accepted", map[string][]string{"b1": {tc.relayed}})
			continue
		}
		// Rejected (unknown field): the sender is told, bob gets nothing.
		relayError(t, first, "rom", "")
		if msg := rs.clients["a1"].NextText(t); !strings.Contains(msg, "sync") {
			t.Fatalf("%s: got %s, want the reply to the sync probe", what, msg)
		}
		rs.expect(what+" rejected", nil)
	}
	rs.send("a1", `{"to":["bob"],"data":"after"}`)
	rs.sync("a1")
	rs.expect("plain after", map[string][]string{"b1": {`{"from":"alice","data":"after"}`}})
}

// TestRelayRoom: a room envelope reaches the room except the sending
// connection (another connection of the same user included), with "room"
// in the output; room+to reaches those users' connections in the room.
func TestRelayRoom(t *testing.T) {
	rs := newRelayServer(t, wsroom.RelayOptions{},
		"n=a1&u=alice&room=lobby",
		"n=a2&u=alice&room=lobby",
		"n=b1&u=bob&room=lobby&room=kitchen",
		"n=b2&u=bob&room=kitchen",
		"n=c1&u=carol&room=lobby",
		"n=d1&u=dave&room=kitchen",
	)
	rs.send("a1", `{"room":"lobby","data":{"t":"hi"}}`)
	rs.sync("a1")
	want := `{"from":"alice","room":"lobby","data":{"t":"hi"}}`
	rs.expect("room lobby", map[string][]string{"a2": {want}, "b1": {want}, "c1": {want}})

	rs.send("a1", `{"room":"lobby","to":["bob","alice"],"data":2}`)
	want = `{"from":"alice","room":"lobby","data":2}`
	// bob's lobby connection only (not b2, in kitchen), and every alice
	// connection in lobby: Room.SendTo reaches every connection of the
	// named users, so the sender, having named itself, gets a copy too
	// (before the reply to the sync probe).
	if msg := rs.clients["a1"].NextText(t); !sameJSON(msg, want) {
		t.Fatalf("a1 got %s, want its own copy %s", msg, want)
	}
	rs.sync("a1")
	rs.expect("room lobby to bob and alice", map[string][]string{"a2": {want}, "b1": {want}})

	rs.send("d1", `{"room":"kitchen","data":null}`)
	rs.sync("d1")
	want = `{"from":"dave","room":"kitchen","data":null}`
	rs.expect("room kitchen", map[string][]string{"b1": {want}, "b2": {want}})
}

// TestRelayAuthorize: a refusal reaches only the sender, with its id.
func TestRelayAuthorize(t *testing.T) {
	var mu sync.Mutex
	var seen []wsroom.RelayTarget
	rs := newRelayServer(t, wsroom.RelayOptions{
		Authorize: func(from *wsroom.Conn, to wsroom.RelayTarget) error {
			mu.Lock()
			seen = append(seen, wsroom.RelayTarget{Room: to.Room, Users: slices.Clone(to.Users)})
			mu.Unlock()
			if to.Room == "vault" || slices.Contains(to.Users, "boss") {
				return errors.New("nope")
			}
			return nil // everything else, even users sharing no room
		}},
		"n=a1&u=alice&room=lobby",
		"n=b1&u=boss&room=vault",
		"n=c1&u=carol",
	)
	rs.send("a1", `{"to":["carol","boss"],"data":1,"id":"q1"}`)
	relayError(t, rs.clients["a1"].NextText(t), "forbidden: nope", "q1")
	rs.expect("refused to", nil)

	rs.send("a1", `{"room":"vault","data":1,"id":"q2"}`)
	relayError(t, rs.clients["a1"].NextText(t), "forbidden: nope", "q2")
	rs.expect("refused room", nil)

	rs.send("a1", `{"room":"vault","data":1}`)
	relayError(t, rs.clients["a1"].NextText(t), "forbidden: nope", "")
	rs.expect("refused room without id", nil)

	// Allowed by this policy although carol shares no room with alice.
	rs.send("a1", `{"to":["carol","carol"],"data":"ok"}`)
	rs.sync("a1")
	rs.expect("allowed", map[string][]string{"c1": {`{"from":"alice","data":"ok"}`}})

	mu.Lock()
	defer mu.Unlock()
	wantSeen := []wsroom.RelayTarget{
		{Users: []string{"carol", "boss"}},
		{Room: "vault"},
		{Room: "vault"},
		{Users: []string{"carol"}},
	}
	if !reflect.DeepEqual(seen, wantSeen) {
		t.Errorf("Authorize saw %+v, want %+v", seen, wantSeen)
	}
}

// TestRelayDefaultPolicyAndErrors: the default policy's refusals and the
// answers to malformed input; the connection keeps working throughout.
func TestRelayDefaultPolicyAndErrors(t *testing.T) {
	rs := newRelayServer(t, wsroom.RelayOptions{MaxRecipients: 3},
		"n=a1&u=alice&room=lobby",
		"n=b1&u=bob&room=lobby",
		"n=c1&u=carol&room=kitchen",
		"n=d1&u=dave",
	)
	a := rs.clients["a1"]
	cases := []struct {
		name, send, reason, id string
		binary                 bool
	}{
		{name: "not a member", send: `{"room":"kitchen","data":1,"id":"k"}`, reason: "forbidden: not a member of the room", id: "k"},
		{name: "no shared room", send: `{"to":["carol"],"data":1,"id":"c"}`, reason: "forbidden: no shared room", id: "c"},
		{name: "no shared room, one of two", send: `{"to":["bob","carol"],"data":1}`, reason: "forbidden: no shared room"},
		{name: "user in no room", send: `{"to":["dave"],"data":1}`, reason: "forbidden: no shared room"},
		{name: "unknown user", send: `{"to":["zed"],"data":1}`, reason: "forbidden: no shared room"},
		{name: "malformed JSON", send: `{"to":["bob"],"data":`, reason: "not valid JSON"},
		{name: "not an object", send: `["bob"]`, reason: "JSON object"},
		{name: "binary", send: `{"to":["bob"],"data":1}`, binary: true, reason: "text"},
		{name: "missing data", send: `{"id":"7","to":["bob"]}`, reason: `"data"`, id: "7"},
		{name: "missing target", send: `{"data":1}`, reason: `"to"`},
		{name: "too many recipients", send: `{"id":"many","to":["bob","b","c","d"],"data":1}`, reason: "more than 3", id: "many"},
		// An id after the problem is not read, so not echoed.
		{name: "too many recipients, id last", send: `{"to":["bob","b","c","d"],"data":1,"id":"late"}`, reason: "more than 3"},
		{name: "empty to", send: `{"to":[],"data":1}`, reason: `"to"`},
		{name: "duplicate field", send: `{"to":["bob"],"data":1,"data":2}`, reason: "duplicate"},
	}
	for _, tc := range cases {
		if tc.binary {
			a.MustWrite(t, wstest.Final(wstest.OpBinary, tc.send))
		} else {
			a.SendText(t, tc.send)
		}
		msg := a.NextText(t)
		t.Run(tc.name, func(t *testing.T) { relayError(t, msg, tc.reason, tc.id) })
		rs.expect(tc.name, nil)
	}
	// Still working after all that.
	rs.send("a1", `{"to":["bob"],"data":"still here"}`)
	rs.sync("a1")
	rs.expect("after errors", map[string][]string{"b1": {`{"from":"alice","data":"still here"}`}})
	if n := rs.s.hub.Stats().Connections; n != 4 {
		t.Errorf("%d connections, want 4", n)
	}
}
