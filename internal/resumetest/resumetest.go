// Package resumetest is a wsroom server for testing clients of the
// wsroom.v1 protocol (client/wsroom.js) against the real thing: rooms with
// and without history, the relay, join requests, and a control API that
// broadcasts, cuts connections without a close frame, closes them with a
// code, and restarts the hub (new epochs). The Node tests run it through
// the command in ./server; Go tests use it directly.
//
// Rooms: a room whose name starts with "plain" keeps no history; "small"
// keeps 5 messages; every other room keeps Config.HistoryMessages. Join
// requests are allowed except for rooms whose name starts with "secret".
//
// The connection's user ID is the "user" query parameter (random if
// absent) and OnConnect joins the rooms listed, comma-separated, in the
// "rooms" parameter.
package resumetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsroom/wsroom"
)

// Config configures a Server.
type Config struct {
	// HistoryMessages is what most rooms keep. Default 100000.
	HistoryMessages int
	// HistoryTTL is how long they keep it. Default 10 minutes.
	HistoryTTL time.Duration
	// Logger receives the hubs' logs. Default: discarded.
	Logger *slog.Logger
	// Broker, if set, makes each hub's broker (a hub owns its broker, so
	// every restart asks for a new one): several Servers over one broker
	// are the nodes of one app. Default: none.
	Broker func() wsroom.Broker
}

// Server is a hub that can be restarted, with its control API.
type Server struct {
	cfg Config
	hub atomic.Pointer[wsroom.Hub]

	mu    sync.Mutex
	conns map[*wsroom.Conn]net.Conn // the TCP connection under each wsroom one
	seqs  map[string]uint64         // the last sequence number broadcast per room
	hubs  int                       // hubs started (1 + restarts)
}

type rawConnKey struct{}

// New returns a server with its first hub.
func New(cfg Config) *Server {
	if cfg.HistoryMessages <= 0 {
		cfg.HistoryMessages = 100000
	}
	if cfg.HistoryTTL <= 0 {
		cfg.HistoryTTL = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, conns: map[*wsroom.Conn]net.Conn{}, seqs: map[string]uint64{}}
	s.hub.Store(s.newHub())
	return s
}

// ConnContext must be set as the http.Server's ConnContext: it lets Cut
// find the TCP connection under each WebSocket.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, rawConnKey{}, c)
}

// Hub returns the current hub.
func (s *Server) Hub() *wsroom.Hub { return s.hub.Load() }

func (s *Server) newHub() *wsroom.Hub {
	s.mu.Lock()
	s.hubs++
	s.mu.Unlock()
	var broker wsroom.Broker
	if s.cfg.Broker != nil {
		broker = s.cfg.Broker()
	}
	return wsroom.New(wsroom.Options{
		Broker: broker,
		Identify: func(r *http.Request) (string, error) {
			return r.URL.Query().Get("user"), nil
		},
		OnConnect: func(c *wsroom.Conn, r *http.Request) error {
			if raw, ok := c.Context().Value(rawConnKey{}).(net.Conn); ok {
				s.mu.Lock()
				s.conns[c] = raw
				s.mu.Unlock()
			}
			for _, room := range strings.Split(r.URL.Query().Get("rooms"), ",") {
				if room != "" {
					if err := c.Join(room); err != nil {
						return err
					}
				}
			}
			return nil
		},
		OnClose: func(c *wsroom.Conn, _ error) {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		},
		OnMessage: wsroom.Relay(wsroom.RelayOptions{}),
		History: func(room string) wsroom.History {
			switch {
			case strings.HasPrefix(room, "plain"):
				return wsroom.History{}
			case strings.HasPrefix(room, "small"):
				return wsroom.History{Messages: 5, TTL: s.cfg.HistoryTTL}
			}
			return wsroom.History{Messages: s.cfg.HistoryMessages, Bytes: 256 << 20, TTL: s.cfg.HistoryTTL}
		},
		AuthorizeJoin: func(_ *wsroom.Conn, room string) error {
			if strings.HasPrefix(room, "secret") {
				return errors.New("secret rooms are closed")
			}
			return nil
		},
		Logger: s.cfg.Logger,
	})
}

// Payload is what Broadcast sends: the room and a sequence number counted
// per room from 1 (across restarts).
type Payload struct {
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
}

// Broadcast sends n messages to room, rate per second (0: at once), and
// returns the first and last sequence numbers. It stops early, with an
// error, when ctx ends or a send fails.
func (s *Server) Broadcast(ctx context.Context, room string, n int, rate float64, binary bool) (first, last uint64, err error) {
	start := time.Now()
	for i := range n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return first, last, ctx.Err()
				case <-t.C:
				}
			}
		}
		s.mu.Lock()
		s.seqs[room]++
		seq := s.seqs[room]
		s.mu.Unlock()
		b, _ := json.Marshal(Payload{Room: room, Seq: seq})
		m := wsroom.Text(string(b))
		if binary {
			m = wsroom.Binary(b)
		}
		if err := s.hub.Load().Room(room).Broadcast(m); err != nil {
			return first, last, fmt.Errorf("broadcast %d to %s: %w", seq, room, err)
		}
		if first == 0 {
			first = seq
		}
		last = seq
	}
	return first, last, nil
}

// conns returns the current hub's connections of user ("" for all).
func (s *Server) userConns(user string) map[*wsroom.Conn]net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[*wsroom.Conn]net.Conn{}
	for c, raw := range s.conns {
		if user == "" || c.UserID() == user {
			out[c] = raw
		}
	}
	return out
}

// Cut drops the connections of user ("" for everyone) without a close
// frame: both directions of their TCP connections are shut down, so the
// client sees the connection end (1006) and the hub sees it vanish. It
// returns how many were cut.
func (s *Server) Cut(user string) int {
	n := 0
	for _, raw := range s.userConns(user) {
		if tc, ok := raw.(*net.TCPConn); ok {
			tc.CloseRead()
			tc.CloseWrite()
			n++
		}
	}
	return n
}

// Close closes the connections of user ("" for everyone) with code and
// reason (a close frame) and returns how many.
func (s *Server) Close(user string, code wsroom.StatusCode, reason string) int {
	n := 0
	for c := range s.userConns(user) {
		if c.Close(code, reason) == nil {
			n++
		}
	}
	return n
}

// Restart replaces the hub by a new one (new histories: new epochs). With
// crash the old hub's connections are cut first (no close frame);
// otherwise they get its Shutdown's 1001.
func (s *Server) Restart(crash bool) error {
	old := s.hub.Swap(s.newHub())
	if crash {
		for c, raw := range s.userConns("") {
			if c.Hub() == old {
				if tc, ok := raw.(*net.TCPConn); ok {
					tc.CloseRead()
					tc.CloseWrite()
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return old.Shutdown(ctx)
}

// Shutdown ends the current hub.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.hub.Load().Shutdown(ctx)
}

// Handler serves the hub at /ws, the JavaScript client at /wsroom.js and
// the control API under /ctl/ (see serveControl).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { s.hub.Load().ServeHTTP(w, r) })
	mux.Handle("GET /wsroom.js", wsroom.ClientScript())
	mux.HandleFunc("/ctl/{op}", s.serveControl)
	return mux
}

// serveControl answers the control API with JSON:
//
//	/ctl/broadcast?room=R&n=N[&rate=PER_S][&binary=1] {"first":…,"last":…}
//	/ctl/cut[?user=U]                                 {"n":…}
//	/ctl/close?code=C[&reason=…][&user=U]             {"n":…}
//	/ctl/restart[?crash=1]                            {"hubs":…}
//	/ctl/send?user=U&text=T                           {} (Hub.SendTo: no position)
//	/ctl/join?user=U&room=R, /ctl/leave?user=U&room=R {"n":…} (server-side)
//	/ctl/conns[?user=U]                               {"n":…,"rooms":{connID:[…]}}
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	user := q.Get("user")
	var out any
	var err error
	switch r.PathValue("op") {
	case "broadcast":
		n, _ := strconv.Atoi(q.Get("n"))
		rate, _ := strconv.ParseFloat(q.Get("rate"), 64)
		var first, last uint64
		first, last, err = s.Broadcast(r.Context(), q.Get("room"), n, rate, q.Get("binary") == "1")
		out = map[string]uint64{"first": first, "last": last}
	case "cut":
		out = map[string]int{"n": s.Cut(user)}
	case "close":
		code, _ := strconv.Atoi(q.Get("code"))
		out = map[string]int{"n": s.Close(user, wsroom.StatusCode(code), q.Get("reason"))}
	case "restart":
		err = s.Restart(q.Get("crash") == "1")
		s.mu.Lock()
		out = map[string]int{"hubs": s.hubs}
		s.mu.Unlock()
	case "send":
		err = s.hub.Load().SendTo(wsroom.Text(q.Get("text")), user)
		out = map[string]int{}
	case "join", "leave":
		n := 0
		for c := range s.userConns(user) {
			if r.PathValue("op") == "join" {
				err = c.Join(q.Get("room"))
			} else {
				err = c.Leave(q.Get("room"))
			}
			n++
		}
		out = map[string]int{"n": n}
	case "conns":
		rooms := map[string][]string{}
		for c := range s.userConns(user) {
			if c.Hub() == s.hub.Load() {
				rooms[c.ConnID()] = c.Rooms()
			}
		}
		out = map[string]any{"n": len(rooms), "rooms": rooms}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(out)
}
