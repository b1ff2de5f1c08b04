// Command chat is examples/chat spread over several processes: the same
// app (package chatapp), with a NATS broker so that a room's members and
// a user's connections may be on any node.
//
//	nats-server -a 127.0.0.1 -p 4222                  # one NATS
//	go run ./examples/chat -addr :8081 -nats nats://127.0.0.1:4222
//	go run ./examples/chat -addr :8082 -nats nats://127.0.0.1:4222
//
// Open http://localhost:8081/ and http://localhost:8082/ and join the same
// room with two names: messages and direct messages cross nodes. What
// differs from a single node (direct messages reach only users who share
// a room with the sender on their own node; presence lists are
// node-local) is explained in redisbroker/examples/chat, which this
// mirrors with NATS instead of Redis.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/examples/chat/chatapp"
	"github.com/wsroom/wsroom/natsbroker"
)

func main() {
	addr := flag.String("addr", ":8081", "address to listen on")
	natsURL := flag.String("nats", natsbroker.DefaultURL, "NATS URL shared by every node")
	flag.Parse()
	if err := run(*addr, *natsURL); err != nil {
		log.Fatal(err)
	}
}

// run serves until SIGINT or SIGTERM, then shuts down gracefully.
func run(addr, natsURL string) error {
	// The hub owns the broker: Hub.Shutdown closes it.
	b := natsbroker.New(natsbroker.Options{URL: natsURL})
	handler, hub := chatapp.New(wsroom.Options{Broker: b})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hub.Shutdown(context.Background())
		return err
	}
	fmt.Printf("wsroom chat node (NATS %s): open %s\n", natsURL, chatapp.BrowseURL(ln.Addr()))
	return chatapp.Serve(ln, handler, hub)
}
