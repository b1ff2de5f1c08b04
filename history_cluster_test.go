package wsroom_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
)

// TestUnpositionedBroadcastLosesNothing: in a room whose history a
// HistoryBroker keeps, a broadcast published without history (an Emitter
// without EmitterOptions.History) is delivered unpositioned and not
// kept, and the broker's next positioned message still arrives: it used
// to be given the node's next offset and the broker's message at that
// offset was then skipped as already delivered.
func TestUnpositionedBroadcastLosesNothing(t *testing.T) {
	bus := membroker.NewBus()
	opts := historyOptions()
	opts.Broker = bus.NewBroker()
	srv := newServer(t, opts)
	em := wsroom.NewEmitter(bus.NewBroker(), wsroom.EmitterOptions{})
	t.Cleanup(func() { em.Close() })

	c := v1Dial(t, srv.url+"?user=u&room=hist", nil)
	c.v1Next() // hello
	epoch := c.v1Next().str("e")
	send := func(m string) {
		t.Helper()
		if err := srv.hub.Room("hist").Broadcast(wsroom.Text(m)); err != nil {
			t.Fatal(err)
		}
	}
	send("one")
	c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":1}`, epoch), "one")
	if err := em.RoomBroadcast("hist", wsroom.Text("emitted")); err != nil {
		t.Fatal(err)
	}
	c.v1Expect(`{"r":"hist"}`, "emitted")
	send("two")
	c.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":2}`, epoch), "two")

	// A resume from offset 1 replays the positioned message only.
	r := v1Dial(t, srv.url+"?user=v&room=hist", map[string]any{"r": map[string]any{"hist": []any{epoch, 1}}})
	r.v1Next() // hello
	r.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":2}`, epoch), "two")
	r.v1Expect(fmt.Sprintf(`{"t":"joined","r":"hist","e":%q,"o":2,"resumed":1}`, epoch), "")
}

// TestBroadcastExceptInFlightTwice: one connection's BroadcastExcepts in
// a room whose history a HistoryBroker keeps, several in flight at once
// (the node learns whom to leave out when the broker hands each back):
// the left-out connection gets none of them, the other member all.
func TestBroadcastExceptInFlightTwice(t *testing.T) {
	bus := membroker.NewBus()
	opts := historyOptions()
	opts.Broker = bus.NewBroker()
	var mu sync.Mutex
	conns := map[string]*wsroom.Conn{}
	onConnect := opts.OnConnect
	opts.OnConnect = func(c *wsroom.Conn, r *http.Request) error {
		mu.Lock()
		conns[c.UserID()] = c
		mu.Unlock()
		return onConnect(c, r)
	}
	srv := newServer(t, opts)
	x := wstest.Dial(t, srv.url+"?user=x&room=hist", nil)
	y := wstest.Dial(t, srv.url+"?user=y&room=hist", nil)
	wstest.WaitFor(t, "both in the room", func() bool { return srv.hub.Room("hist").Len() == 2 })
	mu.Lock()
	left := conns["x"]
	mu.Unlock()

	const senders, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				errs <- srv.hub.Room("hist").BroadcastExcept(wsroom.Text(strconv.Itoa(g*each+i)), left)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.hub.Room("hist").Broadcast(wsroom.Text("end")); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range senders * each {
		got[y.NextText(t)] = true
	}
	y.ExpectText(t, "end")
	if len(got) != senders*each {
		t.Errorf("y got %d distinct messages of %d", len(got), senders*each)
	}
	x.ExpectText(t, "end") // and nothing before it
}

// holdingBroker holds back the positioned messages it delivers while
// held is open: the node's subscription lags, and fills read ahead of it.
type holdingBroker struct {
	*membroker.Broker
	held chan struct{} // closed (or nil) to deliver
}

func (b *holdingBroker) StartHistory(deliver func(topic string, pos wsroom.Position, payload []byte)) {
	b.Broker.StartHistory(func(topic string, pos wsroom.Position, payload []byte) {
		<-b.held
		deliver(topic, pos, payload)
	})
}

// TestBroadcastExceptFilledAhead: BroadcastExcepts that a fill delivers
// before the node's subscription hands them over (as duplicates, then
// skipped) are each counted once against the connection they leave out,
// so a later one still leaves it out.
func TestBroadcastExceptFilledAhead(t *testing.T) {
	bus := membroker.NewBus()
	opts := historyOptions()
	hb := &holdingBroker{Broker: bus.NewBroker(), held: make(chan struct{})}
	release := sync.OnceFunc(func() { close(hb.held) })
	t.Cleanup(release)
	opts.Broker = hb
	srv := newServer(t, opts)
	w := v1Dial(t, srv.url+"?user=w&room=hist", nil)
	w.v1Next() // hello
	epoch := w.v1Next().str("e")
	x := wstest.Dial(t, srv.url+"?user=x&room=hist", nil)
	wstest.WaitFor(t, "x in the room", func() bool { return srv.hub.Room("hist").Len() == 2 })
	left := srv.hub.UserConns("x")[0]
	except := func(m string) {
		t.Helper()
		if err := srv.hub.Room("hist").BroadcastExcept(wsroom.Text(m), left); err != nil {
			t.Fatal(err)
		}
	}
	except("m1")
	except("m2")
	// The node's periodic check (every 2 s) finds its copy behind the
	// broker's and fills it: m1 and m2 reach the members before the
	// subscription hands them over.
	w.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":1}`, epoch), "m1")
	w.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":2}`, epoch), "m2")
	except("m3")
	release() // the subscription hands over m1, m2 (delivered already) and m3
	w.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":3}`, epoch), "m3")
	if err := srv.hub.Room("hist").Broadcast(wsroom.Text("end")); err != nil {
		t.Fatal(err)
	}
	w.v1Expect(fmt.Sprintf(`{"r":"hist","e":%q,"o":4}`, epoch), "end")
	x.ExpectText(t, "end") // and none of m1, m2, m3 before it
}
