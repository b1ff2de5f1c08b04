package wsroom_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/wstest"
	"github.com/wsroom/wsroom/membroker"
)

// observerFunc adapts a function to wsroom.Observer.
type observerFunc func(wsroom.Event)

func (f observerFunc) Observe(e wsroom.Event) { f(e) }

// TestAsyncPublish: with AsyncPublish a send returns before the broker's
// verdict; other nodes get every send in order, and a failed publish is
// counted and reported to the Observer instead of returned.
func TestAsyncPublish(t *testing.T) {
	bus := membroker.NewBus()
	failures := make(chan error, 16)
	opts := nodeOptions(bus.NewBroker())
	opts.AsyncPublish = true
	opts.Observer = observerFunc(func(e wsroom.Event) {
		if be, ok := e.(wsroom.BrokerErrorEvent); ok && be.Op == "publish" {
			failures <- be.Err
		}
	})
	a := newServer(t, opts)
	b := newServer(t, nodeOptions(bus.NewBroker()))
	bob := wstest.Dial(t, b.url+"?user=bob&room=r", nil)
	wstest.WaitFor(t, "bob's room subscribed", func() bool { return bus.Subscribers("room:r") == 1 })

	const n = 200
	for i := range n {
		if err := a.hub.Room("r").Broadcast(wsroom.Text(strconv.Itoa(i))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for i := range n {
		bob.ExpectText(t, strconv.Itoa(i))
	}
	wstest.WaitFor(t, "every outcome read", func() bool { return a.hub.Stats().BrokerOut == n })

	bus.SetDown(true)
	if err := a.hub.Room("r").Broadcast(wsroom.Text("lost")); err != nil {
		t.Fatalf("a send with the broker down returned %v; with AsyncPublish the failure is reported, not returned", err)
	}
	select {
	case err := <-failures:
		if !errors.Is(err, wsroom.ErrNotPublished) {
			t.Errorf("reported %v, want an error wrapping ErrNotPublished", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the failed publish was not reported to the Observer")
	}
	if s := a.hub.Stats(); s.BrokerErrors != 1 || s.BrokerOut != n {
		t.Errorf("stats %+v, want %d published and 1 broker error", s, n)
	}
}
