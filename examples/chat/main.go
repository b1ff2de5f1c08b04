// Command chat is a small chat room app built on wsroom: pick a name and a
// room, talk to everyone in the room, see who is there, and send direct
// messages.
//
//	go run ./examples/chat                  # then open http://localhost:8080/
//	go run ./examples/chat -addr 127.0.0.1:9000
//
// The app itself lives in package chatapp, so other programs can serve it
// too. Its page (chatapp/index.html, embedded) uses the browser's own
// WebSocket API and connects to /ws?name=…&room=…. The wire protocol is wsroom.Relay's JSON
// envelopes plus one server message:
//
//	page → server  {"room":"lobby","data":{"text":"hi"},"id":"7"}       to the room
//	page → server  {"to":["bob"],"data":{"text":"hi","dm":true},"id":"8"} to bob only
//	server → page  {"from":"alice","room":"lobby","data":{…}}            relayed (no "room" for a DM)
//	server → page  {"error":"forbidden: no shared room with a recipient","id":"8"}
//	server → page  {"presence":{"room":"lobby","users":["alice","bob"]}} on every join/leave
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

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
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("wsroom chat: open %s\n", browseURL(ln.Addr()))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stop() // a second Ctrl-C kills the process at once
	log.Print("wsroom chat: shutting down")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// http.Server.Shutdown stops accepting and waits for plain HTTP
	// requests, but it does not track hijacked connections: Hub.Shutdown
	// refuses new handshakes, closes every WebSocket with 1001 "server
	// shutdown" after flushing what is queued, and waits for the hub's
	// goroutines. After the deadline it drops whatever is left.
	if err := errors.Join(srv.Shutdown(ctx), hub.Shutdown(ctx)); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// browseURL turns the listening address into a URL a browser can open:
// ":8080" and "0.0.0.0:8080" listen everywhere, so point at localhost.
func browseURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
