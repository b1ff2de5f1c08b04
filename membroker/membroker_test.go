package membroker_test

import (
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/membroker"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	bus := membroker.NewBus()
	brokertest.Run(t, brokertest.Config{
		NewBroker: func(*testing.T) wsroom.Broker { return bus.NewBroker() },
		Outage:    func(_ *testing.T, down bool) { bus.SetDown(down) },
		Crash:     func(_ *testing.T, b wsroom.Broker) { bus.Kill(b.(*membroker.Broker)) },
	})
}

// A full inbox makes publishers wait; closing the subscriber releases them.
func TestFullInboxWaitsAndCloseReleases(t *testing.T) {
	bus := membroker.NewBusWith(membroker.Options{Inbox: 1})
	sub, pub := bus.NewBroker(), bus.NewBroker()
	block := make(chan struct{})
	sub.Start(func(string, []byte) { <-block })
	if err := sub.Subscribe("room:r"); err != nil {
		t.Fatal(err)
	}
	pub.Start(func(string, []byte) {})
	published := make(chan error)
	go func() {
		for range 3 { // one being delivered, one in the inbox, one waiting
			if err := pub.Publish([]byte("x"), "room:r")(); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	close(block)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	sub.Close()
	pub.Close()
	if n := bus.Topics(); n != 0 {
		t.Errorf("%d topics still subscribed after Close", n)
	}
}
