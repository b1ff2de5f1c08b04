package redisbroker_test

import (
	"testing"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/brokertest"
	"github.com/wsroom/wsroom/redisbroker"
	"github.com/wsroom/wsroom/redisbroker/redistest"
)

// The Broker contract suite, against a real redis-server (the outage
// stops and restarts the process on the same port), against three
// independent Redis shards, and against a real three-master Redis Cluster
// in sharded pub/sub mode.

func TestContractOneRedis(t *testing.T) {
	srv := redistest.Start(t)
	brokertest.Run(t, brokertest.Config{
		NewBroker: func(t *testing.T) wsroom.Broker {
			return redisbroker.New(redisbroker.Options{Addrs: []string{srv.Addr}, Logger: quietLogger()})
		},
		Outage: func(t *testing.T, down bool) { outage(down, srv) },
		Crash:  crash,
	})
}

func TestContractShards(t *testing.T) {
	srvs := []*redistest.Server{redistest.Start(t), redistest.Start(t), redistest.Start(t)}
	addrs := []string{srvs[0].Addr, srvs[1].Addr, srvs[2].Addr}
	brokertest.Run(t, brokertest.Config{
		NewBroker: func(t *testing.T) wsroom.Broker {
			return redisbroker.New(redisbroker.Options{Addrs: addrs, Logger: quietLogger()})
		},
		Outage: func(t *testing.T, down bool) { outage(down, srvs...) },
		Crash:  crash,
	})
}

func TestContractCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	brokertest.Run(t, brokertest.Config{
		NewBroker: func(t *testing.T) wsroom.Broker {
			return redisbroker.New(redisbroker.Options{Addrs: c.Addrs()[:1], Cluster: true, Logger: quietLogger()})
		},
		Outage: func(t *testing.T, down bool) {
			outage(down, c.Nodes...)
			if !down {
				c.WaitOK()
			}
		},
		Crash: crash,
	})
}

// crash stops b as its process's death would, as far as Redis can tell:
// its connections close and it beats no more, without LeavePresence.
func crash(t *testing.T, b wsroom.Broker) { b.Close() }

// outage stops (down) or restarts the servers.
func outage(down bool, srvs ...*redistest.Server) {
	for _, s := range srvs {
		if down {
			s.Stop()
		} else {
			s.Restart()
		}
	}
}
