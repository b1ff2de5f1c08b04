// Command chat is a small chat room app built on wsroom: pick a name and a
// room, talk to everyone in the room, see who is there, and send direct
// messages.
//
//	go run ./examples/chat                  # then open http://localhost:8080/
//	go run ./examples/chat -addr 127.0.0.1:9000
//
// The app itself lives in package chatapp, so other programs can serve it
// too. Its page (chatapp/index.html, embedded) uses wsroom's JavaScript
// client, which the hub serves at /wsroom.js, and connects to
// /ws?name=…&room=…. Each room keeps its last 200 messages for 10 minutes:
// a page whose connection drops reconnects by itself and gets what it
// missed, in order; after a restart (this process keeps history in
// memory) it says that messages may be missing. The messages are
// wsroom.Relay's JSON envelopes plus one server message:
//
//	page → server  {"room":"lobby","data":{"text":"hi"},"id":"7"}       to the room
//	page → server  {"to":["bob"],"data":{"text":"hi","dm":true},"id":"8"} to bob only
//	server → page  {"from":"alice","room":"lobby","data":{…}}            relayed (no "room" for a DM)
//	server → page  {"error":"forbidden: no shared room with a recipient","id":"8"}
//	server → page  {"presence":{"room":"lobby","users":["alice","bob"],"joined":["bob"]}}
//
// The presence update goes to the room when its set of users changes
// ("joined" and "left" name who came and went), and to a connection alone
// when it joins a room its user is already in (another tab).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/examples/chat/chatapp"
)

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		log.Fatal(err)
	}
}

// run serves until SIGINT or SIGTERM, then shuts down gracefully.
func run(addr string) error {
	handler, hub := chatapp.New(wsroom.Options{})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("wsroom chat: open %s\n", chatapp.BrowseURL(ln.Addr()))
	return chatapp.Serve(ln, handler, hub)
}
