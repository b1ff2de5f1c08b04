package wsroom_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
)

// nodeOptions identifies users by ?user= and joins ?room= (if given).
func nodeOptions(b wsroom.Broker) wsroom.Options {
	return wsroom.Options{
		Broker:   b,
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if room := r.URL.Query().Get("room"); room != "" {
				return c.Join(room)
			}
			return nil
		},
	}
}

// quiet is how long a connection must receive nothing to show that
// nothing was delivered twice or to the wrong connection.
const quiet = 150 * time.Millisecond

func TestBrokerDeliversAcrossHubsExactlyOnce(t *testing.T) {
	bus := membroker.NewBus()
	a := newServer(t, nodeOptions(bus.NewBroker()))
	b := newServer(t, nodeOptions(bus.NewBroker()))
	c := newServer(t, nodeOptions(bus.NewBroker()))

	alice := wstest.Dial(t, a.url+"?user=alice&room=lobby", nil)
	bob := wstest.Dial(t, b.url+"?user=bob&room=lobby", nil)
	bob2 := wstest.Dial(t, a.url+"?user=bob&room=lobby", nil) // bob on two nodes
	carol := wstest.Dial(t, c.url+"?user=carol&room=other", nil)
	// Every member joined (a subscription shows only the first member of
	// a node joined: node A has two), and every topic is subscribed.
	wstest.WaitFor(t, "members and subscriptions", func() bool {
		return a.hub.Room("lobby").Len() == 2 && b.hub.Room("lobby").Len() == 1 && c.hub.Room("other").Len() == 1 &&
			bus.Subscribers("room:lobby") == 2 && bus.Subscribers("room:other") == 1 &&
			bus.Subscribers("user:bob") == 2 && bus.Subscribers("all") == 3
	})
	all := []*wstest.Conn{alice, bob, bob2, carol}
	quiet := func() {
		t.Helper()
		for _, cl := range all {
			cl.ExpectSilence(t, quiet)
		}
	}

	if err := b.hub.Room("lobby").Broadcast(wsroom.Text("room")); err != nil {
		t.Fatal(err)
	}
	alice.ExpectText(t, "room")
	bob.ExpectText(t, "room")
	bob2.ExpectText(t, "room")
	quiet()

	// BroadcastExcept from node A: the excluded connection is local.
	var aliceConn *wsroom.Conn
	for m := range a.hub.Room("lobby").Members() {
		if m.UserID() == "alice" {
			aliceConn = m
		}
	}
	if err := a.hub.Room("lobby").BroadcastExcept(wsroom.Text("except"), aliceConn); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "except")
	bob2.ExpectText(t, "except")
	quiet()

	if err := c.hub.SendTo(wsroom.Text("dm"), "bob", "bob", "nobody"); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "dm")
	bob2.ExpectText(t, "dm")
	quiet()

	if err := c.hub.Room("lobby").SendTo(wsroom.Text("room-dm"), "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	bob.ExpectText(t, "room-dm")
	bob2.ExpectText(t, "room-dm")
	quiet()

	if err := a.hub.Broadcast(wsroom.Binary([]byte{1, 2})); err != nil {
		t.Fatal(err)
	}
	for _, cl := range all {
		if op, data, err := cl.ReadMessage(); err != nil || op != wstest.OpBinary || string(data) != "\x01\x02" {
			t.Fatalf("hub broadcast: op %d %q %v", op, data, err)
		}
	}
	quiet()

	if s := a.hub.Stats(); s.BrokerOut != 2 || s.BrokerIn != 3 || s.BrokerErrors != 0 {
		t.Errorf("node A stats %+v", s)
	}
	if n := a.hub.Room("lobby").Len(); n != 2 {
		t.Errorf("Room.Len on node A = %d, want 2 (node-local)", n)
	}
}

func TestBrokerInterestFollowsLocalMembers(t *testing.T) {
	bus := membroker.NewBus()
	a := newServer(t, nodeOptions(bus.NewBroker()))
	b := newServer(t, nodeOptions(bus.NewBroker()))
	alice := wstest.Dial(t, a.url+"?user=alice&room=r1", nil)
	wstest.WaitFor(t, "alice's topics", func() bool {
		return bus.Subscribers("room:r1") == 1 && bus.Subscribers("user:alice") == 1 && bus.Subscribers("all") == 1
	})
	// Node B has nobody: it subscribes to nothing and receives nothing.
	if err := a.hub.Room("r1").Broadcast(wsroom.Text("x")); err != nil {
		t.Fatal(err)
	}
	alice.ExpectText(t, "x")
	if s := b.hub.Stats(); s.BrokerIn != 0 {
		t.Errorf("node B received %d sends for rooms it has no member in", s.BrokerIn)
	}

	var conn *wsroom.Conn
	for m := range a.hub.Room("r1").Members() {
		conn = m
	}
	if err := conn.Join("r2"); err != nil {
		t.Fatal(err)
	}
	if got := bus.Subscribers("room:r2"); got != 1 {
		t.Fatalf("after Join: room:r2 has %d subscribers", got)
	}
	if err := conn.Leave("r2"); err != nil {
		t.Fatal(err)
	}
	if got := bus.Subscribers("room:r2"); got != 0 {
		t.Fatalf("after the last member left: room:r2 has %d subscribers", got)
	}
	alice.CloseHandshake(t, 1000)
	wstest.WaitFor(t, "every topic released but the nodes' own", func() bool {
		return bus.Topics() == 2 // each node's control topic stays
	})
}

func TestBrokerPublishFailureIsReportedAndLocalDeliveryGoesOn(t *testing.T) {
	bus := membroker.NewBus()
	a := newServer(t, nodeOptions(bus.NewBroker()))
	alice := wstest.Dial(t, a.url+"?user=alice&room=r", nil)
	wstest.WaitFor(t, "subscription", func() bool { return bus.Subscribers("room:r") == 1 })
	bus.SetDown(true)
	sends := []func() error{
		func() error { return a.hub.Room("r").Broadcast(wsroom.Text("1")) },
		func() error { return a.hub.Room("r").SendTo(wsroom.Text("2"), "alice") },
		func() error { return a.hub.SendTo(wsroom.Text("3"), "alice") },
		func() error { return a.hub.Broadcast(wsroom.Text("4")) },
	}
	for i, send := range sends {
		if err := send(); !errors.Is(err, wsroom.ErrNotPublished) {
			t.Fatalf("send %d with the broker down: %v, want ErrNotPublished", i+1, err)
		}
		alice.ExpectText(t, string(rune('1'+i)))
	}
	if s := a.hub.Stats(); s.BrokerErrors != 4 || s.BrokerOut != 0 {
		t.Errorf("stats %+v, want 4 broker errors", s)
	}
	bus.SetDown(false)
	if err := a.hub.Broadcast(wsroom.Text("ok")); err != nil {
		t.Fatal(err)
	}
	alice.ExpectText(t, "ok")
}

func TestBrokerIgnoresMalformedMessages(t *testing.T) {
	bus := membroker.NewBus()
	a := newServer(t, nodeOptions(bus.NewBroker()))
	alice := wstest.Dial(t, a.url+"?user=alice&room=r", nil)
	wstest.WaitFor(t, "subscription", func() bool { return bus.Subscribers("room:r") == 1 })
	node := strings.Repeat("n", 16) + "\x00\x00\x00\x00\x00\x00\x00\x01" // and the time sent
	bad := [][]byte{
		nil,
		{2},
		[]byte("\x01\x00\x01" + node + "wrong version"),
		[]byte("\x02\x08\x01" + node + "unknown flag"),
		[]byte("\x02\x00\x07" + node + "bad type"),
		[]byte("\x02\x00\x01" + node + "\xff invalid UTF-8"),
		[]byte("\x02\x01\x01" + node + "\xff\xff\xff\xff\x0f"), // 4 G names declared
		[]byte("\x02\x01\x01" + node + "\x02\x05alice\x7fbob"), // a name overruns
		[]byte("\x02\x01\x01" + node + "\x01\x06nobodyhi"),     // narrowed to a user not here: valid, reaches no one
	}
	foreign := bus.NewBroker() // a node that publishes raw bytes
	defer foreign.Close()
	for _, p := range bad {
		foreign.Publish(p, "room:r")()
	}
	foreign.Publish([]byte("\x02\x00\x01"+node+"good"), "room:r")()
	alice.ExpectText(t, "good")
	alice.ExpectSilence(t, quiet)
	if s := a.hub.Stats(); s.BrokerErrors != 8 || s.BrokerIn != 2 {
		t.Errorf("stats %+v, want 8 errors and 2 received", s)
	}
}

func TestBrokerRelayDirectMessageAcrossHubs(t *testing.T) {
	bus := membroker.NewBus()
	relay := func(b wsroom.Broker) wsroom.Options {
		o := nodeOptions(b)
		o.OnMessage = wsroom.Relay(wsroom.RelayOptions{})
		return o
	}
	a := newServer(t, relay(bus.NewBroker()))
	b := newServer(t, relay(bus.NewBroker()))
	alice := wstest.Dial(t, a.url+"?user=alice&room=lobby", nil)
	bob := wstest.Dial(t, b.url+"?user=bob&room=lobby", nil)
	eve := wstest.Dial(t, b.url+"?user=eve&room=elsewhere", nil)
	wstest.WaitFor(t, "subscriptions", func() bool {
		return bus.Subscribers("user:bob") == 1 && bus.Subscribers("user:eve") == 1 && bus.Subscribers("room:lobby") == 2
	})
	alice.SendText(t, `{"to":["bob","eve"],"data":"psst"}`)
	bob.ExpectText(t, `{"from":"alice","data":"psst"}`)
	eve.ExpectSilence(t, quiet) // shares no room with alice: refused on eve's node
	alice.SendText(t, `{"room":"lobby","data":"hi"}`)
	bob.ExpectText(t, `{"from":"alice","room":"lobby","data":"hi"}`)
	alice.ExpectSilence(t, quiet)
	eve.ExpectSilence(t, quiet)
}

func TestBrokerInterestSettlesUnderConcurrentJoins(t *testing.T) {
	bus := membroker.NewBus()
	a := newServer(t, nodeOptions(bus.NewBroker()))
	const n = 8
	for i := range n {
		wstest.Dial(t, a.url+"?user=u"+string(rune('0'+i))+"&room=base", nil)
	}
	wstest.WaitFor(t, "members", func() bool { return a.hub.Room("base").Len() == n })
	var conns []*wsroom.Conn
	for c := range a.hub.Room("base").Members() {
		conns = append(conns, c)
	}
	for round := range 20 {
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Go(func() {
				for j := range 50 {
					c.Join("x")
					if (i+j+round)%3 != 0 {
						c.Leave("x")
					}
				}
				if round%2 == 1 || (i+round)%4 != 0 { // odd rounds end empty
					c.Leave("x")
				}
			})
		}
		wg.Wait()
		want := 0
		if a.hub.Room("x").Len() > 0 {
			want = 1
		}
		if got := bus.Subscribers("room:x"); got != want {
			t.Fatalf("round %d: %d members, %d subscriptions to room:x", round, a.hub.Room("x").Len(), got)
		}
	}
}
