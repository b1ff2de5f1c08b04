package main

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// gorillaServer follows gorilla/websocket's examples/chat: a hub goroutine
// owns the client set; each client has a reader goroutine, a writer
// goroutine and a 256-slot send channel. The hub kicks (closes) a client
// whose channel is full, and the writer merges every message queued when
// it wakes into one frame separated by '\n', as the example does. The
// example has no user index; a users map in the hub (O(k) SendTo) is the
// natural extension and is what is measured. Messages are binary (the
// payload carries a binary timestamp) where the example uses text.
type gorillaServer struct {
	upgrader   websocket.Upgrader
	register   chan *gorillaClient
	unregister chan *gorillaClient
	bcast      chan []byte
	direct     chan gorillaDirect
	nconns     atomic.Int64
	kicked     atomic.Int64
	merged     atomic.Int64
}

type gorillaDirect struct {
	p     []byte
	users []string
}

type gorillaClient struct {
	s    *gorillaServer
	conn *websocket.Conn
	user string
	send chan []byte
}

// The example's constants.
const (
	gorillaWriteWait  = 10 * time.Second
	gorillaPongWait   = 60 * time.Second
	gorillaPingPeriod = gorillaPongWait * 9 / 10
	gorillaMaxMessage = 512
)

func newGorilla() target {
	s := &gorillaServer{
		upgrader:   websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024},
		register:   make(chan *gorillaClient),
		unregister: make(chan *gorillaClient),
		bcast:      make(chan []byte),
		direct:     make(chan gorillaDirect),
	}
	go s.run() // like the example, the hub runs for the life of the process
	return s
}

func (s *gorillaServer) run() {
	clients := map[*gorillaClient]bool{}
	users := userIndex[*gorillaClient]{}
	remove := func(c *gorillaClient) {
		delete(clients, c)
		users.remove(c.user, c)
		close(c.send)
		s.nconns.Store(int64(len(clients)))
	}
	deliver := func(c *gorillaClient, p []byte) {
		select {
		case c.send <- p:
		default:
			s.kicked.Add(1)
			remove(c)
		}
	}
	for {
		select {
		case c := <-s.register:
			clients[c] = true
			users.add(c.user, c)
			s.nconns.Store(int64(len(clients)))
		case c := <-s.unregister:
			if clients[c] {
				remove(c)
			}
		case p := <-s.bcast:
			for c := range clients {
				deliver(c, p)
			}
		case d := <-s.direct:
			for _, u := range d.users {
				for c := range users[u] {
					deliver(c, d.p)
				}
			}
		}
	}
}

func (s *gorillaServer) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &gorillaClient{s: s, conn: conn, user: r.URL.Query().Get("u"), send: make(chan []byte, 256)}
		s.register <- c
		go c.writePump()
		go c.readPump()
	})
}

func (c *gorillaClient) readPump() {
	defer func() {
		c.s.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(gorillaMaxMessage)
	_ = c.conn.SetReadDeadline(time.Now().Add(gorillaPongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(gorillaPongWait))
	})
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

func (c *gorillaClient) writePump() {
	ticker := time.NewTicker(gorillaPingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case p, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			w, err := c.conn.NextWriter(websocket.BinaryMessage)
			if err != nil {
				return
			}
			_, _ = w.Write(p)
			n := len(c.send)
			if n > 0 {
				c.s.merged.Add(1)
			}
			for range n {
				_, _ = w.Write([]byte{'\n'})
				_, _ = w.Write(<-c.send)
			}
			if err := w.Close(); err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func (s *gorillaServer) broadcast(p []byte) { s.bcast <- p }

func (s *gorillaServer) sendTo(p []byte, users []string) {
	s.direct <- gorillaDirect{p: p, users: users}
}

func (s *gorillaServer) conns() int { return int(s.nconns.Load()) }

func (s *gorillaServer) counters() (kicked, dropped, merged int64) {
	return s.kicked.Load(), 0, s.merged.Load()
}
