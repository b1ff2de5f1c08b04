package wstest

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// QuietLogger returns a logger that discards everything, for hubs whose
// tests provoke errors and panics on purpose.
func QuietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Server describes a loopback test server; see Start.
type Server struct {
	// Handler serves every request.
	Handler http.Handler
	// Stop, if not nil, runs first at cleanup, with a 10 s deadline: a
	// Hub's Shutdown (httptest.Server.Close does not wait for hijacked
	// connections). An error fails the test.
	Stop func(context.Context) error
	// Wrap, if not nil, wraps the server's listener.
	Wrap func(net.Listener) net.Listener
	// TLS serves HTTPS (see httptest.Server.Client for a client).
	TLS bool
}

// Start starts the server on a fresh loopback port. Cleanup runs Stop,
// then closes the server.
func (s Server) Start(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(s.Handler)
	if s.Wrap != nil {
		srv.Listener = s.Wrap(srv.Listener)
	}
	if s.TLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		if s.Stop != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Stop(ctx); err != nil {
				t.Errorf("stopping the server's handler: %v", err)
			}
		}
		srv.Close()
	})
	return srv
}

// Serve starts h on a loopback server; cleanup runs stop (if not nil),
// then closes the server. See Server.
func Serve(t testing.TB, h http.Handler, stop func(context.Context) error) *httptest.Server {
	t.Helper()
	return Server{Handler: h, Stop: stop}.Start(t)
}

// ServePipe serves req with h over an in-memory connection (net.Pipe)
// instead of a socket, and returns the client side after the handshake,
// whatever the answer (in Resp). h runs on its own goroutine; cleanup
// closes the client side and waits for h to return.
//
// A WebSocket handler hijacks the pipe's server side; a handler that does
// not gets its recorded answer written to the pipe. Every blocking
// operation on a pipe is durable in the sense of testing/synctest, so a
// test inside a synctest bubble drives the server in virtual time; the
// handler serves the pipe with a goroutine of its own (it is not a
// *net.TCPConn).
func ServePipe(t testing.TB, h http.Handler, req *http.Request) *Conn {
	t.Helper()
	server, client := net.Pipe()
	w := &pipeWriter{ResponseRecorder: httptest.NewRecorder(), nc: server}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(w, req)
		if !w.hijacked {
			w.Result().Write(server) // the client reads it below, or has gone
			server.Close()
		}
	}()
	c := NewConn(client)
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	if _, err := c.ReadResponse(req); err != nil {
		t.Fatalf("handshake over a pipe: %v", err)
	}
	return c
}

// pipeWriter is the ResponseWriter of ServePipe: a recorder that can be
// hijacked, handing over the pipe's server side.
type pipeWriter struct {
	*httptest.ResponseRecorder
	nc       net.Conn
	hijacked bool
}

func (w *pipeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, errors.New("wstest: hijacked twice")
	}
	w.hijacked = true
	return w.nc, bufio.NewReadWriter(bufio.NewReader(w.nc), bufio.NewWriter(w.nc)), nil
}
