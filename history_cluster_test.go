package wsroom_test

import (
	"fmt"
	"testing"

	"github.com/wsroom/wsroom"
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
