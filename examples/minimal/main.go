// Command minimal is the smallest complete wsroom server: everyone who
// connects to /ws joins the lobby, and every message is relayed to the
// rest of the lobby. It shows the http.Server settings a production
// server needs and a graceful shutdown.
//
//	go run ./examples/minimal
//	# in a browser console on http://localhost:8080/:
//	#   ws = new WebSocket("ws://localhost:8080/ws"); ws.onmessage = e => console.log(e.data)
//	#   ws.send("hello")
package main

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/wsroom/wsroom"
)

func main() {
	var hub *wsroom.Hub // OnMessage below refers to it
	hub = wsroom.New(wsroom.Options{
		OnConnect: func(c *wsroom.Conn, r *http.Request) error { return c.Join("lobby") },
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			hub.Room("lobby").BroadcastExcept(m, c) // everyone in the lobby but the sender
		},
	})

	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("wsroom: connect to ws://" + r.Host + "/ws\n"))
	})

	srv := &http.Server{
		Addr:    ":8080",
		Handler: mux,
		// A client has 10 s to send its request headers: without this, a
		// bare http.Server holds half-sent handshakes forever (slowloris).
		ReadHeaderTimeout: 10 * time.Second,
		// For plain HTTP requests only: the hub clears these deadlines
		// on the connections it takes over.
		ReadTimeout:    30 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown) // stops accepting; does not wait for WebSockets
		hub.Shutdown(shutdown) // 1001 to every connection, flushes, joins its goroutines
	}()
	log.Printf("listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-done
}
