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
// payload carries a binary timestamp) where the example uses text. M is
// what the send channels carry: []byte here, *websocket.PreparedMessage
// for gorilla-prepared (newGorillaPrepared).
type gorillaServer[M any] struct {
	upgrader   websocket.Upgrader
	register   chan *gorillaClient[M]
	unregister chan *gorillaClient[M]
	bcast      chan M
	direct     chan gorillaDirect[M]
	nconns     atomic.Int64
	kicked     atomic.Int64
	merged     atomic.Int64

	prepare func(p []byte, text bool) M              // turns a publish into a queued message
	write   func(c *gorillaClient[M], first M) error // writes first and whatever it merges behind it
	setup   func(c *websocket.Conn)                  // configures a new connection (nil: nothing)
}

type gorillaDirect[M any] struct {
	m     M
	users []string
}

type gorillaClient[M any] struct {
	s    *gorillaServer[M]
	conn *websocket.Conn
	user string
	send chan M
}

// The example's constants.
const (
	gorillaWriteWait  = 10 * time.Second
	gorillaPongWait   = 60 * time.Second
	gorillaPingPeriod = gorillaPongWait * 9 / 10
	gorillaMaxMessage = 512
)

func newGorilla() target {
	return startGorilla(&gorillaServer[[]byte]{
		upgrader: websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024},
		prepare:  func(p []byte, _ bool) []byte { return p }, // the writer sends binary frames
		write:    writeMerged,
	})
}

// newGorillaPrepared is the same hub with permessage-deflate: the upgrader
// accepts clients' offers (gorilla always answers server_no_context_takeover
// and client_no_context_takeover), write compression is on for every
// connection, and each publish becomes one websocket.PreparedMessage that
// every writer sends with WritePreparedMessage, so a message is compressed
// once per broadcast. Queued messages are not merged (a prepared message is
// a frame of its own).
func newGorillaPrepared() target {
	return startGorilla(&gorillaServer[*websocket.PreparedMessage]{
		upgrader: websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, EnableCompression: true},
		prepare: func(p []byte, text bool) *websocket.PreparedMessage {
			typ := websocket.BinaryMessage
			if text {
				typ = websocket.TextMessage
			}
			pm, err := websocket.NewPreparedMessage(typ, p)
			if err != nil {
				panic(err) // only for an invalid message type
			}
			return pm
		},
		write: func(c *gorillaClient[*websocket.PreparedMessage], pm *websocket.PreparedMessage) error {
			return c.conn.WritePreparedMessage(pm)
		},
		setup: func(c *websocket.Conn) { c.EnableWriteCompression(true) },
	})
}

func startGorilla[M any](s *gorillaServer[M]) target {
	s.register = make(chan *gorillaClient[M])
	s.unregister = make(chan *gorillaClient[M])
	s.bcast = make(chan M)
	s.direct = make(chan gorillaDirect[M])
	go s.run() // like the example, the hub runs for the life of the process
	return s
}

func (s *gorillaServer[M]) run() {
	clients := map[*gorillaClient[M]]bool{}
	users := userIndex[*gorillaClient[M]]{}
	remove := func(c *gorillaClient[M]) {
		delete(clients, c)
		users.remove(c.user, c)
		close(c.send)
		s.nconns.Store(int64(len(clients)))
	}
	deliver := func(c *gorillaClient[M], m M) {
		select {
		case c.send <- m:
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
		case m := <-s.bcast:
			for c := range clients {
				deliver(c, m)
			}
		case d := <-s.direct:
			for _, u := range d.users {
				for c := range users[u] {
					deliver(c, d.m)
				}
			}
		}
	}
}

func (s *gorillaServer[M]) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if s.setup != nil {
			s.setup(conn)
		}
		c := &gorillaClient[M]{s: s, conn: conn, user: r.URL.Query().Get("u"), send: make(chan M, 256)}
		s.register <- c
		go c.writePump()
		go c.readPump()
	})
}

func (c *gorillaClient[M]) readPump() {
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

func (c *gorillaClient[M]) writePump() {
	ticker := time.NewTicker(gorillaPingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case m, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.s.write(c, m); err != nil {
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

// writeMerged is the example's writer: p and every message queued behind
// it go out as one frame, separated by '\n'.
func writeMerged(c *gorillaClient[[]byte], p []byte) error {
	w, err := c.conn.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
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
	return w.Close()
}

func (s *gorillaServer[M]) broadcast(p []byte) { s.bcast <- s.prepare(p, false) }

func (s *gorillaServer[M]) broadcastText(p []byte) { s.bcast <- s.prepare(p, true) }

func (s *gorillaServer[M]) sendTo(p []byte, users []string) {
	s.direct <- gorillaDirect[M]{m: s.prepare(p, false), users: users}
}

func (s *gorillaServer[M]) conns() int { return int(s.nconns.Load()) }

func (s *gorillaServer[M]) counters() (kicked, dropped, merged int64) {
	return s.kicked.Load(), 0, s.merged.Load()
}
