package brokertest_test

import (
	"testing"

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
