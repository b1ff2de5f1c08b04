package wsroom_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
)

// memBus is an in-memory pub/sub shared by the memBrokers of several hubs
// in one test: the hub side of multi-node delivery, without Redis.
type memBus struct {
	mu   sync.Mutex
	subs map[string]map[*memBroker]bool
	down bool // Publish fails
}

func newMemBus() *memBus { return &memBus{subs: make(map[string]map[*memBroker]bool)} }

func (bus *memBus) setDown(d bool) { bus.mu.Lock(); bus.down = d; bus.mu.Unlock() }

// subscribers returns how many brokers subscribe to topic.
func (bus *memBus) subscribers(topic string) int {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	return len(bus.subs[topic])
}

// inject publishes raw bytes, as a foreign node would.
func (bus *memBus) inject(topic string, payload []byte) {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	for b := range bus.subs[topic] {
		b.inbox <- memMsg{topic, payload}
	}
}

type memMsg struct {
	topic   string
	payload []byte
}

// memBroker is one hub's broker on a memBus. Its goroutine delivers in
// publish order, one message at a time; Close joins it.
type memBroker struct {
	bus   *memBus
	inbox chan memMsg
	done  chan struct{}
}

func (bus *memBus) broker() *memBroker {
	return &memBroker{bus: bus, inbox: make(chan memMsg, 4096), done: make(chan struct{})}
}

func (b *memBroker) Start(deliver func(topic string, payload []byte)) {
	go func() {
		defer close(b.done)
		for m := range b.inbox {
			deliver(m.topic, m.payload)
		}
	}()
}

func (b *memBroker) Publish(payload []byte, topics ...string) func() error {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	if b.bus.down {
		return func() error { return errors.New("bus down") }
	}
	for _, t := range topics {
		for s := range b.bus.subs[t] {
			s.inbox <- memMsg{t, slices.Clone(payload)}
		}
	}
	return func() error { return nil }
}

func (b *memBroker) Subscribe(topics ...string) error {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	for _, t := range topics {
		if b.bus.subs[t] == nil {
			b.bus.subs[t] = make(map[*memBroker]bool)
		}
		b.bus.subs[t][b] = true
	}
	return nil
}

func (b *memBroker) Unsubscribe(topics ...string) error {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	for _, t := range topics {
		delete(b.bus.subs[t], b)
		if len(b.bus.subs[t]) == 0 {
			delete(b.bus.subs, t)
		}
	}
	return nil
}

func (b *memBroker) Close() error {
	b.bus.mu.Lock()
	for t, s := range b.bus.subs {
		delete(s, b)
		if len(s) == 0 {
			delete(b.bus.subs, t)
		}
	}
	close(b.inbox)
	b.bus.mu.Unlock()
	<-b.done
	return nil
}

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

// expectNothing fails if c receives a data message within a short wait:
// proof that nothing was delivered twice or to the wrong connection.
func (c *client) expectNothing() {
	c.t.Helper()
	if op, data, err := c.readMessage(150 * time.Millisecond); err == nil {
		c.t.Fatalf("unexpected message op %d %q", op, data)
	} else if !strings.Contains(err.Error(), "timeout") {
		c.t.Fatalf("waiting for silence: %v", err)
	}
}

func TestBrokerDeliversAcrossHubsExactlyOnce(t *testing.T) {
	bus := newMemBus()
	a := newServer(t, nodeOptions(bus.broker()))
	b := newServer(t, nodeOptions(bus.broker()))
	c := newServer(t, nodeOptions(bus.broker()))

	alice := dial(t, a.url+"?user=alice&room=lobby", nil)
	bob := dial(t, b.url+"?user=bob&room=lobby", nil)
	bob2 := dial(t, a.url+"?user=bob&room=lobby", nil) // bob on two nodes
	carol := dial(t, c.url+"?user=carol&room=other", nil)
	// Every member joined (a subscription shows only the first member of
	// a node joined: node A has two), and every topic is subscribed.
	waitFor(t, "members and subscriptions", func() bool {
		return a.hub.Room("lobby").Len() == 2 && b.hub.Room("lobby").Len() == 1 && c.hub.Room("other").Len() == 1 &&
			bus.subscribers("room:lobby") == 2 && bus.subscribers("room:other") == 1 &&
			bus.subscribers("user:bob") == 2 && bus.subscribers("all") == 3
	})
	all := []*client{alice, bob, bob2, carol}
	quiet := func() {
		t.Helper()
		for _, cl := range all {
			cl.expectNothing()
		}
	}

	if err := b.hub.Room("lobby").Broadcast(wsroom.Text("room")); err != nil {
		t.Fatal(err)
	}
	alice.expectText("room")
	bob.expectText("room")
	bob2.expectText("room")
	quiet()

	// BroadcastExcept from node A: the excluded connection is local.
	var aliceConn *wsroom.Conn
	for m := range a.hub.Room("lobby").Members() {
		if m.ID() == "alice" {
			aliceConn = m
		}
	}
	if err := a.hub.Room("lobby").BroadcastExcept(wsroom.Text("except"), aliceConn); err != nil {
		t.Fatal(err)
	}
	bob.expectText("except")
	bob2.expectText("except")
	quiet()

	if err := c.hub.SendTo(wsroom.Text("dm"), "bob", "bob", "nobody"); err != nil {
		t.Fatal(err)
	}
	bob.expectText("dm")
	bob2.expectText("dm")
	quiet()

	if err := c.hub.Room("lobby").SendTo(wsroom.Text("room-dm"), "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	bob.expectText("room-dm")
	bob2.expectText("room-dm")
	quiet()

	if err := a.hub.Broadcast(wsroom.Binary([]byte{1, 2})); err != nil {
		t.Fatal(err)
	}
	for _, cl := range all {
		if op, data, err := cl.readMessage(5 * time.Second); err != nil || op != 2 || string(data) != "\x01\x02" {
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
	bus := newMemBus()
	a := newServer(t, nodeOptions(bus.broker()))
	b := newServer(t, nodeOptions(bus.broker()))
	alice := dial(t, a.url+"?user=alice&room=r1", nil)
	waitFor(t, "alice's topics", func() bool {
		return bus.subscribers("room:r1") == 1 && bus.subscribers("user:alice") == 1 && bus.subscribers("all") == 1
	})
	// Node B has nobody: it subscribes to nothing and receives nothing.
	if err := a.hub.Room("r1").Broadcast(wsroom.Text("x")); err != nil {
		t.Fatal(err)
	}
	alice.expectText("x")
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
	if got := bus.subscribers("room:r2"); got != 1 {
		t.Fatalf("after Join: room:r2 has %d subscribers", got)
	}
	if err := conn.Leave("r2"); err != nil {
		t.Fatal(err)
	}
	if got := bus.subscribers("room:r2"); got != 0 {
		t.Fatalf("after the last member left: room:r2 has %d subscribers", got)
	}
	alice.closeHandshake(1000)
	waitFor(t, "every topic released", func() bool {
		bus.mu.Lock()
		defer bus.mu.Unlock()
		return len(bus.subs) == 0
	})
}

func TestBrokerPublishFailureIsReportedAndLocalDeliveryGoesOn(t *testing.T) {
	bus := newMemBus()
	a := newServer(t, nodeOptions(bus.broker()))
	alice := dial(t, a.url+"?user=alice&room=r", nil)
	waitFor(t, "subscription", func() bool { return bus.subscribers("room:r") == 1 })
	bus.setDown(true)
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
		alice.expectText(string(rune('1' + i)))
	}
	if s := a.hub.Stats(); s.BrokerErrors != 4 || s.BrokerOut != 0 {
		t.Errorf("stats %+v, want 4 broker errors", s)
	}
	bus.setDown(false)
	if err := a.hub.Broadcast(wsroom.Text("ok")); err != nil {
		t.Fatal(err)
	}
	alice.expectText("ok")
}

func TestBrokerIgnoresMalformedMessages(t *testing.T) {
	bus := newMemBus()
	a := newServer(t, nodeOptions(bus.broker()))
	alice := dial(t, a.url+"?user=alice&room=r", nil)
	waitFor(t, "subscription", func() bool { return bus.subscribers("room:r") == 1 })
	node := strings.Repeat("n", 16)
	bad := [][]byte{
		nil,
		{1},
		[]byte("\x02\x01\x01" + node + "wrong version"),
		[]byte("\x01\x09\x01" + node + "unknown kind"),
		[]byte("\x01\x01\x07" + node + "bad type"),
		[]byte("\x01\x01\x01" + node + "\xff invalid UTF-8"),
		[]byte("\x01\x03\x01" + node + "\xff\xff\xff\xff\x0f"),       // 4 G names declared
		[]byte("\x01\x03\x01" + node + "\x02\x05alice\x7fbob"),       // a name overruns
		[]byte("\x01\x04\x01" + node + "users kind on a room topic"), // reaches no one
	}
	for _, p := range bad {
		bus.inject("room:r", p)
	}
	bus.inject("room:r", []byte("\x01\x01\x01"+node+"good"))
	alice.expectText("good")
	alice.expectNothing()
	if s := a.hub.Stats(); s.BrokerErrors != 8 || s.BrokerIn != 2 {
		t.Errorf("stats %+v, want 8 errors and 2 received", s)
	}
}

func TestBrokerRelayDirectMessageAcrossHubs(t *testing.T) {
	bus := newMemBus()
	relay := func(b wsroom.Broker) wsroom.Options {
		o := nodeOptions(b)
		o.OnMessage = wsroom.Relay(wsroom.RelayOptions{})
		return o
	}
	a := newServer(t, relay(bus.broker()))
	b := newServer(t, relay(bus.broker()))
	alice := dial(t, a.url+"?user=alice&room=lobby", nil)
	bob := dial(t, b.url+"?user=bob&room=lobby", nil)
	eve := dial(t, b.url+"?user=eve&room=elsewhere", nil)
	waitFor(t, "subscriptions", func() bool {
		return bus.subscribers("user:bob") == 1 && bus.subscribers("user:eve") == 1 && bus.subscribers("room:lobby") == 2
	})
	alice.sendText(`{"to":["bob","eve"],"data":"psst"}`)
	bob.expectText(`{"from":"alice","data":"psst"}`)
	eve.expectNothing() // shares no room with alice: refused on eve's node
	alice.sendText(`{"room":"lobby","data":"hi"}`)
	bob.expectText(`{"from":"alice","room":"lobby","data":"hi"}`)
	alice.expectNothing()
	eve.expectNothing()
}

func FuzzBrokerEnvelope(f *testing.F) {
	f.Add(byte(3), []byte("alice\x00bob"), []byte("hello"))
	f.Add(byte(1), []byte(""), []byte{})
	f.Add(byte(6), []byte("lobby"), []byte("\xff\x00"))
	f.Fuzz(func(t *testing.T, kind byte, rawNames, data []byte) {
		wsroom.ParseEnvelope(data) // arbitrary bytes: must not panic
		kind = 1 + kind%6
		var names []string
		if kind == 3 || kind == 6 {
			names = strings.Split(string(rawNames), "\x00")
		}
		ok, k, typ, gotNames, gotData := wsroom.EnvelopeRoundTrip(kind, wsroom.BinaryMessage, names, data)
		if !ok || k != kind || typ != wsroom.BinaryMessage || !slices.Equal(gotNames, names) || string(gotData) != string(data) {
			t.Fatalf("round trip of kind %d %q %q: ok %v kind %d type %v names %q data %q", kind, names, data, ok, k, typ, gotNames, gotData)
		}
	})
}

func TestBrokerInterestSettlesUnderConcurrentJoins(t *testing.T) {
	bus := newMemBus()
	a := newServer(t, nodeOptions(bus.broker()))
	const n = 8
	for i := range n {
		dial(t, a.url+"?user=u"+string(rune('0'+i))+"&room=base", nil)
	}
	waitFor(t, "members", func() bool { return a.hub.Room("base").Len() == n })
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
		if got := bus.subscribers("room:x"); got != want {
			t.Fatalf("round %d: %d members, %d subscriptions to room:x", round, a.hub.Room("x").Len(), got)
		}
	}
}
