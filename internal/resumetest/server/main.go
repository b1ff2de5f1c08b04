// Command server runs a resumetest.Server on a free loopback port for the
// JavaScript client's Node tests (client/test): it prints
// {"url":"http://127.0.0.1:PORT"} on one line, then serves until its
// standard input ends (the test process exited) or it gets SIGTERM.
//
//	go run ./internal/resumetest/server [-history 100000] [-ttl 10m] [-log]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wsroom/wsroom/internal/resumetest"
)

func main() {
	history := flag.Int("history", 100000, "messages a room keeps")
	ttl := flag.Duration("ttl", 10*time.Minute, "how long a room keeps them")
	verbose := flag.Bool("log", false, "log the hubs' records on standard error")
	flag.Parse()

	cfg := resumetest.Config{HistoryMessages: *history, HistoryTTL: *ttl}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s := resumetest.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(), ConnContext: s.ConnContext, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	json.NewEncoder(os.Stdout).Encode(map[string]string{"url": "http://" + ln.Addr().String()})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stdinDone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinDone)
	}()
	select {
	case err := <-served:
		log.Fatal(err)
	case <-ctx.Done():
	case <-stdinDone:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	s.Shutdown(ctx)
}
