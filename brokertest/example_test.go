package brokertest_test

import (
	"testing"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/membroker"
)

// A broker's tests run the suite against its real backend. Here the
// backend is a membroker.Bus; Outage simulates losing it.
func ExampleRun() {
	_ = func(t *testing.T) { // in a _test.go file: func TestContract(t *testing.T)
		bus := membroker.NewBus()
		brokertest.Run(t, brokertest.Config{
			NewBroker: func(*testing.T) wsroom.Broker { return bus.NewBroker() },
			Outage:    func(_ *testing.T, down bool) { bus.SetDown(down) },
		})
	}
}

// A broker's tests check two Hubs across an outage of its backend, here a
// membroker.Bus. Hubs A and B have a broker each on the Bus, are served at
// urlA and urlB, and join each client to the room that ?room= names.
func ExampleCheckHubOutage() {
	_ = func(t *testing.T, bus *membroker.Bus, hubA *wsroom.Hub, urlA, urlB string) {
		brokertest.CheckHubOutage(t, brokertest.HubOutage{
			Hub:       hubA,
			Room:      "lobby",
			LocalURL:  urlA + "?room=lobby",
			RemoteURL: urlB + "?room=lobby",
			Subscribed: func(t *testing.T) {
				deadline := time.Now().Add(10 * time.Second)
				for bus.Subscribers("room:lobby") != 2 {
					if time.Now().After(deadline) {
						t.Fatal("the Hubs did not subscribe to lobby")
					}
					time.Sleep(time.Millisecond)
				}
			},
			Outage: func(_ *testing.T, down bool) { bus.SetDown(down) },
		})
	}
}
