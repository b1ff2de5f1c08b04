package natsbroker_test

import (
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/natsbroker"
	"github.com/wsroom/wsroom/natsbroker/internal/natstest"
)

// TestContract runs the Broker contract suite against a real nats-server,
// which Outage kills and restarts on the same port.
func TestContract(t *testing.T) {
	srv := natstest.Start(t)
	brokertest.Run(t, brokertest.Config{
		NewBroker: func(*testing.T) wsroom.Broker {
			return natsbroker.New(natsbroker.Options{URL: srv.URL, Logger: quietLogger()})
		},
		Outage: func(_ *testing.T, down bool) { outage(srv, down) },
	})
}

// outage kills nats-server (down) or restarts it on the same port.
func outage(srv *natstest.Server, down bool) {
	if down {
		srv.Stop()
	} else {
		srv.Restart()
	}
}
