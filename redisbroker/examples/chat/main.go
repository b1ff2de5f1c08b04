// Command chat is examples/chat spread over several processes: the same
// app (package chatapp), with a Redis broker so that a room's members and
// a user's connections may be on any node.
//
//	redis-server --port 6379 --save ""              # one Redis
//	go run ./examples/chat -addr :8081 -redis 127.0.0.1:6379
//	go run ./examples/chat -addr :8082 -redis 127.0.0.1:6379
//
// -redis takes a comma-separated list: several independent Redis servers
// (shards; every node must list them in the same order), or, with
// -cluster, seed nodes of a Redis Cluster. -presence keeps presence
// cluster-wide in Redis (wsroom.Options.Presence), -presence-timeout sets
// how long a silent node keeps its users present (default 30 s).
//
// Open http://localhost:8081/ and http://localhost:8082/ and join the same
// room with two names: messages and direct messages cross nodes.
//
// What differs from a single node:
//
//   - Direct messages. wsroom.Relay's default policy lets a user message
//     only users who share a room with them. With a broker it cannot see
//     other nodes' rooms, so each node checks the recipients it holds: a
//     DM reaches a user's connections on a node if one of them shares a
//     room with the sender. A DM to a user who shares no room is dropped
//     without an error to the sender (single node: "forbidden: no shared
//     room with a recipient").
//   - Presence lists are node-local. Each node builds the list from its own
//     members (Room.Members is node-local) and sends it (Room.SendTo) to
//     the users on it, so a page shows the users of its own node (a user
//     with tabs on two nodes gets both nodes' lists, the last one
//     standing). -presence keeps wsroom's presence (Room.Presence,
//     OnPresence) cluster-wide; the demo's lists do not use it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"strings"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/examples/chat/chatapp"
	"github.com/wsroom/wsroom/redisbroker"
)

func main() {
	addr := flag.String("addr", ":8081", "address to listen on")
	redisAddrs := flag.String("redis", redisbroker.DefaultAddr, "Redis host:port shared by every node (comma-separated: shards, or cluster seeds with -cluster)")
	cluster := flag.Bool("cluster", false, "the -redis addresses are seeds of a Redis Cluster (sharded pub/sub)")
	presence := flag.Bool("presence", false, "keep presence cluster-wide in Redis")
	presenceTimeout := flag.Duration("presence-timeout", wsroom.DefaultPresenceTimeout, "with -presence: how long a silent node's users stay present")
	flag.Parse()
	opts := wsroom.Options{Presence: *presence, PresenceTimeout: *presenceTimeout}
	if err := run(*addr, *redisAddrs, *cluster, opts); err != nil {
		log.Fatal(err)
	}
}

// run serves until SIGINT or SIGTERM, then shuts down gracefully. opts
// holds the cluster options; run adds the broker.
func run(addr, redisAddrs string, cluster bool, opts wsroom.Options) error {
	// The hub owns the broker: Hub.Shutdown closes it.
	opts.Broker = redisbroker.New(redisbroker.Options{Addrs: strings.Split(redisAddrs, ","), Cluster: cluster})
	handler, hub := chatapp.New(opts)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hub.Shutdown(context.Background())
		return err
	}
	fmt.Printf("wsroom chat node (Redis %s): open %s\n", redisAddrs, chatapp.BrowseURL(ln.Addr()))
	return chatapp.Serve(ln, handler, hub)
}
