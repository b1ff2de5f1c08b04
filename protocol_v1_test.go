package wsroom_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
)

// v1Msg is a wsroom.v1 frame: its header and data.
type v1Msg struct {
	op     byte
	header map[string]any
	raw    string // the header as sent
	data   string
}

func (m v1Msg) str(k string) string { s, _ := m.header[k].(string); return s }

func (m v1Msg) num(k string) uint64 { f, _ := m.header[k].(float64); return uint64(f) }

// v1Dial connects with the wsroom.v1 subprotocol; resume, if not nil, goes
// in the wsroom_resume parameter.
func v1Dial(t *testing.T, base string, resume map[string]any) v1Conn {
	t.Helper()
	u := base
	if resume != nil {
		b, _ := json.Marshal(resume)
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + wsroom.ResumeParam + "=" + url.QueryEscape(base64.RawURLEncoding.EncodeToString(b))
	}
	c := wstest.Dial(t, u, http.Header{"Sec-WebSocket-Protocol": {wsroom.ProtocolV1}})
	if p := c.Resp.Header.Get("Sec-WebSocket-Protocol"); p != wsroom.ProtocolV1 {
		t.Fatalf("subprotocol %q, want %s", p, wsroom.ProtocolV1)
	}
	return v1Conn{c, t}
}

// v1Conn is a client speaking wsroom.v1, bound to its test.
type v1Conn struct {
	*wstest.Conn
	t *testing.T
}

// v1Next reads the next wsroom.v1 frame.
func (c v1Conn) v1Next() v1Msg {
	c.t.Helper()
	op, data := c.ExpectMessage(c.t)
	h, d, ok := strings.Cut(string(data), "\n")
	if !ok {
		c.t.Fatalf("frame %q has no header line", data)
	}
	m := v1Msg{op: byte(op), raw: h, data: d}
	if err := json.Unmarshal([]byte(h), &m.header); err != nil {
		c.t.Fatalf("header %q: %v", h, err)
	}
	return m
}

// v1Expect reads the next frame and checks its header (exactly) and data.
func (c v1Conn) v1Expect(header, data string) v1Msg {
	c.t.Helper()
	m := c.v1Next()
	if m.raw != header || m.data != data {
		c.t.Fatalf("got %s %q, want %s %q", m.raw, m.data, header, data)
	}
	return m
}

// v1Send sends a frame with the given header and data.
func (c v1Conn) v1Send(header, data string) {
	c.t.Helper()
	c.MustWrite(c.t, wstest.Final(wstest.OpText, header+"\n"+data))
}

// v1Joined dials u with wsroom.v1, as a new client, and reads hello and
// the joined frame of the history room it joins; it returns the
// connection and that room's epoch.
func v1Joined(t *testing.T, u string) (v1Conn, string) {
	t.Helper()
	c := v1Dial(t, u, nil)
	c.v1Next() // hello
	return c, c.v1Next().str("e")
}

// broadcast sends each text to room on hub, in order, and fails the test
// if a send returns an error.
func broadcast(t *testing.T, hub *wsroom.Hub, room string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if err := hub.Room(room).Broadcast(wsroom.Text(s)); err != nil {
			t.Fatal(err)
		}
	}
}

func historyOptions() wsroom.Options {
	return wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			for _, room := range r.URL.Query()["room"] {
				if err := c.Join(room); err != nil {
					return err
				}
			}
			return nil
		},
		History: func(room string) wsroom.History {
			if strings.HasPrefix(room, "h") {
				return wsroom.History{Messages: 5}
			}
			return wsroom.History{}
		},
	}
}

// TestV1Frames: hello, joined, headers on room, user and connection sends;
// an application message's header is stripped before OnMessage.
func TestV1Frames(t *testing.T) {
	got := make(chan string, 1)
	opts := historyOptions()
	opts.OnMessage = func(c *wsroom.Conn, m wsroom.Message) { got <- m.Type.String() + ":" + string(m.Data) }
	s := newServer(t, opts)
	c := v1Dial(t, s.url+"?user=alice&room=plain&room=hist", nil)
	hello := c.v1Next()
	if hello.str("t") != "hello" || hello.str("u") != "alice" || hello.str("c") == "" {
		t.Fatalf("hello: %s", hello.raw)
	}
	c.v1Expect(`{"t":"joined","r":"plain"}`, "")
	joined := c.v1Next()
	if joined.str("t") != "joined" || joined.str("r") != "hist" || joined.str("e") == "" || joined.num("o") != 0 {
		t.Fatalf("joined hist: %s", joined.raw)
	}
	epoch := joined.str("e")
	s.hub.Room("plain").Broadcast(wsroom.Text("p"))
	c.v1Expect(`{"r":"plain"}`, "p")
	s.hub.Room("hist").Broadcast(wsroom.Binary([]byte{0, 1}))
	if m := c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":1}`, epoch), "\x00\x01"); m.op != 0x2 {
		t.Fatalf("a binary broadcast arrived as op %d", m.op)
	}
	s.hub.SendTo(wsroom.Text("dm"), "alice")
	c.v1Expect(`{}`, "dm")
	c.v1Send(`{}`, "hi there")
	if m := <-got; m != "text:hi there" {
		t.Fatalf("OnMessage got %q", m)
	}
	plain := wstest.Dial(t, s.url+"?user=bob&room=hist", nil)
	s.hub.Room("hist").Broadcast(wsroom.Text("raw"))
	plain.ExpectText(t, "raw") // a plain client gets the payload as is
}

// TestV1ResumeSingleNode: a client that reconnects with its position gets
// the broadcasts it missed, in order, before the live ones; positions it
// cannot resume from are reported lost.
func TestV1ResumeSingleNode(t *testing.T) {
	s := newServer(t, historyOptions())
	room := s.hub.Room("hist")
	c := v1Dial(t, s.url+"?user=u&room=hist", nil)
	c.v1Next() // hello
	joined := c.v1Next()
	epoch := joined.str("e")
	for i := range 2 {
		room.Broadcast(wsroom.Text("m" + strconv.Itoa(i)))
		c.v1Next()
	}
	c.CloseHandshake(t, 1000)
	for i := 2; i < 5; i++ { // sent while it is away
		room.Broadcast(wsroom.Text("m" + strconv.Itoa(i)))
	}
	c = v1Dial(t, s.url+"?user=u&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 2}}})
	c.v1Next() // hello
	for i := 2; i < 5; i++ {
		c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":%d}`, epoch, i+1), "m"+strconv.Itoa(i))
	}
	c.v1Expect(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":5,"resumed":3}`, epoch), "")
	room.Broadcast(wsroom.Text("live"))
	c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":6}`, epoch), "live")

	// Positions it cannot resume from: the client gets what is kept (the
	// newest messages, after a gap), then joined says why the rest is lost.
	for _, tc := range []struct {
		name string
		pos  []any
		kept int // messages replayed before joined: m1..live
		lost string
		room string
	}{
		{"trimmed", []any{epoch, 0}, 5, "trimmed", "hist"}, // 5 kept of 6
		{"another epoch", []any{"nope", 3}, 5, "epoch", "hist"},
		{"ahead of the history", []any{epoch, 9}, 0, "epoch", "hist"},
		{"no history", []any{epoch, 3}, 0, "nohistory", "plain"},
	} {
		c := v1Dial(t, s.url+"?user=u&room="+tc.room, map[string]any{"r": map[string]any{tc.room: tc.pos}})
		c.v1Next() // hello
		for i, data := range []string{"m1", "m2", "m3", "m4", "live"}[:tc.kept] {
			want := fmt.Sprintf(`{"r":"hist","e":%q,"o":%d}`, epoch, 2+i)
			if m := c.v1Next(); m.raw != want || m.data != data {
				t.Fatalf("%s: replayed %d: %s %q, want %s %q", tc.name, i, m.raw, m.data, want, data)
			}
		}
		if m := c.v1Next(); m.str("t") != "joined" || m.str("lost") != tc.lost {
			t.Errorf("%s: %s, want joined with lost %q", tc.name, m.raw, tc.lost)
		}
		c.CloseHandshake(t, 1000)
	}
	if st := s.hub.Stats(); st.HistoryResumes != 1 || st.HistoryReplayed != 3+5+5 || st.HistoryLost != 3 {
		t.Errorf("stats: %d resumes, %d replayed, %d lost; want 1, 13, 3", st.HistoryResumes, st.HistoryReplayed, st.HistoryLost)
	}
}

// TestV1ResumeSkipsWhatItWasLeftOutOf: a broadcast that left the client's
// previous connection out (BroadcastExcept) is not replayed to it.
func TestV1ResumeSkipsWhatItWasLeftOutOf(t *testing.T) {
	s := newServer(t, historyOptions())
	c := v1Dial(t, s.url+"?user=u&room=hist", nil)
	prev := c.v1Next().str("c")
	epoch := c.v1Next().str("e")
	conn := s.hub.UserConns("u")[0]
	c.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "u gone", func() bool { return !s.hub.Connected("u") })
	s.hub.Room("hist").BroadcastExcept(wsroom.Text("own"), conn) // its own message, sent as it left
	s.hub.Room("hist").Broadcast(wsroom.Text("other"))
	c = v1Dial(t, s.url+"?user=u&room=hist", map[string]any{"c": prev, "r": map[string]any{"hist": []any{epoch, 0}}})
	c.v1Next() // hello
	c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":2}`, epoch), "other")
	c.v1Expect(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":2,"resumed":1}`, epoch), "")
}

// TestV1JoinRequests: join and leave requests, refused without
// AuthorizeJoin, decided by it otherwise.
func TestV1JoinRequests(t *testing.T) {
	opts := historyOptions()
	s := newServer(t, opts)
	c := v1Dial(t, s.url+"?user=u", nil)
	c.v1Next() // hello
	c.v1Send(`{"t":"join","r":"hx","id":"1"}`, "")
	if m := c.v1Next(); m.str("t") != "error" || m.str("id") != "1" || !strings.Contains(m.str("error"), "not enabled") {
		t.Fatalf("join without AuthorizeJoin: %s", m.raw)
	}

	opts.AuthorizeJoin = func(c *wsroom.Conn, room string) error {
		if room == "secret" {
			return errors.New("forbidden")
		}
		return nil
	}
	s = newServer(t, opts)
	c = v1Dial(t, s.url+"?user=u", nil)
	c.v1Next()
	c.v1Send(`{"t":"join","r":"secret","id":"2"}`, "")
	if m := c.v1Next(); m.str("t") != "error" || m.str("error") != "forbidden" {
		t.Fatalf("join refused: %s", m.raw)
	}
	c.v1Send(`{"t":"join","r":"open","id":"3"}`, "")
	c.v1Expect(`{"t":"joined","r":"open","id":"3"}`, "")
	if !s.hub.UserConns("u")[0].InRoom("open") {
		t.Fatal("not in the room after joined")
	}
	c.v1Send(`{"t":"leave","r":"open","id":"4"}`, "")
	c.v1Expect(`{"t":"left","r":"open","id":"4"}`, "")
	c.v1Send(`{"t":"what"}`, "")
	if reason := c.ExpectClose(t, 1002); !strings.Contains(reason, "wsroom.v1") {
		t.Fatalf("close reason %q", reason)
	}
}

// TestV1ResumeAcrossNodes: with a HistoryBroker a client resumes on
// another node from the position it got on the first; when the broker
// loses the history, the client is told.
func TestV1ResumeAcrossNodes(t *testing.T) {
	bus := membroker.NewBus()
	var nodes []*server
	for range 2 {
		opts := historyOptions()
		opts.Broker = bus.NewBroker()
		nodes = append(nodes, newServer(t, opts))
	}
	a, epoch := v1Joined(t, nodes[0].url+"?user=u&room=hist")
	nodes[1].hub.Room("hist").Broadcast(wsroom.Text("one")) // from the other node
	a.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":1}`, epoch), "one")
	a.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "u gone", func() bool { return !nodes[0].hub.Connected("u") })
	broadcast(t, nodes[0].hub, "hist", "two", "three")
	b := v1Dial(t, nodes[1].url+"?user=u&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 1}}})
	b.v1Next() // hello
	b.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":2}`, epoch), "two")
	b.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":3}`, epoch), "three")
	b.v1Expect(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":3,"resumed":2}`, epoch), "")
	nodes[0].hub.Room("hist").Broadcast(wsroom.Text("live"))
	b.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":4}`, epoch), "live")

	// The broker loses the history: the next broadcast starts a new epoch.
	bus.LoseHistory()
	nodes[0].hub.Room("hist").Broadcast(wsroom.Text("after"))
	m := b.v1Next()
	if m.str("e") == epoch || m.num("o") != 1 || m.data != "after" {
		t.Fatalf("after the history was lost: %s %q; want a new epoch at offset 1", m.raw, m.data)
	}
	// Resuming from the old epoch, on either node: the new epoch's message
	// (kept by the broker), then lost.
	for _, n := range nodes {
		c := v1Dial(t, n.url+"?user=v&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 4}}})
		c.v1Next()
		c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":1}`, m.str("e")), "after")
		if m := c.v1Next(); m.str("lost") != "epoch" {
			t.Fatalf("resuming from the old epoch: %s, want lost epoch", m.raw)
		}
	}
}

// TestV1LateUnfollowKeepsTheCopy: the last member of a room leaving a
// node marks the node's copy of the room's history as not followed; when
// that runs only after a new member joined (and was given the copy), the
// copy must stay followed, so that a message the node then misses is
// filled from the broker, not skipped.
func TestV1LateUnfollowKeepsTheCopy(t *testing.T) {
	bus, a, b, drop := droppingNodes(t)
	c, epoch := v1Joined(t, b.url+"?user=u&room=hist")
	wstest.WaitFor(t, "node B subscribed", func() bool { return bus.Subscribers("room:hist") == 1 })

	wsroom.UnfollowHistory(b.hub, "hist") // a previous member's leave, late
	drop.next.Store(true)                 // node B misses "one"
	broadcast(t, a.hub, "hist", "one", "two")
	c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":1}`, epoch), "one")
	c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":2}`, epoch), "two")
}

// TestV1SeedDeliversWhatMembersLack: a join that reads the broker's
// history further back than the node's copy rebuilds the copy; messages
// in what it read that the node has not delivered yet (its subscription
// is behind, or lost one) are delivered to the members already there,
// not just kept — else the subscription would find them kept and skip
// them as delivered.
func TestV1SeedDeliversWhatMembersLack(t *testing.T) {
	bus, a, b, drop := droppingNodes(t)
	x, epoch := v1Joined(t, a.url+"?user=x&room=hist")
	room := a.hub.Room("hist")
	for i := 1; i <= 3; i++ {
		room.Broadcast(wsroom.Text("m" + strconv.Itoa(i)))
		x.v1Next()
	}

	// m1 resumes on node B from 2: node B's copy holds 3 only.
	m1 := v1Dial(t, b.url+"?user=m1&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 2}}})
	m1.v1Next() // hello
	m1.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":3}`, epoch), "m3")
	m1.v1Expect(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":3,"resumed":1}`, epoch), "")
	wstest.WaitFor(t, "both nodes subscribed", func() bool { return bus.Subscribers("room:hist") == 2 })

	drop.next.Store(true) // node B's subscription misses m4
	room.Broadcast(wsroom.Text("m4"))
	x.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":4}`, epoch), "m4")
	// m2 resumes on node B from 0: the copy does not reach back; the
	// read brings m4, which m1 gets now.
	m2 := v1Dial(t, b.url+"?user=m2&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 0}}})
	m2.v1Next() // hello
	for i := 1; i <= 4; i++ {
		m2.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":%d}`, epoch, i), "m"+strconv.Itoa(i))
	}
	m2.v1Expect(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":4,"resumed":4}`, epoch), "")
	m1.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":4}`, epoch), "m4")
	room.Broadcast(wsroom.Text("m5"))
	for _, c := range []v1Conn{m1, m2} {
		c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":5}`, epoch), "m5")
	}
}

// TestV1GapTheBrokerCannotFillIsTold: a message a node missed and could
// not read back from the broker is reported to the room's wsroom.v1
// members there (an unasked joined with lost, at the position before the
// next message), not skipped in silence; plain members just miss it.
func TestV1GapTheBrokerCannotFillIsTold(t *testing.T) {
	bus, a, b, drop := droppingNodes(t)
	c, epoch := v1Joined(t, b.url+"?user=u&room=hist")
	plain := wstest.Dial(t, b.url+"?user=p&room=hist", nil)
	wstest.WaitFor(t, "node B subscribed", func() bool { return bus.Subscribers("room:hist") == 1 })

	drop.next.Store(true)      // node B misses "one"…
	drop.failReads.Store(true) // … and cannot read it back
	broadcast(t, a.hub, "hist", "one", "two")
	c.v1Expect(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":1,"lost":"unavailable"}`, epoch), "")
	c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":2}`, epoch), "two")
	plain.ExpectText(t, "two")
	if st := b.hub.Stats(); st.HistoryLost != 1 || st.BrokerErrors == 0 {
		t.Errorf("node B: %d lost, %d broker errors; want 1 and some", st.HistoryLost, st.BrokerErrors)
	}
}

// droppingNodes starts two history hubs on one membroker Bus: a with a
// plain Broker, b with a droppingBroker.
func droppingNodes(t *testing.T) (bus *membroker.Bus, a, b *server, drop *droppingBroker) {
	t.Helper()
	bus = membroker.NewBus()
	optsA, optsB := historyOptions(), historyOptions()
	optsA.Broker = bus.NewBroker()
	drop = &droppingBroker{Broker: bus.NewBroker()}
	optsB.Broker = drop
	return bus, newServer(t, optsA), newServer(t, optsB), drop
}

// droppingBroker drops the next positioned message it would deliver when
// next is set, and fails ReadHistory while failReads is.
type droppingBroker struct {
	*membroker.Broker
	next, failReads atomic.Bool
}

func (d *droppingBroker) ReadHistory(ctx context.Context, topic string, since wsroom.Position, most int) (wsroom.HistoryRead, error) {
	if d.failReads.Load() {
		return wsroom.HistoryRead{}, errors.New("droppingBroker: reads fail")
	}
	return d.Broker.ReadHistory(ctx, topic, since, most)
}

func (d *droppingBroker) StartHistory(deliver func(topic string, pos wsroom.Position, payload []byte)) {
	d.Broker.StartHistory(func(topic string, pos wsroom.Position, payload []byte) {
		if d.next.CompareAndSwap(true, false) {
			return
		}
		deliver(topic, pos, payload)
	})
}

// TestJoinCallbacksMaySend: OnJoin, OnPresence and AnnouncePresence send
// to the room being joined, one with history, without deadlocking.
func TestJoinCallbacksMaySend(t *testing.T) {
	opts := historyOptions()
	var hub *wsroom.Hub
	opts.OnJoin = func(r *wsroom.Room, c *wsroom.Conn) { r.Broadcast(wsroom.Text("welcome " + c.UserID())) }
	opts.OnPresence = func(e wsroom.PresenceEvent) { hub.Room(e.Room).Broadcast(wsroom.Text("presence " + e.UserID)) }
	opts.AnnouncePresence = true
	s := newServer(t, opts)
	hub = s.hub
	c := v1Dial(t, s.url+"?user=u&room=hist", nil)
	c.v1Next() // hello
	if m := c.v1Next(); m.str("t") != "joined" {
		t.Fatalf("want joined: %s", m.raw)
	}
	seen := map[string]bool{}
	for range 3 {
		m := c.v1Next()
		seen[m.data] = true
		if m.str("t") == "presence" {
			seen["announced"] = true
		}
	}
	if !seen["welcome u"] || !seen["presence u"] || !seen["announced"] {
		t.Fatalf("got %v", seen)
	}
}
