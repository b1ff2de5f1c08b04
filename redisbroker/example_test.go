package redisbroker_test

import (
	"log"
	"net/http"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/redisbroker"
)

// One Redis shared by every node.
func ExampleNew() {
	// README:readme
	b := redisbroker.New(redisbroker.Options{Addrs: []string{"10.0.0.5:6379"}})
	hub := wsroom.New(wsroom.Options{Broker: b, Presence: true}) // Hub.Shutdown closes b
	// README:end
	http.Handle("GET /ws", hub)
}

// Several independent Redis servers: each topic lives on one of them.
// Every node lists the same addresses in the same order.
func ExampleNew_shards() {
	b := redisbroker.New(redisbroker.Options{
		Addrs: []string{"10.0.0.5:6379", "10.0.0.6:6379", "10.0.0.7:6379", "10.0.0.8:6379"},
	})
	hub := wsroom.New(wsroom.Options{Broker: b})
	http.Handle("GET /ws", hub)
}

// A Redis Cluster (7.0 or later), on sharded pub/sub: the addresses are
// seeds; the broker finds the masters and follows changes.
func ExampleNew_cluster() {
	b := redisbroker.New(redisbroker.Options{
		Addrs:   []string{"10.0.0.5:7000", "10.0.0.6:7000"},
		Cluster: true,
	})
	hub := wsroom.New(wsroom.Options{Broker: b})
	http.Handle("GET /ws", hub)
}

// Room history and cluster presence in Redis: a wsroom.v1 client resumes
// on any node, and presence queries and events cover every node.
func ExampleNew_historyAndPresence() {
	b := redisbroker.New(redisbroker.Options{Addrs: []string{"10.0.0.5:6379"}})
	hub := wsroom.New(wsroom.Options{
		Broker: b,
		History: func(room string) wsroom.History {
			return wsroom.History{Messages: 100} // the last 100 broadcasts of every room
		},
		Presence:        true,             // Room.Presence, Hub.Online, Hub.RoomCounts, OnPresence: cluster-wide
		PresenceTimeout: 10 * time.Second, // a node silent for 10 s is taken for dead
		OnPresence: func(e wsroom.PresenceEvent) {
			log.Printf("%s joined %s: %v", e.UserID, e.Room, e.Joined) // once per transition, on one node
		},
	})
	http.Handle("GET /ws", hub)
}
