package chatapp

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wsroom/wsroom"
)

// Serve serves handler on ln until SIGINT or SIGTERM, then shuts down
// gracefully: the HTTP server and hub both get 5 seconds.
func Serve(ln net.Listener, handler http.Handler, hub *wsroom.Hub) error {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
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
	// goroutines (and closes its broker, if any). After the deadline it
	// drops whatever is left.
	if err := errors.Join(srv.Shutdown(ctx), hub.Shutdown(ctx)); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// BrowseURL turns a listening address into a URL a browser can open:
// ":8080" and "0.0.0.0:8080" listen everywhere, so point at localhost.
func BrowseURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
